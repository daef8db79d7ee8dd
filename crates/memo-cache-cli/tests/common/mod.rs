//! Helpers shared by the CLI tests: caches made by the library, the real binary, and output
//! normalised for snapshots.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use assert_cmd::Command;
use memo_cache::{Cache, Function, ManualClock};

/// 2024-01-01T00:00:00Z: the caches below are written at fixed times, so their JSON is stable.
pub const T0_MS: i64 = 1_704_067_200_000;

pub static SQUARE: Function = Function::new("demo::square", "v1", "u64");
pub static BLOB: Function = Function::new("demo::blob", "v1", "Vec<u8>");
pub static REPORT_V1: Function = Function::new("demo::report", "v1", "String");
pub static REPORT_V2: Function = Function::new("demo::report", "v2", "String");
pub static QUOTE: Function = Function::new("demo::quote", "v1", "f64");
pub static POINT: Function = Function::new("demo::point", "v1", "Point");
pub static FLOATS: Function = Function::new("demo::floats", "v1", "Vec<f64>");

/// A value stored as MessagePack (a struct with field names).
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
pub struct Point {
    pub x: i32,
    pub y: i32,
    pub name: String,
}

/// The demo cache: 14 entries of 6 functions, written one second apart from [`T0_MS`].
///
/// - `demo::square` 0..5 → i², inline; `square(1)` read twice (2 hits)
/// - `demo::blob` 0..2 → 20,000 bytes each, in blob files
/// - `demo::report` (1,) and (2,) by v1, which are stale after v2 stored (1,)
/// - `demo::quote` ("A",) expired an hour after it was stored, ("B",) expires in 2224
/// - `demo::point` and `demo::floats`, one each
pub fn demo_cache(dir: &Path) -> Cache {
    let clock = ManualClock::new(T0_MS);
    // Uncompressed: the demo's blobs stay blob files, and the sizes in the snapshots are those
    // of the values as encoded.
    let cache = Cache::builder(dir)
        .clock(clock.clone())
        .compress(0)
        .open()
        .unwrap();
    let tick = || clock.advance(Duration::from_secs(1));
    for i in 0..5u64 {
        cache.put(&SQUARE, &(i,), &(i * i)).unwrap();
        tick();
    }
    for i in 0..2u8 {
        cache.put(&BLOB, &(i,), &vec![i; 20_000]).unwrap();
        tick();
    }
    cache
        .put(&REPORT_V1, &(1,), &"old one".to_string())
        .unwrap();
    cache
        .put(&REPORT_V1, &(2,), &"old two".to_string())
        .unwrap();
    tick();
    cache
        .put(&REPORT_V2, &(1,), &"new one".to_string())
        .unwrap();
    tick();
    cache
        .put_with_ttl(&QUOTE, &("A",), &1.5f64, Some(Duration::from_secs(3600)))
        .unwrap();
    cache
        .put_with_ttl(
            &QUOTE,
            &("B",),
            &2.5f64,
            Some(Duration::from_secs(200 * 365 * 86_400)),
        )
        .unwrap();
    tick();
    cache
        .put(
            &POINT,
            &(0,),
            &Point {
                x: 3,
                y: -4,
                name: "p".into(),
            },
        )
        .unwrap();
    cache.put(&FLOATS, &(0,), &vec![0.5f64, -1.25]).unwrap();
    tick();
    for _ in 0..2 {
        assert_eq!(cache.get::<_, u64>(&SQUARE, &(1u64,)).unwrap(), Some(1));
    }
    cache.flush().unwrap();
    cache
}

/// The real binary, pointed at `dir`, with the environment that could change its output removed.
pub fn memo(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("memo-cache").unwrap();
    cmd.env_remove("MEMO_CACHE_DIR")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE");
    cmd.arg("--dir").arg(dir);
    cmd
}

/// The real binary with no shared tier or cache directory from the environment: the remote
/// tests name their own.
pub fn memo_cache() -> Command {
    let mut cmd = Command::cargo_bin("memo-cache").unwrap();
    cmd.env_remove("MEMO_CACHE_REDIS_URL")
        .env_remove("MEMO_CACHE_REDIS_PREFIX")
        .env_remove("MEMO_CACHE_REMOTE_URL")
        .env_remove("MEMO_CACHE_REMOTE_PREFIX")
        .env_remove("MEMO_CACHE_DIR");
    cmd
}

/// The JSON document `cmd` prints; it must succeed and carry its format version.
pub fn json_of(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["format"], 1,
        "every JSON document carries its format version: {v}"
    );
    v
}

/// Runs `memo-cache --dir DIR ARGS...`, returning (status, stdout, stderr).
pub fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = memo(dir).args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Runs a command that must succeed and returns its stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = run(dir, args);
    assert_eq!(code, 0, "memo-cache {args:?} failed:\n{out}\n{err}");
    out
}

/// Runs a `--json` command that must succeed and parses its stdout.
pub fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push("--json");
    serde_json::from_str(&ok(dir, &args)).unwrap()
}

/// Snapshot settings that replace `dir` with `[DIR]` and times relative to now with `[AGO]`
/// and `[IN]` (the caches are written in 2024, so those are years and keep their width).
pub fn settings(dir: &Path) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    let escaped: String = dir
        .display()
        .to_string()
        .chars()
        .flat_map(|c| {
            if c.is_ascii_punctuation() {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect();
    settings.add_filter(&escaped, "[DIR]");
    settings.add_filter(r"\b\d+(s|min|h|d|y) ago\b", "[AGO]");
    settings.add_filter(r"\bin \d+(s|min|h|d|y)\b", "[IN]");
    settings.set_prepend_module_to_snapshot(false);
    settings
}

/// Every file under `dir`, relative, sorted: to check that a command created or removed nothing.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            out.push(path.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out.sort();
    out
}

/// The blob files of the cache in `dir`.
pub fn blob_files(dir: &Path) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|p| p.starts_with("blobs") && p.components().count() == 3)
        .map(|p| dir.join(p))
        .collect()
}

/// Sets a file's modification time to an hour ago, so sweeps no longer treat it as a write in
/// progress.
pub fn backdate(path: &Path) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}
