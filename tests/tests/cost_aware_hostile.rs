//! Outside testing of issue 15 through the library and `#[disk_cache]`: whose arguments an
//! entry records under threads, async tasks and nesting (held), and eviction on odd indexes.
//! `a_size_limited_store_evicts_without_the_clock_row` failed when written (RELIABILITY.md,
//! "Costs and arguments").

use std::time::Duration;

use memo_cache::{Cache, Function, disk_cache};

static F: Function = Function::new("attack::f", "v1", "u64");

#[disk_cache]
fn inner(n: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(2));
    n
}

#[disk_cache]
fn outer(n: u64) -> u64 {
    inner(n + 64) - 64
}

#[disk_cache(memory = 4)]
fn mem(n: u64) -> u64 {
    n
}

#[disk_cache]
async fn aio(n: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis((n * 7) % 13)).await;
    tokio::task::yield_now().await;
    n
}

#[test]
fn arguments_are_those_of_the_call_that_stored_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    unsafe { std::env::set_var("MEMO_CACHE_DIR", dir.path()) };
    // threads, nested
    std::thread::scope(|s| {
        for t in 0..4u64 {
            s.spawn(move || {
                for i in 0..16u64 {
                    assert_eq!(outer((i * 4 + t) % 60), (i * 4 + t) % 60);
                    assert_eq!(mem(i % 6), i % 6);
                }
            });
        }
    });
    let _ = outer__recompute(3);
    // async on a multi-thread runtime
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (0..40u64)
            .map(|i| tokio::spawn(async move { assert_eq!(aio(i % 30).await, i % 30) }))
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let cache = Cache::open(dir.path()).unwrap();
    let mut bad = Vec::new();
    for e in cache.entries(None).unwrap() {
        let Some(args) = &e.args else {
            bad.push(format!("{} {}: no args", e.function, e.key));
            continue;
        };
        // the value is the argument for all but inner (n + 64): read the value back
        let n = args.get(1).copied().unwrap_or(255) as u64;
        let want_value = n;
        let got: Option<u64> = cache.get_key(&e.function, &e.key).ok().flatten();
        if args.len() != 2 || args[0] != 0x91 || got != Some(want_value) {
            bad.push(format!("{} args {:?} value {:?}", e.function, args, got));
        }
        if e.compute_time.is_zero() {
            bad.push(format!("{} {:?}: zero compute time", e.function, args));
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

fn index_sql(dir: &std::path::Path, sql: &str) {
    let conn = rusqlite::Connection::open(dir.join("index.sqlite3")).unwrap();
    conn.execute_batch(sql).unwrap();
}

/// A hand-edited index without the policy table's clock row: the store and hit paths read it
/// with `coalesce(.., 0.0)`, but the eviction after a store under a size limit prices the kept
/// entry with a bare `(SELECT value FROM policy WHERE name = 'clock')`, which is NULL, and the
/// store fails on "NOT NULL constraint failed: entries.priority" (every store that must evict,
/// for as long as the row is missing).
#[test]
fn a_size_limited_store_evicts_without_the_clock_row() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = Cache::open(dir.path()).unwrap();
        for i in 0..20u64 {
            cache
                .put_timed(&F, &(i,), &vec![1u8; 1000], Duration::from_millis(i + 1))
                .unwrap();
        }
    }
    index_sql(dir.path(), "DELETE FROM policy");
    let cache = Cache::builder(dir.path())
        .size_limit(30_000)
        .open()
        .unwrap();
    cache
        .put_timed(&F, &(100,), &vec![2u8; 20_000], Duration::from_millis(3))
        .expect("a store that evicts");
}

/// Held: entries that cost `Duration::MAX` and were hit do not starve a size-limited cache:
/// every entry just stored stays, and the cache stays within its limit.
#[test]
fn huge_costs_do_not_starve_a_size_limited_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path())
        .size_limit(40_000)
        .open()
        .unwrap();
    for i in 0..10u64 {
        cache
            .put_timed(&F, &(i,), &vec![1u8; 2000], Duration::MAX)
            .unwrap();
        for _ in 0..3 {
            let _ = cache.get::<_, Vec<u8>>(&F, &(i,));
        }
    }
    cache.flush().unwrap();
    for i in 10..120u64 {
        cache
            .put_timed(&F, &(i,), &vec![1u8; 2000], Duration::from_millis(5))
            .unwrap();
        assert!(
            cache.contains(&F, &(i,)).unwrap(),
            "the entry just stored stays"
        );
    }
    let bytes: u64 = cache.entries(None).unwrap().iter().map(|e| e.bytes).sum();
    assert!(bytes <= 40_000, "{bytes}");
}
