//! Compressed values through the public API: what is compressed and what is not, that every
//! kind reads back right from the index, a blob and a first-hit file, and that damaged or
//! hostile compressed bytes are misses, never served and never expanded past their bounds.

mod macro_support;

use memo_cache::{Cache, Digest, Function, codec};
use memo_cache_e2e::{blob_of, capture_warnings, flip_byte, raw_index, run_bounded};
use serde::{Deserialize, Serialize};

static TEXT: Function = Function::new("compression::text", "v1", "String");
static ROWS: Function = Function::new("compression::rows", "v1", "Vec<Row>");
static BYTES: Function = Function::new("compression::bytes", "v1", "Vec<u8>");
static FLOATS: Function = Function::new("compression::floats", "v1", "Vec<f64>");
static ASKED: Function = Function::new("compression::asked", "v1", "Vec<f64>").with_compression(3);
static INTS: Function = Function::new("compression::ints", "v1", "Vec<u32>").with_compression(1);

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Row {
    id: u64,
    name: String,
    score: f64,
    tags: Vec<String>,
}

/// About `len` bytes of log-like text.
fn text(len: usize) -> String {
    let mut out = String::new();
    let mut i = 0u64;
    while out.len() < len {
        out.push_str(&format!(
            "2024-05-17T12:{:02}:{:02}Z INFO request id={:08x} path=/api/items/{} status=200\n",
            i / 60 % 60,
            i % 60,
            i.wrapping_mul(0x9e37_79b9),
            i % 1000
        ));
        i += 1;
    }
    out
}

fn rows(n: u64) -> Vec<Row> {
    (0..n)
        .map(|i| Row {
            id: i,
            name: format!("customer {}", i % 97),
            score: i as f64 / 7.0,
            tags: vec!["new".into(), format!("region-{}", i % 5)],
        })
        .collect()
}

/// Few distinct values, scattered: compressible, but a number array.
fn steps(n: u64) -> Vec<f64> {
    (0..n)
        .map(|i| ((i * 2_654_435_761) >> 9 & 7) as f64)
        .collect()
}

fn entry(cache: &Cache, func: &Function, arg: u64) -> memo_cache::EntryInfo {
    let key = func.key(&(arg,)).unwrap();
    cache
        .entry(&key)
        .unwrap()
        .unwrap_or_else(|| panic!("no entry {key}"))
}

fn encoded_len<T: Serialize + 'static>(value: &T) -> u64 {
    codec::encode(value).unwrap().len() as u64
}

#[test]
fn the_builder_sets_the_level_and_zero_turns_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let value = text(50_000);
    for (level, compressed) in [(0, false), (1, true), (19, true)] {
        let cache = Cache::builder(dir.path()).compress(level).open().unwrap();
        assert_eq!(cache.compression_level(), level);
        cache.put(&TEXT, &(level as u64,), &value).unwrap();
        let stored = entry(&cache, &TEXT, level as u64);
        assert_eq!(stored.compressed, compressed, "level {level}");
        if compressed {
            assert!(stored.bytes < encoded_len(&value) / 3, "level {level}");
        } else {
            assert_eq!(stored.bytes, encoded_len(&value));
        }
    }
    let default = Cache::open(dir.path()).unwrap();
    assert_eq!(default.compression_level(), memo_cache::DEFAULT_COMPRESSION);
}

#[test]
fn every_kind_round_trips_inline_and_in_a_blob() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path()).compress(3).open().unwrap();
    // Small: under the threshold, stored as encoded.
    let tiny = text(100);
    cache.put(&TEXT, &(1,), &tiny).unwrap();
    assert!(!entry(&cache, &TEXT, 1).compressed);
    // Compressed to under the inline threshold, and compressed to a blob.
    for (arg, len) in [(2, 40_000), (3, 2_000_000)] {
        let value = text(len);
        cache.put(&TEXT, &(arg,), &value).unwrap();
        let info = entry(&cache, &TEXT, arg);
        assert!(info.compressed);
        assert_eq!(
            info.in_blob,
            info.bytes > memo_cache::DEFAULT_INLINE_THRESHOLD as u64
        );
        assert_eq!(cache.get::<_, String>(&TEXT, &(arg,)).unwrap(), Some(value));
    }
    assert!(entry(&cache, &TEXT, 3).in_blob);
    assert_eq!(cache.get::<_, String>(&TEXT, &(1,)).unwrap(), Some(tiny));

    let table = rows(20_000);
    cache.put(&ROWS, &(1,), &table).unwrap();
    assert!(entry(&cache, &ROWS, 1).compressed);
    assert_eq!(cache.get::<_, Vec<Row>>(&ROWS, &(1,)).unwrap(), Some(table));

    let bytes: Vec<u8> = text(100_000).into_bytes();
    cache.put(&BYTES, &(1,), &bytes).unwrap();
    assert!(entry(&cache, &BYTES, 1).compressed);
    assert_eq!(cache.get::<_, Vec<u8>>(&BYTES, &(1,)).unwrap(), Some(bytes));

    let ints: Vec<u32> = (0..300_000).map(|i| i % 100).collect();
    cache.put(&INTS, &(1,), &ints).unwrap();
    assert!(entry(&cache, &INTS, 1).compressed);
    assert_eq!(cache.get::<_, Vec<u32>>(&INTS, &(1,)).unwrap(), Some(ints));
}

#[test]
fn number_arrays_are_compressed_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path()).compress(3).open().unwrap();
    let values = steps(500_000);
    let raw = encoded_len(&values);
    cache.put(&FLOATS, &(1,), &values).unwrap();
    let plain = entry(&cache, &FLOATS, 1);
    assert!(!plain.compressed);
    assert_eq!(plain.bytes, raw);

    // Asked by the function (what `#[disk_cache(compress = 3)]` does).
    cache.put(&ASKED, &(1,), &values).unwrap();
    let asked = entry(&cache, &ASKED, 1);
    assert!(asked.compressed && asked.bytes < raw / 4, "{asked:?}");
    assert_eq!(
        cache.get::<_, Vec<f64>>(&ASKED, &(1,)).unwrap(),
        Some(values.clone())
    );

    // Asked by the cache.
    let numbers = Cache::builder(dir.path())
        .compress(3)
        .compress_numbers(true)
        .open()
        .unwrap();
    numbers.put(&FLOATS, &(2,), &values).unwrap();
    assert!(entry(&numbers, &FLOATS, 2).compressed);
    assert_eq!(
        numbers.get::<_, Vec<f64>>(&FLOATS, &(2,)).unwrap(),
        Some(values.clone())
    );

    // A function's own 0 keeps its values as they are, whatever the cache says.
    let never = Function::new("compression::never", "v1", "Vec<f64>").with_compression(0);
    numbers.put(&never, &(1,), &values).unwrap();
    assert!(!entry(&numbers, &never, 1).compressed);

    // Values that do not shrink by a tenth are stored as they are: random mantissas.
    let mut state = 7u64;
    let noise: Vec<f64> = (0..100_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            f64::from_bits(state >> 2)
        })
        .collect();
    numbers.put(&ASKED, &(2,), &noise).unwrap();
    let info = entry(&numbers, &ASKED, 2);
    assert!(!info.compressed);
    assert_eq!(info.bytes, encoded_len(&noise));
}

#[test]
fn the_stored_bytes_are_hashed_and_sized_as_stored_and_read_back_encoded() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path()).compress(3).open().unwrap();
    let value = text(200_000);
    cache.put(&TEXT, &(1,), &value).unwrap();
    let key = TEXT.key(&(1,)).unwrap();
    let info = entry(&cache, &TEXT, 1);
    let on_disk = std::fs::read(blob_of(dir.path(), &key)).unwrap();
    assert_eq!(on_disk.len() as u64, info.bytes);
    assert_eq!(Digest::of(&on_disk), info.hash);
    assert_eq!(on_disk.last(), Some(&codec::FORMAT_ZSTD));
    assert_eq!(
        cache.stored_bytes(&key).unwrap().unwrap(),
        codec::encode(&value).unwrap(),
        "stored_bytes hands out the encoded value"
    );
    assert_eq!(cache.stats().unwrap().bytes, info.bytes);
    assert!(cache.verify(&memo_cache::Verify::new()).unwrap().is_sound());
}

#[test]
fn a_damaged_compressed_blob_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path()).compress(3).open().unwrap();
    let value = text(500_000);
    cache.put(&TEXT, &(1,), &value).unwrap();
    let blob = blob_of(dir.path(), &TEXT.key(&(1,)).unwrap());
    flip_byte(&blob, std::fs::metadata(&blob).unwrap().len() as usize / 2);

    let (warnings, _guard) = capture_warnings();
    assert_eq!(cache.get::<_, String>(&TEXT, &(1,)).unwrap(), None);
    assert!(
        warnings.text().contains("do not match their hash"),
        "{}",
        warnings.text()
    );
    let mut computed = false;
    let again = cache.get_or_compute(&TEXT, &(1,), || {
        computed = true;
        value.clone()
    });
    assert!(computed);
    assert_eq!(again, value);
    assert_eq!(cache.get::<_, String>(&TEXT, &(1,)).unwrap(), Some(value));
}

/// A zstd frame declaring `size` bytes, with one RLE block of `run` bytes: a bomb when `size` is
/// large, a liar when it differs from `run`.
fn frame(size: u64, run: u32) -> Vec<u8> {
    let mut out = vec![0x28, 0xb5, 0x2f, 0xfd, 0b1110_0000];
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&(1 | (1 << 1) | (run << 3)).to_le_bytes()[..3]);
    out.push(b'x');
    out.push(codec::FORMAT_ZSTD);
    out
}

/// Replaces the inline value of `key` by `bytes`, with a matching hash and size: what a hostile
/// writer with access to the index could plant.
fn plant(dir: &std::path::Path, key: &memo_cache::Key, bytes: &[u8]) {
    let changed = raw_index(dir)
        .execute(
            "UPDATE entries SET value = ?1, hash = ?2, size = ?3, encoding = 1 WHERE key = ?4",
            rusqlite::params![
                bytes,
                &Digest::of(bytes).0[..],
                bytes.len() as i64,
                &key.0[..]
            ],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

#[test]
fn a_decompression_bomb_or_a_lying_frame_is_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path()).compress(3).open().unwrap();
    for (arg, planted) in [
        // Declares a terabyte.
        (1u64, frame(1 << 40, 1000)),
        // Declares just over the limit.
        (2, frame(memo_cache::MAX_EXPANDED as u64 + 1, 1000)),
        // Holds more than it declares.
        (3, frame(100, 100_000)),
        // Not a frame at all.
        (4, vec![1, 2, 3, codec::FORMAT_ZSTD]),
    ] {
        cache.put(&TEXT, &(arg,), &"short".to_string()).unwrap();
        let key = TEXT.key(&(arg,)).unwrap();
        plant(dir.path(), &key, &planted);
        let (warnings, _guard) = capture_warnings();
        assert_eq!(
            cache.get::<_, String>(&TEXT, &(arg,)).unwrap(),
            None,
            "{arg}"
        );
        assert!(
            warnings.text().contains("does not decode"),
            "{arg}: {}",
            warnings.text()
        );
        assert!(cache.entry(&key).unwrap().is_none(), "{arg}: dropped");
    }
    // `stored_bytes` (the CLI's `show --value`) says why, and expands nothing either.
    cache.put(&TEXT, &(5,), &"short".to_string()).unwrap();
    let key = TEXT.key(&(5,)).unwrap();
    plant(dir.path(), &key, &frame(1 << 40, 1000));
    let err = cache.stored_bytes(&key).unwrap_err().to_string();
    assert!(err.contains("over the limit"), "{err}");
}

const CHILD: &str = env!("CARGO_BIN_EXE_macro_child");

/// A program using `#[disk_cache]` stores a 100 KB report with `MEMO_CACHE_COMPRESS` as given
/// (unset: `None`), then reads it back in a second process. Returns whether the entry is
/// compressed, its stored size, and what the first run printed on stderr.
fn report_stored_with(level: Option<&str>) -> (bool, u64, String) {
    let dir = tempfile::tempdir().unwrap();
    let run = |dir: &std::path::Path| {
        let mut command = macro_support::command(CHILD, dir, &["report", "2500"]);
        match level {
            Some(level) => command.env("MEMO_CACHE_COMPRESS", level),
            None => command.env_remove("MEMO_CACHE_COMPRESS"),
        };
        macro_support::finish(CHILD, run_bounded(&mut command))
    };
    let first = run(dir.path());
    assert_eq!(first.count("report"), 1);
    let second = run(dir.path());
    assert_eq!(
        second.count("report"),
        0,
        "the second run is served from disk"
    );
    assert_eq!(second.results(), first.results());
    let cache = Cache::open(dir.path()).unwrap();
    let entries = cache.entries(None).unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    (entries[0].compressed, entries[0].bytes, first.stderr)
}

#[test]
fn memo_cache_compress_sets_the_level_of_a_program_using_the_attribute() {
    let (compressed, default_size, _) = report_stored_with(None);
    assert!(compressed, "compressed by default");
    let (compressed, plain_size, _) = report_stored_with(Some("0"));
    assert!(!compressed, "0 turns compression off");
    assert!(plain_size > 90_000, "{plain_size}");
    assert!(
        default_size * 4 < plain_size,
        "{default_size} of {plain_size}"
    );
    let (compressed, high_size, _) = report_stored_with(Some("19"));
    assert!(compressed);
    assert!(high_size <= default_size, "{high_size} > {default_size}");
    // Not a level (zstd's negative "fast" levels are not offered): said so, and the default
    // applies.
    for bad in ["lots", "-5", "23"] {
        let (compressed, size, stderr) = report_stored_with(Some(bad));
        assert!(compressed, "{bad}");
        assert_eq!(size, default_size, "{bad}");
        assert!(
            stderr.contains("MEMO_CACHE_COMPRESS") && stderr.contains("not a zstd level"),
            "{bad}: {stderr}"
        );
    }
}

#[test]
fn verify_reports_and_fixes_compressed_values_that_cannot_be_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let good = codec::encode(&text(20_000)).unwrap();
    let packed = zstd::bulk::compress(&good, 1).unwrap();
    let with_format = |mut frame: Vec<u8>| {
        frame.push(codec::FORMAT_ZSTD);
        frame
    };
    let planted: Vec<(&str, Vec<u8>)> = vec![
        ("over the limit", frame(1 << 40, 1000)),
        ("cannot be read back", frame(100, 100_000)),
        (
            "no valid zstd frame header",
            vec![1, 2, 3, codec::FORMAT_ZSTD],
        ),
        ("zstd", with_format(packed[..packed.len() / 2].to_vec())),
        (
            "bytes after the compressed value",
            with_format([packed.clone(), packed.clone()].concat()),
        ),
        (
            "inside a compressed value",
            with_format(zstd::bulk::compress(&with_format(packed.clone()), 1).unwrap()),
        ),
    ];
    for (arg, (_, bytes)) in planted.iter().enumerate() {
        cache
            .put(&TEXT, &(arg as u64,), &"short".to_string())
            .unwrap();
        plant(dir.path(), &TEXT.key(&(arg as u64,)).unwrap(), bytes);
    }
    // One good compressed value beside them.
    cache.put(&TEXT, &(99u64,), &text(20_000)).unwrap();
    assert!(entry(&cache, &TEXT, 99).compressed);

    let report = cache.verify(&memo_cache::Verify::new()).unwrap();
    assert_eq!(report.problems.len(), planted.len(), "{report:?}");
    for (arg, (why, _)) in planted.iter().enumerate() {
        let key = TEXT.key(&(arg as u64,)).unwrap();
        let problem = report
            .problems
            .iter()
            .find(|p| p.key == Some(key))
            .unwrap_or_else(|| panic!("{why}: not reported"));
        assert_eq!(problem.kind, memo_cache::ProblemKind::BadValue, "{why}");
        assert!(problem.detail.contains(why), "{why}: {}", problem.detail);
    }
    let fixed = cache.verify(&memo_cache::Verify::new().fix(true)).unwrap();
    assert!(fixed.problems.iter().all(|p| p.fixed), "{fixed:?}");
    assert!(cache.verify(&memo_cache::Verify::new()).unwrap().is_sound());
    assert_eq!(
        cache.entries(None).unwrap().len(),
        1,
        "the good value stays"
    );
}

#[test]
fn a_value_with_bytes_after_it_is_a_miss_and_dropped() {
    // Stored bytes are one MessagePack value and the format byte: anything more means these
    // are not the bytes memo-cache stored, compressed or not.
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let padded = vec![0xa2, b'a', b'b', 0xc1, 0xc1, b'x', codec::FORMAT_MSGPACK];
    let mut compressed = zstd::bulk::compress(
        &{
            let mut long = vec![0xa2, b'a', b'b'];
            long.resize(1 << 20, 0);
            long.push(codec::FORMAT_MSGPACK);
            long
        },
        1,
    )
    .unwrap();
    compressed.push(codec::FORMAT_ZSTD);
    for (arg, planted) in [(1u64, padded), (2, compressed)] {
        cache.put(&TEXT, &(arg,), &"ab".to_string()).unwrap();
        let key = TEXT.key(&(arg,)).unwrap();
        plant(dir.path(), &key, &planted);
        assert_eq!(
            cache.get::<_, String>(&TEXT, &(arg,)).unwrap(),
            None,
            "{arg}"
        );
        assert!(cache.entry(&key).unwrap().is_none(), "{arg}: dropped");
    }
}

/// Bytes zstd cannot shrink.
fn noise_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn large_arrays_stored_from_their_own_memory_are_the_bytes_an_encoding_stores() {
    // A large byte or number vector that stays uncompressed is written from its own memory with
    // its format byte after it, not copied into an encoding first: the blob must hold exactly
    // what the encoding would, hash and all, and read back; a compressible one still compresses.
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let bytes = noise_bytes(3 << 20);
    let floats: Vec<f64> = (0..300_000).map(|i| (i as f64).sqrt().sin()).collect();
    let zeros = vec![0u8; 1 << 20];
    cache.put(&BYTES, &(1,), &bytes).unwrap();
    cache.put(&FLOATS, &(1,), &floats).unwrap();
    cache.put(&BYTES, &(2,), &zeros).unwrap();
    for (key, encoded) in [
        (BYTES.key(&(1,)).unwrap(), codec::encode(&bytes).unwrap()),
        (FLOATS.key(&(1,)).unwrap(), codec::encode(&floats).unwrap()),
    ] {
        let blob = blob_of(dir.path(), &key);
        let stored = std::fs::read(&blob).unwrap();
        assert!(
            stored == encoded,
            "{}: not the encoding's bytes",
            blob.display()
        );
        let hash = Digest::of(&stored).to_hex();
        assert!(
            blob.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .ends_with(&hash[..16]),
            "{}: named by another hash than its bytes' {hash}",
            blob.display()
        );
    }
    // The zeros compress to a few hundred bytes, kept in the index: no third blob.
    assert_eq!(memo_cache_e2e::blob_files(dir.path()).len(), 2);
    drop(cache);
    let cache = Cache::open(dir.path()).unwrap();
    assert_eq!(cache.get::<_, Vec<u8>>(&BYTES, &(1,)).unwrap(), Some(bytes));
    assert_eq!(
        cache.get::<_, Vec<f64>>(&FLOATS, &(1,)).unwrap(),
        Some(floats)
    );
    assert_eq!(cache.get::<_, Vec<u8>>(&BYTES, &(2,)).unwrap(), Some(zeros));
    assert!(cache.verify(&memo_cache::Verify::new()).unwrap().is_sound());
}
