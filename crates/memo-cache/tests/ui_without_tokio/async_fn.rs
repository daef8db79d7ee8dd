use memo_cache::disk_cache;

#[disk_cache(ttl = "1h")]
async fn fetch(id: u32) -> String {
    format!("row {id}")
}

fn main() {
    // The function and its companions still type-check: the missing feature is the one error.
    let _ = fetch(1);
    let _ = fetch__recompute(1);
    let _ = fetch__uncached(1);
    let _ = fetch__is_cached(1);
    let _ = fetch__clear();
}
