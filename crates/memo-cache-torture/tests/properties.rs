//! Item 6: property tests of the stored-value decoder and the key encoder (cargo-fuzz needs a
//! nightly toolchain; proptest runs on stable, in CI).
//!
//! - The decoder never panics, whatever the bytes and whatever type they are decoded into:
//!   random bytes, and real encodings with bytes flipped, cut short or extended.
//! - Keys: equal arguments give equal keys, however their maps were built; unequal arguments
//!   give unequal keys, and unequal canonical bytes (the encoding is injective per type).

use std::collections::{BTreeMap, HashMap};

use memo_cache::codec;
use memo_cache::{Function, Unordered};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// A value of every shape serde hands a serializer.
#[derive(Serialize, Deserialize, Debug, Clone)]
enum Value {
    Unit,
    Bool(bool),
    I64(i64),
    U64(u64),
    I128(i128),
    F64(f64),
    F32(f32),
    Char(char),
    Str(String),
    Opt(Option<Box<Value>>),
    Seq(Vec<Value>),
    Tuple(u8, String),
    Struct { a: i32, b: Option<String> },
    Map(BTreeMap<String, Value>),
    // Sequences of plain numbers, which keys encode as one run each (key format 2).
    Bytes(Vec<u8>),
    Floats(Vec<f64>),
    Ints(Vec<i32>),
}

/// Equality that tells floats apart by their bits: 0.0 and -0.0 are different arguments (1/x
/// differs), and a NaN equals itself.
impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        use Value::*;
        match (self, other) {
            (F64(a), F64(b)) => a.to_bits() == b.to_bits(),
            (F32(a), F32(b)) => a.to_bits() == b.to_bits(),
            (Unit, Unit) => true,
            (Bool(a), Bool(b)) => a == b,
            (I64(a), I64(b)) => a == b,
            (U64(a), U64(b)) => a == b,
            (I128(a), I128(b)) => a == b,
            (Char(a), Char(b)) => a == b,
            (Str(a), Str(b)) => a == b,
            (Opt(a), Opt(b)) => a == b,
            (Seq(a), Seq(b)) => a == b,
            (Tuple(a, b), Tuple(c, d)) => a == c && b == d,
            (Struct { a, b }, Struct { a: c, b: d }) => a == c && b == d,
            (Map(a), Map(b)) => a == b,
            (Bytes(a), Bytes(b)) => a == b,
            (Floats(a), Floats(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            (Ints(a), Ints(b)) => a == b,
            _ => false,
        }
    }
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Unit),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::I64),
        (0u64..300).prop_map(Value::U64),
        any::<u64>().prop_map(Value::U64),
        any::<i128>().prop_map(Value::I128),
        any::<f64>().prop_map(Value::F64),
        any::<f32>().prop_map(Value::F32),
        any::<char>().prop_map(Value::Char),
        ".{0,12}".prop_map(Value::Str),
        (any::<u8>(), "[a-c]{0,3}").prop_map(|(a, b)| Value::Tuple(a, b)),
        (any::<i32>(), proptest::option::of("[a-z]{0,4}"))
            .prop_map(|(a, b)| Value::Struct { a, b }),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bytes),
        proptest::collection::vec(prop_oneof![any::<f64>(), Just(0.0), Just(-0.0)], 0..6)
            .prop_map(Value::Floats),
        proptest::collection::vec(-3i32..3, 0..6).prop_map(Value::Ints),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::option::of(inner.clone().prop_map(Box::new)).prop_map(Value::Opt),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Seq),
            proptest::collection::btree_map("[a-d]{0,3}", inner, 0..5).prop_map(Value::Map),
        ]
    })
}

static F: Function = Function::new("properties::f", "v1", "u8");

fn decode_as_everything(bytes: &[u8]) {
    fn one<T: serde::de::DeserializeOwned + 'static>(bytes: &[u8]) {
        let _ = codec::decode::<T>(bytes.to_vec());
    }
    one::<Value>(bytes);
    one::<Vec<Value>>(bytes);
    one::<u64>(bytes);
    one::<i128>(bytes);
    one::<f32>(bytes);
    one::<char>(bytes);
    one::<String>(bytes);
    one::<Option<String>>(bytes);
    one::<Vec<u8>>(bytes);
    one::<Vec<f64>>(bytes);
    one::<Vec<u32>>(bytes);
    one::<Vec<i64>>(bytes);
    one::<(u8, String, Vec<u8>)>(bytes);
    one::<HashMap<String, i64>>(bytes);
    one::<BTreeMap<u64, Vec<u8>>>(bytes);
    one::<Vec<Option<bool>>>(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_decoder_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        decode_as_everything(&bytes);
        for format in [0x01, 0x02, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x00, 0xff] {
            let mut with_format = bytes.clone();
            with_format.push(format);
            decode_as_everything(&with_format);
        }
    }

    #[test]
    fn the_decoder_never_panics_on_damaged_encodings(
        v in value(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        tail in proptest::collection::vec(any::<u8>(), 0..4),
    ) {
        let stored = codec::encode(&v).unwrap();
        prop_assert_eq!(codec::decode::<Value>(stored.clone()).unwrap(), v);
        let mut damaged = stored.clone();
        for (at, byte) in &flips {
            let i = at.index(damaged.len());
            damaged[i] ^= byte;
        }
        decode_as_everything(&damaged);
        let mut cut_short = stored[..cut.index(stored.len() + 1)].to_vec();
        decode_as_everything(&cut_short);
        cut_short.extend_from_slice(&tail);
        decode_as_everything(&cut_short);
    }

    #[test]
    fn equal_arguments_give_equal_keys_and_unequal_ones_unequal_keys(a in value(), b in value()) {
        let (ka, kb) = (F.key(&(&a,)).unwrap(), F.key(&(&b,)).unwrap());
        prop_assert_eq!(ka, F.key(&(a.clone(),)).unwrap());
        let (ca, cb) = (memo_cache::canonical_bytes(&a).unwrap(), memo_cache::canonical_bytes(&b).unwrap());
        if a == b {
            prop_assert_eq!(ka, kb);
            prop_assert_eq!(ca, cb);
        } else {
            prop_assert_ne!(ka, kb, "unequal arguments, one key: {:?} / {:?}", a, b);
            prop_assert_ne!(ca, cb, "unequal arguments, one encoding: {:?} / {:?}", a, b);
        }
    }

    #[test]
    fn a_small_change_to_an_argument_changes_the_key(v in value(), n in any::<i64>(), m in any::<i64>()) {
        prop_assume!(n != m);
        prop_assert_ne!(F.key(&(&v, n)).unwrap(), F.key(&(&v, m)).unwrap());
        // The same values split differently between arguments are different calls.
        prop_assert_ne!(F.key(&(&v, n)).unwrap(), F.key(&((&v, n),)).unwrap());
    }

    #[test]
    fn hash_maps_give_one_key_whatever_their_insertion_order(
        entries in proptest::collection::btree_map(".{0,8}", value(), 0..12),
        seed in any::<u64>(),
    ) {
        let forward: HashMap<String, Value> = entries.clone().into_iter().collect();
        let mut shuffled: Vec<(String, Value)> = entries.clone().into_iter().collect();
        let len = shuffled.len().max(1) as u64;
        shuffled.sort_by_key(|(k, _)| (seed ^ k.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % len);
        shuffled.reverse();
        let backward: HashMap<String, Value> = shuffled.into_iter().collect();
        prop_assert_eq!(F.key(&(&forward,)).unwrap(), F.key(&(&backward,)).unwrap());
        // Nested inside other values too.
        prop_assert_eq!(F.key(&(vec![&forward], 1u8)).unwrap(), F.key(&(vec![&backward], 1u8)).unwrap());
        let set_a: std::collections::HashSet<String> = entries.keys().cloned().collect();
        let set_b: std::collections::HashSet<String> = entries.keys().rev().cloned().collect();
        prop_assert_eq!(F.key(&(Unordered(&set_a),)).unwrap(), F.key(&(Unordered(&set_b),)).unwrap());
    }

    #[test]
    fn the_key_encoder_never_panics(v in value()) {
        let _ = F.key(&(&v,));
        let _ = memo_cache::canonical_bytes(&(&v, vec![&v], Some(&v)));
    }
}
