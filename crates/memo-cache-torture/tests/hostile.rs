//! Item 5: hostile files in a cache directory. Each gives a clear error or a miss: never a panic,
//! an out-of-memory abort (see `length_bombs.rs`), or a read or write outside the directory.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use memo_cache::{Cache, Error, Function, Verify};

static BIG: Function = Function::new("hostile::big", "v1", "Vec<u8>");
static SMALL: Function = Function::new("hostile::small", "v1", "String");

/// A value that does not compress, so it stays a blob file.
fn big(i: u64) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15 ^ i.wrapping_mul(31);
    (0..40_000u64)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn small(i: u64) -> String {
    format!("small value {i}")
}

/// A cache with `n` blob entries and `n` inline ones.
fn populated(dir: &Path, n: u64) -> Cache {
    let cache = Cache::open(dir).unwrap();
    for i in 0..n {
        cache.put(&BIG, &(i,), &big(i)).unwrap();
        cache.put(&SMALL, &(i,), &small(i)).unwrap();
    }
    cache
}

fn blob_file(dir: &Path, i: u64) -> PathBuf {
    let hex = BIG.key(&(i,)).unwrap().to_hex();
    let shard = dir.join("blobs").join(&hex[..2]);
    fs::read_dir(&shard)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(&hex))
        .expect("blob file")
}

/// Every call returns the right value, and a second call is served from the cache.
fn calls_are_right(cache: &Cache, n: u64) {
    for i in 0..n {
        assert!(
            cache.get_or_compute(&BIG, &(i,), || big(i)) == big(i),
            "wrong value of big({i})"
        );
        assert_eq!(cache.get_or_compute(&SMALL, &(i,), || small(i)), small(i));
    }
}

/// A directory outside the cache, and a fingerprint of it: names, sizes, contents, mtime.
struct Outside {
    dir: tempfile::TempDir,
}

impl Outside {
    fn new() -> Outside {
        Outside {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn snapshot(&self) -> (Vec<(String, Vec<u8>)>, SystemTime) {
        let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(self.path())
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    fs::read(&p).unwrap_or_default(),
                )
            })
            .collect();
        files.sort();
        (
            files,
            fs::metadata(self.path()).unwrap().modified().unwrap(),
        )
    }
}

fn settle() {
    // Directory mtimes have a clock-tick granularity: leave time for a change to show.
    std::thread::sleep(Duration::from_millis(20));
}

#[test]
fn garbage_in_the_index_file_is_a_clear_error_and_the_file_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..65_536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(dir.path().join("index.sqlite3"), &garbage).unwrap();
    let err = Cache::open(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("is not a memo-cache index"),
        "{err}"
    );
    let err = Cache::builder(dir.path()).read_only().open().unwrap_err();
    assert!(
        err.to_string().contains("is not a memo-cache index"),
        "{err}"
    );
    assert_eq!(fs::read(dir.path().join("index.sqlite3")).unwrap(), garbage);
}

/// The error a damaged index must give: an index error that names the index file and says the
/// database is damaged (SQLite's "database disk image is malformed").
fn assert_clear_damage_error(err: &Error, index: &Path, what: &str) {
    let Error::CorruptIndex { path, source } = err else {
        panic!("{what}: expected a damaged-index error, got {err:?}");
    };
    assert_eq!(path, index, "{what}: the error names another file");
    assert_eq!(
        source.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt),
        "{what}: {err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&index.display().to_string())
            && message.contains("malformed")
            && message.contains("memo-cache verify"),
        "{what}: the message does not name the index and its damage: {message}"
    );
}

#[test]
fn an_index_damaged_in_the_middle_gives_errors_or_misses_never_wrong_values() {
    let dir = tempfile::tempdir().unwrap();
    drop(populated(dir.path(), 30));
    let index = dir.path().join("index.sqlite3");
    let mut bytes = fs::read(&index).unwrap();
    assert!(
        bytes.len() > 3 * 4096,
        "index too small to damage: {}",
        bytes.len()
    );
    let end = bytes.len() - 100;
    for (i, b) in bytes[4096..end].iter_mut().enumerate() {
        if i % 7 == 0 {
            *b ^= 0xA5;
        }
    }
    fs::write(&index, &bytes).unwrap();
    // First-hit files would answer these lookups (rightly: they are hash-checked copies) without
    // reading the index at all; without them, every lookup reaches the damaged index.
    fs::remove_dir_all(dir.path().join(memo_cache::HINTS_DIR)).unwrap();
    // The first page (the header and the schema) is intact, so the open itself succeeds.
    let cache = Cache::open(dir.path()).expect("open an index damaged past its first page");
    let mut errors = 0;
    for i in 0..30 {
        match cache.get::<_, Vec<u8>>(&BIG, &(i,)) {
            Ok(Some(v)) => assert!(v == big(i), "wrong value of big({i})"),
            Ok(None) => {}
            Err(e) => {
                assert_clear_damage_error(&e, &index, &format!("get big({i})"));
                errors += 1;
            }
        }
        match cache.get::<_, String>(&SMALL, &(i,)) {
            Ok(Some(v)) => assert_eq!(v, small(i)),
            Ok(None) => {}
            Err(e) => {
                assert_clear_damage_error(&e, &index, &format!("get small({i})"));
                errors += 1;
            }
        }
        assert!(
            cache.get_or_compute(&BIG, &(i,), || big(i)) == big(i),
            "wrong value of big({i})"
        );
        assert_eq!(cache.get_or_compute(&SMALL, &(i,), || small(i)), small(i));
    }
    assert!(
        errors > 0,
        "no lookup noticed the damage: every one of 60 was a hit or a miss"
    );
    match cache.verify(&Verify::new()) {
        Ok(report) => assert!(!report.is_sound(), "verify calls a damaged index sound"),
        Err(e) => assert_clear_damage_error(&e, &index, "verify"),
    }
}

#[test]
fn a_garbage_write_ahead_log_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    drop(populated(dir.path(), 5));
    fs::write(dir.path().join("index.sqlite3-wal"), vec![0x5Au8; 50_000]).unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    for i in 0..5 {
        assert!(cache.get::<_, Vec<u8>>(&BIG, &(i,)).unwrap() == Some(big(i)));
    }
    calls_are_right(&cache, 5);
}

#[test]
fn a_blob_that_is_a_symlink_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = Outside::new();
    let cache = populated(dir.path(), 3);
    // The outside file holds exactly the right bytes: following the link would return them.
    let blob = blob_file(dir.path(), 1);
    let target = outside.path().join("secret");
    fs::copy(&blob, &target).unwrap();
    fs::remove_file(&blob).unwrap();
    symlink(&target, &blob).unwrap();
    let before = outside.snapshot();
    settle();

    assert!(
        cache.get::<_, Vec<u8>>(&BIG, &(1,)).unwrap().is_none(),
        "read through a symlink"
    );
    calls_are_right(&cache, 3);
    let report = cache
        .verify(&Verify::new().fix(true).file_grace(Duration::ZERO))
        .unwrap();
    assert!(report.is_sound(), "{:?}", report.problems);
    calls_are_right(&cache, 3);
    assert_eq!(
        outside.snapshot(),
        before,
        "the symlink's target was touched"
    );
    assert!(
        cache.get::<_, Vec<u8>>(&BIG, &(1,)).unwrap() == Some(big(1)),
        "not stored again"
    );
}

#[test]
fn a_blob_that_is_a_directory_or_a_fifo_is_a_miss_then_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let cache = populated(dir.path(), 3);
    let as_dir = blob_file(dir.path(), 0);
    fs::remove_file(&as_dir).unwrap();
    fs::create_dir(&as_dir).unwrap();
    fs::write(as_dir.join("inside"), b"x").unwrap();
    let as_fifo = blob_file(dir.path(), 2);
    fs::remove_file(&as_fifo).unwrap();
    let c = std::ffi::CString::new(as_fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);

    assert!(cache.get::<_, Vec<u8>>(&BIG, &(0,)).unwrap().is_none());
    assert!(cache.get::<_, Vec<u8>>(&BIG, &(2,)).unwrap().is_none());
    calls_are_right(&cache, 3);
    let report = cache
        .verify(&Verify::new().fix(true).file_grace(Duration::ZERO))
        .unwrap();
    assert!(report.is_sound(), "{:?}", report.problems);
    calls_are_right(&cache, 3);
    assert!(
        cache
            .verify(&Verify::new().file_grace(Duration::ZERO))
            .unwrap()
            .problems
            .is_empty()
    );
    for i in 0..3 {
        assert!(
            cache.get::<_, Vec<u8>>(&BIG, &(i,)).unwrap() == Some(big(i)),
            "entry {i} not stored again"
        );
    }
}

#[test]
fn a_shard_directory_that_is_a_symlink_is_neither_read_nor_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let outside = Outside::new();
    let cache = populated(dir.path(), 3);
    // Move the real shard outside and link it back: every file in it is "right".
    let shard = blob_file(dir.path(), 1).parent().unwrap().to_path_buf();
    for entry in fs::read_dir(&shard).unwrap() {
        let p = entry.unwrap().path();
        fs::copy(&p, outside.path().join(p.file_name().unwrap())).unwrap();
    }
    fs::remove_dir_all(&shard).unwrap();
    symlink(outside.path(), &shard).unwrap();
    let before = outside.snapshot();
    settle();

    assert!(
        cache.get::<_, Vec<u8>>(&BIG, &(1,)).unwrap().is_none(),
        "read through a symlinked shard"
    );
    calls_are_right(&cache, 3);
    cache.put(&BIG, &(1,), &big(1)).ok();
    cache.remove(&BIG, &(1,)).ok();
    calls_are_right(&cache, 3);
    cache.clear().unwrap();
    calls_are_right(&cache, 3);
    assert_eq!(
        outside.snapshot(),
        before,
        "a file outside the cache was written or removed"
    );
}

#[test]
fn tmp_and_lock_paths_that_are_symlinks_are_not_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let outside = Outside::new();
    let cache = populated(dir.path(), 1);
    fs::remove_dir_all(dir.path().join("tmp")).unwrap();
    symlink(outside.path(), dir.path().join("tmp")).unwrap();
    // A lock file of a key about to be computed, pointing at a file that does not exist yet.
    let key = BIG.key(&(7u64,)).unwrap();
    let planted = outside.path().join("created-through-lock");
    symlink(
        &planted,
        dir.path()
            .join("locks")
            .join(format!("{}.lock", key.to_hex())),
    )
    .unwrap();
    let before = outside.snapshot();
    settle();

    for i in 5..9 {
        assert!(
            cache.get_or_compute(&BIG, &(i,), || big(i)) == big(i),
            "wrong value of big({i})"
        );
    }
    assert!(
        !planted.exists(),
        "a lock symlink created a file outside the cache"
    );
    assert_eq!(
        outside.snapshot(),
        before,
        "a temp file was written outside the cache"
    );
}

fn sql(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("index.sqlite3")).unwrap()
}

#[test]
fn index_rows_with_malformed_keys_hashes_and_sizes_are_errors_or_misses() {
    let dir = tempfile::tempdir().unwrap();
    let outside = Outside::new();
    let cache = populated(dir.path(), 3);
    let before = outside.snapshot();
    let traversal = format!("../../../../{}/x", outside.path().display());
    {
        let db = sql(dir.path());
        let fid: i64 = db
            .query_row("SELECT function_id FROM entries LIMIT 1", [], |r| r.get(0))
            .unwrap();
        let insert = "INSERT INTO entries (key, function_id, size, hash, value, created, last_used) VALUES (?1, ?2, ?3, ?4, ?5, 0, 0)";
        // Keys and hashes that are not 32 bytes, one of them a path.
        db.execute(
            insert,
            rusqlite::params![
                traversal.as_bytes(),
                fid,
                10,
                vec![1u8; 32],
                None::<Vec<u8>>
            ],
        )
        .unwrap();
        db.execute(
            insert,
            rusqlite::params![
                vec![2u8; 32],
                fid,
                10,
                traversal.as_bytes(),
                None::<Vec<u8>>
            ],
        )
        .unwrap();
        db.execute(
            insert,
            rusqlite::params!["text key", fid, 10, "text hash", "text value"],
        )
        .unwrap();
        // A real key whose row points at no file, and one whose size claims 4 GiB.
        let k3 = BIG.key(&(0u64,)).unwrap();
        db.execute(
            "UPDATE entries SET hash = ?2 WHERE key = ?1",
            rusqlite::params![&k3.0[..], vec![9u8; 32]],
        )
        .unwrap();
        let k4 = SMALL.key(&(1u64,)).unwrap();
        db.execute(
            "UPDATE entries SET size = 4294967296 WHERE key = ?1",
            [&k4.0[..]],
        )
        .unwrap();
        let k5 = BIG.key(&(2u64,)).unwrap();
        db.execute(
            "UPDATE entries SET size = 4294967296 WHERE key = ?1",
            [&k5.0[..]],
        )
        .unwrap();
    }
    assert!(cache.get::<_, Vec<u8>>(&BIG, &(0,)).unwrap().is_none());
    assert_eq!(cache.get::<_, String>(&SMALL, &(1,)).unwrap(), None);
    assert!(cache.get::<_, Vec<u8>>(&BIG, &(2,)).unwrap().is_none());
    calls_are_right(&cache, 3);
    let _ = cache.stats();
    // Listing skips rows memo-cache did not write; verify names them and its fix removes them.
    let listed = cache.entries(None).expect("ls works beside malformed rows");
    assert!(listed.iter().all(|e| e.key.0.len() == 32));
    let report = cache.verify(&Verify::new()).unwrap();
    let malformed = report
        .problems
        .iter()
        .filter(|p| p.kind == memo_cache::ProblemKind::MalformedRow)
        .count();
    assert_eq!(malformed, 3, "{:?}", report.problems);
    let fixed = cache
        .verify(&Verify::new().fix(true).file_grace(Duration::ZERO))
        .unwrap();
    assert!(fixed.is_sound(), "{:?}", fixed.problems);
    let after = cache
        .verify(&Verify::new().file_grace(Duration::ZERO))
        .unwrap();
    assert!(after.problems.is_empty(), "{:?}", after.problems);
    cache
        .prune(&memo_cache::Prune::new().max_entries(1))
        .unwrap();
    cache.clear().unwrap();
    calls_are_right(&cache, 3);
    settle();
    assert_eq!(
        outside.snapshot(),
        before,
        "a file outside the cache was touched"
    );
}
