use memo_cache::disk_cache;

#[disk_cache(write_timeout = "0s")]
fn fetch(url: &str) -> usize {
    url.len()
}

fn main() {
    let _ = fetch("https://example.test");
}
