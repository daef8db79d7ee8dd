use memo_cache::disk_cache;

#[disk_cache]
fn lookup(__memo_key: u32) -> u32 {
    __memo_key * 2
}

fn main() {
    let _ = lookup(1);
}
