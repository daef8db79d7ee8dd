//! `memo-cache verify` and `verify --fix` beside 4 processes that store, replace and remove
//! blob-sized values: every problem verify reports must be real, so beside a sound cache it
//! reports none and `--fix` repairs nothing (issue 12, item 5).
//!
//! The writers are this test binary run again as child processes (`churn_child`, an ignored
//! test run with `--ignored`); verify is the real `memo-cache` binary.

#[allow(dead_code)] // the other helpers serve the end-to-end tests
#[path = "../../../tests/src/children.rs"]
mod children;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use children::{KillOnDrop, Lines, run_bounded, wait_bounded};
use memo_cache::{Cache, Function};

const CHILD_ENV: &str = "MEMO_CACHE_CLI_TEST_CHURN_DIR";
const FIRST_KEY_ENV: &str = "MEMO_CACHE_CLI_TEST_CHURN_KEYS";
static VALUE: Function = Function::new("verify_churn::value", "v1", "Vec<u8>");
const WRITERS: u64 = 4;
const KEYS: u64 = 24;
/// How long verify runs beside the writers: a bound on the test's length, not an assertion.
const CHURN: Duration = Duration::from_secs(4);

/// The value of key `i` in `round`: always past the 16 KiB inline threshold, so in a blob file,
/// and different every round, so a store replaces the row and removes the old file. It starts
/// with its round, so a value found later can be checked.
fn value_of(i: u64, round: u64) -> Vec<u8> {
    let len = 20_000 + ((i * 7919 + round * 104_729) % 20_000) as usize;
    let seed = (i * 31 + round) as u8;
    let mut value = round.to_le_bytes().to_vec();
    value.extend((0..len).map(|j| seed.wrapping_add((j / 251) as u8)));
    value
}

/// A writer: stores, replaces and removes its keys until the stop file appears, and checks
/// every value it reads back. Any failure is a panic, which the parent sees in its exit status.
#[test]
#[ignore = "child process body, spawned by verify_beside_four_churning_writers_reports_nothing"]
fn churn_child() {
    let dir = std::env::var_os(CHILD_ENV).unwrap_or_else(|| {
        panic!(
            "`churn_child` is the body of a child process (it needs {CHILD_ENV}); \
             verify_beside_four_churning_writers_reports_nothing runs it"
        )
    });
    let dir = Path::new(&dir);
    let first: u64 = std::env::var(FIRST_KEY_ENV).unwrap().parse().unwrap();
    let cache = Cache::open(dir).unwrap();
    let (mut puts, mut removes, mut round) = (0u64, 0u64, 0u64);
    println!("writer started");
    while !dir.join("stop").exists() {
        for i in first..first + KEYS {
            if (i + round).is_multiple_of(3) {
                cache
                    .remove(&VALUE, &(i,))
                    .unwrap_or_else(|e| panic!("remove {i}: {e}"));
                removes += 1;
                continue;
            }
            let expected = value_of(i, round);
            cache
                .put(&VALUE, &(i,), &expected)
                .unwrap_or_else(|e| panic!("put {i}: {e}"));
            puts += 1;
            let found = cache
                .get::<_, Vec<u8>>(&VALUE, &(i,))
                .unwrap_or_else(|e| panic!("get {i}: {e}"));
            // Only this writer writes key i: what it stored is what it reads.
            assert!(
                found.as_ref() == Some(&expected),
                "key {i} round {round}: the value just stored did not read back"
            );
        }
        round += 1;
    }
    println!("writer done: {puts} puts, {removes} removes, {round} rounds");
}

fn spawn_writer(dir: &Path, first_key: u64) -> (KillOnDrop, Lines) {
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "churn_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir)
            .env(FIRST_KEY_ENV, first_key.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut stdout = Lines::new(child.stdout.take().unwrap());
    stdout.wait_for("writer started");
    (child, stdout)
}

/// One run of the real `memo-cache verify` (with `--fix` when `fix`): its problems, as
/// `kind (fixed): detail` lines.
fn verify(dir: &Path, fix: bool) -> Vec<String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_memo-cache"));
    cmd.env_remove("MEMO_CACHE_DIR")
        .arg("--dir")
        .arg(dir)
        .args(["verify", "--json"]);
    if fix {
        cmd.arg("--fix");
    }
    let out = run_bounded(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 0: sound (or everything fixed), 1: problems remain. Anything else is an error.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "memo-cache verify failed beside the writers ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("verify --json printed no JSON ({e}):\n{stdout}\n{stderr}"));
    report["problems"]
        .as_array()
        .expect("a problems array")
        .iter()
        .map(|p| {
            let fixed = if p["fixed"].as_bool() == Some(true) {
                " (fixed)"
            } else {
                ""
            };
            format!("{}{fixed}: {}", p["kind"], p["detail"])
        })
        .collect()
}

#[test]
fn verify_beside_four_churning_writers_reports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    drop(Cache::open(dir.path()).unwrap());
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| spawn_writer(dir.path(), w * KEYS))
        .collect();

    let (mut runs, mut fix_runs, mut runs_reporting) = (0u64, 0u64, 0u64);
    let mut false_reports: Vec<String> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < CHURN {
        let fix = runs % 2 == 1;
        let problems = verify(dir.path(), fix);
        runs += 1;
        fix_runs += u64::from(fix);
        runs_reporting += u64::from(!problems.is_empty());
        false_reports.extend(problems);
    }

    std::fs::write(dir.path().join("stop"), b"").unwrap();
    for (mut child, stdout) in writers {
        let status = wait_bounded(&mut child);
        let stdout = stdout.rest().join("\n");
        assert!(status.success(), "a writer failed:\n{stdout}");
        println!(
            "{}",
            stdout
                .lines()
                .find(|l| l.contains("writer done"))
                .unwrap_or_default()
        );
    }
    println!(
        "{runs} verify runs ({fix_runs} with --fix) beside {WRITERS} writers: {} problems \
         reported, by {runs_reporting} runs",
        false_reports.len()
    );
    assert!(
        false_reports.is_empty(),
        "verify reported {} problems in {runs_reporting} of {runs} runs ({fix_runs} with --fix) \
         beside writers of a sound cache; the first:\n{}",
        false_reports.len(),
        false_reports
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        runs >= 2,
        "verify ran {runs} times; at least one of each kind"
    );

    // With the writers stopped the cache is sound, and every value left is one its writer stored.
    std::fs::remove_file(dir.path().join("stop")).unwrap();
    assert_eq!(verify(dir.path(), false), Vec::<String>::new());
    let cache = Cache::open(dir.path()).unwrap();
    for i in 0..WRITERS * KEYS {
        if let Some(found) = cache.get::<_, Vec<u8>>(&VALUE, &(i,)).unwrap() {
            let round = u64::from_le_bytes(found[..8].try_into().unwrap());
            assert!(
                found == value_of(i, round),
                "key {i}: a value no writer stored"
            );
        }
    }
}
