//! Canonical MessagePack: the argument encoding that keys are hashed from (key format 2).
//!
//! It is MessagePack with the choices fixed so that equal values give equal bytes and unequal
//! values of one type give unequal bytes:
//!
//! - integers in their smallest form; `i128`/`u128` beyond 64 bits as ext type 1, 16 bytes BE;
//! - floats as float 32/64, by their bits;
//! - `None` as nil, `Some(v)` as a one-element array, so `Some(None)` differs from `None`;
//! - structs as maps from field name to value, in declaration order, so reordering or renaming
//!   fields never lets an old entry answer a new question;
//! - enum variants by name: unit variants as the name, others as `{name: payload}`;
//! - strings as str and byte strings (`serialize_bytes`) as bin, each one write of its bytes;
//! - a slice, `Vec` or `VecDeque` of one primitive number type, at any depth, as one run: bin
//!   for `u8` (the same bytes as `serialize_bytes`), else an ext whose type (16-26) names the
//!   element type and whose payload is the elements' little-endian bytes (see [`bulk`]);
//! - any other sequence, and tuples and fixed-size arrays, as an array of the elements;
//! - map entries sorted by their encoded key bytes (then value bytes), so a `HashMap` gives the
//!   same bytes whatever order it iterates in. This is the one place that allocates;
//! - inside [`Ordered`](crate::Ordered), every map in its iteration order, preceded by the
//!   marker ext type 2 of length 0 (`c7 00 02`), so it never equals the sorted encoding.
//!
//! Ext types 1, 2 and 16-26 are the only ones written, each with one meaning, so the encoding
//! stays a prefix code: no value's bytes begin another value's of the same type.
//!
//! A key's bytes reach blake3 through [`KeySink`], which gathers small writes and hands a large
//! one (a run, a long string) to the hasher whole, on every core when it is large enough.
//!
//! This is separate from the value codec on purpose: keys must stay stable for as long as caches
//! live, values only have to round-trip.

use std::fmt;
use std::io::Write;

use rmp::encode;
use serde::ser::{self, Serialize};

mod bulk;
mod sink;

pub use sink::KeySink;
pub(crate) use sink::update_parallel;

/// An encoding failure.
#[derive(Debug)]
pub struct EncodeError(String);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}

impl ser::Error for EncodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        EncodeError(msg.to_string())
    }
}

impl From<encode::ValueWriteError<std::io::Error>> for EncodeError {
    fn from(e: encode::ValueWriteError<std::io::Error>) -> Self {
        EncodeError(e.to_string())
    }
}

pub(crate) type R<T = ()> = std::result::Result<T, EncodeError>;

/// Writes the canonical encoding of `value` to `out`.
pub fn write<W: Write, T: Serialize + ?Sized>(out: &mut W, value: &T) -> R {
    write_in(out, value, Maps::Sorted)
}

/// The canonical encoding of `value` as bytes.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> R<Vec<u8>> {
    to_vec_in(value, Maps::Sorted)
}

fn write_in<W: Write, T: Serialize + ?Sized>(out: &mut W, value: &T, maps: Maps) -> R {
    value.serialize(&mut Canonical { out, maps })
}

fn to_vec_in<T: Serialize + ?Sized>(value: &T, maps: Maps) -> R<Vec<u8>> {
    let mut out = Vec::new();
    write_in(&mut out, value, maps)?;
    Ok(out)
}

/// The `serialize_newtype_struct` name by which [`Ordered`](crate::Ordered) asks for its value's
/// maps in iteration order. No Rust type is named with a NUL, so no derive produces it.
pub(crate) const ORDERED_NAME: &str = "\0memo_cache::Ordered";

/// The ext type of the marker written before a map kept in iteration order.
const ORDERED_MAP_EXT: i8 = 2;

/// How maps are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Maps {
    /// Entries sorted by their bytes: the default, right for `HashMap`.
    Sorted,
    /// Inside an [`Ordered`](crate::Ordered): the marker, then the entries in iteration order.
    InOrder,
}

/// Writes the header of a tuple of `len` elements as serde hands it over: `()` as nil, any other
/// tuple as an array. Followed by each element's [`write`], it gives the bytes of the tuple.
pub(crate) fn write_tuple_header<W: Write>(out: &mut W, len: usize) -> R {
    if len == 0 {
        encode::write_nil(out).map_err(io)
    } else {
        encode::write_array_len(out, len32(len)?)?;
        Ok(())
    }
}

struct Canonical<'w, W: Write> {
    out: &'w mut W,
    maps: Maps,
}

fn io(e: std::io::Error) -> EncodeError {
    EncodeError(e.to_string())
}

fn len32(len: usize) -> R<u32> {
    u32::try_from(len).map_err(|_| EncodeError(format!("length {len} exceeds MessagePack's limit")))
}

impl<W: Write> Canonical<'_, W> {
    fn array_len(&mut self, len: usize) -> R {
        encode::write_array_len(self.out, len32(len)?)?;
        Ok(())
    }

    fn map_len(&mut self, len: usize) -> R {
        encode::write_map_len(self.out, len32(len)?)?;
        Ok(())
    }

    /// rmp's `write_str` and `write_bin` cut a length past `u32::MAX` silently; these refuse it.
    fn str(&mut self, s: &str) -> R {
        encode::write_str_len(self.out, len32(s.len())?)?;
        self.out.write_all(s.as_bytes()).map_err(io)
    }

    fn bin(&mut self, bytes: &[u8]) -> R {
        encode::write_bin_len(self.out, len32(bytes.len())?)?;
        self.out.write_all(bytes).map_err(io)
    }

    /// The marker that says the map after it keeps its iteration order.
    fn ordered_marker(&mut self) -> R {
        encode::write_ext_meta(self.out, 0, ORDERED_MAP_EXT)?;
        Ok(())
    }

    fn wide(&mut self, be: [u8; 16]) -> R {
        encode::write_ext_meta(self.out, 16, 1)?;
        self.out.write_all(&be).map_err(io)
    }
}

impl<'a, 'w, W: Write> ser::Serializer for &'a mut Canonical<'w, W> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Seq<'a, 'w, W>;
    type SerializeTuple = Seq<'a, 'w, W>;
    type SerializeTupleStruct = Seq<'a, 'w, W>;
    type SerializeTupleVariant = Seq<'a, 'w, W>;
    type SerializeMap = Map<'a, 'w, W>;
    type SerializeStruct = Seq<'a, 'w, W>;
    type SerializeStructVariant = Seq<'a, 'w, W>;

    fn serialize_bool(self, v: bool) -> R {
        encode::write_bool(self.out, v).map_err(io)
    }
    fn serialize_i8(self, v: i8) -> R {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> R {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> R {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> R {
        encode::write_sint(self.out, v)?;
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> R {
        match i64::try_from(v) {
            Ok(small) => self.serialize_i64(small),
            Err(_) => self.wide(v.to_be_bytes()),
        }
    }
    fn serialize_u8(self, v: u8) -> R {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> R {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> R {
        self.serialize_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> R {
        encode::write_uint(self.out, v)?;
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> R {
        match u64::try_from(v) {
            Ok(small) => self.serialize_u64(small),
            Err(_) => self.wide(v.to_be_bytes()),
        }
    }
    fn serialize_f32(self, v: f32) -> R {
        encode::write_f32(self.out, v)?;
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> R {
        encode::write_f64(self.out, v)?;
        Ok(())
    }
    fn serialize_char(self, v: char) -> R {
        self.str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> R {
        self.str(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> R {
        self.bin(v)
    }
    fn serialize_none(self) -> R {
        encode::write_nil(self.out).map_err(io)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> R {
        self.array_len(1)?;
        value.serialize(self)
    }
    fn serialize_unit(self) -> R {
        encode::write_nil(self.out).map_err(io)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> R {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> R {
        self.str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, value: &T) -> R {
        if name == ORDERED_NAME {
            let outer = std::mem::replace(&mut self.maps, Maps::InOrder);
            let result = value.serialize(&mut *self);
            self.maps = outer;
            return result;
        }
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> R {
        self.map_len(1)?;
        self.str(variant)?;
        value.serialize(self)
    }
    /// Slices, `Vec`s and `VecDeque`s of plain numbers as one run (see `canonical/bulk.rs`); any other
    /// sequence element by element, as serde's default does.
    fn collect_seq<I>(self, iter: I) -> R
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        if bulk::write_if_plain(self.out, &iter)? {
            return Ok(());
        }
        let iter = iter.into_iter();
        let len = match iter.size_hint() {
            (low, Some(high)) if low == high => Some(low),
            _ => None,
        };
        let mut seq = Seq::start(self, len)?;
        for item in iter {
            seq.element(&item)?;
        }
        seq.finish()
    }
    fn serialize_seq(self, len: Option<usize>) -> R<Self::SerializeSeq> {
        Seq::start(self, len)
    }
    fn serialize_tuple(self, len: usize) -> R<Self::SerializeTuple> {
        Seq::start(self, Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> R<Self::SerializeTupleStruct> {
        Seq::start(self, Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> R<Self::SerializeTupleVariant> {
        self.map_len(1)?;
        self.str(variant)?;
        Seq::start(self, Some(len))
    }
    fn serialize_map(self, _len: Option<usize>) -> R<Self::SerializeMap> {
        Ok(Map {
            parent: self,
            entries: Vec::new(),
            key: None,
        })
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> R<Self::SerializeStruct> {
        self.map_len(len)?;
        Ok(Seq::fixed(self, len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> R<Self::SerializeStructVariant> {
        self.map_len(1)?;
        self.str(variant)?;
        self.map_len(len)?;
        Ok(Seq::fixed(self, len))
    }
}

/// A sequence, tuple or struct: written straight through when its length is known up front,
/// buffered when it is not.
pub struct Seq<'a, 'w, W: Write> {
    parent: &'a mut Canonical<'w, W>,
    /// Elements promised in the header, checked at the end.
    expected: Option<usize>,
    written: usize,
    /// Used when the length was not known: elements go here, the header is written at the end.
    buffer: Option<Vec<u8>>,
}

impl<'a, 'w, W: Write> Seq<'a, 'w, W> {
    fn start(parent: &'a mut Canonical<'w, W>, len: Option<usize>) -> R<Self> {
        match len {
            Some(len) => {
                parent.array_len(len)?;
                Ok(Seq::fixed(parent, len))
            }
            None => Ok(Seq {
                parent,
                expected: None,
                written: 0,
                buffer: Some(Vec::new()),
            }),
        }
    }

    fn fixed(parent: &'a mut Canonical<'w, W>, len: usize) -> Self {
        Seq {
            parent,
            expected: Some(len),
            written: 0,
            buffer: None,
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        self.written += 1;
        match &mut self.buffer {
            Some(buffer) => write_in(buffer, value, self.parent.maps),
            None => value.serialize(&mut *self.parent),
        }
    }

    fn finish(self) -> R {
        match (self.expected, self.buffer) {
            (Some(expected), _) if expected != self.written => Err(EncodeError(format!(
                "a serializer promised {expected} elements but gave {}",
                self.written
            ))),
            (_, Some(buffer)) => {
                self.parent.array_len(self.written)?;
                self.parent.out.write_all(&buffer).map_err(io)
            }
            _ => Ok(()),
        }
    }
}

/// Sequences, tuples and their kin: every element goes through [`Seq::element`].
macro_rules! elements {
    ($($trait:ident :: $method:ident),*) => {$(
        impl<W: Write> ser::$trait for Seq<'_, '_, W> {
            type Ok = ();
            type Error = EncodeError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
                self.element(value)
            }
            fn end(self) -> R {
                self.finish()
            }
        }
    )*};
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// Structs and struct variants: each field as its name, then its value. A field skipped with
/// `#[serde(skip_serializing_if = ..)]` is simply absent: serde's derive counts only the fields
/// it writes, and the names keep "absent" apart from any value.
macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl<W: Write> ser::$trait for Seq<'_, '_, W> {
            type Ok = ();
            type Error = EncodeError;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> R {
                self.parent.str(name)?;
                self.element(value)
            }
            fn end(self) -> R {
                self.finish()
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

/// A map: entries are encoded separately, then written sorted by their bytes, or in iteration
/// order after the marker inside an [`Ordered`](crate::Ordered).
pub struct Map<'a, 'w, W: Write> {
    parent: &'a mut Canonical<'w, W>,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    key: Option<Vec<u8>>,
}

impl<W: Write> ser::SerializeMap for Map<'_, '_, W> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> R {
        self.key = Some(to_vec_in(key, self.parent.maps)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        let key = self
            .key
            .take()
            .ok_or_else(|| EncodeError("map value without a key".into()))?;
        self.entries
            .push((key, to_vec_in(value, self.parent.maps)?));
        Ok(())
    }
    fn end(mut self) -> R {
        match self.parent.maps {
            Maps::Sorted => self.entries.sort_unstable(),
            Maps::InOrder => self.parent.ordered_marker()?,
        }
        self.parent.map_len(self.entries.len())?;
        for (k, v) in &self.entries {
            self.parent.out.write_all(k).map_err(io)?;
            self.parent.out.write_all(v).map_err(io)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use std::collections::{BTreeMap, HashMap};

    #[test]
    fn maps_encode_the_same_whatever_their_order() {
        let a: HashMap<String, u32> = (0..50).map(|i| (format!("k{i}"), i)).collect();
        let b: HashMap<String, u32> = (0..50).rev().map(|i| (format!("k{i}"), i)).collect();
        let c: BTreeMap<String, u32> = (0..50).map(|i| (format!("k{i}"), i)).collect();
        assert_eq!(to_vec(&a).unwrap(), to_vec(&b).unwrap());
        assert_eq!(to_vec(&a).unwrap(), to_vec(&c).unwrap());
    }

    #[test]
    fn nested_options_stay_distinct() {
        let none: Option<Option<u8>> = None;
        let some_none: Option<Option<u8>> = Some(None);
        assert_ne!(to_vec(&none).unwrap(), to_vec(&some_none).unwrap());
    }

    #[test]
    fn struct_fields_carry_their_names() {
        #[derive(Serialize)]
        struct P {
            x: u8,
            y: u8,
        }
        #[derive(Serialize)]
        struct Q {
            y: u8,
            x: u8,
        }
        assert_ne!(
            to_vec(&P { x: 1, y: 2 }).unwrap(),
            to_vec(&Q { y: 1, x: 2 }).unwrap()
        );
    }

    #[test]
    fn skipped_fields_are_absent_not_an_error() {
        #[derive(Serialize)]
        struct Query {
            term: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            limit: Option<u32>,
        }
        let without = to_vec(&Query {
            term: "a".into(),
            limit: None,
        })
        .unwrap();
        let with = to_vec(&Query {
            term: "a".into(),
            limit: Some(3),
        })
        .unwrap();
        assert_ne!(without, with);
        assert_eq!(
            without,
            to_vec(&Query {
                term: "a".into(),
                limit: None
            })
            .unwrap()
        );
    }

    #[test]
    fn a_tuple_is_its_header_then_its_elements() {
        fn parts(len: usize, write: impl FnOnce(&mut KeySink<'_>) -> R) -> Vec<u8> {
            let mut out = Vec::new();
            let mut sink = KeySink::bytes(&mut out);
            write_tuple_header(&mut sink, len).unwrap();
            write(&mut sink).unwrap();
            drop(sink);
            out
        }
        assert_eq!(parts(0, |_| Ok(())), to_vec(&()).unwrap());
        assert_eq!(parts(1, |s| write(s, &"a")), to_vec(&(&"a",)).unwrap());
        let v = vec![1u32, 2];
        assert_eq!(
            parts(3, |s| {
                write(s, &7u8)?;
                write(s, &v)?;
                write(s, &Some("x"))
            }),
            to_vec(&(&7u8, &&v, Some("x"))).unwrap()
        );
    }

    #[test]
    fn integers_use_their_smallest_form() {
        assert_eq!(to_vec(&1u64).unwrap(), vec![1]);
        assert_eq!(to_vec(&-1i64).unwrap(), vec![0xff]);
        assert_eq!(to_vec(&1u128).unwrap(), vec![1]);
        assert_eq!(
            to_vec(&(u64::MAX as u128 + 1)).unwrap().len(),
            2 + 16,
            "fixext16: marker, type, payload"
        );
    }

    // ---- Ordered maps -----------------------------------------------------------------------------

    /// A map that serializes in the order it was built, like an `IndexMap`.
    #[derive(Clone)]
    struct InOrder(Vec<(String, u32)>);

    impl Serialize for InOrder {
        fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
        }
    }

    fn in_order(keys: &[&str]) -> InOrder {
        InOrder(
            keys.iter()
                .map(|k| (k.to_string(), k.len() as u32))
                .collect(),
        )
    }

    #[test]
    fn ordered_maps_keep_their_order_and_differ_from_sorted_ones() {
        let ab = in_order(&["a", "bb"]);
        let ba = in_order(&["bb", "a"]);
        assert_eq!(to_vec(&ab).unwrap(), to_vec(&ba).unwrap());
        let ordered_ab = to_vec(&crate::Ordered(&ab)).unwrap();
        assert_ne!(ordered_ab, to_vec(&crate::Ordered(&ba)).unwrap());
        // The same order as the sorted one, still apart from it: the marker.
        assert_ne!(ordered_ab, to_vec(&ab).unwrap());
        let mut expected = Vec::new();
        encode::write_ext_meta(&mut expected, 0, ORDERED_MAP_EXT).unwrap();
        expected.extend(to_vec(&ab).unwrap());
        assert_eq!(ordered_ab, expected);
    }

    #[test]
    fn ordered_reaches_maps_at_any_depth_and_ends_with_its_value() {
        let ab = in_order(&["a", "bb"]);
        let ba = in_order(&["bb", "a"]);
        let nested = |m: &InOrder| {
            let mut outer = HashMap::new();
            outer.insert("k", vec![m.clone()]);
            outer
        };
        assert_eq!(to_vec(&nested(&ab)).unwrap(), to_vec(&nested(&ba)).unwrap());
        assert_ne!(
            to_vec(&crate::Ordered(&nested(&ab))).unwrap(),
            to_vec(&crate::Ordered(&nested(&ba))).unwrap()
        );
        // In a sequence of unknown length, which is buffered.
        struct Unknown<'a>(&'a [InOrder]);
        impl Serialize for Unknown<'_> {
            fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                use ser::SerializeSeq;
                let mut seq = s.serialize_seq(None)?;
                for m in self.0 {
                    seq.serialize_element(m)?;
                }
                seq.end()
            }
        }
        assert_ne!(
            to_vec(&crate::Ordered(&Unknown(std::slice::from_ref(&ab)))).unwrap(),
            to_vec(&crate::Ordered(&Unknown(std::slice::from_ref(&ba)))).unwrap()
        );
        // After the Ordered value, maps are sorted again.
        assert_eq!(
            to_vec(&(crate::Ordered(&1u8), &ab)).unwrap(),
            to_vec(&(crate::Ordered(&1u8), &ba)).unwrap()
        );
        // A value without maps is unchanged by Ordered.
        assert_eq!(
            to_vec(&crate::Ordered(&vec![1.0f64])).unwrap(),
            to_vec(&vec![1.0f64]).unwrap()
        );
    }
}
