//! Compile errors of `#[disk_cache]`: one diagnostic per file in `tests/ui/`, pinned by the
//! `.stderr` beside it. Regenerate with `TRYBUILD=overwrite cargo test -p memo-cache-rs-macros --test ui`
//! and read the result before committing.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
