//! `prune`, `clear` and `verify --fix` while another process writes and reads the same cache:
//! the writer sees no error and never reads a wrong value, and the cache stays sound.
//!
//! The writer is this test binary run again as a child process (a real process, with its own
//! SQLite connections and file handles): `writer_child`, an ignored test run with `--ignored`.

#[allow(dead_code)] // the other helpers serve the end-to-end tests
#[path = "../../../tests/src/children.rs"]
mod children;
mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use children::{KillOnDrop, Lines, wait_bounded};
use common::*;
use memo_cache::{Cache, Function};

const CHILD_ENV: &str = "MEMO_CACHE_CLI_TEST_WRITER_DIR";
static VALUE: Function = Function::new("concurrent::value", "v1", "Vec<u64>");
const KEYS: u64 = 64;

/// The value stored for key `i` (each writer has its own keys): small ones inline, every fourth
/// one large enough for a blob file.
fn value_of(i: u64, round: u64) -> Vec<u64> {
    let len = if i.is_multiple_of(4) { 3_000 } else { 4 };
    (0..len)
        .map(|j| i * 1_000_000 + round * 10_000 + j)
        .collect()
}

/// The writer's loop: store, read back, check; until the stop file appears. Every failure is a
/// panic, so the child's exit status tells the parent.
#[test]
#[ignore = "child process body, spawned by prune_clear_and_verify_fix_while_another_process_writes"]
fn writer_child() {
    let dir = std::env::var_os(CHILD_ENV).unwrap_or_else(|| {
        panic!(
            "`writer_child` is the body of a child process (it needs {CHILD_ENV}); \
             prune_clear_and_verify_fix_while_another_process_writes runs it"
        )
    });
    let dir = Path::new(&dir);
    let first: u64 = std::env::var("MEMO_CACHE_CLI_TEST_WRITER_KEYS")
        .unwrap()
        .parse()
        .unwrap();
    let cache = Cache::open(dir).unwrap();
    let (mut puts, mut hits, mut round) = (0u64, 0u64, 0u64);
    println!("writer started");
    while !dir.join("stop").exists() || round < 3 {
        for i in first..first + KEYS {
            let expected = value_of(i, round);
            cache
                .put(&VALUE, &(i,), &expected)
                .unwrap_or_else(|e| panic!("put {i}: {e}"));
            puts += 1;
            // A concurrent prune or clear may have removed it already: a miss is fine, a
            // different value is not.
            let found = cache
                .get::<_, Vec<u64>>(&VALUE, &(i,))
                .unwrap_or_else(|e| panic!("get {i}: {e}"));
            if let Some(found) = found {
                assert_eq!(
                    found, expected,
                    "key {i} round {round}: wrong value read back"
                );
                hits += 1;
            }
        }
        round += 1;
    }
    println!("writer done: {puts} puts, {hits} read back");
}

/// A writer process, once it has opened the cache, and its output.
struct Writer {
    child: KillOnDrop,
    stdout: Lines,
}

fn spawn_writer(dir: &Path, first_key: u64) -> Writer {
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir)
            .env("MEMO_CACHE_CLI_TEST_WRITER_KEYS", first_key.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    // Wait (bounded) until it has opened the cache before racing it.
    let mut stdout = Lines::new(child.stdout.take().unwrap());
    stdout.wait_for("writer started");
    Writer { child, stdout }
}

#[test]
fn prune_clear_and_verify_fix_while_another_process_writes() {
    let dir = tempfile::tempdir().unwrap();
    drop(Cache::open(dir.path()).unwrap());
    let writers = [spawn_writer(dir.path(), 0), spawn_writer(dir.path(), KEYS)];

    for _ in 0..10 {
        for args in [
            &["prune", "--max-entries", "10"][..],
            &["verify", "--fix"],
            &["clear", "--yes"],
            &["prune", "--max-size", "20KB"],
            &["prune"],
        ] {
            let (code, out, err) = run(dir.path(), args);
            assert_eq!(
                code, 0,
                "memo-cache {args:?} failed beside a writer:\n{out}\n{err}"
            );
        }
    }

    std::fs::write(dir.path().join("stop"), b"").unwrap();
    for mut writer in writers {
        let status = wait_bounded(&mut writer.child);
        let stdout = writer.stdout.rest().join("\n");
        assert!(status.success(), "the writer failed:\n{stdout}");
        assert!(stdout.contains("writer done"), "{stdout}");
        println!(
            "{}",
            stdout
                .lines()
                .find(|l| l.contains("writer done"))
                .unwrap_or_default()
        );
    }
    std::fs::remove_file(dir.path().join("stop")).unwrap();

    // Every value left reads back as one the writers stored for its key, and the cache is sound.
    let (code, out, _) = run(dir.path(), &["verify"]);
    assert_eq!(code, 0, "{out}");
    let cache = Cache::open(dir.path()).unwrap();
    for i in 0..2 * KEYS {
        if let Some(found) = cache.get::<_, Vec<u64>>(&VALUE, &(i,)).unwrap() {
            let round = (found[0] - i * 1_000_000) / 10_000;
            assert_eq!(found, value_of(i, round), "key {i}");
        }
    }
}
