//! What a user of `#[disk_cache]` sees, in real processes: one line on stderr when the cache
//! cannot be used and no `tracing` subscriber would say so, none with `MEMO_CACHE_QUIET=1`, the
//! warning through the subscriber the README recommends, and with `RUST_LOG=memo_cache=debug`
//! the reason each call computed (each event with its function, key and path).

mod macro_support;

use std::path::Path;
use std::process::Command;

use macro_support::{Run, command, finish};
use memo_cache_e2e::run_bounded;

const CHILD: &str = env!("CARGO_BIN_EXE_plain_child");

fn child(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd: Command = command(CHILD, dir, args);
    cmd.env_remove("MEMO_CACHE_QUIET").env_remove("CHILD_LOG");
    for (name, value) in env {
        cmd.env(name, value);
    }
    finish(CHILD, run_bounded(&mut cmd))
}

/// Six cached calls of two functions, each computed, with the cache at `dir`.
fn six_uncached_calls(dir: &Path, env: &[(&str, &str)]) -> Run {
    let run = child(dir, &["calls"], env);
    assert_eq!(run.computed().len(), 6, "{}", run.stdout);
    assert_eq!(run.results(), ["1 #1", "4 #2", "9 #3"]);
    run
}

#[test]
fn a_cache_dir_that_is_a_file_gets_one_line_on_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    for _ in 0..2 {
        // Every run says it again: it runs uncached every time.
        let run = six_uncached_calls(&file, &[]);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}", run.stderr);
        let line = lines[0];
        assert!(
            line.starts_with(&format!(
                "memo-cache: warning: cannot use the cache in {}: ",
                file.display()
            )),
            "{line}"
        );
        assert!(line.contains("is not a directory"), "{line}");
        assert!(line.contains("uncached"), "{line}");
        assert!(
            line.contains("MEMO_CACHE_QUIET=1 hides this line"),
            "{line}"
        );
    }
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"x",
        "the file is left alone"
    );
}

#[test]
fn a_cache_dir_that_cannot_be_made_gets_one_line_naming_it_and_what_to_do() {
    let run = six_uncached_calls(Path::new("/proc/memo-cache-test/x"), &[]);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(lines[0].contains("/proc/memo-cache-test/x"), "{}", lines[0]);
    assert!(
        lines[0].contains("To fix: point MEMO_CACHE_DIR"),
        "{}",
        lines[0]
    );
}

#[test]
fn memo_cache_quiet_hides_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let run = six_uncached_calls(&file, &[("MEMO_CACHE_QUIET", "1")]);
    assert_eq!(run.stderr, "");
    // `0` and empty mean not quiet.
    for value in ["0", ""] {
        let run = six_uncached_calls(&file, &[("MEMO_CACHE_QUIET", value)]);
        assert_eq!(run.stderr.lines().count(), 1, "{value:?}: {}", run.stderr);
    }
}

#[test]
fn a_usable_cache_prints_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let first = six_uncached_calls(dir.path(), &[]);
    assert_eq!(first.stderr, "");
    let second = child(dir.path(), &["calls"], &[]);
    assert!(second.computed().is_empty());
    assert_eq!(second.stderr, "");
}

#[test]
fn a_subscriber_gets_the_warning_under_the_memo_cache_target_instead() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let log = [("CHILD_LOG", "1"), ("RUST_LOG", "memo_cache=warn")];
    let run = six_uncached_calls(&file, &log);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(lines[0].contains("WARN memo_cache:"), "{}", lines[0]);
    assert!(
        lines[0].contains(&format!("path={}", file.display())),
        "{}",
        lines[0]
    );
    assert!(!lines[0].contains("MEMO_CACHE_QUIET"), "{}", lines[0]);
    // A subscriber that filters the warning out is obeyed: no line at all.
    let off = [("CHILD_LOG", "1"), ("RUST_LOG", "memo_cache=error")];
    assert_eq!(six_uncached_calls(&file, &off).stderr, "");
}

#[test]
fn the_readme_subscriber_shows_the_warning_with_rust_log_unset() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    // `command` removes RUST_LOG; an empty one counts as unset.
    for env in [
        &[("CHILD_LOG", "readme")][..],
        &[("CHILD_LOG", "readme"), ("RUST_LOG", "")],
    ] {
        let run = six_uncached_calls(&file, env);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{env:?}: {}", run.stderr);
        assert!(lines[0].contains("WARN memo_cache:"), "{}", lines[0]);
        assert!(lines[0].contains("uncached"), "{}", lines[0]);
        assert!(
            lines[0].contains(&format!("path={}", file.display())),
            "{}",
            lines[0]
        );
    }
    // MEMO_CACHE_QUIET hides only the line printed without a subscriber.
    let quiet = [("CHILD_LOG", "readme"), ("MEMO_CACHE_QUIET", "1")];
    assert_eq!(six_uncached_calls(&file, &quiet).stderr.lines().count(), 1);
    // What the README warns of: `EnvFilter::from_default_env()` alone, RUST_LOG unset, lets
    // errors through and nothing else.
    assert_eq!(six_uncached_calls(&file, &[("CHILD_LOG", "1")]).stderr, "");
}

const FIB_120: &str = "5358359254990966640871840";

#[test]
fn a_memoized_recursion_with_memory_stays_linear_when_the_cache_cannot_be_used() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    // Uncached, fib(120) would make ~10^25 calls; the memory layer makes it 121 bodies.
    let run = child(&file, &["fib", "120"], &[]);
    assert_eq!(run.count("fib"), 121, "{}", run.stdout);
    assert_eq!(run.results(), [FIB_120]);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);

    // With a usable cache: computed once, then a new process reads fib(120) from disk.
    let dir = tempfile::tempdir().unwrap();
    let first = child(dir.path(), &["fib", "120"], &[]);
    assert_eq!(first.count("fib"), 121, "{}", first.stdout);
    let second = child(dir.path(), &["fib", "120"], &[]);
    assert_eq!(second.count("fib"), 0, "{}", second.stdout);
    assert_eq!(second.results(), [FIB_120]);
}

/// The debug events of the calls target, one per line.
fn events(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|l| l.contains("DEBUG memo_cache::calls:"))
        .collect()
}

const DEBUG: [(&str, &str); 2] = [("CHILD_LOG", "1"), ("RUST_LOG", "memo_cache=debug")];

#[test]
fn debug_events_say_hit_miss_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let first = child(dir.path(), &["calls"], &DEBUG);
    let misses = events(&first);
    assert_eq!(misses.len(), 6, "{}", first.stderr);
    assert!(
        misses
            .iter()
            .all(|l| l.contains("miss: no entry for these arguments")),
        "{misses:?}"
    );
    assert!(
        misses[0].contains("function=\"plain_child::square\"")
            || misses[0].contains("function=plain_child::square"),
        "{}",
        misses[0]
    );
    assert!(misses[0].contains("key="), "{}", misses[0]);
    let path = format!("path={}", dir.path().display());
    let stored: Vec<&str> = first
        .stderr
        .lines()
        .filter(|l| l.contains("DEBUG memo_cache::store:") && l.contains("stored"))
        .collect();
    assert_eq!(stored.len(), 6, "{}", first.stderr);
    // Every event names the function, the key and the cache directory.
    for line in misses.iter().chain(&stored) {
        assert!(line.contains("function="), "{line}");
        assert!(line.contains("key="), "{line}");
        assert!(line.contains(&path), "{line}");
    }

    let second = child(dir.path(), &["calls"], &DEBUG);
    let hits = events(&second);
    assert_eq!(hits.len(), 6, "{}", second.stderr);
    assert!(hits.iter().all(|l| l.contains(" hit ")), "{hits:?}");
    for line in &hits {
        assert!(line.contains("function="), "{line}");
        assert!(line.contains(&path), "{line}");
    }
}

#[test]
fn debug_events_say_a_miss_is_from_a_changed_version_or_an_expired_entry() {
    let dir = tempfile::tempdir().unwrap();
    child(dir.path(), &["scaled_v1", "7"], &[]);
    let v2 = child(dir.path(), &["scaled_v2", "7"], &DEBUG);
    let miss = events(&v2);
    assert_eq!(miss.len(), 1, "{}", v2.stderr);
    assert!(miss[0].contains("no entry for this version"), "{}", miss[0]);
    assert!(
        miss[0].contains("1 entry of another version"),
        "{}",
        miss[0]
    );
    assert!(
        miss[0].contains("fingerprint 1 returning u64"),
        "{}",
        miss[0]
    );

    let brief = child(dir.path(), &["brief", "1", "1200"], &DEBUG);
    assert_eq!(brief.computed().len(), 2, "{}", brief.stdout);
    let miss = events(&brief);
    assert_eq!(miss.len(), 2, "{}", brief.stderr);
    assert!(miss[1].contains("its entry has expired"), "{}", miss[1]);
    assert!(miss[1].contains("ttl 1s"), "{}", miss[1]);
}

#[test]
fn debug_events_name_evicted_entries() {
    let dir = tempfile::tempdir().unwrap();
    let run = child(dir.path(), &["evict"], &DEBUG);
    let evicted: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("DEBUG memo_cache::store:") && l.contains("evicted"))
        .collect();
    assert!(evicted.len() >= 3, "{}", run.stderr);
    for line in &evicted {
        assert!(line.contains("over its size limit of 3000 bytes"), "{line}");
        assert!(
            line.contains("function=\"child::block\"") || line.contains("function=child::block"),
            "{line}"
        );
        assert!(line.contains("key="), "{line}");
        assert!(line.contains("path="), "{line}");
    }
}
