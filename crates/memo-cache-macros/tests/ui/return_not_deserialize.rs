use memo_cache::disk_cache;

struct Report {
    lines: Vec<String>,
}

#[disk_cache]
fn report(n: usize) -> Report {
    Report { lines: vec![String::new(); n] }
}

fn main() {
    let _ = report(3).lines;
}
