//! The long suites with small parameters, through the real binary: the CI part of issue 5.
//!
//! Each run asserts the binary's own verdict (exit status) and its figures: 0 wrong values and
//! 0 errors. The full-disk and read-only suites mount tmpfs file systems, which CI can (it runs as
//! root); where mounting is refused, full-disk falls back to RLIMIT_FSIZE and read-only fails
//! loudly rather than skip.

#[allow(dead_code)] // the line readers and file waits serve the end-to-end tests
#[path = "../../../tests/src/children.rs"]
mod children;

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_memo-cache-torture");

/// Runs the binary (a bounded wait: a hung suite is killed and fails the test).
fn run(args: &[&str]) -> String {
    let out = children::run_bounded(Command::new(BIN).args(args));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "memo-cache-torture {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{stdout}");
    stdout
}

fn figure<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(name).map(str::trim))
        .unwrap_or_else(|| panic!("no figure {name:?} in:\n{stdout}"))
}

#[test]
fn thirty_sigkills_of_four_writers_leave_no_wrong_value_and_a_repairable_cache() {
    let out = run(&[
        "crash",
        "--kills",
        "30",
        "--writers",
        "4",
        "--keys",
        "24",
        "--max-ms",
        "100",
    ]);
    assert_eq!(figure(&out, "kills (SIGKILL)"), "30");
    assert_eq!(figure(&out, "wrong values"), "0");
    assert_eq!(figure(&out, "errors"), "0");
    assert!(
        figure(&out, "verify after --fix").starts_with("nothing"),
        "{out}"
    );
}

#[test]
fn four_processes_for_five_seconds_of_calls_prunes_and_clears_see_no_error() {
    let out = run(&["soak", "--seconds", "5", "--procs", "4", "--keys", "24"]);
    assert_eq!(figure(&out, "wrong values"), "0");
    assert_eq!(figure(&out, "errors surfaced to callers"), "0");
    // Rows without their bytes (a race between removers and writers of one value) showed up as
    // "blob file is missing" warnings before the fix in `Cache::remove_blobs`.
    assert_eq!(figure(&out, "library warnings"), "0", "{out}");
}

#[test]
fn verify_beside_four_churning_writers_for_four_seconds_reports_nothing() {
    let out = run(&[
        "verify-churn",
        "--seconds",
        "4",
        "--writers",
        "4",
        "--keys",
        "24",
    ]);
    assert!(
        !figure(&out, "verify runs").starts_with('0'),
        "verify must run beside the writers: {out}"
    );
    // 283 missing-blob reports in 114 runs before verify confirmed its problems under the
    // write lock (`crates/memo-cache-cli/tests/verify_beside_writers.rs` measured it).
    assert_eq!(figure(&out, "false reports"), "0", "{out}");
    assert_eq!(figure(&out, "repairs by --fix"), "0", "{out}");
    assert_eq!(figure(&out, "wrong values"), "0");
    assert_eq!(figure(&out, "errors"), "0");
    assert!(
        figure(&out, "verify after --fix").starts_with("nothing"),
        "{out}"
    );
}

#[test]
fn a_full_disk_on_a_small_tmpfs_or_past_rlimit_fsize() {
    // tmpfs where mounting is allowed (CI runs as root), RLIMIT_FSIZE otherwise: never skipped.
    let out = run(&["full-disk", "--mode", "auto", "--keys", "8"]);
    assert_eq!(figure(&out, "wrong values"), "0");
}

#[test]
fn a_full_disk_past_rlimit_fsize() {
    let out = run(&["full-disk", "--mode", "rlimit", "--keys", "8"]);
    assert!(figure(&out, "how the disk is full").contains("RLIMIT_FSIZE"));
    assert_eq!(figure(&out, "wrong values"), "0");
}

#[test]
fn a_cache_on_a_read_only_mount_serves_hits_and_computes_misses() {
    let out = run(&["read-only", "--keys", "8"]);
    assert_eq!(figure(&out, "opened read-only"), "true");
    assert_eq!(figure(&out, "hits served"), "40 of 40");
    assert_eq!(figure(&out, "wrong values"), "0");
}

#[test]
fn a_frozen_holder_a_frozen_writer_and_a_deleted_directory_lose_no_value_and_hang_nothing() {
    let out = run(&[
        "faults",
        "--rounds",
        "1",
        "--waiters",
        "2",
        "--lease",
        "2",
        "--seconds",
        "3",
        "--writers",
        "3",
    ]);
    assert_eq!(figure(&out, "waiters that never returned"), "0");
    assert_eq!(figure(&out, "wrong values"), "0");
    assert_eq!(figure(&out, "takeover warnings"), "1", "{out}");
    assert_eq!(figure(&out, "misses returned right"), "2");
    let stored = figure(&out, "values stored after the deletion");
    assert_ne!(stored, "0");
    assert_eq!(figure(&out, "found by a new process"), stored);
}

#[test]
fn a_cache_that_filled_its_disk_frees_its_own_space_and_stores_again() {
    // A 512 KiB tmpfs where mounting is allowed, RLIMIT_FSIZE otherwise: never skipped.
    let out = run(&["self-filled-disk", "--mode", "auto", "--stores", "3000"]);
    assert_eq!(figure(&out, "later store"), "stored and served");
    assert!(figure(&out, "prune").starts_with("Removed "), "{out}");
    assert_eq!(figure(&out, "wrong values"), "0");
}

#[test]
fn a_cache_that_filled_its_file_size_limit_frees_its_own_space() {
    let out = run(&["self-filled-disk", "--mode", "rlimit", "--stores", "1000"]);
    assert!(figure(&out, "how the disk is full").contains("RLIMIT_FSIZE"));
    assert_eq!(figure(&out, "later store"), "stored and served");
    assert_eq!(figure(&out, "wrong values"), "0");
}
