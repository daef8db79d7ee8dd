//! Stored values as JSON, for `show --value`, from the bytes and the return type's name.
//!
//! The last byte of a stored value names its format (see `memo_cache::codec`). MessagePack
//! describes itself, so it maps onto JSON directly; raw byte vectors become base64 text; numeric
//! arrays become JSON arrays. Byte strings inside MessagePack also become base64 text, map keys
//! that are not strings become their JSON text, and non-finite floats become strings.
//!
//! One thing MessagePack cannot say is that 16 bytes are a number: rmp-serde writes a `u128` or
//! `i128` as a byte string of its 16 big-endian bytes. The entry's return type, as stored with
//! its function (`std::any::type_name` under `#[disk_cache]`), tells: a `u128`, `i128`, or one
//! inside `Option`, `Vec` and other sequences, maps, tuples and `Result`, is shown as its number.
//! Inside a struct of the program's own, whose fields the name does not give, it stays base64.

use base64::Engine;
use memo_cache::codec;
use serde::ser::{SerializeMap, SerializeSeq};

/// A decoded value: JSON's data model, with integers of up to 128 bits (which
/// `serde_json::Value` cannot hold).
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A negative integer.
    Int(i128),
    /// A non-negative integer.
    UInt(u128),
    /// A float; non-finite ones are written as strings.
    Float(f64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Decoded>),
    /// An object, in stored order.
    Object(Vec<(String, Decoded)>),
}

impl serde::Serialize for Decoded {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Decoded::Null => s.serialize_unit(),
            Decoded::Bool(b) => s.serialize_bool(*b),
            Decoded::Int(i) => match i64::try_from(*i) {
                Ok(i) => s.serialize_i64(i),
                Err(_) => s.serialize_i128(*i),
            },
            Decoded::UInt(u) => match u64::try_from(*u) {
                Ok(u) => s.serialize_u64(u),
                Err(_) => s.serialize_u128(*u),
            },
            Decoded::Float(x) if x.is_finite() => s.serialize_f64(*x),
            Decoded::Float(x) => s.serialize_str(&x.to_string()),
            Decoded::String(text) => s.serialize_str(text),
            Decoded::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Decoded::Object(pairs) => {
                let mut map = s.serialize_map(Some(pairs.len()))?;
                for (k, v) in pairs {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl Decoded {
    /// The JSON text of a map key that is not a string.
    fn key_text(&self) -> String {
        match self {
            Decoded::String(s) => s.clone(),
            other => serde_json::to_string(other).unwrap_or_default(),
        }
    }
}

/// The JSON form of stored bytes, read as the type named `return_type`, or why there is none.
pub fn to_json(stored: &[u8], return_type: &str) -> Result<Decoded, String> {
    let (format, payload) = codec::split(stored).ok_or("the stored value is empty")?;
    match format {
        codec::FORMAT_MSGPACK => {
            let mut rest = payload;
            let value = rmpv::decode::read_value(&mut rest)
                .map_err(|e| format!("not valid MessagePack: {e}"))?;
            if !rest.is_empty() {
                return Err(format!("{} bytes after the MessagePack value", rest.len()));
            }
            Ok(msgpack(value, &Shape::of(return_type)))
        }
        codec::FORMAT_BYTES => Ok(Decoded::Object(vec![(
            "base64".into(),
            Decoded::String(base64(payload)),
        )])),
        codec::FORMAT_F64 => numbers::<8>(payload, |b| Decoded::Float(f64::from_le_bytes(b))),
        codec::FORMAT_F32 => numbers::<4>(payload, |b| {
            Decoded::Float(f64::from(f32::from_le_bytes(b)))
        }),
        codec::FORMAT_I64 => numbers::<8>(payload, |b| int(i64::from_le_bytes(b).into())),
        codec::FORMAT_U64 => numbers::<8>(payload, |b| Decoded::UInt(u64::from_le_bytes(b).into())),
        codec::FORMAT_I32 => numbers::<4>(payload, |b| int(i32::from_le_bytes(b).into())),
        codec::FORMAT_U32 => numbers::<4>(payload, |b| Decoded::UInt(u32::from_le_bytes(b).into())),
        codec::FORMAT_ZSTD => Err(
            "a compressed value inside a compressed value, which memo-cache never writes: \
             the library treats it as a miss and drops it"
                .into(),
        ),
        other => Err(format!(
            "unknown value format 0x{other:02x}; a newer memo-cache may have stored it"
        )),
    }
}

/// The name of a stored value's format, for `show`.
pub fn format_name(stored: &[u8]) -> &'static str {
    match codec::split(stored).map(|(f, _)| f) {
        Some(codec::FORMAT_MSGPACK) => "msgpack",
        Some(codec::FORMAT_BYTES) => "bytes",
        Some(codec::FORMAT_F64) => "f64 array",
        Some(codec::FORMAT_F32) => "f32 array",
        Some(codec::FORMAT_I64) => "i64 array",
        Some(codec::FORMAT_U64) => "u64 array",
        Some(codec::FORMAT_I32) => "i32 array",
        Some(codec::FORMAT_U32) => "u32 array",
        _ => "unknown",
    }
}

fn numbers<const N: usize>(
    payload: &[u8],
    item: impl Fn([u8; N]) -> Decoded,
) -> Result<Decoded, String> {
    if !payload.len().is_multiple_of(N) {
        return Err(format!(
            "a numeric array of {N}-byte items cannot be {} bytes long",
            payload.len()
        ));
    }
    Ok(Decoded::Array(
        payload
            .chunks_exact(N)
            .map(|c| item(c.try_into().expect("chunks of N bytes")))
            .collect(),
    ))
}

fn int(i: i128) -> Decoded {
    match u128::try_from(i) {
        Ok(u) => Decoded::UInt(u),
        Err(_) => Decoded::Int(i),
    }
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// What a return type's name says about the shape of its value, as far as it matters here:
/// where 128-bit integers are.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    /// Nothing known: the value as MessagePack describes it.
    Any,
    U128,
    I128,
    Option(Box<Shape>),
    /// `Vec`, `VecDeque`, a set, an array or slice.
    Seq(Box<Shape>),
    Map(Box<Shape>, Box<Shape>),
    Tuple(Vec<Shape>),
    /// `Result<T, E>`: stored as the `Ok` value alone, unless `whole` (`cache_err = true`,
    /// whose return type name ends in "(Err cached too)"): then as `{"Ok": ..}` or `{"Err": ..}`.
    Result {
        ok: Box<Shape>,
        err: Box<Shape>,
        whole: bool,
    },
}

impl Shape {
    /// The shape of the type named `name` (`core::option::Option<u128>`, `u128`, ..).
    fn of(name: &str) -> Shape {
        let (name, whole) = match name.strip_suffix(" (Err cached too)") {
            Some(name) => (name, true),
            None => (name, false),
        };
        let mut parser = Parser { rest: name };
        let shape = parser.parse();
        match shape {
            Shape::Result { ok, err, .. } => Shape::Result { ok, err, whole },
            other => other,
        }
    }
}

/// A forgiving reader of type names: what it does not understand is [`Shape::Any`].
struct Parser<'a> {
    rest: &'a str,
}

impl<'a> Parser<'a> {
    fn eat(&mut self, token: &str) -> bool {
        self.rest = self.rest.trim_start();
        match self.rest.strip_prefix(token) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn parse(&mut self) -> Shape {
        self.rest = self.rest.trim_start();
        if self.eat("(") {
            let items = self.list(")");
            return if items.is_empty() {
                Shape::Any
            } else {
                Shape::Tuple(items)
            };
        }
        if self.eat("[") {
            let item = self.parse();
            if self.eat(";") {
                let end = self.rest.find(']').unwrap_or(self.rest.len());
                self.rest = &self.rest[end..];
            }
            self.eat("]");
            return Shape::Seq(Box::new(item));
        }
        if self.eat("&") {
            if self.rest.starts_with('\'') {
                self.word();
            }
            self.eat("mut ");
            return self.parse();
        }
        let path = self.path();
        let arguments = if self.eat("<") {
            self.list(">")
        } else {
            Vec::new()
        };
        let last = path.rsplit("::").next().unwrap_or(path);
        let arg = |i: usize| Box::new(arguments.get(i).cloned().unwrap_or(Shape::Any));
        match (last, arguments.len()) {
            ("u128", 0) => Shape::U128,
            ("i128", 0) => Shape::I128,
            ("Option", 1) => Shape::Option(arg(0)),
            (
                "Vec" | "VecDeque" | "LinkedList" | "BinaryHeap" | "HashSet" | "BTreeSet"
                | "IndexSet",
                _,
            ) => Shape::Seq(arg(0)),
            ("HashMap" | "BTreeMap" | "IndexMap", n) if n >= 2 => Shape::Map(arg(0), arg(1)),
            ("Box" | "Rc" | "Arc" | "Cow", 1) => *arg(0),
            ("Result", 2) => Shape::Result {
                ok: arg(0),
                err: arg(1),
                whole: false,
            },
            _ => Shape::Any,
        }
    }

    /// Types separated by commas up to `end`; lifetimes left out.
    fn list(&mut self, end: &str) -> Vec<Shape> {
        let mut items = Vec::new();
        loop {
            if self.eat(end) || self.rest.trim().is_empty() {
                return items;
            }
            if self.rest.starts_with('\'') {
                self.word();
            } else {
                items.push(self.parse());
            }
            if !self.eat(",") {
                self.eat(end);
                return items;
            }
        }
    }

    /// A path such as `alloc::vec::Vec`, up to its arguments.
    fn path(&mut self) -> &'a str {
        let end = self
            .rest
            .find(['<', '>', ',', ';', '(', ')', '[', ']', ' '])
            .unwrap_or(self.rest.len());
        let (path, rest) = self.rest.split_at(end);
        self.rest = rest;
        path
    }

    fn word(&mut self) {
        let end = self.rest.find(['>', ',', ' ']).unwrap_or(self.rest.len());
        self.rest = &self.rest[end..];
    }
}

/// A MessagePack value as JSON, its 128-bit integers found by `shape`.
fn msgpack(value: rmpv::Value, shape: &Shape) -> Decoded {
    use rmpv::Value as M;
    match (value, shape) {
        (M::Binary(bytes), Shape::U128) if bytes.len() == 16 => {
            Decoded::UInt(u128::from_be_bytes(bytes.try_into().expect("16 bytes")))
        }
        (M::Binary(bytes), Shape::I128) if bytes.len() == 16 => {
            int(i128::from_be_bytes(bytes.try_into().expect("16 bytes")))
        }
        (M::Nil, Shape::Option(_)) => Decoded::Null,
        (value, Shape::Option(inner)) => msgpack(value, inner),
        (M::Array(items), Shape::Seq(item)) => {
            Decoded::Array(items.into_iter().map(|v| msgpack(v, item)).collect())
        }
        (M::Array(items), Shape::Tuple(shapes)) if items.len() == shapes.len() => Decoded::Array(
            items
                .into_iter()
                .zip(shapes)
                .map(|(v, s)| msgpack(v, s))
                .collect(),
        ),
        (M::Map(pairs), Shape::Map(key, value)) => object(pairs, |_| &**key, |_| &**value),
        (
            M::Map(pairs),
            Shape::Result {
                ok,
                err,
                whole: true,
            },
        ) => object(
            pairs,
            |_| &Shape::Any,
            |k| match k.as_str() {
                Some("Ok") => &**ok,
                Some("Err") => &**err,
                _ => &Shape::Any,
            },
        ),
        (
            value,
            Shape::Result {
                ok, whole: false, ..
            },
        ) => msgpack(value, ok),
        (value, _) => any(value),
    }
}

/// A map, each key and value read as the shapes `key` and `value` give.
fn object<'s>(
    pairs: Vec<(rmpv::Value, rmpv::Value)>,
    key: impl Fn(&rmpv::Value) -> &'s Shape,
    value: impl Fn(&rmpv::Value) -> &'s Shape,
) -> Decoded {
    Decoded::Object(
        pairs
            .into_iter()
            .map(|(k, v)| {
                let value_shape = value(&k);
                let key_shape = key(&k);
                (msgpack(k, key_shape).key_text(), msgpack(v, value_shape))
            })
            .collect(),
    )
}

/// The recorded arguments of an entry (the canonical MessagePack of their tuple) as JSON: an
/// array with one item per argument that takes part in the key.
pub fn args_to_json(bytes: &[u8]) -> Result<Decoded, String> {
    let mut rest = bytes;
    let value = rmpv::decode::read_value(&mut rest)
        .map_err(|e| format!("the recorded arguments are not valid MessagePack: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the recorded arguments", rest.len()));
    }
    Ok(canonical(value))
}

/// A value of the key encoding (`memo_cache::canonical_bytes`) as JSON: MessagePack, plus its
/// own ext types: runs of numbers (codes 16-26, little-endian elements) become arrays, and
/// integers beyond 64 bits (code 1, 16 bytes big-endian) numbers. Such an integer does not say
/// whether it was an `i128` or a `u128`: with its top bit set it is read as a negative `i128`.
fn canonical(value: rmpv::Value) -> Decoded {
    use rmpv::Value as M;
    match value {
        M::Ext(1, data) if data.len() == 16 => {
            let be: [u8; 16] = data.try_into().expect("16 bytes");
            if be[0] & 0x80 == 0 {
                Decoded::UInt(u128::from_be_bytes(be))
            } else {
                Decoded::Int(i128::from_be_bytes(be))
            }
        }
        M::Ext(code @ 16..=26, data) => run(code, &data).unwrap_or_else(|| any(M::Ext(code, data))),
        M::Array(items) => Decoded::Array(items.into_iter().map(canonical).collect()),
        M::Map(pairs) => Decoded::Object(
            pairs
                .into_iter()
                .map(|(k, v)| (canonical(k).key_text(), canonical(v)))
                .collect(),
        ),
        other => any(other),
    }
}

/// A run of numbers of the key encoding: `code` names the element type (see the library's
/// `canonical/bulk.rs`), `data` holds the elements little-endian; `None` when it does not divide.
fn run(code: i8, data: &[u8]) -> Option<Decoded> {
    fn each<const N: usize>(data: &[u8], item: impl Fn([u8; N]) -> Decoded) -> Option<Decoded> {
        if !data.len().is_multiple_of(N) {
            return None;
        }
        let items = data
            .chunks_exact(N)
            .map(|c| item(c.try_into().expect("N bytes")));
        Some(Decoded::Array(items.collect()))
    }
    let signed = |i: i128| {
        if i < 0 {
            Decoded::Int(i)
        } else {
            Decoded::UInt(i as u128)
        }
    };
    match code {
        16 => each::<1>(data, |b| signed(i8::from_le_bytes(b).into())),
        17 => each::<2>(data, |b| Decoded::UInt(u16::from_le_bytes(b).into())),
        18 => each::<2>(data, |b| signed(i16::from_le_bytes(b).into())),
        19 => each::<4>(data, |b| Decoded::UInt(u32::from_le_bytes(b).into())),
        20 => each::<4>(data, |b| signed(i32::from_le_bytes(b).into())),
        21 => each::<8>(data, |b| Decoded::UInt(u64::from_le_bytes(b).into())),
        22 => each::<8>(data, |b| signed(i64::from_le_bytes(b).into())),
        23 => each::<16>(data, |b| Decoded::UInt(u128::from_le_bytes(b))),
        24 => each::<16>(data, |b| signed(i128::from_le_bytes(b))),
        25 => each::<4>(data, |b| Decoded::Float(f32::from_le_bytes(b).into())),
        26 => each::<8>(data, |b| Decoded::Float(f64::from_le_bytes(b))),
        _ => None,
    }
}

/// The recorded arguments as one short line: `(37)`, `("data.csv", 4)`; at most `width`
/// characters, cut with `…`.
pub fn args_line(bytes: &[u8], width: usize) -> String {
    let text = match args_to_json(bytes) {
        Ok(Decoded::Array(items)) => {
            let items: Vec<String> = items
                .iter()
                .map(|item| serde_json::to_string(item).unwrap_or_default())
                .collect();
            format!("({})", items.join(", "))
        }
        Ok(other) => serde_json::to_string(&other).unwrap_or_default(),
        Err(_) => "?".into(),
    };
    if text.chars().count() <= width {
        return text;
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A MessagePack value as JSON, as it describes itself.
fn any(value: rmpv::Value) -> Decoded {
    use rmpv::Value as M;
    match value {
        M::Nil => Decoded::Null,
        M::Boolean(b) => Decoded::Bool(b),
        M::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Decoded::UInt(u.into()),
            (None, Some(i)) => Decoded::Int(i.into()),
            (None, None) => Decoded::Null,
        },
        M::F32(x) => Decoded::Float(f64::from(x)),
        M::F64(x) => Decoded::Float(x),
        M::String(s) => match s.into_str() {
            Some(s) => Decoded::String(s),
            None => Decoded::String("<invalid UTF-8>".into()),
        },
        M::Binary(bytes) => Decoded::String(base64(&bytes)),
        M::Array(items) => Decoded::Array(items.into_iter().map(any).collect()),
        M::Map(pairs) => object(pairs, |_| &Shape::Any, |_| &Shape::Any),
        M::Ext(tag, data) => Decoded::Object(vec![
            ("ext".into(), int(tag.into())),
            ("base64".into(), Decoded::String(base64(&data))),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn as_json(stored: &[u8], return_type: &str) -> serde_json::Value {
        serde_json::to_value(to_json(stored, return_type).unwrap()).unwrap()
    }

    #[test]
    fn each_format_becomes_json() {
        #[derive(serde::Serialize)]
        struct Point {
            x: i32,
            label: String,
            tags: Vec<u8>,
        }
        let stored = codec::encode(&Point {
            x: -3,
            label: "p".into(),
            tags: vec![1, 2],
        })
        .unwrap();
        assert_eq!(
            as_json(&stored, "app::Point"),
            json!({"x": -3, "label": "p", "tags": "AQI="})
        );
        assert_eq!(
            as_json(&codec::encode(&vec![1.5f64, -2.0]).unwrap(), "?"),
            json!([1.5, -2.0])
        );
        assert_eq!(
            as_json(&codec::encode(&vec![7u32]).unwrap(), "?"),
            json!([7])
        );
        assert_eq!(
            as_json(&codec::encode(&vec![0u8, 255]).unwrap(), "?"),
            json!({"base64": "AP8="})
        );
        assert!(to_json(&[1, 2, 3, 0x7f], "?").unwrap_err().contains("0x7f"));
        assert!(to_json(&[], "?").is_err());
    }

    /// The JSON text of `value` stored and shown as the type named `name`.
    fn shown<T: serde::Serialize + 'static>(value: &T, name: &str) -> String {
        serde_json::to_string(&to_json(&codec::encode(value).unwrap(), name).unwrap()).unwrap()
    }

    #[test]
    fn a_128_bit_integer_shows_as_its_number_where_the_type_says_so() {
        assert_eq!(shown(&200_977u128, "u128"), "200977");
        assert_eq!(shown(&u128::MAX, "u128"), u128::MAX.to_string());
        assert_eq!(shown(&i128::MIN, "i128"), i128::MIN.to_string());
        assert_eq!(shown(&-5i128, "i128"), "-5");
        assert_eq!(shown(&Some(7u128), "core::option::Option<u128>"), "7");
        assert_eq!(shown(&None::<u128>, "core::option::Option<u128>"), "null");
        assert_eq!(shown(&vec![1u128, 2], "alloc::vec::Vec<u128>"), "[1,2]");
        assert_eq!(
            shown(
                &(3u128, "a".to_string(), -1i128),
                "(u128, alloc::string::String, i128)"
            ),
            r#"[3,"a",-1]"#
        );
        assert_eq!(shown(&[4u128; 2], "[u128; 2]"), "[4,4]");
        let map: std::collections::BTreeMap<u128, i128> = [(1, -2)].into();
        assert_eq!(
            shown(&map, "alloc::collections::btree::map::BTreeMap<u128, i128>"),
            r#"{"1":-2}"#
        );
        // A `Result` function stores its `Ok` value, with `cache_err` the whole `Result`.
        let name = "core::result::Result<u128, alloc::string::String>";
        assert_eq!(shown(&9u128, name), "9");
        let whole = format!("{name} (Err cached too)");
        assert_eq!(shown(&Ok::<u128, String>(9), &whole), r#"{"Ok":9}"#);
        assert_eq!(
            shown(&Err::<u128, String>("no".into()), &whole),
            r#"{"Err":"no"}"#
        );
        assert_eq!(
            shown(
                &Some(Box::new(8u128)),
                "core::option::Option<alloc::boxed::Box<u128>>"
            ),
            "8"
        );
    }

    #[test]
    fn sixteen_bytes_of_another_type_stay_base64() {
        let bytes = serde_bytes_like(&[1u8; 16]);
        assert_eq!(
            shown(&bytes, "app::Digest"),
            r#""AQEBAQEBAQEBAQEBAQEBAQ==""#
        );
        // A type name the reader does not understand is no reason to fail.
        assert_eq!(
            shown(&5u128, "<weird as Trait>::Out<"),
            r#""AAAAAAAAAAAAAAAAAAAABQ==""#
        );
    }

    /// A value rmp-serde writes as a byte string.
    fn serde_bytes_like(bytes: &[u8]) -> impl serde::Serialize + 'static {
        struct Bytes(Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
        Bytes(bytes.to_vec())
    }
}
