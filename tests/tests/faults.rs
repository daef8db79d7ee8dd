//! Faults from the field, with real processes: a compute-lock holder frozen with SIGSTOP, a
//! function that calls itself with its own key, a process frozen while it holds SQLite's write
//! lock, a cache directory deleted under a running writer.
//!
//! No assertion is about time. Each scenario that used to hang is set up so that hanging is the
//! failure: the waits it must not make are set to an hour, and every child is bounded by
//! [`memo_cache_e2e::CHILD_TIMEOUT`].

mod macro_support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use macro_support::{Run, finish};
use memo_cache_e2e::{KillOnDrop, Lines, run_bounded};

const CHILD: &str = env!("CARGO_BIN_EXE_fault_child");

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = macro_support::command(CHILD, dir, args);
    cmd.env_remove("MEMO_CACHE_REDIS_URL")
        .env_remove("MEMO_CACHE_LOCK_LEASE")
        .env_remove("MEMO_CACHE_WRITE_TIMEOUT");
    cmd
}

fn run(cmd: &mut Command) -> Run {
    finish(CHILD, run_bounded(cmd))
}

/// Starts a child whose stdout the test reads line by line, and whose stdin it may write.
fn spawn(cmd: &mut Command) -> (KillOnDrop, Lines) {
    let mut child = KillOnDrop(
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let lines = Lines::new(child.stdout.take().unwrap());
    (child, lines)
}

fn signal(child: &KillOnDrop, sig: libc::c_int) {
    // SAFETY: kill(2) on a child we started and have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

#[test]
fn a_frozen_holder_is_taken_over_and_the_waiter_returns_the_value() {
    let dir = tempfile::tempdir().unwrap();
    // The holder would compute for an hour; it is frozen as soon as it starts.
    let (holder, mut holder_out) = spawn(&mut command(dir.path(), &["slow", "5", "3600000"]));
    holder_out.wait_for("computing slow 5");
    signal(&holder, libc::SIGSTOP);

    // The waiter's lease is 2 s (`lease = "2s"` on the function): it takes over and computes.
    let waiter = run(&mut command(dir.path(), &["slow", "5", "0"]));
    assert_eq!(waiter.results(), ["5007"]);
    assert_eq!(waiter.computed(), ["computed slow 5"]);
    let warning = format!("process {} has not renewed its lease on key", holder.id());
    assert!(
        waiter.stderr.contains(&warning),
        "no warning naming the holder:\n{}",
        waiter.stderr
    );

    // The value it computed is stored: the next process hits, though the holder is still frozen.
    let next = run(&mut command(dir.path(), &["slow", "5", "0"]));
    assert_eq!(next.results(), ["5007"]);
    assert!(next.lines("comput").is_empty(), "{}", next.stdout);
}

#[test]
fn a_live_holder_keeps_its_lease_however_long_it_computes() {
    let dir = tempfile::tempdir().unwrap();
    // Five seconds of work, past the 2 s lease: the holder's renewals keep the waiter waiting.
    let (mut holder, mut holder_out) = spawn(&mut command(dir.path(), &["slow", "6", "5000"]));
    holder_out.wait_for("computing slow 6");
    let waiter = run(&mut command(dir.path(), &["slow", "6", "0"]));
    assert_eq!(waiter.results(), ["6007"]);
    assert!(
        waiter.lines("comput").is_empty(),
        "the waiter computed beside a live holder:\n{}",
        waiter.stdout
    );
    assert!(
        !waiter.stderr.contains("has not renewed"),
        "{}",
        waiter.stderr
    );
    assert!(memo_cache_e2e::wait_bounded(&mut holder).success());
}

#[test]
fn a_function_calling_itself_with_its_own_key_does_not_wait_for_itself() {
    let dir = tempfile::tempdir().unwrap();
    for scenario in ["fetch", "fetch-async"] {
        let first = run(&mut command(
            dir.path(),
            &[scenario, "https://example.test/a"],
        ));
        assert_eq!(
            first.results(),
            [r#"Ok("body of https://example.test/a after 3 attempts")"#],
            "{scenario}"
        );
        assert_eq!(first.computed().len(), 4, "{scenario}: {}", first.stdout);
        // Stored: the next process computes nothing.
        let second = run(&mut command(
            dir.path(),
            &[scenario, "https://example.test/a"],
        ));
        assert_eq!(second.results(), first.results(), "{scenario}");
        assert!(second.computed().is_empty(), "{scenario}");
    }
}

#[test]
fn hits_never_wait_for_a_frozen_writer_and_a_miss_gives_up_unstored() {
    let dir = tempfile::tempdir().unwrap();
    run(&mut command(dir.path(), &["small", "0", "1"]));
    let index = dir.path().join(memo_cache::INDEX_FILE);
    let (writer, mut writer_out) = spawn(&mut command(
        dir.path(),
        &["hold-write", index.to_str().unwrap()],
    ));
    writer_out.wait_for("holding");
    signal(&writer, libc::SIGSTOP);

    // Three seconds of hits, past the 2 s after which hit counts are flushed: with an hour's
    // write timeout, a flush that waited for the write lock would never return.
    let hits = run(command(dir.path(), &["hits", "0", "3"]).env("MEMO_CACHE_WRITE_TIMEOUT", "1h"));
    assert_eq!(hits.lines("hits ").len(), 1, "{}", hits.stdout);
    assert!(hits.computed().is_empty(), "{}", hits.stdout);

    // A miss waits its write timeout, then returns its value unstored, with a warning.
    let miss = run(command(dir.path(), &["small", "1", "2"]).env("MEMO_CACHE_WRITE_TIMEOUT", "1s"));
    assert_eq!(miss.results(), ["value 1"]);
    assert!(
        miss.stderr.contains("has held it locked"),
        "no warning about the write lock:\n{}",
        miss.stderr
    );
    let cached = run(&mut command(dir.path(), &["cached", "1", "2"]));
    assert_eq!(cached.lines("cached "), ["0"]);

    // Once the writer is gone, the same call is stored.
    drop(writer);
    run(&mut command(dir.path(), &["small", "1", "2"]));
    let cached = run(&mut command(dir.path(), &["cached", "1", "2"]));
    assert_eq!(cached.lines("cached "), ["1"]);
}

#[test]
fn a_cache_directory_deleted_under_running_writers_is_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    let mut writers: Vec<(KillOnDrop, Lines)> = (0..4)
        .map(|_| spawn(&mut command(&cache_dir, &["small-twice", "10"])))
        .collect();
    for (_, out) in &mut writers {
        out.wait_for("stored first");
    }
    std::fs::remove_dir_all(&cache_dir).unwrap();
    for (child, _) in &mut writers {
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    for (child, out) in &mut writers {
        out.wait_for("stored second");
        assert!(memo_cache_e2e::wait_bounded(child).success());
    }
    // A new process finds every value stored after the deletion.
    let cached = run(&mut command(&cache_dir, &["cached", "10", "20"]));
    assert_eq!(cached.lines("cached "), ["10"]);
}

#[test]
fn a_frozen_writer_in_exclusive_locking_mode_costs_calls_bounded_waits_only() {
    let dir = tempfile::tempdir().unwrap();
    run(&mut command(dir.path(), &["small", "0", "1"]));
    let index = dir.path().join(memo_cache::INDEX_FILE);
    let (writer, mut writer_out) = spawn(&mut command(
        dir.path(),
        &["hold-write", index.to_str().unwrap(), "exclusive"],
    ));
    writer_out.wait_for("holding");
    signal(&writer, libc::SIGSTOP);

    // No read can be had: every call is a miss that gives up on storing after its write
    // timeout, and returns the right value.
    let calls =
        run(command(dir.path(), &["small", "0", "3"]).env("MEMO_CACHE_WRITE_TIMEOUT", "1s"));
    assert_eq!(calls.results(), ["value 0", "value 1", "value 2"]);
    assert!(
        calls.stderr.contains("has held it locked"),
        "no warning about the lock:\n{}",
        calls.stderr
    );
    drop(writer);
    let cached = run(&mut command(dir.path(), &["cached", "0", "1"]));
    assert_eq!(cached.lines("cached "), ["1"]);
}
