//! `#[disk_cache]` on an `async fn` when memo-cache-rs's `tokio` feature is off: one error, on
//! `async`, with advice that fits any kind of dependency, and no other error after it. Runs only
//! when this crate is built without `tokio` (`cargo test -p memo-cache-rs --test ui_without_tokio`);
//! a workspace-wide build turns the feature on for everyone. Regenerate the `.stderr` with
//! `TRYBUILD=overwrite` and read the result before committing.

#[cfg(not(feature = "tokio"))]
#[test]
fn async_fn_without_tokio() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui_without_tokio/*.rs");
}
