use memo_cache::disk_cache;

#[disk_cache(remote = "http://cache-host:6379")]
fn quote(symbol: &str) -> f64 {
    symbol.len() as f64
}

fn main() {
    let _ = quote("ACME");
}
