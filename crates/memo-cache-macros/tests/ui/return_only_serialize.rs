use memo_cache::disk_cache;

#[disk_cache]
fn name(n: u8) -> &'static str {
    if n == 0 { "zero" } else { "many" }
}

fn main() {
    let _ = name(1);
}
