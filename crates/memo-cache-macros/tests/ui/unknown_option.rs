use memo_cache::disk_cache;

#[disk_cache(tll = "1h")]
fn features(path: &str) -> Vec<f64> {
    vec![path.len() as f64]
}

fn main() {
    let _ = features("a");
}
