//! An entry's row is stored at its key's home row id (the key's first eight bytes, little
//! endian) when that is free, and a lookup tries there first. A row elsewhere (written before
//! this was done, moved by hand, or kept out of its home by another row) must still be found,
//! and another key's row at a key's home must neither be taken for it nor keep it from being
//! stored. Rows are moved with rusqlite behind the library's back; everything else goes through
//! the public API, both in a handle's first lookups (autocommit) and once it has made enough to
//! hold a read snapshot.

use memo_cache::{Cache, Function, Key};
use memo_cache_e2e::{capture_warnings, raw_index};

static ROWS: Function = Function::new("e2e::rows", "v1", "String");

/// More lookups than a handle makes before it holds a read snapshot (8 in `index.rs`).
const WARM_LOOKUPS: usize = 50;

fn value(n: u64) -> String {
    format!("row-value-{n}")
}

fn key(n: u64) -> Key {
    ROWS.key(&(n,)).unwrap()
}

/// The row id an entry of `key` is stored at when it is free.
fn home(key: &Key) -> i64 {
    i64::from_le_bytes(key.0[..8].try_into().unwrap())
}

fn get(cache: &Cache, n: u64) -> Option<String> {
    cache.get::<_, String>(&ROWS, &(n,)).unwrap()
}

/// The row ids of `key`'s rows (one when all is well).
fn rowids(conn: &rusqlite::Connection, key: &Key) -> Vec<i64> {
    let mut stmt = conn
        .prepare("SELECT rowid FROM entries WHERE key = ?1")
        .unwrap();
    stmt.query_map([&key.0[..]], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn move_row(conn: &rusqlite::Connection, key: &Key, to: i64) {
    let moved = conn
        .execute(
            "UPDATE entries SET rowid = ?1 WHERE key = ?2",
            rusqlite::params![to, &key.0[..]],
        )
        .unwrap();
    assert_eq!(moved, 1);
    assert_eq!(rowids(conn, key), [to]);
}

/// Every `n` in `ns` reads `expected(n)`: a first pass from a fresh handle (its first lookups
/// are in autocommit), then passes once it has hit more than enough to hold a snapshot.
fn check_reads(cache: &Cache, ns: &[u64], expected: impl Fn(u64) -> Option<String>) {
    let fresh = Cache::open(cache.dir()).unwrap();
    for &n in ns {
        assert_eq!(get(&fresh, n), expected(n), "key {n}, fresh handle");
    }
    // Hits (a miss ends a snapshot) on a key that is there.
    let warm = *ns.iter().find(|&&n| expected(n).is_some()).unwrap();
    for _ in 0..WARM_LOOKUPS {
        assert_eq!(get(&fresh, warm), expected(warm));
    }
    for pass in 0..3 {
        for &n in ns {
            assert_eq!(
                get(&fresh, n),
                expected(n),
                "key {n}, busy handle, pass {pass}"
            );
        }
    }
}

#[test]
fn rows_away_from_their_home_row_id_are_still_found() {
    let dir = tempfile::tempdir().unwrap();
    let ns: Vec<u64> = (0..24).collect();
    {
        let cache = Cache::open(dir.path()).unwrap();
        for &n in &ns {
            cache.put(&ROWS, &(n,), &value(n)).unwrap();
        }
    }
    {
        let conn = raw_index(dir.path());
        for &n in &ns {
            let k = key(n);
            // Where rows were before home row ids (1, 2, ...), just beside home, or far away.
            let to = match n % 3 {
                0 => n as i64 + 1,
                1 => home(&k).wrapping_add(1),
                _ => home(&k).wrapping_neg().wrapping_sub(7),
            };
            move_row(&conn, &k, to);
            assert_ne!(rowids(&conn, &k), [home(&k)]);
        }
    }

    let cache = Cache::open(dir.path()).unwrap();
    check_reads(&cache, &ns, |n| Some(value(n)));
    for &n in &ns[..4] {
        let mut computed = false;
        let got = cache.get_or_compute(&ROWS, &(n,), || {
            computed = true;
            "recomputed".to_owned()
        });
        assert_eq!((got, computed), (value(n), false), "key {n}");
    }

    // Replacing a moved row leaves one row, with the new value; removing one leaves none.
    cache.put(&ROWS, &(3u64,), &"replaced".to_owned()).unwrap();
    assert!(cache.remove(&ROWS, &(4u64,)).unwrap());
    assert!(!cache.remove(&ROWS, &(4u64,)).unwrap());
    let conn = raw_index(dir.path());
    assert_eq!(rowids(&conn, &key(3)).len(), 1);
    assert!(rowids(&conn, &key(4)).is_empty());
    check_reads(&cache, &ns, |n| match n {
        3 => Some("replaced".to_owned()),
        4 => None,
        n => Some(value(n)),
    });
    assert_eq!(cache.stats().unwrap().entries, ns.len() as u64 - 1);
    let report = cache.verify(&memo_cache::Verify::new()).unwrap();
    assert!(report.is_sound(), "{:?}", report.problems);
}

#[test]
fn a_row_at_another_keys_home_is_not_its_value_and_both_can_be_stored() {
    let (captured, _guard) = capture_warnings();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    // The squatters: rows of other keys, each moved to the home of one of the keys below.
    let pairs: [(u64, u64); 3] = [(1000, 2000), (1001, 2001), (1002, 2002)];
    let conn = raw_index(dir.path());
    for (other, mine) in pairs {
        cache.put(&ROWS, &(other,), &value(other)).unwrap();
        move_row(&conn, &key(other), home(&key(mine)));
    }
    let all: Vec<u64> = pairs.iter().flat_map(|&(o, m)| [o, m]).collect();

    // The row at a key's home is not that key's: a miss, never the squatter's value.
    check_reads(&cache, &all, |n| (n < 2000).then(|| value(n)));

    // Stored with `put` and with `get_or_compute`: each key gets its own row elsewhere.
    let (other, mine) = pairs[0];
    cache
        .put(&ROWS, &(mine,), &value(mine))
        .unwrap_or_else(|e| {
            panic!("storing key {mine}, whose home row id holds key {other}'s row: {e}")
        });
    let (_, mine_computed) = pairs[1];
    let mut computed = 0;
    for _ in 0..2 {
        let got = cache.get_or_compute(&ROWS, &(mine_computed,), || {
            computed += 1;
            value(mine_computed)
        });
        assert_eq!(got, value(mine_computed));
    }
    assert_eq!(
        computed, 1,
        "the computed value of key {mine_computed} was not kept"
    );
    let stored = [mine, mine_computed];
    check_reads(&cache, &all, |n| {
        (n < 2000 || stored.contains(&n)).then(|| value(n))
    });

    // Replaced, it stays out of the squatter's way; with the squatter removed, the other
    // entries are untouched.
    cache
        .put(&ROWS, &(mine,), &"mine again".to_owned())
        .unwrap();
    assert!(cache.remove(&ROWS, &(other,)).unwrap());
    check_reads(&cache, &all, |n| match n {
        n if n == mine => Some("mine again".to_owned()),
        n if n == other => None,
        n => (n < 2000 || stored.contains(&n)).then(|| value(n)),
    });
    for n in [mine, mine_computed] {
        assert_eq!(rowids(&conn, &key(n)).len(), 1, "key {n}");
    }
    assert_eq!(cache.stats().unwrap().entries, 4);
    let report = cache.verify(&memo_cache::Verify::new()).unwrap();
    assert!(report.is_sound(), "{:?}", report.problems);
    assert!(
        captured.warnings().is_empty(),
        "warnings: {:?}",
        captured.warnings()
    );
}
