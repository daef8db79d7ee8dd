//! `#[disk_cache]` across real processes: every run is a fresh process on the same directory.

mod macro_support;

use macro_support::{command, finish, run};
use memo_cache_e2e::{KillOnDrop, output_bounded, raw_index};

const CHILD: &str = env!("CARGO_BIN_EXE_macro_child");

fn child(dir: &tempfile::TempDir, args: &[&str]) -> macro_support::Run {
    run(CHILD, dir.path(), args)
}

#[test]
fn a_restarted_process_reuses_results() {
    let dir = tempfile::tempdir().unwrap();
    let first = child(&dir, &["features", "data.csv", "4"]);
    assert_eq!(first.count("features data.csv 4"), 1);
    let second = child(&dir, &["features", "data.csv", "4"]);
    assert!(second.computed().is_empty(), "{:?}", second.computed());
    assert_eq!(first.results(), second.results());
    let other = child(&dir, &["features", "data.csv", "5"]);
    assert_eq!(other.count("features data.csv 5"), 1);
}

#[test]
fn hash_map_and_set_order_does_not_change_the_key() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(child(&dir, &["map"]).count("total_weight"), 1);
    for _ in 0..4 {
        // Each process seeds its hasher differently, so iteration order differs.
        let again = child(&dir, &["map"]);
        assert_eq!(again.count("total_weight"), 0);
        assert_eq!(again.results(), ["1245"]);
    }
}

#[test]
fn recursion_computes_each_value_once_and_a_new_process_none() {
    let dir = tempfile::tempdir().unwrap();
    let first = child(&dir, &["fib", "90"]);
    assert_eq!(first.results(), ["2880067194370816120"]);
    assert_eq!(first.computed().len(), 91, "fib(0..=90), each once");
    for k in 0..=90 {
        let line = format!("computed fib {k}");
        assert_eq!(
            first.computed().iter().filter(|l| **l == line).count(),
            1,
            "fib({k})"
        );
    }
    let second = child(&dir, &["fib", "90"]);
    assert!(second.computed().is_empty());
    assert_eq!(second.results(), ["2880067194370816120"]);
    let further = child(&dir, &["fib", "92"]);
    assert_eq!(further.computed(), ["computed fib 92", "computed fib 91"]);
}

#[test]
fn results_store_ok_only_unless_cache_err() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(child(&dir, &["parse", "42"]).count("parse"), 1);
    assert_eq!(child(&dir, &["parse", "42"]).count("parse"), 0);
    let err = child(&dir, &["parse", "x"]);
    assert_eq!(err.count("parse"), 1);
    assert!(err.results()[0].starts_with("Err("));
    assert_eq!(
        child(&dir, &["parse", "x"]).count("parse"),
        1,
        "an Err is not stored"
    );

    assert_eq!(child(&dir, &["parse_all", "x"]).count("parse_all"), 1);
    let again = child(&dir, &["parse_all", "x"]);
    assert_eq!(
        again.count("parse_all"),
        0,
        "cache_err = true stores Err too"
    );
    assert!(again.results()[0].starts_with("Err("));
}

#[test]
fn ignored_arguments_are_not_in_the_key() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(child(&dir, &["shout", "hey", "true"]).count("shout"), 1);
    let quiet = child(&dir, &["shout", "hey", "false"]);
    assert_eq!(quiet.count("shout"), 0);
    assert_eq!(quiet.results(), ["HEY"]);
}

/// The creation time and expiry (Unix ms) of the one entry of the cache in `dir`.
fn only_entry_times(dir: &tempfile::TempDir) -> (i64, Option<i64>) {
    let conn = raw_index(dir.path());
    let entries: i64 = conn
        .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(entries, 1, "the cache should hold the one entry of quote");
    conn.query_row("SELECT created, expires FROM entries", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .unwrap()
}

#[test]
fn entries_expire_after_their_ttl() {
    const TTL_MS: i64 = 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(child(&dir, &["quote", "ACME"]).count("quote"), 1);
    assert_eq!(child(&dir, &["quote", "ACME"]).count("quote"), 0);
    // `quote`'s ttl is an hour: the entry expires then. Its creation and expiry are two readings
    // of the clock a moment apart, so allow a minute for the clock to have been stepped between.
    let (created, expires) = only_entry_times(&dir);
    let lifetime = expires.expect("an entry with a ttl has an expiry") - created;
    assert!(
        lifetime.abs_diff(TTL_MS) < 60_000,
        "expiry {lifetime} ms after creation, not the ttl of {TTL_MS} ms"
    );
    // Rather than wait for it, expire it: the ttl has passed once its expiry is in the past.
    let changed = raw_index(dir.path())
        .execute("UPDATE entries SET expires = ?1", [created - 1])
        .unwrap();
    assert_eq!(changed, 1);
    // First-hit files copy the expiry and cannot see a hand edit of the index: remove them.
    std::fs::remove_dir_all(dir.path().join(memo_cache::HINTS_DIR)).unwrap();
    assert_eq!(
        child(&dir, &["quote", "ACME"]).count("quote"),
        1,
        "an expired entry was served"
    );
    // Computed again, it is stored again with a new hour to live.
    let (created, expires) = only_entry_times(&dir);
    assert!(expires.is_some_and(|at| at > created), "{expires:?}");
    assert_eq!(child(&dir, &["quote", "ACME"]).count("quote"), 0);
}

/// The entries of `child::stamp` as the CLI reads them, oldest first.
fn stamp_entries(dir: &tempfile::TempDir) -> Vec<memo_cache::EntryInfo> {
    let cache = memo_cache::Cache::builder(dir.path())
        .read_only()
        .open()
        .unwrap();
    let mut entries = cache.entries(Some("child::stamp")).unwrap();
    entries.sort_by_key(|e| e.created);
    entries
}

#[test]
fn a_ttl_added_in_a_later_build_applies_to_values_stored_before_it() {
    let dir = tempfile::tempdir().unwrap();
    // The first build, without a ttl, and a run of it answered by first-hit files.
    assert_eq!(child(&dir, &["stamp", "1", "2"]).count("stamp"), 2);
    assert_eq!(child(&dir, &["stamp", "1", "2"]).count("stamp"), 0);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    // A later build gives the function `ttl = "1s"`: what was stored 1.2 s ago is a miss.
    let later = child(&dir, &["stamp_ttl", "1"]);
    assert_eq!(later.computed(), ["computed stamp 1"]);
    assert_eq!(later.results(), ["10"]);
    // The rows now say what the ttl says, so the CLI counts (2,) expired, as a call finds it.
    let entries = stamp_entries(&dir);
    assert_eq!(entries.len(), 2);
    for e in &entries {
        let lifetime = e.expires.expect("an expiry").duration_since(e.created);
        assert_eq!(
            lifetime.unwrap(),
            std::time::Duration::from_secs(1),
            "{e:?}"
        );
    }
    assert!(entries[0].is_expired_at(std::time::SystemTime::now()));
    assert_eq!(child(&dir, &["stamp_ttl", "2"]).count("stamp"), 1);
}

#[test]
fn a_hit_from_a_first_hit_file_brings_the_rows_to_the_ttl_in_force() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(child(&dir, &["stamp", "3"]).count("stamp"), 1);
    assert_eq!(child(&dir, &["stamp", "3"]).count("stamp"), 0);
    // A build with `ttl = "1s"` hits at once, from the first-hit file (the value is fresh),
    // and never reads the row: the row must still be brought to its ttl, for the CLI.
    assert_eq!(child(&dir, &["stamp_ttl", "3"]).count("stamp"), 0);
    let entries = stamp_entries(&dir);
    assert_eq!(entries.len(), 1);
    let lifetime = entries[0]
        .expires
        .map(|at| at.duration_since(entries[0].created));
    assert_eq!(
        lifetime.map(Result::unwrap),
        Some(std::time::Duration::from_secs(1)),
        "{:?}",
        entries[0]
    );
}

#[test]
fn the_memory_tier_drops_a_value_when_the_ttl_in_force_says_so() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(child(&dir, &["stamp", "5"]).count("stamp"), 1);
    // Read from disk (likely within the second), then kept in memory: the second call, 1.1 s
    // later, comes more than a second after the value was stored and must not be served.
    let run = child(&dir, &["stamp_memory", "5", "1100"]);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(run.results(), ["50", "50"]);
    assert_eq!(
        lines[lines.len() - 2..],
        ["computed stamp 5", "result 50"],
        "the memory tier served a value older than the ttl:\n{}",
        run.stdout
    );
}

#[test]
fn four_processes_compute_a_slow_function_once_per_key() {
    let dir = tempfile::tempdir().unwrap();
    for key in ["3", "4"] {
        let children: Vec<_> = (0..4)
            .map(|_| KillOnDrop(command(CHILD, dir.path(), &["slow", key]).spawn_piped()))
            .collect();
        let runs: Vec<_> = children
            .into_iter()
            .map(|mut c| finish(CHILD, output_bounded(&mut c)))
            .collect();
        let computed: usize = runs.iter().map(|r| r.count("slow_square")).sum();
        assert_eq!(
            computed,
            1,
            "key {key}: {:?}",
            runs.iter()
                .map(|r| (&r.stdout, &r.stderr))
                .collect::<Vec<_>>()
        );
        let expected = (key.parse::<u64>().unwrap().pow(2)).to_string();
        assert!(runs.iter().all(|r| r.results() == [expected.as_str()]));
    }
}

#[test]
fn memory_lru_answers_repeated_calls_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let first = child(&dir, &["remembered", "5"]);
    assert_eq!(first.count("remembered"), 1);
    assert_eq!(first.results(), ["<5>", "<5>", "<5>"]);
    assert_eq!(
        child(&dir, &["remembered", "5"]).count("remembered"),
        0,
        "the disk still backs the LRU"
    );
}

#[test]
fn generic_functions_cache_per_type() {
    let dir = tempfile::tempdir().unwrap();
    let first = child(&dir, &["generic", "7"]);
    assert_eq!(
        first.computed().len(),
        3,
        "u64, String and Vec<u64> are different functions"
    );
    assert_eq!(first.results(), ["7", "\"7\"", "[7]"]);
    let second = child(&dir, &["generic", "7"]);
    assert!(second.computed().is_empty());
    assert_eq!(second.results(), first.results());
}

#[test]
fn methods_and_associated_functions() {
    let dir = tempfile::tempdir().unwrap();
    let first = child(&dir, &["method"]);
    assert_eq!(first.results(), ["5", "10"]);
    assert_eq!(first.count("norm"), 2);
    assert_eq!(first.count("origin_distance"), 1);
    assert!(child(&dir, &["method"]).computed().is_empty());
}

#[test]
fn companions_clear_check_recompute_and_bypass() {
    let dir = tempfile::tempdir().unwrap();
    let run = child(&dir, &["companions"]);
    assert_eq!(
        run.lines("cached "),
        ["false", "true", "false", "true", "false", "true", "false"]
    );
    assert_eq!(
        run.count("features companion 2"),
        3,
        "first call, recompute, uncached"
    );
    assert_eq!(run.lines("cleared "), ["1", "1"]);
}

#[test]
fn async_functions_under_tokio() {
    let dir = tempfile::tempdir().unwrap();
    let first = child(&dir, &["async", "https://example.com/a"]);
    assert_eq!(
        first.count("fetch"),
        1,
        "the second call, with progress off, is a hit"
    );
    assert_eq!(first.count("big"), 1);
    let second = child(&dir, &["async", "https://example.com/a"]);
    assert!(second.computed().is_empty(), "{:?}", second.computed());
    assert_eq!(first.results(), second.results());
    let sum: u64 = (0..3_000_000u64).map(|i| i % 251).sum();
    assert_eq!(second.results()[2], format!("big 3000000 {sum}"));

    let bad = child(&dir, &["async", "bad-url"]);
    assert_eq!(bad.count("fetch"), 2, "Err is not stored");

    let current = child(&dir, &["async_current_thread", "https://example.com/a"]);
    assert!(current.computed().is_empty());
    assert_eq!(current.lines("cached "), ["true"]);
}

trait SpawnPiped {
    fn spawn_piped(self) -> std::process::Child;
}

impl SpawnPiped for std::process::Command {
    fn spawn_piped(mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn child")
    }
}

/// `compress = 3` stores a `Vec<f64>` compressed, where the cache's own setting leaves number
/// arrays alone; the next process reads both back, its first calls from first-hit files.
#[test]
fn compress_stores_a_number_array_compressed_and_the_next_process_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let bins = 200_000;
    let first = child(&dir, &["histogram", &bins.to_string()]);
    assert_eq!(first.count("histogram"), 1);
    assert_eq!(first.count("plain_histogram"), 1);
    let second = child(&dir, &["histogram", &bins.to_string()]);
    assert!(second.computed().is_empty(), "{:?}", second.computed());
    assert_eq!(second.results(), first.results());
    assert_eq!(second.lines("index="), ["unopened"], "{}", second.stdout);

    let cache = memo_cache::Cache::builder(dir.path())
        .existing_only()
        .open()
        .unwrap();
    let entries = cache.entries(None).unwrap();
    let entry = |name: &str| {
        entries
            .iter()
            .find(|e| e.function.ends_with(name))
            .unwrap_or_else(|| panic!("no entry of {name} in {entries:?}"))
    };
    let raw = 8 * bins as u64 + 1;
    let asked = entry("::histogram");
    assert!(asked.compressed, "{asked:?}");
    assert!(asked.bytes < raw / 4, "{} of {raw} bytes", asked.bytes);
    let plain = entry("::plain_histogram");
    assert!(!plain.compressed, "{plain:?}");
    assert_eq!(plain.bytes, raw);
}
