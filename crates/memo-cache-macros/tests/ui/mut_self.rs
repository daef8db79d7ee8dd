use memo_cache::disk_cache;

#[derive(serde::Serialize)]
struct Counter {
    count: u64,
}

impl Counter {
    #[disk_cache]
    fn bump(&mut self, by: u64) -> u64 {
        self.count += by;
        self.count
    }
}

fn main() {
    let _ = Counter { count: 0 }.bump(1);
}
