//! Files planted in a cache directory: a symlink in place of any file or folder memo-cache
//! opens, creates or removes is never followed, and gets an error naming it; a FIFO, garbage or
//! a path too long for SQLite gets an error that says what to do. The function still runs.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use memo_cache::{Cache, Error, Function};
use memo_cache_e2e::{files_under, run_bounded};

const CHILD: &str = env!("CARGO_BIN_EXE_fault_child");

static F: Function = Function::new("planted::f", "v1", "u64");

/// Another application's SQLite database, in rollback-journal mode, with one table.
fn other_database(path: &Path) -> Vec<u8> {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO accounts VALUES (1, 'ada');")
        .unwrap();
    drop(conn);
    std::fs::read(path).unwrap()
}

/// A cache with one entry, closed (no `-wal` left), under `root/cache`.
fn closed_cache(root: &Path) -> PathBuf {
    let dir = root.join("cache");
    let cache = Cache::open(&dir).unwrap();
    cache.put(&F, &(1u64,), &11u64).unwrap();
    drop(cache);
    dir
}

fn assert_symlink_error(result: Result<impl std::fmt::Debug, Error>, path: &Path) {
    match result {
        Err(Error::Symlink { path: named }) => assert_eq!(named, path),
        other => panic!(
            "expected a symlink error naming {}, got {other:?}",
            path.display()
        ),
    }
}

/// Every call still returns the computed value.
fn assert_computes(dir: &Path) {
    // Through a new handle, as a new process would; open itself may refuse.
    let value = match Cache::open(dir) {
        Ok(cache) => cache.get_or_compute(&F, &(2u64,), || 22u64),
        Err(_) => 22,
    };
    assert_eq!(value, 22);
}

#[test]
fn an_index_symlinked_to_another_database_is_refused_and_that_database_left_alone() {
    let root = tempfile::tempdir().unwrap();
    let other = root.path().join("accounts.db");
    let before = other_database(&other);
    let dir = root.path().join("cache");
    std::fs::create_dir(&dir).unwrap();
    let index = dir.join(memo_cache::INDEX_FILE);
    symlink(&other, &index).unwrap();

    let error = Cache::open(&dir).unwrap_err();
    assert!(
        error.to_string().contains(&index.display().to_string()),
        "{error}"
    );
    assert!(error.to_string().contains("symbolic link"), "{error}");
    assert_symlink_error(Cache::open(&dir), &index);
    assert_eq!(
        std::fs::read(&other).unwrap(),
        before,
        "the other database changed"
    );
    assert!(!root.path().join("accounts.db-wal").exists());
    assert!(!root.path().join("accounts.db-shm").exists());

    // Through the attribute, in a real process: the function runs, and the user is told why
    // the cache is off.
    let out = run_bounded(
        Command::new(CHILD)
            .args(["small", "0", "1"])
            .env("MEMO_CACHE_DIR", &dir)
            .env_remove("MEMO_CACHE_REDIS_URL"),
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("result value 0"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_eq!(
        std::fs::read(&other).unwrap(),
        before,
        "the other database changed"
    );
}

#[test]
fn a_dangling_index_symlink_creates_nothing_at_its_target() {
    let root = tempfile::tempdir().unwrap();
    let elsewhere = root.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let dir = root.path().join("cache");
    std::fs::create_dir(&dir).unwrap();
    let index = dir.join(memo_cache::INDEX_FILE);
    symlink(elsewhere.join("stolen.db"), &index).unwrap();

    assert_symlink_error(Cache::open(&dir), &index);
    assert_computes(&dir);
    assert!(
        files_under(&elsewhere).is_empty(),
        "{:?}",
        files_under(&elsewhere)
    );
}

#[test]
fn companion_files_of_the_index_planted_as_symlinks_are_never_followed() {
    for suffix in ["-wal", "-shm", "-journal"] {
        let root = tempfile::tempdir().unwrap();
        let dir = closed_cache(root.path());
        let target = root.path().join("precious");
        std::fs::write(&target, b"precious bytes").unwrap();
        let planted = dir.join(format!("{}{suffix}", memo_cache::INDEX_FILE));
        symlink(&target, &planted).unwrap();

        // The lazily opened index is opened by the first lookup.
        // A key with no first-hit file: its lookup opens the index.
        let opened = Cache::open(&dir).and_then(|cache| cache.get::<_, u64>(&F, &(9u64,)));
        assert_symlink_error(opened, &planted);
        assert_computes(&dir);
        assert_eq!(
            std::fs::read(&target).unwrap(),
            b"precious bytes",
            "{suffix}"
        );
        assert!(std::fs::symlink_metadata(&planted).unwrap().is_symlink());
    }
}

#[test]
fn marker_files_and_folders_planted_as_symlinks_in_a_new_cache_are_refused() {
    for name in ["CACHEDIR.TAG", ".gitignore", "blobs", "tmp", "locks"] {
        let root = tempfile::tempdir().unwrap();
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let dir = root.path().join("cache");
        std::fs::create_dir(&dir).unwrap();
        let planted = dir.join(name);
        // A directory target for the folders, a missing file for the marker files.
        let target = if name.starts_with(['C', '.']) {
            elsewhere.join("file")
        } else {
            elsewhere.clone()
        };
        symlink(&target, &planted).unwrap();

        assert_symlink_error(Cache::open(&dir), &planted);
        assert_computes(&dir);
        assert!(
            files_under(&elsewhere).is_empty(),
            "{name}: {:?}",
            files_under(&elsewhere)
        );
    }
}

#[test]
fn lock_files_planted_as_symlinks_are_never_followed() {
    for planted_name in ["locks", "locks/compute"] {
        let root = tempfile::tempdir().unwrap();
        let dir = closed_cache(root.path());
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let planted = dir.join(planted_name);
        let _ = std::fs::remove_dir_all(&planted);
        let _ = std::fs::remove_file(&planted);
        let target = if planted_name == "locks" {
            elsewhere.clone()
        } else {
            elsewhere.join("compute")
        };
        symlink(&target, &planted).unwrap();

        let (captured, _guard) = memo_cache_e2e::capture_warnings();
        let cache = Cache::open(&dir).unwrap();
        assert_eq!(cache.get_or_compute(&F, &(3u64,), || 33u64), 33);
        assert!(
            files_under(&elsewhere).is_empty(),
            "{planted_name}: {:?}",
            files_under(&elsewhere)
        );
        let warnings = captured.warnings().join("\n");
        assert!(
            warnings.contains(&planted.display().to_string()) || warnings.contains("locks"),
            "{planted_name}: no warning naming the lock path: {warnings}"
        );
        // Still stored: only the compute lock was unusable.
        assert_eq!(cache.get::<_, u64>(&F, &(3u64,)).unwrap(), Some(33));
    }
}

#[test]
fn first_hit_folders_planted_as_symlinks_are_never_written_through() {
    for planted_name in ["hints", "hints/shard"] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let cache = Cache::open(&dir).unwrap();
        let key = F.key(&(4u64,)).unwrap();
        cache.put(&F, &(4u64,), &44u64).unwrap();
        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let planted = if planted_name == "hints" {
            dir.join("hints")
        } else {
            std::fs::create_dir_all(dir.join("hints")).unwrap();
            dir.join("hints").join(&key.to_hex()[..2])
        };
        symlink(&elsewhere, &planted).unwrap();
        // Closing the handle writes first-hit files.
        drop(cache);
        assert!(
            files_under(&elsewhere).is_empty(),
            "{planted_name}: {:?}",
            files_under(&elsewhere)
        );
        let cache = Cache::open(&dir).unwrap();
        assert_eq!(cache.get::<_, u64>(&F, &(4u64,)).unwrap(), Some(44));
    }
}

#[test]
fn a_fifo_garbage_or_too_long_a_path_gets_an_error_that_says_what_to_do() {
    let root = tempfile::tempdir().unwrap();

    let fifo_dir = root.path().join("fifo");
    std::fs::create_dir(&fifo_dir).unwrap();
    let fifo = fifo_dir.join(memo_cache::INDEX_FILE);
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string for mkfifo(3).
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let message = Cache::open(&fifo_dir).unwrap_err().to_string();
    for part in [fifo.to_str().unwrap(), "a FIFO", "move it aside"] {
        assert!(message.contains(part), "{message}");
    }
    assert_computes(&fifo_dir);

    let garbage_dir = root.path().join("garbage");
    std::fs::create_dir(&garbage_dir).unwrap();
    let garbage = garbage_dir.join(memo_cache::INDEX_FILE);
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let message = Cache::open(&garbage_dir).unwrap_err().to_string();
    for part in [
        garbage.to_str().unwrap(),
        "not a memo-cache index",
        "move it aside",
    ] {
        assert!(message.contains(part), "{message}");
    }
    assert_eq!(std::fs::read(&garbage).unwrap(), vec![0x5a; 8192]);

    let mut long = root.path().to_path_buf();
    while long.as_os_str().len() < 600 {
        long.push("a-rather-long-folder-name-for-a-cache");
    }
    let message = Cache::open(&long).unwrap_err().to_string();
    for part in ["bytes long", "shorter cache directory"] {
        assert!(message.contains(part), "{message}");
    }
    assert_computes(&long);
}

#[test]
fn hard_links_to_other_files_are_never_written_through() {
    let root = tempfile::tempdir().unwrap();
    let other = root.path().join("accounts.db");
    let before = other_database(&other);
    let dir = root.path().join("cache");
    std::fs::create_dir(&dir).unwrap();
    std::fs::hard_link(&other, dir.join(memo_cache::INDEX_FILE)).unwrap();
    let message = Cache::open(&dir).unwrap_err().to_string();
    assert!(message.contains("hard links"), "{message}");
    assert_computes(&dir);
    assert_eq!(
        std::fs::read(&other).unwrap(),
        before,
        "the other database changed"
    );

    let dir = closed_cache(&root.path().join("second"));
    let config = root.path().join("config.txt");
    std::fs::write(&config, b"precious").unwrap();
    std::fs::create_dir_all(dir.join("locks")).unwrap();
    let _ = std::fs::remove_file(dir.join("locks/compute"));
    std::fs::hard_link(&config, dir.join("locks/compute")).unwrap();
    let cache = Cache::open(&dir).unwrap();
    assert_eq!(cache.get_or_compute(&F, &(5u64,), || 55u64), 55);
    assert_eq!(std::fs::read(&config).unwrap(), b"precious");
}

#[test]
fn a_cache_opened_by_a_relative_path_stays_where_it_was_opened() {
    let root = tempfile::tempdir().unwrap();
    let (home, elsewhere) = (root.path().join("home"), root.path().join("elsewhere"));
    std::fs::create_dir_all(home.join("cache")).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = run_bounded(
        Command::new(CHILD)
            .args(["chdir", "cache", elsewhere.to_str().unwrap()])
            .current_dir(&home)
            .env_remove("MEMO_CACHE_REDIS_URL"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        files_under(&elsewhere).is_empty(),
        "{:?}",
        files_under(&elsewhere)
    );
    let cache = Cache::open(home.join("cache")).unwrap();
    let f = Function::new("fault_child::chdir", "v1", "Vec<u8>");
    assert_eq!(
        cache.get::<_, Vec<u8>>(&f, &(1u8,)).unwrap(),
        Some(vec![7u8; 100_000])
    );
}

#[test]
fn a_file_in_place_of_the_directory_or_a_directory_in_place_of_the_index_is_named() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let message = Cache::open(&file).unwrap_err().to_string();
    assert!(message.contains("is not a directory"), "{message}");
    let message = Cache::builder(&file)
        .existing_only()
        .open()
        .unwrap_err()
        .to_string();
    assert!(message.contains("is not a directory"), "{message}");

    let dir = root.path().join("cache");
    std::fs::create_dir_all(dir.join(memo_cache::INDEX_FILE)).unwrap();
    for opened in [
        Cache::open(&dir),
        Cache::builder(&dir).existing_only().open(),
    ] {
        let message = opened.unwrap_err().to_string();
        assert!(
            message.contains("is a directory, not an index file"),
            "{message}"
        );
    }
}

#[test]
fn a_fifo_or_hard_link_at_the_removal_log_never_hangs_nor_is_written_through() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache");
    let hinted = |dir: &Path| {
        let cache = Cache::open(dir).unwrap();
        for i in 0..3u64 {
            cache.put(&F, &(i,), &(i * 11)).unwrap();
            let _: Option<u64> = cache.get(&F, &(i,)).unwrap();
        }
    };
    hinted(&dir);
    let log = dir.join(memo_cache::HINTS_DIR).join("removals");
    let _ = std::fs::remove_file(&log);
    let c = std::ffi::CString::new(log.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // A removal takes the write lock, then writes the log: with the FIFO there it must neither
    // wait for a reader nor keep other writers out.
    let (tx, rx) = std::sync::mpsc::channel();
    let remover = dir.clone();
    std::thread::spawn(move || {
        let removed = Cache::open(&remover).unwrap().remove(&F, &(1u64,)).unwrap();
        let _ = tx.send(removed);
    });
    let removed = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("a removal with a FIFO at hints/removals hung");
    assert!(removed);
    Cache::open(&dir)
        .unwrap()
        .put(&F, &(9u64,), &99u64)
        .unwrap();
    assert_eq!(
        Cache::open(&dir)
            .unwrap()
            .get::<_, u64>(&F, &(2u64,))
            .unwrap(),
        Some(22)
    );

    // A hard link there to a file elsewhere: the file is left as it was.
    let dir = root.path().join("second");
    hinted(&dir);
    let log = dir.join(memo_cache::HINTS_DIR).join("removals");
    let _ = std::fs::remove_file(&log);
    let precious = root.path().join("precious.txt");
    std::fs::write(&precious, b"36 bytes that must stay as they are.").unwrap();
    std::fs::hard_link(&precious, &log).unwrap();
    assert!(Cache::open(&dir).unwrap().remove(&F, &(1u64,)).unwrap());
    assert_eq!(
        std::fs::read(&precious).unwrap(),
        b"36 bytes that must stay as they are."
    );
}
