//! `#[disk_cache]` across real processes: every run is a fresh process on the same directory.

mod macro_support;

use macro_support::{command, finish, run};

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

#[test]
fn entries_expire_after_their_ttl() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(child(&dir, &["quote", "ACME"]).count("quote"), 1);
    assert_eq!(child(&dir, &["quote", "ACME"]).count("quote"), 0);
    // The function's ttl is one second: wait it out (this bounds nothing, it only lets time pass).
    std::thread::sleep(std::time::Duration::from_millis(1_300));
    assert_eq!(child(&dir, &["quote", "ACME"]).count("quote"), 1);
}

#[test]
fn four_processes_compute_a_slow_function_once_per_key() {
    let dir = tempfile::tempdir().unwrap();
    for key in ["3", "4"] {
        let children: Vec<_> = (0..4)
            .map(|_| command(CHILD, dir.path(), &["slow", key]).spawn_piped())
            .collect();
        let runs: Vec<_> = children
            .into_iter()
            .map(|c| finish(CHILD, c.wait_with_output().unwrap()))
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
