//! Expiry, eviction under a size limit, and pruning, with a clock the tests set by hand.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use memo_cache::{Cache, DEFAULT_FILE_GRACE, Function, ManualClock, ProblemKind, Prune, Verify};
use memo_cache_e2e::{backdate, blob_files, large_value, raw_index};

const START_MS: i64 = 1_700_000_000_000;
const SECOND: Duration = Duration::from_secs(1);

/// A value that takes exactly 1000 stored bytes (999 bytes and the format byte), kept inline.
fn kb(tag: u8) -> Vec<u8> {
    vec![tag; 999]
}

fn open(dir: &Path, clock: &ManualClock, limit: Option<u64>) -> Cache {
    let mut builder = Cache::builder(dir).clock(clock.clone());
    if let Some(limit) = limit {
        builder = builder.size_limit(limit);
    }
    builder.open().unwrap()
}

/// The names (first argument) of the entries of `func` still stored.
fn present(cache: &Cache, func: &Function, names: &[&str]) -> BTreeSet<String> {
    names
        .iter()
        .filter(|n| cache.contains(func, &(**n,)).unwrap())
        .map(|n| n.to_string())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

static F: Function = Function::new("evict::f", "v1", "Vec<u8>");
static G: Function = Function::new("evict::g", "v1", "Vec<u8>");

#[test]
fn entries_expire_after_their_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let cache = open(dir.path(), &clock, None);
    let quote = Function::new("evict::quote", "v1", "u64").with_ttl(Duration::from_secs(60));
    let runs = std::cell::Cell::new(0);
    let call = |cache: &Cache| {
        cache.get_or_compute(&quote, &("ACME",), || {
            runs.set(runs.get() + 1);
            1250u64
        })
    };
    assert_eq!(call(&cache), 1250);
    clock.advance(59 * SECOND);
    assert_eq!(call(&cache), 1250);
    assert_eq!(cache.stats().unwrap().expired, 0);
    clock.advance(2 * SECOND);
    assert_eq!(
        cache.get::<_, u64>(&quote, &("ACME",)).unwrap(),
        None,
        "expired is a miss"
    );
    assert_eq!(cache.stats().unwrap().expired, 1);
    assert_eq!(call(&cache), 1250);
    assert_eq!(runs.get(), 2, "computed again after expiry, not before");
    // Stored again with a fresh expiry.
    assert_eq!(cache.stats().unwrap().expired, 0);
    clock.advance(59 * SECOND);
    assert!(cache.contains(&quote, &("ACME",)).unwrap());
}

#[test]
fn eviction_removes_the_least_recently_used_first_and_keeps_the_new_entry() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let cache = open(dir.path(), &clock, Some(3000));
    for name in ["a", "b", "c"] {
        cache.put(&F, &(name,), &kb(1)).unwrap();
        clock.advance(SECOND);
    }
    assert_eq!(cache.stats().unwrap().bytes, 3000);
    cache.put(&F, &("d",), &kb(2)).unwrap();
    assert_eq!(
        present(&cache, &F, &["a", "b", "c", "d"]),
        set(&["b", "c", "d"])
    );
    assert!(cache.stats().unwrap().bytes <= 3000);

    // The new entry stays even when its last use is the oldest of all (a clock set back).
    clock.set(START_MS - 3_600_000);
    cache.put(&F, &("e",), &kb(3)).unwrap();
    assert_eq!(
        present(&cache, &F, &["a", "b", "c", "d", "e"]),
        set(&["c", "d", "e"])
    );
}

#[test]
fn a_hit_moves_an_entry_to_the_back_of_the_eviction_queue() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let cache = open(dir.path(), &clock, Some(3000));
    for name in ["a", "b", "c"] {
        cache.put(&F, &(name,), &kb(1)).unwrap();
        clock.advance(SECOND);
    }
    // A hit on the oldest entry. Hits are batched: the store below flushes them before evicting.
    assert_eq!(
        memo_cache_e2e::summary(cache.get::<_, Vec<u8>>(&F, &("a",)).unwrap()),
        memo_cache_e2e::summary(Some(kb(1)))
    );
    let key_a = F.key(&("a",)).unwrap();
    let before = cache.entry(&key_a).unwrap().unwrap();
    assert_eq!(before.hits, 0, "not written yet: hits are batched");
    clock.advance(SECOND);
    cache.put(&F, &("d",), &kb(2)).unwrap();
    assert_eq!(
        present(&cache, &F, &["a", "b", "c", "d"]),
        set(&["a", "c", "d"])
    );

    // An explicit flush writes hits and last-use times too.
    clock.advance(SECOND);
    assert!(cache.contains(&F, &("c",)).unwrap());
    assert_eq!(
        memo_cache_e2e::summary(cache.get::<_, Vec<u8>>(&F, &("c",)).unwrap()),
        memo_cache_e2e::summary(Some(kb(1)))
    );
    cache.flush().unwrap();
    let c = cache.entry(&F.key(&("c",)).unwrap()).unwrap().unwrap();
    assert_eq!(c.hits, 1, "contains() is not a hit, get() is");
    assert_eq!(
        c.last_used,
        std::time::UNIX_EPOCH + Duration::from_millis((START_MS + 5_000) as u64)
    );
    let a = cache.entry(&key_a).unwrap().unwrap();
    assert_eq!(a.hits, 1);
}

#[test]
fn stale_entries_are_evicted_before_fresh_ones_however_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let cache = open(dir.path(), &clock, Some(3000));
    let old = Function::new("evict::h", "fingerprint-1", "Vec<u8>");
    let new = Function::new("evict::h", "fingerprint-2", "Vec<u8>");
    cache.put(&G, &("g1",), &kb(1)).unwrap();
    clock.advance(SECOND);
    cache.put(&G, &("g2",), &kb(1)).unwrap();
    clock.advance(SECOND);
    cache.put(&old, &("s",), &kb(1)).unwrap();
    clock.advance(SECOND);
    // Storing under the new fingerprint makes the old one stale, then evicts it first.
    cache.put(&new, &("n",), &kb(2)).unwrap();
    assert_eq!(present(&cache, &G, &["g1", "g2"]), set(&["g1", "g2"]));
    assert!(!cache.contains(&old, &("s",)).unwrap());
    assert!(cache.contains(&new, &("n",)).unwrap());
    assert_eq!(cache.stats().unwrap().stale, 0);
}

#[test]
fn expired_entries_are_evicted_before_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let cache = open(dir.path(), &clock, Some(3000));
    cache.put(&G, &("g1",), &kb(1)).unwrap();
    clock.advance(SECOND);
    cache.put(&G, &("g2",), &kb(1)).unwrap();
    clock.advance(SECOND);
    cache
        .put_with_ttl(&F, &("short",), &kb(1), Some(SECOND))
        .unwrap();
    clock.advance(10 * SECOND);
    cache.put(&F, &("new",), &kb(2)).unwrap();
    assert_eq!(present(&cache, &G, &["g1", "g2"]), set(&["g1", "g2"]));
    assert_eq!(cache.entry(&F.key(&("short",)).unwrap()).unwrap(), None);
}

// ---- Prune ------------------------------------------------------------------------------------

static OLD_A: Function = Function::new("prune::a", "v0", "Vec<u8>");
static A: Function = Function::new("prune::a", "v1", "Vec<u8>");
static B: Function = Function::new("prune::b", "v1", "Vec<u8>");
static C: Function = Function::new("prune::c", "v1", "Vec<u8>");

/// A cache with, in order of last use: 2 stale entries of prune::a, 4 of prune::a, 3 of
/// prune::b, 2 of prune::c that expired. Each entry is 1000 bytes; one second apart.
fn populated(dir: &Path, clock: &ManualClock) -> Cache {
    let cache = open(dir, clock, None);
    let put = |f: &Function, name: &str, ttl: Option<Duration>| {
        cache.put_with_ttl(f, &(name,), &kb(1), ttl).unwrap();
        clock.advance(SECOND);
    };
    put(&OLD_A, "old0", None);
    put(&OLD_A, "old1", None);
    for i in 0..4 {
        put(&A, &format!("a{i}"), None);
    }
    for i in 0..3 {
        put(&B, &format!("b{i}"), None);
    }
    put(&C, "c0", Some(SECOND * 5));
    put(&C, "c1", Some(SECOND * 5));
    clock.advance(SECOND * 60);
    let stats = cache.stats().unwrap();
    assert_eq!((stats.entries, stats.stale, stats.expired), (11, 2, 2));
    cache
}

fn keys(cache: &Cache) -> BTreeSet<String> {
    cache
        .entries(None)
        .unwrap()
        .into_iter()
        .map(|e| e.key.to_hex())
        .collect()
}

/// The first arguments of the entries still stored, by function name.
fn left(cache: &Cache) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (f, names) in [
        (&OLD_A, &["old0", "old1"][..]),
        (&A, &["a0", "a1", "a2", "a3"][..]),
        (&B, &["b0", "b1", "b2"][..]),
        (&C, &["c0", "c1"][..]),
    ] {
        for n in names {
            if cache.entry(&f.key(&(*n,)).unwrap()).unwrap().is_some() {
                out.insert(n.to_string());
            }
        }
    }
    out
}

/// Runs `prune` as a dry run, then for real, on a fresh populated cache; checks the dry run
/// removed nothing and reported the same; returns what remains.
fn prune_both_ways(prune: Prune, removed_entries: u64) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let cache = populated(dir.path(), &clock);
    let before = keys(&cache);
    let dry = cache.prune(&prune.clone().dry_run()).unwrap();
    assert!(dry.dry_run);
    assert_eq!(keys(&cache), before, "a dry run removes nothing");
    assert_eq!(cache.stats().unwrap().entries, 11);
    let real = cache.prune(&prune).unwrap();
    assert!(!real.dry_run);
    assert_eq!(
        (real.entries, real.bytes),
        (dry.entries, dry.bytes),
        "the dry run reports what a real run does"
    );
    assert_eq!(real.entries, removed_entries, "{prune:?}");
    assert_eq!(real.bytes, removed_entries * 1000);
    let stats = cache.stats().unwrap();
    assert_eq!(stats.entries, 11 - removed_entries);
    assert!(cache.verify(&Verify::new()).unwrap().is_sound());
    left(&cache)
}

#[test]
fn prune_by_count_removes_stale_then_expired_then_least_recently_used() {
    let left = prune_both_ways(Prune::new().max_entries(6), 5);
    assert_eq!(left, set(&["a1", "a2", "a3", "b0", "b1", "b2"]));
}

#[test]
fn prune_by_size_removes_until_the_bytes_fit() {
    let left = prune_both_ways(Prune::new().max_size(2500), 9);
    assert_eq!(left, set(&["b1", "b2"]));
}

#[test]
fn prune_by_age_removes_entries_not_used_for_that_long() {
    // Now is 71 s after the start: entries last used before 71 - 65 = 6 s go (old0..a3).
    let left = prune_both_ways(Prune::new().older_than(SECOND * 65), 6);
    assert_eq!(left, set(&["b0", "b1", "b2", "c0", "c1"]));
}

#[test]
fn prune_expired_and_stale_remove_exactly_those() {
    let left = prune_both_ways(Prune::new().expired(), 2);
    assert!(!left.contains("c0") && !left.contains("c1") && left.len() == 9);
    let left = prune_both_ways(Prune::new().stale(), 2);
    assert!(!left.contains("old0") && !left.contains("old1") && left.len() == 9);
    let left = prune_both_ways(Prune::new().stale().expired(), 4);
    assert_eq!(left, set(&["a0", "a1", "a2", "a3", "b0", "b1", "b2"]));
}

#[test]
fn prune_by_function_touches_only_that_function() {
    let left = prune_both_ways(Prune::all().function("prune::b"), 3);
    assert!(left.iter().all(|n| !n.starts_with('b')) && left.len() == 8);
    // Limits apply to the function's entries alone: all versions of prune::a, keep the newest 2.
    let left = prune_both_ways(Prune::new().function("prune::a").max_entries(2), 4);
    assert_eq!(left, set(&["a2", "a3", "b0", "b1", "b2", "c0", "c1"]));
}

#[test]
fn prune_sweeps_old_orphan_blobs_temp_files_and_lock_files_but_not_young_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let old_age = DEFAULT_FILE_GRACE + Duration::from_secs(60);
    // Two blob entries whose rows vanish (as after a crash between delete and unlink).
    for i in 0..3u64 {
        cache.put(&G, &(i,), &large_value(i)).unwrap();
    }
    let conn = raw_index(dir.path());
    for i in 0..2u64 {
        conn.execute(
            "DELETE FROM entries WHERE key = ?1",
            [&G.key(&(i,)).unwrap().0[..]],
        )
        .unwrap();
    }
    let old_orphan = memo_cache_e2e::blob_of(dir.path(), &G.key(&(0u64,)).unwrap());
    let young_orphan = memo_cache_e2e::blob_of(dir.path(), &G.key(&(1u64,)).unwrap());
    let live = memo_cache_e2e::blob_of(dir.path(), &G.key(&(2u64,)).unwrap());
    backdate(&old_orphan, old_age);
    backdate(&live, old_age);
    let tmp = dir.path().join(memo_cache::TMP_DIR);
    let (old_tmp, young_tmp) = (tmp.join("blob-old"), tmp.join("blob-young"));
    fs::write(&old_tmp, vec![0u8; 123]).unwrap();
    fs::write(&young_tmp, vec![0u8; 45]).unwrap();
    backdate(&old_tmp, old_age);
    let old_lock = dir
        .path()
        .join(memo_cache::LOCKS_DIR)
        .join(format!("{}.lock", "ab".repeat(32)));
    fs::write(&old_lock, b"").unwrap();
    backdate(&old_lock, old_age);

    let report = cache.verify(&Verify::new()).unwrap();
    let mut kinds: Vec<_> = report
        .problems
        .iter()
        .map(|p| (p.kind.as_str(), p.path.clone().unwrap()))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("orphan-file", old_orphan.clone()),
            ("stale-lock", old_lock.clone()),
            ("stale-temp-file", old_tmp.clone()),
        ]
    );
    assert!(report.problems.iter().all(|p| matches!(
        p.kind,
        ProblemKind::OrphanFile | ProblemKind::StaleLock | ProblemKind::StaleTempFile
    )));

    let orphan_len = fs::metadata(&old_orphan).unwrap().len();
    let dry = cache.prune(&Prune::new().dry_run()).unwrap();
    assert_eq!(
        (dry.entries, dry.files, dry.file_bytes),
        (0, 3, orphan_len + 123)
    );
    assert!(
        old_orphan.exists() && old_tmp.exists() && old_lock.exists(),
        "a dry run removes nothing"
    );

    let real = cache.prune(&Prune::new()).unwrap();
    assert_eq!(
        (real.entries, real.files, real.file_bytes),
        (0, 3, orphan_len + 123)
    );
    assert!(!old_orphan.exists() && !old_tmp.exists() && !old_lock.exists());
    assert!(
        young_orphan.exists() && young_tmp.exists(),
        "files younger than the grace period stay"
    );
    assert!(
        live.exists(),
        "a blob with a row is never swept, however old"
    );
    assert_eq!(blob_files(dir.path()).len(), 2);
    assert_eq!(
        memo_cache_e2e::summary(cache.get::<_, Vec<u8>>(&G, &(2u64,)).unwrap()),
        memo_cache_e2e::summary(Some(large_value(2)))
    );

    // With no grace, the young ones go too.
    let swept = cache
        .prune(&Prune::new().file_grace(Duration::ZERO))
        .unwrap();
    assert_eq!(swept.files, 2);
    assert!(!young_orphan.exists() && !young_tmp.exists() && live.exists());
}

#[test]
fn verify_fix_removes_old_orphan_temp_and_lock_files_but_never_a_held_lock_or_a_live_blob() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let old_age = DEFAULT_FILE_GRACE + Duration::from_secs(60);
    for i in 0..2u64 {
        cache.put(&G, &(i,), &large_value(i)).unwrap();
    }
    raw_index(dir.path())
        .execute(
            "DELETE FROM entries WHERE key = ?1",
            [&G.key(&(0u64,)).unwrap().0[..]],
        )
        .unwrap();
    let orphan = memo_cache_e2e::blob_of(dir.path(), &G.key(&(0u64,)).unwrap());
    let live = memo_cache_e2e::blob_of(dir.path(), &G.key(&(1u64,)).unwrap());
    let temp = dir.path().join(memo_cache::TMP_DIR).join("blob-old");
    fs::write(&temp, vec![0u8; 10]).unwrap();
    let locks = dir.path().join(memo_cache::LOCKS_DIR);
    let (stale_lock, held_lock) = (
        locks.join(format!("{}.lock", "ab".repeat(32))),
        locks.join(format!("{}.lock", "cd".repeat(32))),
    );
    fs::write(&stale_lock, b"").unwrap();
    fs::write(&held_lock, b"").unwrap();
    // A holder of the lock: another open file of it, as another process's would be.
    let holder = fs::File::open(&held_lock).unwrap();
    holder.lock().unwrap();
    for path in [&orphan, &live, &temp, &stale_lock, &held_lock] {
        backdate(path, old_age);
    }

    let fixed = cache.verify(&Verify::new().fix(true)).unwrap();
    let mut kinds: Vec<_> = fixed
        .problems
        .iter()
        .map(|p| (p.kind.as_str(), p.path.clone().unwrap(), p.fixed))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("orphan-file", orphan.clone(), true),
            ("stale-lock", stale_lock.clone(), true),
            ("stale-temp-file", temp.clone(), true),
        ]
    );
    assert!(!orphan.exists() && !temp.exists() && !stale_lock.exists());
    assert!(held_lock.exists(), "a held lock is never stale");
    assert!(live.exists(), "a blob with a row is never swept");
    assert!(cache.verify(&Verify::new()).unwrap().problems.is_empty());
    drop(holder);
}

#[test]
fn a_dry_run_of_combined_criteria_reports_what_the_real_run_removes() {
    // Stale entries go by the criterion, then LRU entries until 6 remain: 2 + 3.
    let left = prune_both_ways(Prune::new().stale().max_entries(6), 5);
    assert_eq!(left, set(&["a1", "a2", "a3", "b0", "b1", "b2"]));
    let left = prune_both_ways(Prune::new().expired().max_size(7000), 4);
    assert_eq!(left, set(&["a0", "a1", "a2", "a3", "b0", "b1", "b2"]));
}

// ---- The ttl in force when a value is read ------------------------------------------------------

/// One function in two builds: the same name, fingerprint and return type (so the same keys),
/// first without a ttl, then with one of a second.
fn stamp_builds() -> (Function, Function) {
    let plain = Function::new("evict::stamp", "v1", "u64");
    let short = Function::new("evict::stamp", "v1", "u64").with_ttl(SECOND);
    (plain, short)
}

#[test]
fn a_ttl_added_later_applies_to_values_stored_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let cache = open(dir.path(), &clock, None);
    let (plain, short) = stamp_builds();
    for x in 1..=3u64 {
        cache.put(&plain, &(x,), &(x * 10)).unwrap();
    }
    clock.advance(SECOND / 2);
    assert_eq!(cache.get::<_, u64>(&short, &(1u64,)).unwrap(), Some(10));
    clock.advance(3 * SECOND);
    assert_eq!(cache.get::<_, u64>(&plain, &(1u64,)).unwrap(), Some(10));
    assert_eq!(
        cache.get::<_, u64>(&short, &(1u64,)).unwrap(),
        None,
        "a value stored 3.5 s ago was served under a ttl of 1 s"
    );
    assert!(!cache.contains(&short, &(2u64,)).unwrap());
    // What the CLI counts agrees once the rows are brought to the ttl: at the next write.
    cache.flush().unwrap();
    assert_eq!(cache.stats().unwrap().expired, 3);
    for e in cache.entries(Some("evict::stamp")).unwrap() {
        let lifetime = e.expires.unwrap().duration_since(e.created).unwrap();
        assert_eq!(lifetime, SECOND, "{e:?}");
    }
    // Computed again, a value lives for the ttl.
    let runs = std::cell::Cell::new(0);
    let call = |x: u64| {
        cache.get_or_compute(&short, &(x,), || {
            runs.set(runs.get() + 1);
            x * 10
        })
    };
    assert_eq!(call(1), 10);
    clock.advance(SECOND / 2);
    assert_eq!(call(1), 10);
    assert_eq!(runs.get(), 1);
    assert_eq!(cache.stats().unwrap().expired, 2);
}

#[test]
fn a_shortened_ttl_applies_and_a_lengthened_one_does_not_revive() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let cache = open(dir.path(), &clock, None);
    let (plain, short) = stamp_builds();
    let shorter = plain.clone().with_ttl(SECOND / 4);
    let longer = plain.clone().with_ttl(3600 * SECOND);
    cache.put(&short, &(1u64,), &10u64).unwrap();
    clock.advance(SECOND / 2);
    assert_eq!(cache.get::<_, u64>(&short, &(1u64,)).unwrap(), Some(10));
    assert_eq!(cache.get::<_, u64>(&shorter, &(1u64,)).unwrap(), None);
    clock.advance(SECOND);
    // The expiry fixed when it was stored still holds, for a longer ttl and for none.
    assert_eq!(cache.get::<_, u64>(&longer, &(1u64,)).unwrap(), None);
    assert_eq!(cache.get::<_, u64>(&plain, &(1u64,)).unwrap(), None);
    // As does an explicit one, and a function's ttl bounds it.
    cache
        .put_with_ttl(&plain, &(2u64,), &20u64, Some(60 * SECOND))
        .unwrap();
    cache
        .put_with_ttl(&short, &(3u64,), &30u64, Some(60 * SECOND))
        .unwrap();
    clock.advance(2 * SECOND);
    assert_eq!(cache.get::<_, u64>(&plain, &(2u64,)).unwrap(), Some(20));
    assert_eq!(cache.get::<_, u64>(&short, &(2u64,)).unwrap(), None);
    assert_eq!(cache.get::<_, u64>(&plain, &(3u64,)).unwrap(), None);
    clock.advance(60 * SECOND);
    assert_eq!(cache.get::<_, u64>(&plain, &(2u64,)).unwrap(), None);
}

#[test]
fn a_later_build_brings_old_rows_to_its_ttl_at_its_first_store() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let (plain, short) = stamp_builds();
    let cache = open(dir.path(), &clock, None);
    for x in 1..=3u64 {
        cache.put(&plain, &(x,), &(x * 10)).unwrap();
    }
    // Closing writes first-hit files, which the next handle reads before opening the index.
    drop(cache);
    assert!(dir.path().join(memo_cache::HINTS_DIR).is_dir());
    clock.advance(3 * SECOND);
    let later = open(dir.path(), &clock, None);
    assert_eq!(later.get::<_, u64>(&plain, &(1u64,)).unwrap(), Some(10));
    drop(later);
    let later = open(dir.path(), &clock, None);
    assert_eq!(later.get::<_, u64>(&short, &(1u64,)).unwrap(), None);
    drop(later);
    // A build that only stores new keys brings the old rows to its ttl too.
    let later = open(dir.path(), &clock, None);
    later.put(&short, &(9u64,), &90u64).unwrap();
    assert_eq!(later.stats().unwrap().expired, 3);
    assert_eq!(later.get::<_, u64>(&short, &(9u64,)).unwrap(), Some(90));
    // And a handle without the ttl is then told the same: the rows say so.
    drop(later);
    let plain_again = open(dir.path(), &clock, None);
    assert_eq!(plain_again.get::<_, u64>(&plain, &(2u64,)).unwrap(), None);
    assert_eq!(
        plain_again.get::<_, u64>(&plain, &(9u64,)).unwrap(),
        Some(90)
    );
}

/// A cache of 3,001 entries of two functions, one in twenty in a blob file, a sixth expired,
/// G's stale after a new version: made once, then copied into `dir` for each use.
fn progress_cache(dir: &Path) -> Cache {
    static MADE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let made = MADE.get_or_init(|| {
        let made = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START_MS);
        let cache = Cache::builder(made.path())
            .clock(clock.clone())
            .inline_threshold(500)
            .open()
            .unwrap();
        let short = Function::new("evict::f", "v1", "Vec<u8>").with_ttl(SECOND);
        for i in 0..3_000u32 {
            let value = if i % 20 == 0 { kb(1) } else { vec![2u8; 10] };
            let func = match i % 6 {
                0 => &short,
                1 | 2 => &G,
                _ => &F,
            };
            cache.put(func, &(i,), &value).unwrap();
            if i % 250 == 0 {
                clock.advance(SECOND);
            }
        }
        let g2 = Function::new("evict::g", "v2", "Vec<u8>");
        cache.put(&g2, &("new",), &kb(3)).unwrap();
        drop(cache);
        made
    });
    copy_tree(made.path(), dir);
    let clock = ManualClock::new(START_MS + 30_000);
    Cache::builder(dir).clock(clock).open().unwrap()
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_prune_with_progress_removes_the_same_and_counts_to_the_end() {
    use std::sync::{Arc, Mutex};
    let prunes = [
        Prune::new().expired().stale(),
        Prune::new()
            .older_than(Duration::from_secs(25))
            .max_entries(1_000),
        Prune::all(),
        Prune::all().function("evict::g"),
    ];
    for prune in prunes {
        let (plain, counted) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let plain_removal = progress_cache(plain.path()).prune(&prune).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let cache = progress_cache(counted.path());
        let counted_removal = cache
            .prune(&prune.clone().progress(move |p| log.lock().unwrap().push(p)))
            .unwrap();
        assert_eq!(plain_removal, counted_removal, "{prune:?}");
        assert_eq!(
            blob_files(plain.path()).len(),
            blob_files(counted.path()).len()
        );
        let seen = seen.lock().unwrap();
        let entries: Vec<_> = seen
            .iter()
            .filter(|p| p.step == memo_cache::Step::RemovingEntries)
            .collect();
        let last = entries.last().expect("removing entries was reported");
        assert_eq!(
            (last.done, last.total),
            (counted_removal.entries, counted_removal.entries),
            "{prune:?}"
        );
        assert!(entries.windows(2).all(|w| w[0].done <= w[1].done));
        assert!(entries.len() >= 2, "reported along the way: {entries:?}");
        let files = seen
            .iter()
            .rfind(|p| p.step == memo_cache::Step::RemovingFiles)
            .expect("removing files was reported");
        assert_eq!(files.done, files.total);
    }
}

#[test]
fn a_verify_with_progress_counts_every_entry() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let cache = progress_cache(dir.path());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let report = cache
        .verify(&Verify::new().progress(move |p| log.lock().unwrap().push((p.done, p.total))))
        .unwrap();
    assert_eq!(report.entries_checked, 3_001);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.first(), Some(&(0, 3_001)));
    assert_eq!(seen.last(), Some(&(3_001, 3_001)));
    assert!(seen.len() >= 2 + 2, "every 1024 entries: {seen:?}");
}
