use memo_cache::disk_cache;

#[disk_cache]
fn total(values: impl IntoIterator<Item = u32>) -> u32 {
    values.into_iter().sum()
}

fn main() {
    let _ = total(vec![1, 2]);
}
