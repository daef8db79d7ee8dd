use std::collections::HashSet;

use memo_cache::disk_cache;

#[disk_cache(ordered(tags))]
fn count(tags: HashSet<String>) -> usize {
    tags.len()
}

fn main() {
    let _ = count(HashSet::new());
}
