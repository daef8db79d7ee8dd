//! A stored value that is damaged, or no longer fits the type asked for, is never returned: it is
//! a miss, the value is recomputed, a warning names the entry, and `verify` reports and repairs it.

use std::fs;

use memo_cache::{Cache, Function, ProblemKind, Verify};
use memo_cache_e2e::{blob_of, capture_warnings, flip_byte, large_value, raw_index, small_value};
use serde::{Deserialize, Serialize};

static BIG: Function = Function::new("integrity::big", "v1", "Vec<u8>");
static SMALL: Function = Function::new("integrity::small", "v1", "String");

/// What to do to an entry's stored bytes.
#[derive(Debug, Clone, Copy)]
enum Damage {
    FlipBlobByte,
    TruncateBlob,
    DeleteBlob,
    FlipInlineByte,
}

/// Stores the entry `i` (a blob or an inline value, as `damage` needs) and damages it; returns
/// its function and key.
fn store_and_damage(cache: &Cache, i: u64, damage: Damage) -> (&'static Function, memo_cache::Key) {
    let dir = cache.dir();
    match damage {
        Damage::FlipInlineByte => {
            cache.put(&SMALL, &(i,), &small_value(i)).unwrap();
            let key = SMALL.key(&(i,)).unwrap();
            let conn = raw_index(dir);
            let mut value: Vec<u8> = conn
                .query_row(
                    "SELECT value FROM entries WHERE key = ?1",
                    [&key.0[..]],
                    |r| r.get(0),
                )
                .unwrap();
            value[3] ^= 0x20;
            conn.execute(
                "UPDATE entries SET value = ?1 WHERE key = ?2",
                rusqlite::params![value, &key.0[..]],
            )
            .unwrap();
            (&SMALL, key)
        }
        blob_damage => {
            cache.put(&BIG, &(i,), &large_value(i)).unwrap();
            let key = BIG.key(&(i,)).unwrap();
            let blob = blob_of(dir, &key);
            match blob_damage {
                Damage::FlipBlobByte => flip_byte(&blob, 10_000),
                Damage::TruncateBlob => {
                    let bytes = fs::read(&blob).unwrap();
                    fs::write(&blob, &bytes[..bytes.len() / 2]).unwrap();
                }
                Damage::DeleteBlob => fs::remove_file(&blob).unwrap(),
                Damage::FlipInlineByte => unreachable!(),
            }
            (&BIG, key)
        }
    }
}

fn expected_kind(damage: Damage) -> ProblemKind {
    match damage {
        Damage::FlipBlobByte | Damage::FlipInlineByte => ProblemKind::HashMismatch,
        Damage::TruncateBlob => ProblemKind::BadBlob,
        Damage::DeleteBlob => ProblemKind::MissingBlob,
    }
}

const ALL: [Damage; 4] = [
    Damage::FlipBlobByte,
    Damage::TruncateBlob,
    Damage::DeleteBlob,
    Damage::FlipInlineByte,
];

#[test]
fn a_damaged_value_is_reported_then_a_warned_miss_then_recomputed_right() {
    for damage in ALL {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let (func, key) = store_and_damage(&cache, 5, damage);

        let report = cache.verify(&Verify::new()).unwrap();
        assert!(!report.is_sound(), "{damage:?}: verify must notice");
        assert_eq!(
            report.problems.len(),
            1,
            "{damage:?}: {:?}",
            report.problems
        );
        let problem = &report.problems[0];
        assert_eq!(problem.kind, expected_kind(damage), "{damage:?}: {problem}");
        assert_eq!(problem.key, Some(key));
        assert_eq!(problem.function.as_deref(), Some(func.name()));
        assert!(!problem.fixed);

        let (warnings, _guard) = capture_warnings();
        let mut runs = 0;
        let value = match damage {
            Damage::FlipInlineByte => {
                assert_eq!(
                    cache.get::<_, String>(func, &(5u64,)).unwrap(),
                    None,
                    "{damage:?}"
                );
                let v = cache.get_or_compute(func, &(5u64,), || {
                    runs += 1;
                    small_value(5)
                });
                assert_eq!(v, small_value(5));
                v.into_bytes()
            }
            _ => {
                assert_eq!(
                    memo_cache_e2e::summary(cache.get::<_, Vec<u8>>(func, &(5u64,)).unwrap()),
                    memo_cache_e2e::summary(None),
                    "{damage:?}"
                );
                let v = cache.get_or_compute(func, &(5u64,), || {
                    runs += 1;
                    large_value(5)
                });
                assert_eq!(v, large_value(5));
                v
            }
        };
        assert!(!value.is_empty());
        assert_eq!(runs, 1, "{damage:?}: a damaged entry is recomputed");
        let warned = warnings.warnings();
        assert_eq!(
            warned.len(),
            1,
            "{damage:?}: one warning for the one bad entry: {warned:?}"
        );
        assert!(
            warned[0].contains(&key.to_hex()),
            "{damage:?}: the warning names the key: {}",
            warned[0]
        );
        assert!(
            warned[0].contains(func.name()),
            "{damage:?}: the warning names the function: {}",
            warned[0]
        );

        // The recomputed value was stored and is sound.
        assert!(cache.contains(func, &(5u64,)).unwrap());
        assert!(
            cache.verify(&Verify::new()).unwrap().is_sound(),
            "{damage:?}"
        );
    }
}

#[test]
fn verify_fix_repairs_every_kind_of_damage_and_keeps_the_good_entries() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let mut damaged = Vec::new();
    for (i, damage) in ALL.into_iter().enumerate() {
        damaged.push((damage, store_and_damage(&cache, i as u64, damage)));
    }
    // Good entries beside them, inline and in blobs.
    for i in 100..104u64 {
        cache.put(&BIG, &(i,), &large_value(i)).unwrap();
        cache.put(&SMALL, &(i,), &small_value(i)).unwrap();
    }

    let report = cache.verify(&Verify::new()).unwrap();
    assert_eq!(report.entries_checked, 12);
    let mut found: Vec<_> = report
        .problems
        .iter()
        .map(|p| (p.key.unwrap(), p.kind))
        .collect();
    let mut wanted: Vec<_> = damaged
        .iter()
        .map(|(d, (_, key))| (*key, expected_kind(*d)))
        .collect();
    found.sort_by_key(|(k, _)| *k);
    wanted.sort_by_key(|(k, _)| *k);
    assert_eq!(found, wanted);
    // A report only: nothing changed.
    assert_eq!(cache.stats().unwrap().entries, 12);

    let fixed = cache.verify(&Verify::new().fix(true)).unwrap();
    assert_eq!(fixed.problems.len(), 4);
    assert!(
        fixed.problems.iter().all(|p| p.fixed),
        "{:?}",
        fixed.problems
    );
    assert!(fixed.is_sound());

    let again = cache.verify(&Verify::new()).unwrap();
    assert!(
        again.is_sound() && again.problems.is_empty(),
        "{:?}",
        again.problems
    );
    assert_eq!(again.entries_checked, 8);
    for i in 100..104u64 {
        assert_eq!(
            memo_cache_e2e::summary(cache.get::<_, Vec<u8>>(&BIG, &(i,)).unwrap()),
            memo_cache_e2e::summary(Some(large_value(i)))
        );
        assert_eq!(
            cache.get::<_, String>(&SMALL, &(i,)).unwrap(),
            Some(small_value(i))
        );
    }
    // No file is left behind for the dropped blob entries.
    assert_eq!(memo_cache_e2e::blob_files(dir.path()).len(), 4);
}

#[test]
fn a_changed_return_type_is_a_miss_never_a_garbled_value() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let old = Function::new("integrity::parse", "v1", "u32");
    let new = Function::new("integrity::parse", "v1", "String");
    cache.put(&old, &("42",), &42u32).unwrap();

    assert_ne!(old.key(&("42",)).unwrap(), new.key(&("42",)).unwrap());
    assert_eq!(cache.get::<_, String>(&new, &("42",)).unwrap(), None);
    let value = cache.get_or_compute(&new, &("42",), || "forty-two".to_owned());
    assert_eq!(value, "forty-two");
    assert_eq!(
        cache.get::<_, String>(&new, &("42",)).unwrap().as_deref(),
        Some("forty-two")
    );
    // The old version's entry is now stale, and never served.
    let stats = cache.stats().unwrap();
    assert_eq!((stats.entries, stats.stale), (2, 1));
}

#[test]
fn bytes_that_no_longer_decode_are_a_miss_and_the_entry_is_dropped() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Before {
        total: u64,
        label: String,
    }
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct After {
        sum: u64,
        label: String,
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    // The same identity strings, though the type behind them changed.
    let f = Function::new("integrity::summary", "v1", "Summary");
    // Reads the entry `name` as the type its case asks for; true when a value came back.
    let read = |c: &Cache, name: &str| -> bool {
        match name {
            "renamed field" => c.get::<_, After>(&f, &(name,)).unwrap().is_some(),
            "number as string" => c.get::<_, String>(&f, &(name,)).unwrap().is_some(),
            _ => c.get::<_, Vec<u8>>(&f, &(name,)).unwrap().is_some(),
        }
    };
    let cases = ["renamed field", "number as string", "struct as bytes"];
    for name in &cases {
        if *name == "number as string" {
            cache.put(&f, &(*name,), &7u64).unwrap();
        } else {
            cache
                .put(
                    &f,
                    &(*name,),
                    &Before {
                        total: 3,
                        label: "x".into(),
                    },
                )
                .unwrap();
        }
        let key = f.key(&(*name,)).unwrap();
        let (warnings, _guard) = capture_warnings();
        assert!(!read(&cache, name), "{name}: not a garbled value");
        let warned = warnings.warnings();
        assert_eq!(warned.len(), 1, "{name}: {warned:?}");
        assert!(
            warned[0].contains(&key.to_hex()) && warned[0].contains("integrity::summary"),
            "{}",
            warned[0]
        );
        assert_eq!(
            cache.entry(&key).unwrap(),
            None,
            "{name}: the entry is dropped"
        );
    }
}

/// A blob big enough to be read in pieces by two threads, straight into the `Vec<f64>` the
/// caller gets: a flipped byte in any piece (or the format byte), or a cut, is a miss, never a
/// value with wrong numbers.
#[test]
fn a_damaged_float_blob_read_in_pieces_is_a_miss() {
    static FLOATS: Function = Function::new("integrity::floats", "v1", "Vec<f64>");
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path()).no_remote().open().unwrap();
    // 10 MB: three 4 MiB pieces, the last one short.
    let value: Vec<f64> = (0..1_250_000).map(|i| f64::from(i) * 0.25 - 1.0).collect();
    let stored_len = value.len() * 8 + 1;
    for (i, offset) in [0, 4 << 20, (8 << 20) + 3, stored_len - 2, stored_len - 1]
        .into_iter()
        .enumerate()
    {
        cache.put(&FLOATS, &(i,), &value).unwrap();
        let key = FLOATS.key(&(i,)).unwrap();
        assert_eq!(
            cache.get::<_, Vec<f64>>(&FLOATS, &(i,)).unwrap(),
            Some(value.clone())
        );
        flip_byte(&blob_of(dir.path(), &key), offset);
        assert_eq!(
            cache.get::<_, Vec<f64>>(&FLOATS, &(i,)).unwrap(),
            None,
            "a flipped byte at {offset}"
        );
    }
    cache.put(&FLOATS, &(99,), &value).unwrap();
    let blob = blob_of(dir.path(), &FLOATS.key(&(99,)).unwrap());
    let bytes = fs::read(&blob).unwrap();
    fs::write(&blob, &bytes[..bytes.len() - 9]).unwrap();
    assert_eq!(cache.get::<_, Vec<f64>>(&FLOATS, &(99,)).unwrap(), None);
}
