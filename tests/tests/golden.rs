//! Golden tests: the bytes that keys are derived from and the bytes values are stored as are
//! frozen. Caches live for months and are shared between builds; a key that changes silently
//! turns every entry into a miss, and a stored format that changes silently could decode an old
//! value wrongly.
//!
//! ANY CHANGE TO THE EXPECTED VALUES BELOW MUST COME WITH A BUMP: of `KEY_FORMAT_VERSION` (and the
//! format tag in `key.rs`) for key digests, of the format byte in `codec.rs` for stored bytes.
//! Never update a literal here to make a test pass.

use std::collections::{BTreeMap, HashMap};

use memo_cache::{Function, KEY_FORMAT_VERSION, codec};
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
        "cf947d66bf8b8350d3303e323ab49ebe8d3051f7499dbdb1546ab5f29f534562",
    ),
    (
        "(0u64,)",
        "9fea9c0472a0d03d9ae3fab1447e2fe5fad08f2d88594363194a3f63d42ffbf3",
    ),
    (
        "(1u8,) same as (1u64,)",
        "b702b2495480dd6fd0265b8d3d069b2ae24227e8bc3dd407cb37b273ce972ff1",
    ),
    (
        "(-1i64,)",
        "7f97f36601c2c920e4a6434c9e7f7c3446c8d003f498400cd32135b97db39cc8",
    ),
    (
        "(u64::MAX,)",
        "3511f7e8d181581d6505fc78ab00d176b3346677c73f9d9afcd5c6800a74957c",
    ),
    (
        "(i128 beyond 64 bits,)",
        "023021705fbef3b257a4005d28fd9d98ca040ca53cdb7172636ede4750ddd885",
    ),
    (
        "(1.5f64,)",
        "d5ed839f4402199225279b326e6012f177c5581eefa89866ba3f55315ddc24f6",
    ),
    (
        "(\"hello\",)",
        "dafa03b6e5c599546d69346cb0bc30f6529b2e5958940d8843cdf35ddffaee2d",
    ),
    (
        "(String::new(),)",
        "002a6e44bc52af9c001e58d022bf339a2933909644a124c85ab8dd4016eae7e9",
    ),
    (
        "(true, 'x')",
        "c6776e4e1a6ce9f39a866a691586d3f688823ed14a5148eec7a648db5271e32b",
    ),
    (
        "(bytes [0,1,255],)",
        "26728de2e5ce5271f4bb0292582d1a77489d3a73656f4f698f0406a85c17a2b5",
    ),
    (
        "(Vec<u8> [0,1,255],)",
        "dbf9a3f30d1adca84e2d898206378a3c1c3a5f6de7150d1a45c18d90f3ed6945",
    ),
    (
        "(None::<u8>,)",
        "fe552dff5b7676a035c00bf3b7ddb766017e61748d3838b978b6d68d25b34e67",
    ),
    (
        "(Some(7u8),)",
        "bdd4bb0c03f2ca141d7579d03e2e18be58f1f09673e970f6dd84be5d64ed4b03",
    ),
    (
        "(Some(None::<u8>),)",
        "30fe9ab587d8695205fd99f1247d846ec0295c1e0e8d230646113201b9382af9",
    ),
    (
        "(nested HashMap,)",
        "dd81f3e7c85fc2576ab2700ac2e238f5b302a5cd16e60c79a48438709135e125",
    ),
    (
        "(Point,)",
        "36f2a9be6a85c5733ed1710c1e71400848a978c7b4eb8bc2efdbcbd8ce95bb33",
    ),
    (
        "(Shape::Empty,)",
        "915012b50ea0e93ab648673b53f9dbc815f0582f5550a2d47d85b5ce257d2181",
    ),
    (
        "(Shape::Circle(2.0),)",
        "46b288f71c79aac9f2d9f694cc502252824ecbc114dd2cdc9f5424b98ab437ed",
    ),
    (
        "(Shape::Rect(3, 4),)",
        "4cc0e467f12e4d264f7f51b9bd8ba60020849a331681b988c4feac56ee828bd9",
    ),
    (
        "(Shape::Named,)",
        "6000bef3abcb61b723a1cfbcfc3650ed479488883e1971798beb7a01212b255f",
    ),
    (
        "(1u32, \"two\", [3u16, 4], (5i8, None::<()>))",
        "872b6b3b1e471eabe26933e4586b97b4e946a69bd81163131ef6307317634135",
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
        KEY_FORMAT_VERSION, 1,
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
    // ...but byte strings and integer arrays, None and Some(None), do.
    assert_ne!(key("(bytes [0,1,255],)"), key("(Vec<u8> [0,1,255],)"));
    assert_ne!(key("(None::<u8>,)"), key("(Some(None::<u8>),)"));
    let all: std::collections::HashSet<&str> = EXPECTED_KEYS.iter().map(|(_, k)| *k).collect();
    assert_eq!(
        all.len(),
        EXPECTED_KEYS.len(),
        "distinct arguments, distinct keys"
    );
}

#[test]
fn a_key_is_a_keyed_blake3_of_the_canonical_arguments() {
    // identity = blake3(tag || len-prefixed name, fingerprint, return type); key = keyed hash.
    let mut h = blake3::Hasher::new();
    h.update(b"memo-cache/key/v1\0");
    for part in ["golden::f", "v1", "u64"] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let identity = *h.finalize().as_bytes();
    assert_eq!(GOLDEN.identity().0, identity);
    assert_eq!(
        hex(&identity),
        "db025598d846602ef5d7638c3f4faaa20b51b128a908befd3b4775410ab7e3f5"
    );

    let args = (1u32, "two", [3u16, 4], (5i8, None::<()>));
    let canonical = memo_cache::canonical_bytes(&args).unwrap();
    assert_eq!(hex(&canonical), "9401a374776f9203049205c0");
    let key = blake3::keyed_hash(&identity, &canonical);
    assert_eq!(GOLDEN.key(&args).unwrap().0, *key.as_bytes());

    // Map entries are sorted by their encoded bytes, whatever the insertion order.
    let canonical = memo_cache::canonical_bytes(&(nested_map(),)).unwrap();
    assert_eq!(
        hex(&canonical),
        "9183a36d696482009200000192ffcd03e8a47a65746183009200000192ffcd03e80292fecd07d0a5616c7068618100920000"
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
