//! First-hit files (`crates/memo-cache/src/hints.rs`): a process's first lookups are answered
//! from `hints/` without opening the index, and never with a value that was removed or
//! replaced, whoever removed it and however it ended. Every step is a separate process
//! (`src/bin/hint_child.rs`), so every lookup is a fresh process's.

use std::path::Path;
use std::process::{Command, Stdio};

use memo_cache::{Cache, Function};
use memo_cache_e2e::functions::{LARGE, SMALL};
use memo_cache_e2e::{Lines, files_under, flip_byte, run_bounded, run_ok, wait_bounded};

const CHILD: &str = env!("CARGO_BIN_EXE_hint_child");

fn child(dir: &Path, words: &[&str]) -> Command {
    let mut cmd = Command::new(CHILD);
    cmd.arg(dir).args(words);
    cmd
}

/// Runs one step in a process of its own.
fn step(dir: &Path, words: &[&str]) -> String {
    run_ok(&mut child(dir, words))
}

/// A fresh process's lookup: the value (or "none") and whether it opened the index.
fn get(dir: &Path, words: &[&str]) -> (String, bool) {
    let out = step(dir, words);
    let field = |name: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {out:?}"))
            .to_owned()
    };
    (field("value="), field("index=") == "opened")
}

/// The first-hit files in `dir` (in the shards of `hints/`; the removal log beside them is not
/// one).
fn hint_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let hints = dir.join(memo_cache::HINTS_DIR);
    files_under(&hints)
        .into_iter()
        .filter(|p| p.parent() != Some(hints.as_path()))
        .collect()
}

/// The first-hit files in `dir`, to put back after a removal deleted them: as a handle that read
/// its rows before the removal and wrote its files after it would.
fn saved_hints(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let saved: Vec<_> = hint_files(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    assert!(!saved.is_empty(), "no first-hit files to save");
    saved
}

fn put_back(saved: &[(std::path::PathBuf, Vec<u8>)]) {
    for (path, bytes) in saved {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

#[test]
fn a_stored_value_is_a_first_hit_in_the_next_process() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    step(dir, &["put", "1", "one"]);
    step(dir, &["put-big", "2", "two"]);
    assert_eq!(
        hint_files(dir).len(),
        2,
        "one first-hit file per stored key"
    );
    for _ in 0..2 {
        assert_eq!(get(dir, &["get", "1"]), ("one".into(), false));
        assert_eq!(get(dir, &["get-big", "2"]), ("two".into(), false));
    }
    // A key without a first-hit file is looked up in the index.
    assert_eq!(get(dir, &["get", "3"]), ("none".into(), true));
}

#[test]
fn a_value_found_in_the_index_gets_a_first_hit_file() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    step(dir, &["put", "1", "one"]);
    for path in hint_files(dir) {
        std::fs::remove_file(path).unwrap();
    }
    assert_eq!(get(dir, &["get", "1"]), ("one".into(), true));
    assert_eq!(get(dir, &["get", "1"]), ("one".into(), false));
}

/// Every way of removing or replacing an entry, each in its own process, ends its first hits:
/// the next process gets what the index holds.
#[test]
fn a_removal_or_replacement_anywhere_ends_first_hits() {
    let cases: &[(&[&str], &str)] = &[
        (&["remove", "1"], "none"),
        (&["put", "1", "uno"], "uno"),
        (&["clear"], "none"),
        (&["clear-function"], "none"),
        (&["prune-older"], "none"),
    ];
    for &(change, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        step(dir, &["put", "1", "one"]);
        step(dir, &["put", "2", "two"]);
        assert_eq!(get(dir, &["get", "1"]), ("one".into(), false), "{change:?}");
        let saved = saved_hints(dir);
        step(dir, change);
        // The files are back but the epoch has moved: they are not believed.
        put_back(&saved);
        let (value, _) = get(dir, &["get", "1"]);
        assert_eq!(value, expected, "after {change:?}");
        // Key 2 was not touched by a removal of 1 alone; it is still right either way.
        let untouched = if change.len() == 1 { "none" } else { "two" };
        assert_eq!(get(dir, &["get", "2"]).0, untouched, "after {change:?}");
    }
}

/// The first `n` from `from` on whose key under `func` is in another bucket of the removal log
/// (another first byte) than `other`'s: a removal of `other` does not touch its first-hit file.
fn apart_from(other: memo_cache::Key, func: &Function, from: u64) -> u64 {
    (from..)
        .find(|n| func.key(&(*n,)).unwrap().0[0] != other.0[0])
        .unwrap()
}

/// A removal voids the first-hit files of the keys it touched, not every file: after one
/// function's entry is removed (alone, or with a clear of that function), another function's
/// entry is still a first hit in a fresh process, and a file put back as a handle that read its
/// row before the removal would have written it is still refused.
#[test]
fn a_removal_of_one_function_leaves_another_functions_first_hits() {
    for change in [&["remove", "1"][..], &["clear-function"]] {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let big = apart_from(SMALL.key(&(1u64,)).unwrap(), &LARGE, 2).to_string();
        step(dir, &["put", "1", "one"]);
        step(dir, &["put-big", &big, "two"]);
        assert_eq!(get(dir, &["get", "1"]), ("one".into(), false));
        let saved = saved_hints(dir);
        step(dir, change);
        put_back(&saved);
        assert_eq!(
            get(dir, &["get-big", &big]),
            ("two".into(), false),
            "another function's first hit after {change:?}"
        );
        assert_eq!(get(dir, &["get", "1"]).0, "none", "after {change:?}");
        // The lookup of 1 opened the index and closed it again: still a first hit.
        assert_eq!(get(dir, &["get-big", &big]), ("two".into(), false));
    }
}

/// The removal's commit is still in the write-ahead log of a process that keeps the cache
/// open: the index file's header does not show it yet, so first-hit files must not be read.
#[test]
fn a_removal_not_yet_checkpointed_is_seen() {
    for change in [&["remove", "1"][..], &["put", "1", "uno"]] {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        step(dir, &["put", "1", "one"]);
        assert_eq!(get(dir, &["get", "1"]), ("one".into(), false));
        let saved = saved_hints(dir);
        let mut holder = child(dir, &[&["hold"][..], change].concat())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = Lines::new(holder.stdout.take().unwrap());
        lines.wait_for("done");
        // The files are back, and the index file's header still shows the old epoch (the
        // removal is in the holder's WAL): the WAL's content is what keeps them from being read.
        put_back(&saved);
        let expected = if change[0] == "remove" { "none" } else { "uno" };
        assert_eq!(get(dir, &["get", "1"]).0, expected, "{change:?} held open");
        drop(holder.stdin.take());
        assert!(wait_bounded(&mut holder).success());
        assert_eq!(get(dir, &["get", "1"]).0, expected, "{change:?} closed");
    }
}

/// A process that removed an entry and died before closing leaves its commit in the log.
#[test]
fn a_removal_by_a_crashed_process_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    step(dir, &["put", "1", "one"]);
    assert_eq!(get(dir, &["get", "1"]), ("one".into(), false));
    let saved = saved_hints(dir);
    let out = run_bounded(&mut child(dir, &["abort", "remove", "1"]));
    assert!(!out.status.success(), "the child aborts");
    put_back(&saved);
    assert_eq!(get(dir, &["get", "1"]).0, "none");
    assert_eq!(get(dir, &["get", "1"]).0, "none");
}

/// A damaged first-hit file, or a damaged blob behind one, is a lookup in the index, which
/// answers as it always does.
#[test]
fn a_damaged_first_hit_file_is_not_believed() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    step(dir, &["put", "1", "one"]);
    let [hint] = hint_files(dir).try_into().unwrap();
    let len = std::fs::metadata(&hint).unwrap().len() as usize;
    // A byte of the fields, a byte of the inline value, and a cut.
    flip_byte(&hint, 50);
    assert_eq!(get(dir, &["get", "1"]), ("one".into(), true));
    let [hint] = hint_files(dir).try_into().unwrap();
    flip_byte(&hint, len - 1);
    assert_eq!(get(dir, &["get", "1"]), ("one".into(), true));
    let [hint] = hint_files(dir).try_into().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&hint)
        .unwrap()
        .set_len(40)
        .unwrap();
    assert_eq!(get(dir, &["get", "1"]), ("one".into(), true));
    assert_eq!(get(dir, &["get", "1"]), ("one".into(), false));

    step(dir, &["put-big", "2", "two"]);
    let blob = memo_cache_e2e::blob_files(dir).pop().unwrap();
    flip_byte(&blob, 100);
    // The index's answer: the blob fails its hash check, the entry is dropped, a miss.
    assert_eq!(get(dir, &["get-big", "2"]), ("none".into(), true));
}

/// An index made again from scratch (deleted by hand, the directory restored from elsewhere) does
/// not match first-hit files left beside it.
#[test]
fn first_hit_files_do_not_match_an_index_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    step(dir, &["put", "1", "one"]);
    let saved = saved_hints(dir);
    std::fs::remove_file(dir.join(memo_cache::INDEX_FILE)).unwrap();
    step(dir, &["put", "2", "two"]);
    put_back(&saved);
    assert_eq!(get(dir, &["get", "1"]).0, "none");
}

/// `#[disk_cache]`'s handle is a `static`, never dropped: it writes its first-hit files and
/// closes its index at exit, so the next run's first call is a first hit too.
#[test]
fn a_cached_function_is_a_first_hit_in_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        run_ok(
            Command::new(env!("CARGO_BIN_EXE_macro_child"))
                .args(["fib-first", "10"])
                .env("MEMO_CACHE_DIR", dir.path()),
        )
    };
    let first = run();
    assert!(first.contains("computed fib 10"), "{first}");
    for _ in 0..2 {
        let again = run();
        assert!(!again.contains("computed"), "{again}");
        assert!(again.contains("result 55"), "{again}");
        assert!(again.contains("index=unopened"), "{again}");
    }
}

/// First-hit files are not problems for `verify`, and go when their entries do; the others stay
/// first hits, and a prune neither removes them nor counts anything.
#[test]
fn first_hit_files_are_swept_with_their_entries() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let other = apart_from(SMALL.key(&(1u64,)).unwrap(), &SMALL, 2);
    step(dir, &["put", "1", "one"]);
    step(dir, &["put", &other.to_string(), "two"]);
    assert_eq!(hint_files(dir).len(), 2);
    let cache = Cache::open(dir).unwrap();
    assert!(cache.verify(&memo_cache::Verify::new()).unwrap().is_sound());
    assert!(cache.remove(&SMALL, &(1u64,)).unwrap());
    assert_eq!(
        hint_files(dir).len(),
        1,
        "the removed entry's file went with it"
    );
    let removal = cache.prune(&memo_cache::Prune::new().expired()).unwrap();
    assert_eq!(
        (removal.files, removal.first_hit_files),
        (0, 0),
        "{removal:?}"
    );
    assert_eq!(hint_files(dir).len(), 1, "the other file is still good");
    drop(cache);
    assert_eq!(
        get(dir, &["get", &other.to_string()]),
        ("two".into(), false)
    );
    // A file its row no longer backs is outdated: swept and counted apart, never as stray.
    let cache = Cache::open(dir).unwrap();
    let [file] = hint_files(dir).try_into().unwrap();
    let bytes = std::fs::read(&file).unwrap();
    assert!(cache.remove(&SMALL, &(other,)).unwrap());
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, bytes).unwrap();
    let removal = cache.clear().unwrap();
    assert_eq!(
        (removal.files, removal.first_hit_files),
        (0, 1),
        "{removal:?}"
    );
    assert_eq!(hint_files(dir), Vec::<std::path::PathBuf>::new());
    drop(cache);
    assert_eq!(get(dir, &["get", &other.to_string()]).0, "none");
}
