use memo_cache::disk_cache;

#[disk_cache]
fn push_and_count(values: &mut Vec<u32>, x: u32) -> usize {
    values.push(x);
    values.len()
}

fn main() {
    let _ = push_and_count(&mut vec![], 1);
}
