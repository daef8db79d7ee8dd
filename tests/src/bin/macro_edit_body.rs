//! `macro_edit_base` with real edits: `same` has a new body (a miss), `pinned` too but its
//! version is pinned (a hit), `typed` returns another type under the same pinned version (a miss).

use memo_cache::disk_cache;

#[disk_cache(name = "same")]
fn same(x: u64) -> u64 {
    println!("computed same {x}");
    x + x
}

#[disk_cache(name = "pinned", version = "1")]
fn pinned(x: u64) -> u64 {
    println!("computed pinned {x}");
    x + x + x
}

#[disk_cache(name = "typed", version = "1")]
fn typed(x: u64) -> i64 {
    println!("computed typed {x}");
    x as i64 + 1
}

fn main() {
    println!("result {}", same(21));
    println!("result {}", pinned(21));
    println!("result {}", typed(21));
}
