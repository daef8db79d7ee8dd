use memo_cache::disk_cache;

#[disk_cache]
fn swap_sum(&mut (ref mut a, ref mut b): &mut (u32, u32)) -> u32 {
    std::mem::swap(a, b);
    *a + *b
}

fn main() {
    let _ = swap_sum(&mut (1, 2));
}
