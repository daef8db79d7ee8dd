//! What invalidates a `#[disk_cache]` function's results: a real edit of its code or a changed
//! return type does; comments, formatting and a pinned `version` do not.

mod macro_support;

use macro_support::run;

const BASE: &str = env!("CARGO_BIN_EXE_macro_edit_base");
const COMMENT: &str = env!("CARGO_BIN_EXE_macro_edit_comment");
const BODY: &str = env!("CARGO_BIN_EXE_macro_edit_body");

#[test]
fn comment_and_formatting_edits_keep_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(run(BASE, dir.path(), &[]).computed().len(), 3);
    let edited = run(COMMENT, dir.path(), &[]);
    assert!(edited.computed().is_empty(), "{:?}", edited.computed());
    assert_eq!(edited.results(), ["42", "63", "22"]);
}

#[test]
fn body_edits_invalidate_unless_the_version_is_pinned_and_return_types_always_count() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(run(BASE, dir.path(), &[]).computed().len(), 3);
    let edited = run(BODY, dir.path(), &[]);
    assert_eq!(edited.count("same"), 1, "a real body edit is a miss");
    assert_eq!(
        edited.count("pinned"),
        0,
        "a pinned version keeps the cache through edits"
    );
    assert_eq!(
        edited.count("typed"),
        1,
        "a changed return type is a miss, never a garbled decode"
    );
    assert_eq!(edited.results(), ["42", "63", "22"]);

    // The old version's entries are stale: listed as such, and never served again.
    let cache = memo_cache::Cache::open(dir.path()).unwrap();
    let stale: Vec<String> = cache
        .entries(None)
        .unwrap()
        .into_iter()
        .filter(|e| e.stale)
        .map(|e| e.function)
        .collect();
    assert_eq!(stale.len(), 2, "{stale:?}");
    assert!(stale.contains(&"same".to_owned()) && stale.contains(&"typed".to_owned()));
    assert_eq!(
        run(BASE, dir.path(), &[]).count("same"),
        0,
        "the base version's entry is still there"
    );
}
