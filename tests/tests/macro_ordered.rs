//! Maps in a key are sorted, so a `HashMap` gives one key whatever its order; an argument named
//! in `ordered(..)` keeps its maps' iteration order, for a function that reads it.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Serialize, Serializer};

use memo_cache::disk_cache;

/// An insertion-ordered map, as `IndexMap` or a `serde_json::Map` with `preserve_order` is: it
/// serializes as a map, in its order.
#[derive(Clone)]
struct Columns(Vec<(String, u32)>);

impl Serialize for Columns {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

fn columns(names: &[&str]) -> Columns {
    Columns(
        names
            .iter()
            .enumerate()
            .map(|(i, n)| ((*n).to_owned(), i as u32 * 10))
            .collect(),
    )
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

/// Reads the order: a header line.
#[disk_cache(ordered(columns))]
fn header(columns: Columns, sep: char) -> String {
    RUNS.fetch_add(1, Ordering::SeqCst);
    let names: Vec<&str> = columns.0.iter().map(|(k, _)| k.as_str()).collect();
    names.join(&sep.to_string())
}

static NESTED_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Maps nested in a `Vec` keep their order too.
#[disk_cache(ordered(tables))]
fn headers(tables: Vec<Columns>) -> Vec<String> {
    NESTED_RUNS.fetch_add(1, Ordering::SeqCst);
    tables
        .iter()
        .map(|t| {
            t.0.iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

static SORTED_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Does not read the order: without `ordered`, two orders share one entry.
#[disk_cache]
fn total(columns: Columns) -> u32 {
    SORTED_RUNS.fetch_add(1, Ordering::SeqCst);
    columns.0.iter().map(|(_, v)| v).sum()
}

#[test]
fn ordered_arguments_keep_their_order_and_others_are_sorted() {
    let dir = tempfile::tempdir().unwrap();
    // SAFETY: set before any cached function runs; the only test in this binary.
    unsafe { std::env::set_var("MEMO_CACHE_DIR", dir.path()) };

    let abc = columns(&["a", "b", "c"]);
    let cba = Columns(abc.0.iter().rev().cloned().collect());

    assert_eq!(header(abc.clone(), ','), "a,b,c");
    assert_eq!(
        header(cba.clone(), ','),
        "c,b,a",
        "another order, another entry"
    );
    assert_eq!(header(abc.clone(), ','), "a,b,c");
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);

    assert_eq!(headers(vec![abc.clone()]), ["a,b,c"]);
    assert_eq!(headers(vec![cba.clone()]), ["c,b,a"]);
    assert_eq!(NESTED_RUNS.load(Ordering::SeqCst), 2);

    assert_eq!(total(abc.clone()), 30);
    assert_eq!(total(cba.clone()), 30);
    assert_eq!(SORTED_RUNS.load(Ordering::SeqCst), 1, "sorted: one entry");
}
