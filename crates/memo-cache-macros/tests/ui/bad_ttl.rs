use memo_cache::disk_cache;

#[disk_cache(ttl = "1 fortnight")]
fn quote(symbol: &str) -> f64 {
    symbol.len() as f64
}

fn main() {
    let _ = quote("ACME");
}
