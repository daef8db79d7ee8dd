use memo_cache::disk_cache;

#[derive(Clone)]
struct Query {
    term: String,
}

impl Query {
    #[disk_cache(memory = 8)]
    fn run(self, limit: u32) -> Vec<String> {
        vec![self.term; limit as usize]
    }
}

fn main() {
    let _ = Query { term: "x".into() }.run(2);
}
