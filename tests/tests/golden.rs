//! Golden tests: the bytes that keys are derived from and the bytes values are stored as are
//! frozen. Caches live for months and are shared between builds; a key that changes silently
//! turns every entry into a miss, and a stored format that changes silently could decode an old
//! value wrongly.
//!
//! ANY CHANGE TO THE EXPECTED VALUES BELOW MUST COME WITH A BUMP: of `KEY_FORMAT_VERSION` (and the
//! format tag in `key.rs`) for key digests, of the format byte in `codec.rs` for stored bytes.
//! Never update a literal here to make a test pass.

use std::collections::{BTreeMap, HashMap};

use memo_cache::{Function, KEY_FORMAT_VERSION, Ordered, codec};
use serde::Serialize;

static GOLDEN: Function = Function::new("golden::f", "v1", "u64");

/// Serialized with `serialize_bytes`, as `serde_bytes` does: MessagePack bin, not an array.
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

#[derive(Serialize)]
struct Point {
    x: i32,
    y: i32,
    label: Option<String>,
}

#[derive(Serialize)]
enum Shape {
    Empty,
    Circle(f64),
    Rect(u32, u32),
    Named { name: String, sides: u8 },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn nested_map() -> HashMap<String, BTreeMap<u32, Vec<i64>>> {
    let mut m = HashMap::new();
    for (name, n) in [("zeta", 3u32), ("alpha", 1), ("mid", 2)] {
        m.insert(
            name.to_owned(),
            (0..n)
                .map(|i| (i, vec![-(i as i64), i as i64 * 1000]))
                .collect(),
        );
    }
    m
}

fn small_map() -> BTreeMap<String, u8> {
    BTreeMap::from([("b".to_owned(), 2u8), ("a".to_owned(), 1u8)])
}

/// (description, key digest hex) for each pinned argument list.
fn key_cases() -> Vec<(&'static str, String)> {
    let k = |args: &dyn erased::Args| args.key_hex();
    vec![
        ("unit ()", k(&())),
        ("(0u64,)", k(&(0u64,))),
        ("(1u8,) same as (1u64,)", k(&(1u8,))),
        ("(-1i64,)", k(&(-1i64,))),
        ("(u64::MAX,)", k(&(u64::MAX,))),
        ("(i128 beyond 64 bits,)", k(&(i128::from(i64::MIN) * 4,))),
        ("(1.5f64,)", k(&(1.5f64,))),
        ("(\"hello\",)", k(&("hello",))),
        ("(String::new(),)", k(&(String::new(),))),
        ("(true, 'x')", k(&(true, 'x'))),
        ("(bytes [0,1,255],)", k(&(Bytes(&[0, 1, 255]),))),
        ("(Vec<u8> [0,1,255],)", k(&(vec![0u8, 1, 255],))),
        ("(None::<u8>,)", k(&(None::<u8>,))),
        ("(Some(7u8),)", k(&(Some(7u8),))),
        ("(Some(None::<u8>),)", k(&(Some(None::<u8>),))),
        ("(nested HashMap,)", k(&(nested_map(),))),
        (
            "(Point,)",
            k(&(Point {
                x: -3,
                y: 4,
                label: Some("p".into()),
            },)),
        ),
        ("(Shape::Empty,)", k(&(Shape::Empty,))),
        ("(Shape::Circle(2.0),)", k(&(Shape::Circle(2.0),))),
        ("(Shape::Rect(3, 4),)", k(&(Shape::Rect(3, 4),))),
        (
            "(Shape::Named,)",
            k(&(Shape::Named {
                name: "tri".into(),
                sides: 3,
            },)),
        ),
        (
            "(1u32, \"two\", [3u16, 4], (5i8, None::<()>))",
            k(&(1u32, "two", [3u16, 4], (5i8, None::<()>))),
        ),
        ("(Vec<f64> [1.0, -0.5],)", k(&(vec![1.0f64, -0.5],))),
        ("(&[i32] [-1, 2],)", k(&(&[-1i32, 2][..],))),
        ("(Vec<usize> [3],)", k(&(vec![3usize],))),
        ("(Ordered(BTreeMap b, a),)", k(&(Ordered(&small_map()),))),
    ]
}

mod erased {
    pub trait Args {
        fn key_hex(&self) -> String;
    }
    impl<T: serde::Serialize> Args for T {
        fn key_hex(&self) -> String {
            super::GOLDEN.key(self).unwrap().to_hex()
        }
    }
}

/// (description, stored bytes hex) for each pinned value.
fn value_cases() -> Vec<(&'static str, String)> {
    let e = |bytes: Result<Vec<u8>, String>| hex(&bytes.unwrap());
    vec![
        ("42u64", e(codec::encode(&42u64))),
        ("-2i32", e(codec::encode(&-2i32))),
        ("\"hi\"", e(codec::encode(&"hi".to_owned()))),
        ("Vec<u8> [1,2,3]", e(codec::encode(&vec![1u8, 2, 3]))),
        (
            "Vec<f64> [1.0, -0.5]",
            e(codec::encode(&vec![1.0f64, -0.5])),
        ),
        ("Vec<f32> [1.0]", e(codec::encode(&vec![1.0f32]))),
        ("Vec<i64> [-1, 2]", e(codec::encode(&vec![-1i64, 2]))),
        ("Vec<u64> [7]", e(codec::encode(&vec![7u64]))),
        ("Vec<i32> [-1]", e(codec::encode(&vec![-1i32]))),
        ("Vec<u32> [258]", e(codec::encode(&vec![258u32]))),
        (
            "Vec<u16> [1, 2] (MessagePack)",
            e(codec::encode(&vec![1u16, 2])),
        ),
        ("Some(5u8)", e(codec::encode(&Some(5u8)))),
        ("None::<u8>", e(codec::encode(&None::<u8>))),
        (
            "Point",
            e(codec::encode(&Point {
                x: 1,
                y: -1,
                label: None,
            })),
        ),
        ("Shape::Empty", e(codec::encode(&Shape::Empty))),
        ("Shape::Rect(3, 4)", e(codec::encode(&Shape::Rect(3, 4)))),
        ("(Vec<u8> in a tuple,)", e(codec::encode(&(vec![9u8, 8],)))),
        (
            "BTreeMap",
            e(codec::encode(&BTreeMap::from([
                ("b".to_owned(), 2u8),
                ("a".to_owned(), 1u8),
            ]))),
        ),
    ]
}

const EXPECTED_KEYS: &[(&str, &str)] = &[
    (
        "unit ()",
        "1496c0316ac8860957d88ce15e5245cedf9a909d8b72b7dcba05f38d67a616ab",
    ),
    (
        "(0u64,)",
        "643d67120ab9634e9d261090fd37ee79c09e5eb5ec43b5a743d837ef4ff5b183",
    ),
    (
        "(1u8,) same as (1u64,)",
        "b15ea6a7045b2c4597683b6c3b57b8f80e631db9a01751a9a9b3a5de4132fa46",
    ),
    (
        "(-1i64,)",
        "6067ae3e774f94489ae47c89042f9b64a5ac29839331de90952fb7a0231a9468",
    ),
    (
        "(u64::MAX,)",
        "656991f6f3608a2c619f546cd2e6b4c0160afca5a6bc3443e4b438d2e1e3483f",
    ),
    (
        "(i128 beyond 64 bits,)",
        "d2826bbe83ed3a137a517a75db8ce89d4d351d439b56e43db31726eeabe1e1ea",
    ),
    (
        "(1.5f64,)",
        "d73c7de82a07b8e466667a178ae1f7f98eec9e124e807a55c96488a21cbae7d9",
    ),
    (
        "(\"hello\",)",
        "9666da3b94983a3d477436260167e69582cf6e980e228d4ba0c3c5100a02d55f",
    ),
    (
        "(String::new(),)",
        "2042c5cb7620ba3e883a1480b4ae0b9a4054949bdf4dd40f7ca32324f5e175f1",
    ),
    (
        "(true, 'x')",
        "cabd57fbad65fec0398185e01fd2c3082207a829f7c9a9696b620996230b3ff2",
    ),
    (
        "(bytes [0,1,255],)",
        "4d4e3183cfca30c75b9bd4c482fe63563c971acae56ac8e8ead1cc5db8894688",
    ),
    (
        "(Vec<u8> [0,1,255],)",
        "4d4e3183cfca30c75b9bd4c482fe63563c971acae56ac8e8ead1cc5db8894688",
    ),
    (
        "(None::<u8>,)",
        "9b2b1c2c79f98c20a1a282e30d160b74aedd968f4b37aa2cb507504e63458c58",
    ),
    (
        "(Some(7u8),)",
        "8dffcf56853b0f2f604a3e5aa4d23aa1bf39f2acbfb782870cec0aa3cfb8886a",
    ),
    (
        "(Some(None::<u8>),)",
        "572f7bd455ae453a9da5759c0fe7dbb24150e563c7748de876c7bdf1d7a237d8",
    ),
    (
        "(nested HashMap,)",
        "1ed5276ed5d3523f5e036c982dbdc70ae1ce799725eef1a339bae90e28adae9c",
    ),
    (
        "(Point,)",
        "a4ad89148c84b226bbaaf815822b10dd2bb9ae74b7676ccc11c47a2cb212de9b",
    ),
    (
        "(Shape::Empty,)",
        "c4598a310e49cbe39d7725785309aa2b78dd4af49254ffe1ec67e1bc4ae4e01f",
    ),
    (
        "(Shape::Circle(2.0),)",
        "c6ed932a317297b674e8de919b132a610723223d79f3f44747dbc5257994a98d",
    ),
    (
        "(Shape::Rect(3, 4),)",
        "92af87ab3fadeae68af00133c1b521865856a927390fc42815afe6e849ff5186",
    ),
    (
        "(Shape::Named,)",
        "51bbd592cce32986afde92057b58f8ca89111ae6dc0190baad4d584759a1da02",
    ),
    (
        "(1u32, \"two\", [3u16, 4], (5i8, None::<()>))",
        "0db091b0ba7565a24104f0241900f1749dc26ab31824f40db6a0fe4115544a7f",
    ),
    (
        "(Vec<f64> [1.0, -0.5],)",
        "1a7c06ceb318e5fde3905cd8abcff954dd0457e95969865a799ba273ceff3a15",
    ),
    (
        "(&[i32] [-1, 2],)",
        "4b40f9b28f7852202735086bddeb4ff408a8d478a9dfde1d8f6d1fbb96f6e396",
    ),
    (
        "(Vec<usize> [3],)",
        "f0d4f34a233c437d2ec7e1f70393477978c39ef05139ac865b9ed454fe23c66c",
    ),
    (
        "(Ordered(BTreeMap b, a),)",
        "329b07abc5168b5718f4226b1b36780ea966a7793fc8c02efd44870b49bed3c9",
    ),
];

const EXPECTED_VALUES: &[(&str, &str)] = &[
    ("42u64", "2a01"),
    ("-2i32", "fe01"),
    ("\"hi\"", "a2686901"),
    ("Vec<u8> [1,2,3]", "01020302"),
    ("Vec<f64> [1.0, -0.5]", "000000000000f03f000000000000e0bf10"),
    ("Vec<f32> [1.0]", "0000803f11"),
    ("Vec<i64> [-1, 2]", "ffffffffffffffff020000000000000012"),
    ("Vec<u64> [7]", "070000000000000013"),
    ("Vec<i32> [-1]", "ffffffff14"),
    ("Vec<u32> [258]", "0201000015"),
    ("Vec<u16> [1, 2] (MessagePack)", "92010201"),
    ("Some(5u8)", "0501"),
    ("None::<u8>", "c001"),
    ("Point", "83a17801a179ffa56c6162656cc001"),
    ("Shape::Empty", "a5456d70747901"),
    ("Shape::Rect(3, 4)", "81a45265637492030401"),
    ("(Vec<u8> in a tuple,)", "91c402090801"),
    ("BTreeMap", "82a16101a1620201"),
];

#[test]
fn key_digests_are_frozen() {
    assert_eq!(
        KEY_FORMAT_VERSION, 2,
        "a new key format: regenerate EXPECTED_KEYS deliberately"
    );
    let actual = key_cases();
    assert_eq!(actual.len(), EXPECTED_KEYS.len());
    for ((what, got), (expected_what, expected)) in actual.iter().zip(EXPECTED_KEYS) {
        assert_eq!(what, expected_what);
        assert_eq!(
            got, expected,
            "the key of {what} changed: bump KEY_FORMAT_VERSION if this is deliberate"
        );
    }
}

#[test]
fn the_pinned_keys_say_what_they_should() {
    let key = |what: &str| EXPECTED_KEYS.iter().find(|(w, _)| *w == what).unwrap().1;
    // Integer width does not matter, signedness of a value that fits does not either...
    assert_eq!(GOLDEN.key(&(1u8,)).unwrap(), GOLDEN.key(&(1u64,)).unwrap());
    assert_eq!(GOLDEN.key(&(1i32,)).unwrap(), GOLDEN.key(&(1u64,)).unwrap());
    // ...but None and Some(None) do. A byte string and a Vec<u8> of the same bytes are one
    // value, both MessagePack bin (since key format 2).
    assert_eq!(key("(bytes [0,1,255],)"), key("(Vec<u8> [0,1,255],)"));
    assert_ne!(key("(None::<u8>,)"), key("(Some(None::<u8>),)"));
    let all: std::collections::HashSet<&str> = EXPECTED_KEYS.iter().map(|(_, k)| *k).collect();
    assert_eq!(
        all.len(),
        EXPECTED_KEYS.len() - 1,
        "distinct arguments, distinct keys (bytes and Vec<u8> are one argument)"
    );
}

#[test]
fn a_key_is_a_keyed_blake3_of_the_canonical_arguments() {
    // identity = blake3(tag || len-prefixed name, fingerprint, return type); key = keyed hash.
    let mut h = blake3::Hasher::new();
    h.update(b"memo-cache/key/v2\0");
    for part in ["golden::f", "v1", "u64"] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let identity = *h.finalize().as_bytes();
    assert_eq!(GOLDEN.identity().0, identity);
    assert_eq!(
        hex(&identity),
        "46e3d57b319a51b424f0561a1defc8eab0ba8ecd38c4267814daa8523644286e"
    );

    let args = (1u32, "two", [3u16, 4], (5i8, None::<()>));
    let canonical = memo_cache::canonical_bytes(&args).unwrap();
    assert_eq!(hex(&canonical), "9401a374776f9203049205c0");
    let key = blake3::keyed_hash(&identity, &canonical);
    assert_eq!(GOLDEN.key(&args).unwrap().0, *key.as_bytes());

    // Slices and Vecs of plain numbers are one run: bin for u8, else an ext whose type names the
    // element type (f64 26, i32 20) and whose payload is the little-endian elements. Inside
    // Ordered, a map keeps its iteration order behind the marker ext 2 of length 0.
    let canonical = memo_cache::canonical_bytes(&(
        vec![1.0f64, -0.5],
        &[-1i32, 2][..],
        vec![7u8],
        Ordered(&small_map()),
    ))
    .unwrap();
    assert_eq!(
        hex(&canonical),
        "94d81a000000000000f03f000000000000e0bfd714ffffffff02000000c40107c7000282a16101a16202"
    );

    // Map entries are sorted by their encoded bytes, whatever the insertion order.
    let canonical = memo_cache::canonical_bytes(&(nested_map(),)).unwrap();
    assert_eq!(
        hex(&canonical),
        "9183a36d69648200d8160000000000000000000000000000000001d816ffffffffffffffffe803000000000000a47a6574618300d8160000000000000000000000000000000001d816ffffffffffffffffe80300000000000002d816feffffffffffffffd007000000000000a5616c7068618100d81600000000000000000000000000000000"
    );
}

#[test]
fn stored_value_bytes_are_frozen() {
    let actual = value_cases();
    assert_eq!(actual.len(), EXPECTED_VALUES.len());
    for ((what, got), (expected_what, expected)) in actual.iter().zip(EXPECTED_VALUES) {
        assert_eq!(what, expected_what);
        assert_eq!(
            got, expected,
            "the stored bytes of {what} changed: use a new format byte if this is deliberate"
        );
    }
    // And they decode back.
    assert_eq!(
        codec::decode::<Vec<f64>>(codec::encode(&vec![1.0f64, -0.5]).unwrap()).unwrap(),
        [1.0, -0.5]
    );
    assert_eq!(
        codec::decode::<u64>(vec![0x2a, codec::FORMAT_MSGPACK]).unwrap(),
        42
    );
}

/// Compressed values (format `0x20`: a zstd frame of a stored value, then the format byte), as
/// written by the zstd command line at level 1: every later build must read them. What zstd
/// writes may change with its version; what it reads may not.
#[test]
fn compressed_stored_values_decode() {
    let bytes = |hex: &str| -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    };
    assert_eq!(codec::FORMAT_ZSTD, 0x20);
    // `"memo-cache "` 400 times: MessagePack str16 in a frame.
    let text = bytes("28b52ffd603410bd000078da11306d656d6f2d63616368652001010022e1be280120");
    assert_eq!(
        codec::decode::<String>(text.clone()).unwrap(),
        "memo-cache ".repeat(400)
    );
    assert_eq!(
        codec::expanded(text).unwrap().last(),
        Some(&codec::FORMAT_MSGPACK)
    );
    // `(0..1000).map(|i| (i % 8) as f64)`: the raw f64 array format in a frame.
    let floats = bytes(
        "28b52ffd60411e350100680000f03f004000081014181c100a00ef3e840ee00170071c034e80bb15c7806860701c680320",
    );
    let expected: Vec<f64> = (0..1000).map(|i| f64::from(i % 8)).collect();
    assert_eq!(codec::decode::<Vec<f64>>(floats).unwrap(), expected);
}
