//! What entries cost and saved, and eviction by value (issue 15): compute times measured around
//! the computation, hits and time saved per function and in total, the cost-aware order under
//! a size limit and in `prune`, LRU still selectable, and an index of the older schema read
//! and migrated.

use std::path::Path;
use std::time::Duration;

mod macro_support;

use macro_support::run;
use memo_cache::{Cache, Function, ManualClock, Policy, Prune};
use memo_cache_e2e::raw_index;

const CHILD: &str = env!("CARGO_BIN_EXE_macro_child");

const START_MS: i64 = 1_700_000_000_000;

static CHEAP: Function = Function::new("cost::cheap", "v1", "Vec<u8>");
static DEAR: Function = Function::new("cost::dear", "v1", "Vec<u8>");

/// A value of exactly 1000 stored bytes (999 and the format byte), kept inline.
fn kb(tag: u8) -> Vec<u8> {
    vec![tag; 999]
}

fn open(dir: &Path, clock: &ManualClock, limit: Option<u64>, policy: Policy) -> Cache {
    let mut builder = Cache::builder(dir).clock(clock.clone()).policy(policy);
    if let Some(limit) = limit {
        builder = builder.size_limit(limit);
    }
    builder.open().unwrap()
}

#[test]
fn compute_time_is_measured_around_the_computation_and_hits_count_as_time_saved() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let slow = Function::new("cost::slow", "v1", "u64");

    let value = cache.get_or_compute(&slow, &(1,), || {
        std::thread::sleep(Duration::from_millis(40));
        7u64
    });
    assert_eq!(value, 7);
    cache.put(&slow, &(2,), &8u64).unwrap();
    cache
        .put_timed(&slow, &(3,), &9u64, Duration::from_secs(3600))
        .unwrap();

    for _ in 0..3 {
        assert_eq!(
            cache.get_or_compute(&slow, &(1,), || -> u64 { unreachable!("a hit") }),
            7
        );
    }
    cache.flush().unwrap();

    let by_args = |n: u64| {
        let key = slow.key(&(n,)).unwrap();
        cache.entry(&key).unwrap().expect("stored")
    };
    let measured = by_args(1);
    assert!(
        measured.compute_time >= Duration::from_millis(40)
            && measured.compute_time < Duration::from_secs(5),
        "{:?}",
        measured.compute_time
    );
    assert_eq!(measured.hits, 3);
    assert_eq!(by_args(2).compute_time, Duration::ZERO, "put has no cost");
    assert_eq!(by_args(3).compute_time, Duration::from_secs(3600));

    let f = &cache.functions().unwrap()[0];
    assert_eq!(f.name, "cost::slow");
    assert_eq!(f.hits, 3);
    assert_eq!(
        f.compute_time,
        measured.compute_time + Duration::from_secs(3600)
    );
    assert_eq!(f.saved, measured.compute_time * 3);
    assert!(f.saved_per_mib() > f.saved, "a few bytes hold it");

    let stats = cache.stats().unwrap();
    assert_eq!((stats.hits, stats.saved), (3, measured.compute_time * 3));

    // Removing an entry takes its figures with it.
    cache.remove(&slow, &(1,)).unwrap();
    let f = &cache.functions().unwrap()[0];
    assert_eq!((f.hits, f.saved), (0, Duration::ZERO));
    assert_eq!(f.compute_time, Duration::from_secs(3600));
}

#[test]
fn the_attribute_records_what_its_calls_cost() {
    // `slow_square` sleeps 300 ms; one process computes it, two more hit it.
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        run(CHILD, dir.path(), &["slow", "12"]);
    }
    let cache = Cache::open(dir.path()).unwrap();
    let f = cache
        .functions()
        .unwrap()
        .into_iter()
        .find(|f| f.name.ends_with("slow_square"))
        .expect("the attribute's function is listed");
    assert_eq!((f.entries, f.hits), (1, 2));
    assert!(
        f.compute_time >= Duration::from_millis(300) && f.compute_time < Duration::from_secs(30),
        "{:?}",
        f.compute_time
    );
    assert_eq!(f.saved, f.compute_time * 2);
}

/// The scenario of the issue: an expensive result used an hour ago against cheap ones used a
/// minute ago. LRU evicts the expensive one; the cost-aware order keeps it.
fn expensive_against_recent(policy: Policy) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let limit = 64 * 1024;
    let cache = open(dir.path(), &clock, Some(limit), policy);
    cache
        .put_timed(&DEAR, &(0,), &kb(0), Duration::from_secs(2 * 3600))
        .unwrap();
    clock.advance(Duration::from_secs(60));
    for i in 0..200u32 {
        cache
            .put_timed(&CHEAP, &(i,), &kb(i as u8), Duration::from_millis(2))
            .unwrap();
        clock.advance(Duration::from_secs(1));
    }
    assert!(cache.stats().unwrap().bytes <= limit);
    cache.contains(&DEAR, &(0,)).unwrap()
}

#[test]
fn a_size_limit_keeps_the_results_that_save_the_most_time() {
    assert!(
        expensive_against_recent(Policy::CostAware),
        "the 2-hour result outlives 200 cheap ones stored after it"
    );
    assert!(
        !expensive_against_recent(Policy::Lru),
        "least recently used first evicts it"
    );
}

#[test]
fn the_clock_ages_an_expensive_entry_that_is_never_used_again() {
    // Cost per byte alone would keep the expensive entry forever; the clock, raised to each
    // evicted priority, lets entries stored later overtake it once enough were evicted.
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let limit = 32 * 1024;
    let cache = open(dir.path(), &clock, Some(limit), Policy::CostAware);
    cache
        .put_timed(&DEAR, &(0,), &kb(0), Duration::from_millis(50))
        .unwrap();
    let mut evicted_at = None;
    for i in 0..5_000u32 {
        cache
            .put_timed(&CHEAP, &(i,), &kb(i as u8), Duration::from_millis(10))
            .unwrap();
        if !cache.contains(&DEAR, &(0,)).unwrap() {
            evicted_at = Some(i);
            break;
        }
    }
    let at = evicted_at.expect("the unused expensive entry is evicted in the end");
    assert!(
        at > 30,
        "not at once: it cost 5x the others (evicted after {at})"
    );
}

#[test]
fn prune_to_a_size_orders_by_value_unless_lru_is_asked_for() {
    for (policy, dear_survives) in [(Policy::CostAware, true), (Policy::Lru, false)] {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START_MS);
        let cache = open(dir.path(), &clock, None, Policy::default());
        cache
            .put_timed(&DEAR, &(0,), &kb(0), Duration::from_secs(600))
            .unwrap();
        for i in 0..20u32 {
            clock.advance(Duration::from_secs(1));
            cache
                .put_timed(&CHEAP, &(i,), &kb(i as u8), Duration::from_millis(1))
                .unwrap();
        }
        let removed = cache
            .prune(&Prune::new().max_entries(10).policy(policy))
            .unwrap();
        assert_eq!(removed.entries, 11);
        assert_eq!(
            cache.contains(&DEAR, &(0,)).unwrap(),
            dear_survives,
            "{policy:?}"
        );
        // Among equally cheap entries the older go first either way.
        assert!(!cache.contains(&CHEAP, &(0,)).unwrap());
        assert!(cache.contains(&CHEAP, &(19,)).unwrap());
    }
}

#[test]
fn hits_raise_an_entrys_priority() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let cache = open(dir.path(), &clock, None, Policy::CostAware);
    for i in 0..10u32 {
        cache
            .put_timed(&CHEAP, &(i,), &kb(i as u8), Duration::from_millis(5))
            .unwrap();
        clock.advance(Duration::from_secs(1));
    }
    // The oldest, hit often, now saves the most per byte.
    for _ in 0..5 {
        assert!(cache.get::<_, Vec<u8>>(&CHEAP, &(0u32,)).unwrap().is_some());
    }
    cache.flush().unwrap();
    cache.prune(&Prune::new().max_entries(5)).unwrap();
    assert!(cache.contains(&CHEAP, &(0u32,)).unwrap());
    assert!(!cache.contains(&CHEAP, &(1u32,)).unwrap());
}

#[test]
fn policies_are_named_as_the_cli_spells_them() {
    assert_eq!("lru".parse::<Policy>().unwrap(), Policy::Lru);
    assert_eq!("cost".parse::<Policy>().unwrap(), Policy::CostAware);
    assert_eq!(Policy::default(), Policy::CostAware);
    let err = "fifo".parse::<Policy>().unwrap_err();
    assert!(err.contains("'cost'") && err.contains("'lru'"), "{err}");
}

/// Rewrites a cache's index to schema version 2, as memo-cache 0.1 made it: the columns of
/// version 3 dropped, the old triggers back.
fn downgrade_to_v2(dir: &Path) {
    let conn = raw_index(dir);
    conn.execute_batch(
        "DROP INDEX entries_priority;
         DROP TRIGGER entries_insert; DROP TRIGGER entries_delete; DROP TRIGGER entries_touch;
         ALTER TABLE entries DROP COLUMN compute_us; ALTER TABLE entries DROP COLUMN priority;
         ALTER TABLE entries DROP COLUMN args; ALTER TABLE entries DROP COLUMN args_size;
         ALTER TABLE entries DROP COLUMN encoding;
         ALTER TABLE functions DROP COLUMN compute_us; ALTER TABLE functions DROP COLUMN hits;
         ALTER TABLE functions DROP COLUMN saved_us;
         DROP TABLE policy;
         CREATE TRIGGER entries_insert AFTER INSERT ON entries BEGIN
             UPDATE functions SET entries = entries + 1, bytes = bytes + NEW.size,
                 blob_bytes = blob_bytes + (CASE WHEN NEW.value IS NULL THEN NEW.size ELSE 0 END),
                 last_used = max(last_used, NEW.last_used)
             WHERE id = NEW.function_id;
         END;
         CREATE TRIGGER entries_delete AFTER DELETE ON entries BEGIN
             UPDATE functions SET entries = entries - 1, bytes = bytes - OLD.size,
                 blob_bytes = blob_bytes - (CASE WHEN OLD.value IS NULL THEN OLD.size ELSE 0 END)
             WHERE id = OLD.function_id;
         END;
         CREATE TRIGGER entries_touch AFTER UPDATE OF last_used ON entries BEGIN
             UPDATE functions SET last_used = max(last_used, NEW.last_used)
             WHERE id = NEW.function_id;
         END;
         PRAGMA user_version = 2;",
    )
    .unwrap();
}

#[test]
fn an_index_of_the_older_schema_is_read_as_it_is_and_migrated_by_a_program() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = Cache::open(dir.path()).unwrap();
        cache
            .put_timed(&DEAR, &(0,), &kb(0), Duration::from_secs(5))
            .unwrap();
        assert!(cache.get::<_, Vec<u8>>(&DEAR, &(0,)).unwrap().is_some());
    }
    downgrade_to_v2(dir.path());

    // A tool that only looks reads it as it is: no costs, nothing changed.
    {
        let cache = Cache::builder(dir.path()).existing_only().open().unwrap();
        let entries = cache.entries(None).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].compute_time, Duration::ZERO);
        assert_eq!(cache.stats().unwrap().saved, Duration::ZERO);
        // It can still evict, least recently used first, and store.
        cache
            .put_timed(&CHEAP, &(1,), &kb(1), Duration::from_secs(1))
            .unwrap();
        cache.prune(&Prune::new().max_entries(1)).unwrap();
        assert_eq!(cache.stats().unwrap().entries, 1);
    }
    let version: i64 = raw_index(dir.path())
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2, "an open of an existing cache migrates nothing");

    // A program's open brings it forward; old entries read as costing nothing, new ones count.
    let cache = Cache::open(dir.path()).unwrap();
    assert_eq!(cache.stats().unwrap().entries, 1);
    cache
        .put_timed(&DEAR, &(9,), &kb(9), Duration::from_secs(7))
        .unwrap();
    let f = cache
        .functions()
        .unwrap()
        .into_iter()
        .find(|f| f.name == "cost::dear")
        .unwrap();
    assert_eq!(f.compute_time, Duration::from_secs(7));
    let version: i64 = raw_index(dir.path())
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, memo_cache::SCHEMA_VERSION);
}

#[test]
fn each_entry_keeps_the_arguments_that_made_it_when_they_are_small() {
    // `fib` recurses through the cache: every nested call stores its own entry, and each must
    // record its own argument, not its caller's.
    let dir = tempfile::tempdir().unwrap();
    run(CHILD, dir.path(), &["fib", "6"]);
    let cache = Cache::open(dir.path()).unwrap();
    let mut seen: Vec<(Vec<u8>, Option<u64>)> = cache
        .entries(None)
        .unwrap()
        .into_iter()
        .map(|e| (e.args.expect("small arguments are kept"), e.args_size))
        .collect();
    seen.sort();
    // The canonical encoding of the tuple `(n,)`: a one-element array, then n as a fixint.
    let want: Vec<(Vec<u8>, Option<u64>)> = (0..=6u8).map(|n| (vec![0x91, n], Some(2))).collect();
    assert_eq!(seen, want);

    // Through the API: `get_or_compute`, `put` and `put_timed` record them too; arguments over
    // 1 KiB keep only their length.
    let f = Function::new("cost::args", "v1", "u64");
    cache.get_or_compute(&f, &("small", 1u8), || 1u64);
    cache.put(&f, &("put", 2u8), &2u64).unwrap();
    let big = vec![7u8; 4000];
    cache.get_or_compute(&f, &(&big,), || 3u64);
    let entry = |key| cache.entry(&key).unwrap().unwrap();
    let small = entry(f.key(&("small", 1u8)).unwrap());
    assert_eq!(small.args.as_deref(), Some(&b"\x92\xa5small\x01"[..]));
    let put = entry(f.key(&("put", 2u8)).unwrap());
    assert_eq!(put.args.as_deref(), Some(&b"\x92\xa3put\x02"[..]));
    let large = entry(f.key(&(&big,)).unwrap());
    assert_eq!(large.args, None);
    assert!(large.args_size.unwrap() > 4000, "{:?}", large.args_size);
}

/// The schema objects of `entries` (indexes and triggers, with their SQL), sorted.
fn entries_schema(dir: &Path) -> Vec<(String, String, Option<String>)> {
    let conn = raw_index(dir);
    let mut stmt = conn
        .prepare(
            "SELECT type, name, sql FROM sqlite_master
             WHERE tbl_name = 'entries' AND type IN ('index', 'trigger') ORDER BY type, name",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// Each function's aggregates as its rows give them: (name, entries, bytes, compute µs, hits).
fn recounted(dir: &Path, costs: bool) -> Vec<(String, i64, i64, i64, i64)> {
    let sums = if costs {
        "sum(e.compute_us), sum(e.hits)"
    } else {
        "0, 0"
    };
    let conn = raw_index(dir);
    let mut stmt = conn
        .prepare(&format!(
            "SELECT f.name, count(*), sum(e.size), {sums} FROM entries e
             JOIN functions f ON f.id = e.function_id GROUP BY f.name ORDER BY f.name"
        ))
        .unwrap();
    stmt.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

/// The aggregates the cache reports, in the form of [`recounted`].
fn reported(cache: &Cache) -> Vec<(String, i64, i64, i64, i64)> {
    let mut out: Vec<_> = cache
        .functions()
        .unwrap()
        .into_iter()
        .filter(|f| f.entries > 0)
        .map(|f| {
            (
                f.name.clone(),
                f.entries as i64,
                f.bytes as i64,
                f.compute_time.as_micros() as i64,
                f.hits as i64,
            )
        })
        .collect();
    out.sort();
    out
}

/// 12,000 cheap entries (1 ms each) and 12,000 dear ones (1 s each), about 100 bytes each.
fn fill_for_bulk(dir: &Path) {
    let cache = Cache::open(dir).unwrap();
    for i in 0..12_000u32 {
        let value = i.to_le_bytes().repeat(24);
        cache
            .put_timed(&CHEAP, &(i,), &value, Duration::from_millis(1))
            .unwrap();
        cache
            .put_timed(&DEAR, &(i,), &value, Duration::from_secs(1))
            .unwrap();
    }
    // Some hits, so that the hit and time-saved sums have something to count.
    for i in 0..100u32 {
        assert!(cache.get::<_, Vec<u8>>(&DEAR, &(i,)).unwrap().is_some());
    }
}

#[test]
fn a_prune_of_most_entries_keeps_the_schema_and_the_aggregates_true() {
    // Removing at least half as many rows as it leaves, a prune sets the indexes and the delete
    // trigger of `entries` aside and builds them again: they must come back as they were, and
    // the per-function figures must be what the rows say.
    let dir = tempfile::tempdir().unwrap();
    fill_for_bulk(dir.path());
    let schema = entries_schema(dir.path());
    assert!(schema.len() >= 7, "{schema:?}");

    let cache = Cache::open(dir.path()).unwrap();
    let planned = cache
        .prune(&Prune::new().max_entries(12_000).dry_run())
        .unwrap();
    assert_eq!(planned.entries, 12_000);
    assert_eq!(
        cache.stats().unwrap().entries,
        24_000,
        "a dry run removes nothing"
    );
    assert_eq!(entries_schema(dir.path()), schema);

    let removal = cache.prune(&Prune::new().max_entries(12_000)).unwrap();
    assert_eq!(removal.entries, 12_000);
    assert_eq!(
        entries_schema(dir.path()),
        schema,
        "indexes and triggers as before"
    );
    assert_eq!(reported(&cache), recounted(dir.path(), true));
    // The pages the removal freed went back to the file system.
    let free: i64 = raw_index(dir.path())
        .query_row("PRAGMA freelist_count", [], |r| r.get(0))
        .unwrap();
    assert_eq!(free, 0, "free pages left in the index after a prune");
    // Cost-aware: every dear entry stayed.
    let dear = cache
        .functions()
        .unwrap()
        .into_iter()
        .find(|f| f.name == "cost::dear")
        .unwrap();
    assert_eq!(dear.entries, 12_000);
    assert_eq!(dear.hits, 100);
    assert_eq!(dear.saved, Duration::from_secs(100));

    // The triggers work again: a store and a small prune keep the figures true.
    cache
        .put_timed(&CHEAP, &(99_999u32,), &kb(1), Duration::from_millis(1))
        .unwrap();
    cache.prune(&Prune::new().max_entries(11_990)).unwrap();
    assert_eq!(cache.stats().unwrap().entries, 11_990);
    assert_eq!(reported(&cache), recounted(dir.path(), true));
    assert!(cache.get::<_, Vec<u8>>(&DEAR, &(5u32,)).unwrap().is_some());
    let report = cache.verify(&memo_cache::Verify::new()).unwrap();
    assert!(report.is_sound(), "{report:?}");
}

#[test]
fn a_prune_of_most_entries_of_an_older_index_keeps_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    fill_for_bulk(dir.path());
    downgrade_to_v2(dir.path());
    let schema = entries_schema(dir.path());

    // As the CLI opens it: as it is, least recently used first.
    let cache = Cache::builder(dir.path()).existing_only().open().unwrap();
    let removal = cache.prune(&Prune::new().max_entries(8_000)).unwrap();
    assert_eq!(removal.entries, 16_000);
    assert_eq!(entries_schema(dir.path()), schema);
    assert_eq!(reported(&cache), recounted(dir.path(), false));
    let version: i64 = raw_index(dir.path())
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
}
