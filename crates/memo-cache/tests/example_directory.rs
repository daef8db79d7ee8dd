//! `cache_directory.example` is a real cache made by the project's own example. Opening it with
//! the current code must keep working: a format change that would strand users' caches fails
//! here until a migration exists.
//!
//! Regenerate it (only when a migration makes the old one obsolete, and say so in the commit):
//!
//! ```text
//! rm -rf cache_directory.example
//! MEMO_CACHE_DIR=cache_directory.example cargo run --release -p memo-cache-rs --example expensive
//! git add -f cache_directory.example
//! ```

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use memo_cache::{Cache, Verify};
use serde::Deserialize;

#[derive(Debug, Deserialize, PartialEq)]
struct PrimeStats {
    count: u64,
    largest: u64,
    twin_pairs: u64,
}

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cache_directory.example")
}

/// A copy, so that opening it (which may migrate it and records hits) leaves the repo clean.
fn copy_of_example() -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    copy_tree(&example_dir(), copy.path());
    copy
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn the_example_cache_opens_verifies_and_serves_its_values() {
    let dir = copy_of_example();
    let cache = Cache::open(dir.path()).expect("the example cache opens with the current code");

    let report = cache.verify(&Verify::new()).unwrap();
    assert!(
        report.is_sound(),
        "example cache has problems: {:?}",
        report.problems
    );
    assert_eq!(report.entries_checked, 3);

    let names: Vec<String> = cache
        .functions()
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["expensive::prime_stats", "expensive::primes_below"]);

    let mut stats = Vec::new();
    let mut primes = Vec::new();
    cache
        .for_each_entry(None, |entry| {
            match entry.function.as_str() {
                "expensive::prime_stats" => stats.push(entry.key),
                _ => primes.push(entry.key),
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    let mut counts: Vec<PrimeStats> = stats
        .iter()
        .map(|key| {
            cache
                .get_key::<PrimeStats>("expensive::prime_stats", key)
                .unwrap()
                .expect("a hit")
        })
        .collect();
    counts.sort_by_key(|s| s.count);
    assert_eq!(
        counts[0],
        PrimeStats {
            count: 78_498,
            largest: 999_983,
            twin_pairs: 8_169
        }
    );
    assert_eq!(
        counts[1],
        PrimeStats {
            count: 1_857_859,
            largest: 29_999_999,
            twin_pairs: 152_891
        }
    );

    let below: Vec<u64> = cache
        .get_key("expensive::primes_below", &primes[0])
        .unwrap()
        .expect("a hit");
    assert_eq!(below.len(), 9_592);
    assert_eq!(below[..5], [2, 3, 5, 7, 11]);
}

#[test]
fn the_example_cache_keys_still_derive_the_same() {
    // The example's identities and arguments must still produce the keys stored on disk: a
    // change to key derivation without a format bump would silently miss every user's cache.
    let dir = copy_of_example();
    let cache = Cache::open(dir.path()).unwrap();
    let stats = memo_cache::Function::new("expensive::prime_stats", "v1", "PrimeStats");
    let primes = memo_cache::Function::new("expensive::primes_below", "v1", "Vec<u64>");
    for limit in [1_000_000u64, 30_000_000] {
        assert!(
            cache.contains(&stats, &(limit,)).unwrap(),
            "prime_stats({limit}) not found by key"
        );
    }
    assert!(cache.contains(&primes, &(100_000u64,)).unwrap());
}

/// The example cache as key format 1 wrote it (the committed example until the format 2 bump).
fn copy_of_key_v1_cache() -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cache_key_v1"),
        copy.path(),
    );
    copy
}

#[test]
fn a_cache_of_an_older_key_format_opens_and_its_entries_go_stale_never_wrong() {
    let dir = copy_of_key_v1_cache();
    let cache = Cache::open(dir.path()).expect("a key format 1 cache opens with the current code");
    let report = cache.verify(&Verify::new()).unwrap();
    assert!(report.is_sound(), "{:?}", report.problems);
    assert_eq!(report.entries_checked, 3);

    // The same identities and arguments derive new keys: the old values are not found, so the
    // call computes (here a sentinel, so a wrong hit would show).
    let stats = memo_cache::Function::new("expensive::prime_stats", "v1", "PrimeStats");
    assert!(!cache.contains(&stats, &(1_000_000u64,)).unwrap());
    let fresh: u64 = cache.get_or_compute(
        &memo_cache::Function::new("expensive::prime_stats", "v1", "u64"),
        &(1_000_000u64,),
        || 7,
    );
    assert_eq!(fresh, 7);

    // Once the current format has stored a value for a function, its old entries are stale:
    // listed as such and removed first, like those of an edited function.
    let stale: Vec<String> = cache
        .entries(None)
        .unwrap()
        .into_iter()
        .filter(|e| e.stale)
        .map(|e| e.function)
        .collect();
    assert_eq!(stale, ["expensive::prime_stats", "expensive::prime_stats"]);
    let removed = cache.prune(&memo_cache::Prune::new().stale()).unwrap();
    assert_eq!(removed.entries, 2);
}
