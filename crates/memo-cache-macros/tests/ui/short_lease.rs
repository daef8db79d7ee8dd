use memo_cache::disk_cache;

#[disk_cache(lease = "500ms")]
fn fetch(url: &str) -> usize {
    url.len()
}

fn main() {
    let _ = fetch("https://example.test");
}
