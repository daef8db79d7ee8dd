//! The `memo-cache` binary, run for real on caches made by the library.

mod common;

use std::fs;

use common::*;
use memo_cache::{Cache, Function};
use predicates::prelude::*;
use serde_json::Value;

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A fresh demo cache in a temp dir (the handle is dropped, so hits are flushed).
fn demo() -> tempfile::TempDir {
    let dir = tempdir();
    drop(demo_cache(dir.path()));
    dir
}

fn key_hex(func: &Function, args: &(impl serde::Serialize + ?Sized)) -> String {
    func.key(args).unwrap().to_hex()
}

fn entries(dir: &std::path::Path) -> u64 {
    json(dir, &["stats"])["entries"].as_u64().unwrap()
}

// ---- dir --------------------------------------------------------------------------------------

#[test]
fn dir_prints_the_flag_then_the_environment() {
    let dir = tempdir();
    let out = ok(dir.path(), &["dir"]);
    assert_eq!(out.trim_end(), dir.path().display().to_string());

    let mut cmd = assert_cmd::Command::cargo_bin("memo-cache").unwrap();
    cmd.env("MEMO_CACHE_DIR", "/somewhere/else").arg("dir");
    cmd.assert().success().stdout("/somewhere/else\n");

    let mut cmd = assert_cmd::Command::cargo_bin("memo-cache").unwrap();
    cmd.env("MEMO_CACHE_DIR", "/somewhere/else")
        .arg("--dir")
        .arg(dir.path())
        .arg("dir");
    cmd.assert()
        .success()
        .stdout(format!("{}\n", dir.path().display()));

    let v = json(dir.path(), &["dir"]);
    assert_eq!(v["is_cache"], false);
    assert!(
        common::files(dir.path()).is_empty(),
        "dir created something"
    );
}

#[test]
fn an_empty_memo_cache_dir_counts_as_unset() {
    let home = tempdir();
    let default = home.path().join("memo-cache");
    drop(demo_cache(&default));
    let memo_cache = |args: &[&str]| {
        let mut cmd = assert_cmd::Command::cargo_bin("memo-cache").unwrap();
        cmd.env("MEMO_CACHE_DIR", "")
            .env("XDG_CACHE_HOME", home.path())
            .args(args);
        cmd.assert().success()
    };
    memo_cache(&["dir"]).stdout(format!("{}\n", default.display()));
    memo_cache(&["stats"]).stdout(predicate::str::contains("Entries:    14"));

    // An empty --dir is a usage error, without an empty list of accepted values.
    let (code, _, err) = run(std::path::Path::new(""), &["dir"]);
    assert_eq!(
        (code, err.as_str()),
        (
            2,
            "memo-cache: a value is required for '--dir <DIR>' but none was supplied\n"
        )
    );
}

// ---- ls ---------------------------------------------------------------------------------------

#[test]
fn ls_lists_functions_in_an_aligned_table() {
    let dir = demo();
    let out = ok(dir.path(), &["ls"]);
    settings(dir.path()).bind(|| insta::assert_snapshot!("ls", out));
}

#[test]
fn ls_entries_lists_one_row_per_entry() {
    let dir = demo();
    let out = ok(dir.path(), &["ls", "--entries"]);
    settings(dir.path()).bind(|| insta::assert_snapshot!("ls_entries", out));
    assert_eq!(out.lines().count(), 1 + 14);
    assert!(out.contains(&key_hex(&SQUARE, &(3u64,))[..16]));
}

#[test]
fn ls_json_has_the_documented_fields() {
    let dir = demo();
    let doc = json(dir.path(), &["ls"]);
    assert_eq!(doc["format"], 1, "{doc}");
    let rows = doc["functions"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    let report = rows
        .iter()
        .find(|r| r["function"] == "demo::report")
        .unwrap();
    assert_eq!(report["entries"], 3);
    assert_eq!(report["stale_entries"], 2);
    assert!(report["bytes"].as_u64().unwrap() > 0);
    assert!(
        report["last_used"]
            .as_str()
            .unwrap()
            .starts_with("2024-01-01T00:00:")
    );
    settings(dir.path())
        .bind(|| insta::assert_snapshot!("ls_json", serde_json::to_string_pretty(rows).unwrap()));
}

#[test]
fn ls_entries_json_has_the_documented_fields() {
    let dir = demo();
    let doc = json(dir.path(), &["ls", "--entries", "--func", "demo::quote"]);
    assert_eq!(doc["format"], 1, "{doc}");
    let rows = doc["entries"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for field in [
        "key",
        "function",
        "bytes",
        "created",
        "last_used",
        "hits",
        "expires",
    ] {
        assert!(
            rows.iter().all(|r| r.get(field).is_some()),
            "no {field} in {rows:?}"
        );
    }
    let a = rows
        .iter()
        .find(|r| r["key"] == key_hex(&QUOTE, &("A",)))
        .unwrap();
    assert_eq!(a["expired"], true);
    assert_eq!(a["expires"], "2024-01-01T01:00:09.000Z");
    let square = json(dir.path(), &["ls", "--entries", "--func", "demo::square"]);
    let one = square["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == key_hex(&SQUARE, &(1u64,)))
        .unwrap();
    assert_eq!(one["hits"], 2);
}

#[test]
fn ls_sorts_by_size_last_use_and_entries() {
    let dir = demo();
    let names = |sort: &str| -> Vec<String> {
        json(dir.path(), &["ls", "--sort", sort])["functions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["function"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names("size")[0], "demo::blob");
    assert_eq!(names("entries")[0], "demo::square");
    assert_eq!(
        names("last-used")[0],
        "demo::square",
        "square(1) was read last"
    );
    assert_eq!(names("name")[0], "demo::blob");
    let sizes: Vec<u64> = json(dir.path(), &["ls", "--entries", "--sort", "size"])["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["bytes"].as_u64().unwrap())
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
}

#[test]
fn ls_func_narrows_and_names_a_missing_function() {
    let dir = demo();
    let rows = json(dir.path(), &["ls", "--func", "demo::blob"]);
    assert_eq!(rows["functions"].as_array().unwrap().len(), 1);
    let (code, out, err) = run(dir.path(), &["ls", "--func", "square"]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("did you mean demo::square?"), "{err}");
}

#[test]
fn ls_of_an_empty_cache_says_so() {
    let dir = tempdir();
    drop(Cache::open(dir.path()).unwrap());
    assert!(ok(dir.path(), &["ls"]).starts_with("No cached functions in"));
    assert_eq!(
        json(dir.path(), &["ls"]),
        serde_json::json!({"format": 1, "functions": []})
    );
    assert_eq!(
        json(dir.path(), &["ls", "--entries"]),
        serde_json::json!({"format": 1, "entries": []})
    );
}

// ---- stats ------------------------------------------------------------------------------------

#[test]
fn stats_json_has_the_documented_totals() {
    let dir = demo();
    let s = json(dir.path(), &["stats"]);
    assert_eq!(s["entries"], 14);
    assert_eq!(s["functions"], 6);
    assert_eq!(s["stale"], 2);
    assert_eq!(s["expired"], 1);
    assert!(s["bytes"].as_u64().unwrap() > 40_000);
    assert!(s["disk_bytes"].as_u64().unwrap() > s["blob_bytes"].as_u64().unwrap());
    let text = ok(dir.path(), &["stats"]);
    assert!(text.contains("Entries:    14"), "{text}");
    assert!(text.contains("39.1 KiB in blob files"), "{text}");
    // One expired entry is "1 entry", two stale ones "2 entries".
    assert!(text.contains("1 entry ("), "{text}");
    assert!(!text.contains("1 entries"), "{text}");
    assert!(text.contains("2 entries ("), "{text}");
}

// ---- show -------------------------------------------------------------------------------------

#[test]
fn show_prints_metadata_by_unique_prefix() {
    let dir = demo();
    let key = key_hex(&REPORT_V1, &(2,));
    let out = ok(dir.path(), &["show", &key[..10]]);
    settings(dir.path()).bind(|| insta::assert_snapshot!("show", out));
    let v = json(dir.path(), &["show", &key]);
    assert_eq!(v["function"], "demo::report");
    assert_eq!(v["stale"], true);
}

#[test]
fn show_value_decodes_each_format() {
    let dir = demo();
    let value = |func: &Function, args: &dyn erased::Args| -> Value {
        let key = args.key(func);
        serde_json::from_str(&ok(dir.path(), &["show", &key, "--value"])).unwrap()
    };
    assert_eq!(
        value(&POINT, &(0,)),
        serde_json::json!({"x": 3, "y": -4, "name": "p"})
    );
    assert_eq!(value(&FLOATS, &(0,)), serde_json::json!([0.5, -1.25]));
    assert_eq!(value(&SQUARE, &(4u64,)), serde_json::json!(16));
    assert_eq!(value(&REPORT_V2, &(1,)), serde_json::json!("new one"));
    let blob = value(&BLOB, &(1u8,));
    assert_eq!(
        blob["base64"].as_str().unwrap().len(),
        20_000usize.div_ceil(3) * 4
    );

    let with_meta = json(dir.path(), &["show", &key_hex(&POINT, &(0,)), "--value"]);
    assert_eq!(with_meta["format"], 1);
    assert_eq!(with_meta["value_format"], "msgpack");
    assert_eq!(with_meta["value"]["name"], "p");
}

#[test]
fn show_value_decodes_a_compressed_value_and_verify_checks_its_stored_bytes() {
    let dir = tempdir();
    let cache = Cache::builder(dir.path()).compress(3).open().unwrap();
    let text = "2024-05-17 INFO request path=/api/items status=200\n".repeat(2000);
    cache.put(&REPORT_V2, &(9,), &text).unwrap();
    let key = REPORT_V2.key(&(9,)).unwrap();
    let entry = cache.entry(&key).unwrap().unwrap();
    assert!(
        entry.compressed && entry.bytes < text.len() as u64 / 10,
        "{entry:?}"
    );
    drop(cache);

    let key = key.to_hex();
    let value: Value = serde_json::from_str(&ok(dir.path(), &["show", &key, "--value"])).unwrap();
    assert_eq!(value, serde_json::json!(text));
    let with_meta = json(dir.path(), &["show", &key, "--value"]);
    assert_eq!(with_meta["value_format"], "msgpack");
    assert_eq!(with_meta["compressed"], true);
    assert_eq!(with_meta["value"], serde_json::json!(text));
    assert_eq!(
        json(dir.path(), &["verify"])["problems"],
        serde_json::json!([])
    );
}

/// Keys from differently typed arguments, in one closure.
mod erased {
    pub trait Args {
        fn key(&self, func: &memo_cache::Function) -> String;
    }
    impl<T: serde::Serialize> Args for T {
        fn key(&self, func: &memo_cache::Function) -> String {
            func.key(self).unwrap().to_hex()
        }
    }
}

#[test]
fn show_refuses_ambiguous_and_unknown_keys() {
    let dir = tempdir();
    let cache = Cache::open(dir.path()).unwrap();
    // Enough entries that some share a first hex digit.
    for i in 0..40u32 {
        cache.put(&SQUARE, &(i,), &i).unwrap();
    }
    drop(cache);
    let (code, _, err) = run(dir.path(), &["show", "a"]);
    assert_eq!(code, 1);
    assert!(err.contains("ambiguous"), "{err}");
    assert_eq!(err.lines().count(), 1);
    let (code, _, err) = run(dir.path(), &["show", "nothex"]);
    assert_eq!(code, 2, "a bad value");
    assert!(err.contains("not a cache key"), "{err}");
    let (code, _, err) = run(dir.path(), &["show", &"0".repeat(64)]);
    assert_eq!(code, 1);
    assert!(err.contains("no cache entry matches"), "{err}");
}

// ---- the ttl in force -------------------------------------------------------------------------

#[test]
fn expired_counts_follow_a_ttl_added_later_once_a_call_has_used_it() {
    use std::time::{Duration, SystemTime};
    let dir = tempdir();
    let plain = Function::new("demo::stamp", "v1", "u64");
    let short = Function::new("demo::stamp", "v1", "u64").with_ttl(Duration::from_secs(1));
    // Stored ten seconds ago by a build without a ttl.
    let ten_ago = memo_cache::ManualClock::new(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            - 10_000,
    );
    let old = Cache::builder(dir.path()).clock(ten_ago).open().unwrap();
    for x in 1..=2u64 {
        old.put(&plain, &(x,), &(x * 10)).unwrap();
    }
    drop(old);
    assert_eq!(json(dir.path(), &["stats"])["expired"], 0);
    // A build with `ttl = "1s"` reads one of them: a miss. Its handle closes.
    let later = Cache::open(dir.path()).unwrap();
    assert_eq!(later.get::<_, u64>(&short, &(1u64,)).unwrap(), None);
    drop(later);
    // The CLI now counts both expired, as a call finds them.
    let s = json(dir.path(), &["stats"]);
    assert_eq!(
        (s["entries"].as_u64(), s["expired"].as_u64()),
        (Some(2), Some(2))
    );
    let rows = json(dir.path(), &["ls", "--entries", "--func", "demo::stamp"]);
    assert!(
        rows["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["expired"] == true),
        "{rows}"
    );
    let cache = Cache::open(dir.path()).unwrap();
    assert!(!cache.contains(&short, &(2u64,)).unwrap());
    drop(cache);
    let out = ok(dir.path(), &["prune", "--expired"]);
    assert!(out.starts_with("Removed 2 entries ("), "{out}");
}

// ---- prune ------------------------------------------------------------------------------------

#[test]
fn prune_without_criteria_removes_expired_and_stale_entries() {
    let dir = demo();
    let out = ok(dir.path(), &["prune"]);
    assert!(out.starts_with("Removed 3 entries ("), "{out}");
    let s = json(dir.path(), &["stats"]);
    assert_eq!(
        (
            s["entries"].as_u64(),
            s["stale"].as_u64(),
            s["expired"].as_u64()
        ),
        (Some(11), Some(0), Some(0))
    );
}

#[test]
fn prune_max_entries_removes_the_least_recently_used() {
    let dir = demo();
    let out = ok(dir.path(), &["prune", "--max-entries", "4"]);
    assert!(out.starts_with("Removed 10 entries"), "{out}");
    let left: Vec<String> = json(dir.path(), &["ls", "--entries"])["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_owned())
        .collect();
    // Stale and expired go first, then by last use: the newest four remain.
    let mut expected = vec![
        key_hex(&SQUARE, &(1u64,)),
        key_hex(&POINT, &(0,)),
        key_hex(&FLOATS, &(0,)),
        key_hex(&QUOTE, &("B",)),
    ];
    let mut left = left;
    left.sort();
    expected.sort();
    assert_eq!(left, expected);
}

#[test]
fn prune_max_size_and_its_message() {
    let dir = demo();
    let before = json(dir.path(), &["stats"])["bytes"].as_u64().unwrap();
    let out = ok(dir.path(), &["prune", "--max-size", "1KB"]);
    assert!(out.starts_with("Removed "), "{out}");
    assert!(
        out.contains(" entries (") && out.trim_end().ends_with(')'),
        "{out}"
    );
    let after = json(dir.path(), &["stats"])["bytes"].as_u64().unwrap();
    assert!(after <= 1000 && after < before);
    let blobs = json(dir.path(), &["ls", "--func", "demo::blob"]);
    assert_eq!(blobs["functions"][0]["entries"], 0, "{blobs}");
    assert!(blob_files(dir.path()).is_empty(), "blob files left behind");
}

#[test]
fn prune_older_than_stale_expired_and_func() {
    let dir = demo();
    // Everything in the demo cache was last used in 2024.
    let removal = json(
        dir.path(),
        &["prune", "--older-than", "7d", "--func", "demo::square"],
    );
    assert_eq!(removal["entries"], 5);
    assert_eq!(entries(dir.path()), 9);
    let removal = json(dir.path(), &["prune", "--stale"]);
    assert_eq!(removal["entries"], 2);
    let removal = json(dir.path(), &["prune", "--expired"]);
    assert_eq!(removal["entries"], 1);
    assert_eq!(entries(dir.path()), 6);
    let fresh = tempdir();
    let cache = Cache::open(fresh.path()).unwrap();
    cache.put(&SQUARE, &(1u64,), &1u64).unwrap();
    drop(cache);
    assert_eq!(
        json(fresh.path(), &["prune", "--older-than", "7d"])["entries"],
        0
    );
}

#[test]
fn prune_dry_run_changes_nothing() {
    let dir = demo();
    let before = files(dir.path());
    let out = ok(dir.path(), &["prune", "--max-entries", "0", "--dry-run"]);
    assert!(out.starts_with("Would remove 14 entries ("), "{out}");
    assert_eq!(entries(dir.path()), 14);
    assert_eq!(blob_files(dir.path()).len(), 2);
    assert_eq!(files(dir.path()), before);
}

#[test]
fn prune_sweeps_orphan_and_temp_files() {
    let dir = demo();
    let orphan = dir
        .path()
        .join("blobs")
        .join("ab")
        .join(format!("{}-0123456789abcdef", "ab".repeat(32)));
    fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    fs::write(&orphan, b"nobody's").unwrap();
    let temp = dir.path().join("tmp").join("blob-left-behind");
    fs::write(&temp, b"half a value").unwrap();
    let young = dir.path().join("tmp").join("blob-in-progress");
    fs::write(&young, b"being written").unwrap();
    backdate(&orphan);
    backdate(&temp);
    let out = ok(dir.path(), &["prune", "--func", "demo::point"]);
    assert_eq!(
        out.trim_end(),
        "Removed 0 entries (0 B) and 2 stray files (20 B)"
    );
    assert!(!orphan.exists() && !temp.exists());
    assert!(
        young.exists(),
        "a file younger than the grace period was swept"
    );
}

#[test]
fn prune_of_an_unknown_function_notes_it() {
    let dir = demo();
    let (code, out, err) = run(
        dir.path(),
        &["prune", "--func", "demo::nothing", "--max-entries", "0"],
    );
    assert_eq!(code, 0);
    assert!(out.starts_with("Removed 0 entries"));
    assert!(
        err.contains("no function is named \"demo::nothing\""),
        "{err}"
    );
    assert_eq!(entries(dir.path()), 14);
}

// ---- clear ------------------------------------------------------------------------------------

#[test]
fn clear_refuses_without_a_terminal_or_yes() {
    let dir = demo();
    let (code, out, err) = run(dir.path(), &["clear"]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1);
    assert!(
        err.contains("--yes") && err.contains("Nothing was removed"),
        "{err}"
    );
    assert_eq!(entries(dir.path()), 14);
}

#[test]
fn clear_of_no_entries_still_refuses_and_keeps_stray_files() {
    let dir = tempdir();
    drop(Cache::open(dir.path()).unwrap());
    let stray = dir.path().join("tmp").join("blob-left-behind");
    fs::write(&stray, b"half a value").unwrap();
    backdate(&stray);
    let before = files(dir.path());
    let (code, out, err) = run(dir.path(), &["clear"]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(
        err,
        "memo-cache: refusing to clear without confirmation: neither stdin nor stderr is a \
         terminal; pass --yes to clear anyway. Nothing was removed\n"
    );
    assert_eq!(files(dir.path()), before);
    let out = ok(dir.path(), &["clear", "--yes"]);
    assert_eq!(
        out.trim_end(),
        "Removed 0 entries (0 B) and 1 stray file (12 B)"
    );
    assert!(!stray.exists());
}

#[test]
fn clear_yes_removes_everything() {
    let dir = demo();
    let out = ok(dir.path(), &["clear", "--yes"]);
    assert!(out.starts_with("Removed 14 entries ("), "{out}");
    assert_eq!(entries(dir.path()), 0);
    assert!(blob_files(dir.path()).is_empty());
}

#[test]
fn clear_func_removes_one_function_only() {
    let dir = demo();
    let removal = json(dir.path(), &["clear", "--func", "demo::report", "--yes"]);
    assert_eq!(removal["entries"], 3);
    assert_eq!(entries(dir.path()), 11);
    let (code, _, err) = run(dir.path(), &["clear", "--func", "report", "--yes"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("did you mean demo::report?") && err.contains("nothing was removed"),
        "{err}"
    );
    assert_eq!(entries(dir.path()), 11);
}

/// The first-hit files in `dir` (in the shards of `hints/`).
fn hint_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    files(dir)
        .into_iter()
        .filter(|p| p.starts_with(memo_cache::HINTS_DIR) && p.components().count() == 3)
        .collect()
}

/// First-hit files are the cache's own bookkeeping: a prune or clear of a healthy cache that
/// has them reports no stray files, and removing a few entries leaves the others' files.
#[test]
fn first_hit_files_are_never_stray_files() {
    let dir = demo();
    let before = hint_files(dir.path()).len();
    assert_eq!(before, 14, "one first-hit file per entry of the demo cache");
    let dry = ok(dir.path(), &["prune", "--max-entries", "0", "--dry-run"]);
    assert_eq!(dry.lines().count(), 1, "{dry}");
    assert!(!dry.contains("stray"), "{dry}");
    let removal = json(dir.path(), &["clear", "--func", "demo::report", "--yes"]);
    assert_eq!(
        (&removal["entries"], &removal["files"]),
        (&3.into(), &0.into())
    );
    let out = ok(dir.path(), &["prune", "--max-entries", "10"]);
    assert!(out.starts_with("Removed 1 entry ("), "{out}");
    assert!(!out.contains("stray"), "{out}");
    // Each removal took its entries' files; the others stay (a few may share a bucket of the
    // removal log with a removed key, and go as outdated, never counted as stray).
    let left = hint_files(dir.path()).len();
    assert!(
        (7..=10).contains(&left),
        "{left} of {before} first-hit files left"
    );
    assert!(ok(dir.path(), &["verify"]).contains("sound"));
    let out = ok(dir.path(), &["clear", "--yes"]);
    assert!(
        out.starts_with("Removed 10 entries (") && !out.contains("stray"),
        "{out}"
    );
    assert!(hint_files(dir.path()).is_empty());
}

// ---- verify -----------------------------------------------------------------------------------

#[test]
fn verify_a_sound_cache() {
    let dir = demo();
    let out = ok(dir.path(), &["verify"]);
    assert_eq!(out, "Checked 14 entries: the cache is sound.\n");
    let v = json(dir.path(), &["verify"]);
    assert_eq!(
        (v["sound"].as_bool(), v["entries_checked"].as_u64()),
        (Some(true), Some(14))
    );
}

#[test]
fn verify_lists_each_problem_then_fix_repairs_them() {
    let dir = demo();
    let blobs = blob_files(dir.path());
    assert_eq!(blobs.len(), 2);
    // A flipped byte in one blob, the other blob deleted, and an orphan file.
    let mut bytes = fs::read(&blobs[0]).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&blobs[0], bytes).unwrap();
    fs::remove_file(&blobs[1]).unwrap();
    let orphan = dir
        .path()
        .join("blobs")
        .join("cd")
        .join(format!("{}-0000000000000000", "cd".repeat(32)));
    fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    fs::write(&orphan, b"x").unwrap();
    backdate(&orphan);

    let (code, out, _) = run(dir.path(), &["verify"]);
    assert_eq!(code, 1, "{out}");
    settings(dir.path()).bind(|| {
        let mut lines: Vec<&str> = out.lines().collect();
        lines.sort();
        insta::assert_snapshot!("verify_problems", lines.join("\n"));
    });
    let (code, out, _) = run(dir.path(), &["verify", "--json"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    let mut kinds: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["hash-mismatch", "missing-blob", "orphan-file"]);
    assert_eq!(
        entries(dir.path()),
        14,
        "verify without --fix changed the cache"
    );

    let (code, out, _) = run(dir.path(), &["verify", "--fix"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("fixed 3 problems; the cache is sound."),
        "{out}"
    );
    assert_eq!(out.matches("(fixed)").count(), 3);
    assert_eq!(
        ok(dir.path(), &["verify"]),
        "Checked 12 entries: the cache is sound.\n"
    );
    assert!(!orphan.exists());
}

#[test]
fn verify_leaves_young_stray_files_alone_unless_told() {
    let dir = demo();
    let temp = dir.path().join("tmp").join("blob-just-now");
    fs::write(&temp, b"in progress").unwrap();
    ok(dir.path(), &["verify"]);
    let (code, out, _) = run(dir.path(), &["verify", "--grace", "0s"]);
    assert_eq!(code, 1);
    assert!(out.contains("stale-temp-file: "), "{out}");
}

// ---- not a cache, bad values, colour, completions ---------------------------------------------

#[test]
fn a_missing_directory_gets_one_line_and_is_not_created() {
    let parent = tempdir();
    let missing = parent.path().join("nope");
    for args in [
        &["ls"][..],
        &["ls", "--entries"],
        &["stats"],
        &["show", "abcd"],
        &["verify"],
        &["verify", "--fix"],
    ] {
        let (code, out, err) = run(&missing, args);
        assert_eq!(code, 1, "{args:?}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("does not exist"), "{args:?}: {err}");
        assert!(!missing.exists(), "{args:?} created the directory");
    }
    // Removing from a cache that is not there removes nothing and succeeds, so a cleanup
    // script can run twice.
    for args in [
        &["prune", "--max-entries", "1"][..],
        &["clear", "--yes"],
        &["clear", "--func", "f", "--yes"],
    ] {
        let (code, out, err) = run(&missing, args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains("Removed 0 entries"), "{args:?}: {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("does not exist"), "{args:?}: {err}");
        assert!(!missing.exists(), "{args:?} created the directory");
    }
    let removal = json(&missing, &["clear", "--yes"]);
    assert_eq!(removal["entries"], 0);
}

#[test]
fn a_directory_that_is_not_a_cache_gets_one_line_and_is_left_alone() {
    let dir = tempdir();
    fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    for args in [
        &["ls"][..],
        &["stats"],
        &["verify"],
        &["prune"],
        &["clear", "--yes"],
        &["show", "ab"],
    ] {
        let (code, out, err) = run(dir.path(), args);
        assert_eq!(code, 1, "{args:?}");
        assert!(out.is_empty());
        assert_eq!(
            err,
            format!(
                "memo-cache: {} is not a memo-cache directory (no index.sqlite3 in it)\n",
                dir.path().display()
            )
        );
    }
    assert_eq!(files(dir.path()), [std::path::PathBuf::from("notes.txt")]);
}

#[test]
fn a_damaged_index_is_named_with_its_cause_said_once() {
    let dir = demo();
    let index = dir.path().join("index.sqlite3");
    // The first three pages of the index only: the others' tables are gone.
    fs::File::options()
        .write(true)
        .open(&index)
        .unwrap()
        .set_len(3 * 4096)
        .unwrap();
    for args in [&["ls"][..], &["stats"], &["verify"], &["prune"]] {
        let (code, out, err) = run(dir.path(), args);
        assert_eq!(code, 1, "{args:?}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(
            err,
            format!(
                "memo-cache: cache index {} is damaged (database disk image is malformed); \
                 `memo-cache verify` says how badly, and moving the index aside starts the \
                 cache afresh\n",
                index.display()
            ),
            "{args:?}"
        );
    }
}

#[test]
fn bad_values_exit_2_with_one_line_and_change_nothing() {
    let dir = demo();
    let before = files(dir.path());
    for (args, value, form) in [
        (&["prune", "--max-size", "10XB"][..], "10XB", "500MB"),
        (&["prune", "--older-than", "soon"], "soon", "7d"),
        (&["prune", "--max-entries", "many"], "many", "10000"),
        (&["verify", "--grace", "later"], "later", "12h"),
        (&["ls", "--sort", "colour"], "colour", "size"),
    ] {
        let (code, out, err) = run(dir.path(), args);
        assert_eq!(code, 2, "{args:?}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(value) && err.contains(form), "{args:?}: {err}");
    }
    assert_eq!(entries(dir.path()), 14);
    assert_eq!(files(dir.path()), before);
}

#[test]
fn reading_commands_write_nothing() {
    let dir = demo();
    let before = contents(dir.path());
    let square = key_hex(&SQUARE, &(1u64,));
    let blob = key_hex(&BLOB, &(1u8,));
    for args in [
        &["dir"][..],
        &["ls"],
        &["ls", "--entries"],
        &["stats"],
        &["show", &square],
        &["show", &square, "--value"],
        &["show", &blob, "--value", "--json"],
        &["verify"],
    ] {
        ok(dir.path(), args);
        assert!(contents(dir.path()) == before, "{args:?} changed the cache");
    }
}

#[test]
fn show_value_leaves_the_wal_files_of_a_cache_in_use_alone() {
    let dir = tempdir();
    let cache = Cache::open(dir.path()).unwrap();
    cache.put(&SQUARE, &(2u64,), &4u64).unwrap();
    let key = key_hex(&SQUARE, &(2u64,));
    assert_eq!(ok(dir.path(), &["show", &key, "--value"]), "4\n");
    let names = files(dir.path());
    for side in ["index.sqlite3-wal", "index.sqlite3-shm"] {
        assert!(names.contains(&side.into()), "{side} gone: {names:?}");
    }
    cache.put(&SQUARE, &(3u64,), &9u64).unwrap();
    assert_eq!(cache.get::<_, u64>(&SQUARE, &(3u64,)).unwrap(), Some(9));
}

#[test]
fn an_empty_index_file_is_refused_and_left_empty() {
    let dir = tempdir();
    fs::write(dir.path().join("index.sqlite3"), b"").unwrap();
    let before = contents(dir.path());
    for args in [
        &["ls"][..],
        &["stats"],
        &["show", "ab"],
        &["show", "ab", "--value"],
        &["verify"],
        &["verify", "--fix"],
        &["prune"],
        &["clear", "--yes"],
    ] {
        let (code, out, err) = run(dir.path(), args);
        assert_eq!(code, 1, "{args:?}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(
            err,
            format!(
                "memo-cache: cache index {}: schema version 0 (an empty index, or one whose creation \
                 did not finish) is older than this memo-cache's {}; left as it is, as this open only \
                 uses an existing cache. Opening the cache with Cache::open, as a program using it \
                 does, sets it up\n",
                dir.path().join("index.sqlite3").display(),
                memo_cache::SCHEMA_VERSION,
            ),
            "{args:?}"
        );
        assert!(
            contents(dir.path()) == before,
            "{args:?} changed the directory"
        );
    }
    // What the message says: a program's open sets it up.
    drop(Cache::open(dir.path()).unwrap());
    assert_eq!(entries(dir.path()), 0);
}

/// Every file under `dir` with its bytes (`None` for a directory): to check that a command left
/// the directory byte for byte as it was.
fn contents(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Option<Vec<u8>>)> {
    files(dir)
        .into_iter()
        .map(|p| {
            let bytes = fs::read(dir.join(&p)).ok();
            (p, bytes)
        })
        .collect()
}

#[test]
fn colour_follows_no_color_and_clicolor_force() {
    let dir = demo();
    let run_with = |vars: &[(&str, &str)], extra: &[&str]| {
        let mut cmd = memo(dir.path());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        String::from_utf8(cmd.arg("ls").args(extra).output().unwrap().stdout).unwrap()
    };
    assert!(!run_with(&[], &[]).contains('\x1b'), "colour on a pipe");
    assert!(run_with(&[("CLICOLOR_FORCE", "1")], &[]).contains('\x1b'));
    assert!(!run_with(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")], &[]).contains('\x1b'));
    assert!(!run_with(&[("NO_COLOR", "1")], &["--color", "auto"]).contains('\x1b'));
    assert!(run_with(&[("NO_COLOR", "1")], &["--color", "always"]).contains('\x1b'));
    assert!(!run_with(&[("CLICOLOR_FORCE", "1")], &["--json"]).contains('\x1b'));
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let mut cmd = assert_cmd::Command::cargo_bin("memo-cache").unwrap();
        cmd.args(["completions", shell])
            .assert()
            .success()
            .stdout(predicate::str::contains("prune"));
    }
}

#[test]
fn a_closed_stdout_ends_any_command_quietly() {
    let dir = demo();
    let point = key_hex(&POINT, &(0,));
    for args in [
        &["show", &point, "--value"][..],
        &["show", &point, "--value", "--json"],
        &["show", &point],
        &["ls"],
        &["ls", "--json"],
        &["ls", "--entries", "--json"],
        &["stats", "--json"],
        &["verify", "--json"],
        &["prune", "--dry-run", "--json"],
        &["dir", "--json"],
        &["completions", "bash"],
    ] {
        let (code, err) = run_into_closed_pipe(dir.path(), args);
        assert_eq!((code, err.as_str()), (0, ""), "{args:?}");
    }
}

/// Runs `memo-cache --dir DIR ARGS...` with stdout a pipe whose read end is closed before the
/// command starts (`| head -c0`, deterministically), returning (status, stderr).
fn run_into_closed_pipe(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_memo-cache"))
        .env_remove("MEMO_CACHE_DIR")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn a_bad_redis_url_exits_2() {
    let dir = demo();
    let message = "memo-cache: bad shared tier URL localhost:6379: expected redis://host:port, \
                   rediss://host:port, memcache://host:port or postgres://user@host:port/db\n";
    let url = ["--url", "localhost:6379"];
    for (env, args) in [
        (None, &["remote", url[0], url[1], "stats"][..]),
        (Some(url[1]), &["remote", "clear", "--yes"]),
        (Some(url[1]), &["stats"]),
    ] {
        let mut cmd = memo(dir.path());
        cmd.env_remove("MEMO_CACHE_REDIS_URL").args(args);
        if let Some(value) = env {
            cmd.env("MEMO_CACHE_REDIS_URL", value);
        }
        cmd.assert().code(2).stdout("").stderr(message);
    }
}

#[test]
fn help_documents_exit_codes_and_the_prune_default() {
    let mut cmd = assert_cmd::Command::cargo_bin("memo-cache").unwrap();
    let help = cmd
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let help = String::from_utf8(help).unwrap();
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains(
            "Exit status: 0 success; 1 failure (not a cache, I/O error, or verify found problems \
             that remain, or no Redis tier configured for remote); 2 refused, having changed \
             nothing: a bad option or value (a key that is not hex, a Redis URL), or a clear \
             without --yes off a terminal or not answered yes."
        ),
        "{help}"
    );
    let mut cmd = assert_cmd::Command::cargo_bin("memo-cache").unwrap();
    cmd.args(["prune", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "With no criterion, prune removes expired and stale entries only",
        ));
}

#[test]
fn ls_leaves_out_functions_with_no_entries_left() {
    let dir = demo();
    ok(dir.path(), &["clear", "--func", "demo::point", "--yes"]);
    let listed = ok(dir.path(), &["ls"]);
    assert!(!listed.contains("demo::point"), "{listed}");
    assert!(listed.contains("demo::square"), "{listed}");
    let rows = json(dir.path(), &["ls"]);
    let names: Vec<&str> = rows["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["function"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"demo::point"), "{names:?}");
    assert_eq!(names.len(), 5, "{names:?}");
    // Asked for by name, it is shown, with no entries.
    let point = json(dir.path(), &["ls", "--func", "demo::point"]);
    assert_eq!(point["functions"][0]["entries"], 0, "{point}");
}
