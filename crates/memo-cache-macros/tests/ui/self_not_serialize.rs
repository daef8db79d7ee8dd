use memo_cache::disk_cache;

struct Client {
    base: String,
}

impl Client {
    #[disk_cache]
    fn get(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

fn main() {
    let _ = Client { base: "x".into() }.get("/a");
}
