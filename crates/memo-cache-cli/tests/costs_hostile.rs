//! Outside testing of issue 15 (compute time, hits, time saved, cost-aware eviction) through
//! the real binary. Each test here failed when written (an outsider attack; the failures and
//! their fixes are in RELIABILITY.md, "Costs and arguments").

mod common;

use std::time::Duration;

use common::*;
use memo_cache::{Cache, Function};

static HUGE: Function = Function::new("attack::huge", "v1", "u64");

fn index_sql(dir: &std::path::Path, sql: &str) {
    let conn = rusqlite::Connection::open(dir.join("index.sqlite3")).unwrap();
    conn.execute_batch(sql).unwrap();
}

/// `put_timed` takes any `Duration` and clamps it to `i64::MAX` microseconds; the triggers
/// then add two such compute times (and multiply one by its hits) in SQLite, which turns the
/// overflowing integer into a REAL. From then on `Cache::stats`, `Cache::functions`,
/// `memo-cache stats` and `memo-cache ls` fail with "Invalid column type Real" until the
/// entries are gone, and `verify` calls the cache sound.
#[test]
fn a_compute_time_at_the_top_of_the_range_keeps_stats_and_ls_readable() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    cache.put_timed(&HUGE, &(1,), &1u64, Duration::MAX).unwrap();
    cache.put_timed(&HUGE, &(2,), &2u64, Duration::MAX).unwrap();
    for _ in 0..3 {
        assert_eq!(cache.get::<_, u64>(&HUGE, &(1,)).unwrap(), Some(1));
    }
    cache.flush().unwrap();
    let stats = cache.stats();
    let functions = cache.functions();
    drop(cache);
    let mut failures = Vec::new();
    if let Err(e) = &stats {
        failures.push(format!("Cache::stats: {e}"));
    }
    if let Err(e) = &functions {
        failures.push(format!("Cache::functions: {e}"));
    }
    for args in [
        &["stats"][..],
        &["ls"],
        &["ls", "--entries"],
        &["stats", "--json"],
    ] {
        let (code, _, err) = run(dir.path(), args);
        if code != 0 {
            failures.push(format!("memo-cache {args:?} -> {code}: {}", err.trim()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A hand-edited (or damaged) index whose cost columns hold text: `verify --fix` finds the
/// cache sound, and then `ls --entries` and `prune --max-entries` fail on a raw rusqlite type
/// error ("Invalid column type Text at index: 2, name: priority"), so the user is told the cache
/// is fine and cannot list or prune it. (A size-limited program's stores fail the same way:
/// `evict::to_size_limit` reads `priority` as `Option<f64>`.) Either verify reports (and fixes)
/// the rows, or the readers tolerate them as they tolerate a text `args`.
#[test]
fn what_verify_calls_sound_can_be_listed_and_pruned() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = Cache::open(dir.path()).unwrap();
        for i in 0..6u64 {
            cache
                .put_timed(&HUGE, &(i,), &i, Duration::from_millis(i + 1))
                .unwrap();
        }
    }
    index_sql(
        dir.path(),
        "UPDATE entries SET priority = 'abc' WHERE rowid IN (SELECT rowid FROM entries LIMIT 2);
         UPDATE entries SET compute_us = 'slow', args_size = 'big'
           WHERE rowid IN (SELECT rowid FROM entries LIMIT 1 OFFSET 3);",
    );
    let (code, out, _) = run(dir.path(), &["verify", "--fix"]);
    if code != 0 || !out.contains("sound") {
        return; // verify saw it: that is one acceptable answer
    }
    let mut failures = Vec::new();
    for args in [&["ls", "--entries"][..], &["prune", "--max-entries", "1"]] {
        let (code, _, err) = run(dir.path(), args);
        if code != 0 {
            failures.push(format!("memo-cache {args:?} -> {code}: {}", err.trim()));
        }
    }
    assert!(
        failures.is_empty(),
        "verify --fix said {out:?}, then: {failures:#?}"
    );
}

/// The canonical encoding writes a `Vec`/slice of numbers as one ext run (types 16-26) and a
/// 128-bit integer as ext type 1, each with one documented meaning; the argument record shows
/// them as opaque `{"ext":26,"base64":"..."}` objects, so `fn f(xs: &[f64])` entries read
/// `({"ext":26,"base64":"AAAAAAAA+D8…` in `ls --entries` and `show --args`: the record that
/// should say which call made an entry does not, for the most common numeric arguments.
#[test]
fn recorded_numeric_arguments_read_as_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let f = Function::new("attack::numbers", "v1", "u64");
    {
        let cache = Cache::open(dir.path()).unwrap();
        cache
            .put_timed(
                &f,
                &(vec![1.5f64, 2.0], vec![-1i32, 7]),
                &1u64,
                Duration::from_millis(3),
            )
            .unwrap();
        cache
            .put_timed(&f, &(i128::MIN,), &2u64, Duration::from_millis(3))
            .unwrap();
    }
    let mut failures = Vec::new();
    let listed = ok(dir.path(), &["ls", "--entries"]);
    for line in listed.lines().skip(1) {
        let key = line.split_whitespace().next().unwrap();
        let shown = ok(dir.path(), &["show", "--args", key]);
        if shown.contains("\"ext\"") {
            failures.push(shown);
        }
    }
    assert!(failures.is_empty(), "{}\n{failures:#?}", listed);
}
