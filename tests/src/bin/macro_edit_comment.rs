//! `macro_edit_base` with comments and formatting changed, nothing else: every call is a hit.

use memo_cache::disk_cache;

/// Doubles `x`, now with a doc comment.
#[disk_cache(name = "same")]
fn same(x: u64) -> u64 {
    // A comment the baseline does not have.
    println!("computed same {x}");
    x * 2 /* still doubling */
}

#[disk_cache(name = "pinned", version = "1")]
fn pinned(x: u64) -> u64 {
    println!("computed pinned {x}"); // trailing comment
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
