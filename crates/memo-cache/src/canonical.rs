//! Canonical MessagePack: the argument encoding that keys are hashed from.
//!
//! It is MessagePack with the choices fixed so that equal values give equal bytes and unequal
//! values of one type give unequal bytes:
//!
//! - integers in their smallest form; `i128`/`u128` beyond 64 bits as ext type 1, 16 bytes BE;
//! - `None` as nil, `Some(v)` as a one-element array, so `Some(None)` differs from `None`;
//! - structs as maps from field name to value, in declaration order, so reordering or renaming
//!   fields never lets an old entry answer a new question;
//! - enum variants by name: unit variants as the name, others as `{name: payload}`;
//! - byte strings (`serialize_bytes`) as bin;
//! - map entries sorted by their encoded key bytes (then value bytes), so a `HashMap` gives the
//!   same bytes whatever order it iterates in. This is the one place that allocates.
//!
//! This is separate from the value codec on purpose: keys must stay stable for as long as caches
//! live, values only have to round-trip.

use std::fmt;
use std::io::Write;

use rmp::encode;
use serde::ser::{self, Serialize};

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
    value.serialize(&mut Canonical { out })
}

/// The canonical encoding of `value` as bytes.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> R<Vec<u8>> {
    let mut out = Vec::new();
    write(&mut out, value)?;
    Ok(out)
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

/// Where the parts of a key are written, one argument at a time: the keyed hasher of a disk key,
/// or the buffer of an in-memory key. One concrete type, so the function that writes one argument
/// is a plain `fn` pointer, made where the argument's `Serialize` bound is known to hold.
pub struct KeySink<'a>(Sink<'a>);

enum Sink<'a> {
    Hash(&'a mut blake3::Hasher),
    Bytes(&'a mut Vec<u8>),
}

impl<'a> KeySink<'a> {
    /// A sink feeding `hasher`.
    pub(crate) fn hasher(hasher: &'a mut blake3::Hasher) -> Self {
        KeySink(Sink::Hash(hasher))
    }

    /// A sink appending to `bytes`.
    pub(crate) fn bytes(bytes: &'a mut Vec<u8>) -> Self {
        KeySink(Sink::Bytes(bytes))
    }
}

impl fmt::Debug for KeySink<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySink")
    }
}

impl Write for KeySink<'_> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match &mut self.0 {
            Sink::Hash(hasher) => {
                hasher.update(buf);
            }
            Sink::Bytes(bytes) => bytes.extend_from_slice(buf),
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Canonical<'w, W: Write> {
    out: &'w mut W,
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

    fn str(&mut self, s: &str) -> R {
        encode::write_str(self.out, s)?;
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
        encode::write_bin(self.out, v)?;
        Ok(())
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
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _name: &'static str, value: &T) -> R {
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
            Some(buffer) => write(buffer, value),
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

/// A map: entries are encoded separately and written sorted by their bytes.
pub struct Map<'a, 'w, W: Write> {
    parent: &'a mut Canonical<'w, W>,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    key: Option<Vec<u8>>,
}

impl<W: Write> ser::SerializeMap for Map<'_, '_, W> {
    type Ok = ();
    type Error = EncodeError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> R {
        self.key = Some(to_vec(key)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        let key = self
            .key
            .take()
            .ok_or_else(|| EncodeError("map value without a key".into()))?;
        self.entries.push((key, to_vec(value)?));
        Ok(())
    }
    fn end(mut self) -> R {
        self.entries.sort_unstable();
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
}
