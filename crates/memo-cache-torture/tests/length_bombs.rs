//! Item 5, last part: stored values whose length prefixes claim gigabytes, and deeply nested
//! values. The address space of this test process is capped at 3 GiB, so a decoder that trusted
//! a prefix and allocated 4 GiB (or 32 GiB for 4 G u64s) would abort the process and fail the
//! test instead of passing on a machine with memory to spare.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Once;

use memo_cache::codec::{self, FORMAT_MSGPACK};
use memo_cache::{Cache, Digest, Function};
use serde::Deserialize;
use serde::de::DeserializeOwned;

fn cap_address_space() {
    static CAP: Once = Once::new();
    CAP.call_once(|| {
        let limit = libc::rlimit {
            rlim_cur: 3 << 30,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: setrlimit with a valid pointer.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
    });
}

#[derive(Deserialize, Debug)]
#[allow(dead_code)]
enum Tree {
    Leaf(u64),
    Node(Vec<Tree>),
}

#[derive(Deserialize, Debug)]
#[allow(dead_code)]
struct Record {
    name: String,
    data: Vec<u64>,
}

const HUGE: [u8; 4] = [0xff, 0xff, 0xff, 0xf0];

fn with_format(mut payload: Vec<u8>) -> Vec<u8> {
    payload.extend_from_slice(b"some trailing bytes");
    payload.push(FORMAT_MSGPACK);
    payload
}

fn bombs() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = vec![
        ("str32", [&[0xdb][..], &HUGE].concat()),
        ("bin32 in a tuple", [&[0x91, 0xc6][..], &HUGE].concat()),
        (
            "array32 of strings",
            [&[0xdd][..], &HUGE, &[0xa1, b'x']].concat(),
        ),
        (
            "array32 of u64",
            [&[0xdd][..], &HUGE, &[0x01, 0x02]].concat(),
        ),
        ("map32", [&[0xdf][..], &HUGE, &[0xa1, b'k', 0x01]].concat()),
        ("ext32", [&[0xc9][..], &HUGE, &[0x01]].concat()),
        (
            "struct field str32",
            [&[0x82, 0xa4][..], b"name", &[0xdb], &HUGE].concat(),
        ),
        (
            "struct field array32",
            [
                &[0x82, 0xa4][..],
                b"name",
                &[0xa1, b'n', 0xa4],
                b"data",
                &[0xdd],
                &HUGE,
            ]
            .concat(),
        ),
    ];
    let mut deep = Vec::new();
    for _ in 0..200_000 {
        deep.extend_from_slice(&[0x81, 0xa4]);
        deep.extend_from_slice(b"Node");
        deep.push(0x91);
    }
    out.push(("200 000 nested enum levels", deep));
    out.push(("200 000 nested arrays", vec![0x91; 200_000]));
    out.into_iter()
        .map(|(name, payload)| (name, with_format(payload)))
        .collect()
}

fn decode_all(stored: &[u8]) {
    fn one<T: DeserializeOwned + 'static>(stored: &[u8]) {
        let _ = codec::decode::<T>(stored.to_vec());
    }
    one::<String>(stored);
    one::<(Vec<u8>,)>(stored);
    one::<Vec<String>>(stored);
    one::<Vec<u64>>(stored);
    one::<Vec<Vec<u64>>>(stored);
    one::<HashMap<String, u64>>(stored);
    one::<BTreeMap<String, u64>>(stored);
    one::<Record>(stored);
    one::<Tree>(stored);
    one::<Vec<f64>>(stored);
    one::<Vec<u8>>(stored);
}

#[test]
fn the_decoder_refuses_length_prefixes_that_claim_gigabytes() {
    cap_address_space();
    for (name, stored) in bombs() {
        decode_all(&stored);
        assert!(
            codec::decode::<String>(stored.clone()).is_err(),
            "{name} decoded as a String"
        );
    }
}

/// Replaces the stored bytes of the entry of `func` for `args` with `stored`, hash and size
/// made to match, so only the decoder stands between the bytes and the caller.
fn plant(dir: &Path, func: &Function, args: &(u64,), stored: &[u8]) {
    let key = func.key(args).unwrap();
    let db = rusqlite::Connection::open(dir.join("index.sqlite3")).unwrap();
    let n = db
        .execute(
            "UPDATE entries SET value = ?2, size = ?3, hash = ?4 WHERE key = ?1",
            rusqlite::params![
                &key.0[..],
                stored,
                stored.len() as i64,
                &Digest::of(stored).0[..]
            ],
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn a_stored_value_whose_prefix_claims_gigabytes_is_a_miss_then_recomputed() {
    cap_address_space();
    static STRINGS: Function = Function::new("bombs::strings", "v1", "Vec<String>");
    static RECORDS: Function = Function::new("bombs::record", "v1", "Record");
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let right = |i: u64| vec![format!("value {i}"); 3];
    for (i, (name, stored)) in bombs().into_iter().enumerate() {
        let i = i as u64;
        cache.put(&STRINGS, &(i,), &right(i)).unwrap();
        plant(dir.path(), &STRINGS, &(i,), &stored);
        assert_eq!(
            cache.get::<_, Vec<String>>(&STRINGS, &(i,)).unwrap(),
            None,
            "{name}"
        );
        plant_and_get_record(&cache, dir.path(), &RECORDS, i, &stored);
        assert_eq!(
            cache.get_or_compute(&STRINGS, &(i,), || right(i)),
            right(i),
            "{name}"
        );
        assert_eq!(
            cache.get::<_, Vec<String>>(&STRINGS, &(i,)).unwrap(),
            Some(right(i)),
            "{name}: not stored again"
        );
    }
}

fn plant_and_get_record(cache: &Cache, dir: &Path, func: &Function, i: u64, stored: &[u8]) {
    #[derive(serde::Serialize)]
    struct Plain {
        name: String,
        data: Vec<u64>,
    }
    cache
        .put(
            func,
            &(i,),
            &Plain {
                name: "r".into(),
                data: vec![1, 2, 3],
            },
        )
        .unwrap();
    plant(dir, func, &(i,), stored);
    assert!(cache.get::<_, Record>(func, &(i,)).unwrap().is_none());
}

#[test]
fn values_nested_a_hundred_deep_still_round_trip() {
    #[derive(serde::Serialize, Deserialize, Debug, PartialEq)]
    enum List {
        Nil,
        Cons(u32, Box<List>),
    }
    let mut list = List::Nil;
    for i in 0..100 {
        list = List::Cons(i, Box::new(list));
    }
    let stored = codec::encode(&list).unwrap();
    assert_eq!(codec::decode::<List>(stored).unwrap(), list);
}
