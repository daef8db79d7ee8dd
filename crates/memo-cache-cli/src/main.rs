//! The `memo-cache` command.

fn main() {}
