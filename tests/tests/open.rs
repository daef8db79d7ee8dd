//! Opening a cache directory: what a fresh one looks like, and the refusals that must leave a
//! directory exactly as they found it.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use memo_cache::{Cache, Error, Function, INDEX_FILE, SCHEMA_VERSION};
use memo_cache_e2e::{raw_index, snapshot};

static F: Function = Function::new("open::f", "v1", "u64");

#[test]
fn a_fresh_directory_gets_its_tag_gitignore_index_and_private_mode() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("new").join("cache");
    let cache = Cache::open(&dir).unwrap();
    assert_eq!(cache.dir(), dir);
    assert!(!cache.is_read_only());

    let tag = fs::read_to_string(dir.join("CACHEDIR.TAG")).unwrap();
    assert!(
        tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"),
        "{tag}"
    );
    assert_eq!(
        fs::read_to_string(dir.join(".gitignore")).unwrap().trim(),
        "*"
    );
    assert!(dir.join(INDEX_FILE).is_file());
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let version: i64 = raw_index(&dir)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = raw_index(&dir)
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");

    // Opening again keeps what is there.
    cache.put(&F, &(1,), &1u64).unwrap();
    drop(cache);
    fs::write(dir.join(".gitignore"), "*\n# mine\n").unwrap();
    let cache = Cache::open(&dir).unwrap();
    assert_eq!(cache.get::<_, u64>(&F, &(1,)).unwrap(), Some(1));
    assert_eq!(
        fs::read_to_string(dir.join(".gitignore")).unwrap(),
        "*\n# mine\n"
    );
}

#[test]
fn an_index_from_a_newer_memo_cache_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = Cache::open(dir.path()).unwrap();
        cache.put(&F, &(1,), &1u64).unwrap();
    }
    raw_index(dir.path())
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let before = snapshot(dir.path());

    let err = Cache::open(dir.path()).unwrap_err();
    let index = dir.path().join(INDEX_FILE);
    match &err {
        Error::NewerSchema {
            path,
            found,
            supported,
        } => {
            assert_eq!(
                (path, *found, *supported),
                (&index, SCHEMA_VERSION + 1, SCHEMA_VERSION)
            );
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    let message = err.to_string();
    for needle in [
        (SCHEMA_VERSION + 1).to_string(),
        SCHEMA_VERSION.to_string(),
        index.display().to_string(),
    ] {
        assert!(
            message.contains(&needle),
            "{message:?} should name {needle}"
        );
    }
    // Nothing written, nothing deleted: same files, same bytes, same times.
    assert_eq!(snapshot(dir.path()), before);

    // Read-only and existing-only opens refuse it the same way.
    assert!(matches!(
        Cache::builder(dir.path()).read_only().open(),
        Err(Error::NewerSchema { .. })
    ));
    assert!(matches!(
        Cache::builder(dir.path()).existing_only().open(),
        Err(Error::NewerSchema { .. })
    ));
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join(INDEX_FILE);
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(&index, &garbage).unwrap();
    let before = snapshot(dir.path());

    let err = Cache::open(dir.path()).unwrap_err();
    match &err {
        Error::NotAnIndex { path } => assert_eq!(path, &index),
        other => panic!("expected NotAnIndex, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&index.display().to_string())
            && message.contains("not an SQLite database"),
        "{message}"
    );
    assert_eq!(fs::read(&index).unwrap(), garbage);
    let after = snapshot(dir.path());
    assert_eq!(
        after.get(&index),
        before.get(&index),
        "the file is unchanged, mtime included"
    );
    assert!(matches!(
        Cache::builder(dir.path()).read_only().open(),
        Err(Error::NotAnIndex { .. })
    ));
    assert_eq!(fs::read(&index).unwrap(), garbage);
}
