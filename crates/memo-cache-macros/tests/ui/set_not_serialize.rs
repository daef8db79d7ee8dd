use memo_cache::disk_cache;
use std::collections::HashSet;

#[derive(PartialEq, Eq, Hash)]
struct Tag(String);

#[disk_cache]
fn count(tags: HashSet<Tag>, extra: u32) -> usize {
    tags.len() + extra as usize
}

fn main() {
    let _ = count(HashSet::new(), 1);
}
