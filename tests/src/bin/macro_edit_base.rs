//! The baseline program of the fingerprint test: `macro_edit_comment` differs from it by comments
//! and formatting only, `macro_edit_body` by real edits.

use memo_cache::disk_cache;

#[disk_cache(name = "same")]
fn same(x: u64) -> u64 {
    println!("computed same {x}");
    x * 2
}

#[disk_cache(name = "pinned", version = "1")]
fn pinned(x: u64) -> u64 {
    println!("computed pinned {x}");
    x * 3
}

#[disk_cache(name = "typed", version = "1")]
fn typed(x: u64) -> u64 {
    println!("computed typed {x}");
    x + 1
}

fn main() {
    println!("result {}", same(21));
    println!("result {}", pinned(21));
    println!("result {}", typed(21));
}
