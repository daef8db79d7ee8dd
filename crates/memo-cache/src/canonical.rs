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

/// Where the parts of a key are written, one argument at a time: the keyed hasher of a disk key,
/// or the buffer of an in-memory key. One concrete type, so the function that writes one argument
/// is a plain `fn` pointer, made where the argument's `Serialize` bound is known to hold.
///
/// Feeding a hasher, small writes (a marker, a short string) are gathered in an inline buffer
/// and reach blake3 a chunk at a time; a write of `GATHER` (1 KiB) or more (a long string, a
/// run of numbers) goes to blake3 whole, on every core from `PARALLEL` (64 KiB). The buffer is
/// flushed when the sink is dropped, which must come before the hasher is finalized.
pub struct KeySink<'a>(Sink<'a>);

// The gathering buffer is inline on purpose: a sink lives on the stack for one key, and boxing
// it would allocate for every key (tests/key_allocations.rs forbids that).
#[allow(clippy::large_enum_variant)]
enum Sink<'a> {
    Hash(Gather<'a>),
    Bytes(&'a mut Vec<u8>),
}

/// Writes shorter than this are gathered; one blake3 chunk is 1 KiB.
const GATHER: usize = 1024;

/// Writes from this size are hashed with `update_rayon` (rayon's global pool, started on the
/// first such write). On the 2-core VM of BENCHMARKS.md ("Large arguments") every core beat one
/// from about 48 KiB: 1.23x at 64 KiB, 1.54x at 128 KiB (blake3's own rule of thumb), 1.9x from
/// 1 MiB; 32 KiB was 0.94x.
const PARALLEL: usize = 64 * 1024;

struct Gather<'a> {
    hasher: &'a mut blake3::Hasher,
    buffer: [u8; GATHER],
    len: usize,
}

impl Gather<'_> {
    #[inline]
    fn write(&mut self, buf: &[u8]) {
        if buf.len() <= GATHER - self.len {
            self.buffer[self.len..self.len + buf.len()].copy_from_slice(buf);
            self.len += buf.len();
            return;
        }
        self.flush();
        if buf.len() < GATHER {
            self.buffer[..buf.len()].copy_from_slice(buf);
            self.len = buf.len();
        } else if buf.len() < PARALLEL {
            self.hasher.update(buf);
        } else {
            self.hasher.update_rayon(buf);
        }
    }

    fn flush(&mut self) {
        self.hasher.update(&self.buffer[..self.len]);
        self.len = 0;
    }
}

impl Drop for Gather<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

impl<'a> KeySink<'a> {
    /// A sink feeding `hasher`; drop it before finalizing the hasher.
    pub(crate) fn hasher(hasher: &'a mut blake3::Hasher) -> Self {
        KeySink(Sink::Hash(Gather {
            hasher,
            buffer: [0; GATHER],
            len: 0,
        }))
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
            Sink::Hash(gather) => gather.write(buf),
            Sink::Bytes(bytes) => bytes.extend_from_slice(buf),
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Sink::Hash(gather) = &mut self.0 {
            gather.flush();
        }
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
    /// Slices, `Vec`s and `VecDeque`s of plain numbers as one run (see [`bulk`]); any other
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

    // ---- Runs of plain numbers ------------------------------------------------------------------

    /// Header of a run of `len` payload bytes with ext `code`, as rmp writes it.
    fn ext_header(len: u32, code: i8) -> Vec<u8> {
        let mut out = Vec::new();
        encode::write_ext_meta(&mut out, len, code).unwrap();
        out
    }

    #[test]
    fn a_run_is_one_header_then_its_little_endian_bytes() {
        let f64_code = bulk::ext_code::<f64>().unwrap();
        let mut expected = vec![0xd8, f64_code as u8]; // fixext16: two f64s
        expected.extend(1.0f64.to_le_bytes());
        expected.extend((-0.5f64).to_le_bytes());
        assert_eq!(to_vec(&vec![1.0f64, -0.5]).unwrap(), expected);

        let u16_code = bulk::ext_code::<u16>().unwrap();
        assert_eq!(
            to_vec(&[1u16, 258][..]).unwrap(),
            vec![0xd6, u16_code as u8, 1, 0, 2, 1] // fixext4
        );
        // u8 is bin, as serialize_bytes writes it.
        assert_eq!(
            to_vec(&vec![0u8, 1, 255]).unwrap(),
            vec![0xc4, 3, 0, 1, 255]
        );
        let mut bytes = Vec::new();
        ser::Serializer::serialize_bytes(
            &mut Canonical {
                out: &mut bytes,
                maps: Maps::Sorted,
            },
            &[0, 1, 255],
        )
        .unwrap();
        assert_eq!(bytes, to_vec(&vec![0u8, 1, 255]).unwrap());
        // Three bytes of payload: ext 8 with its length.
        let i8_code = bulk::ext_code::<i8>().unwrap();
        assert_eq!(
            to_vec(&vec![-1i8, 0, 1]).unwrap(),
            vec![0xc7, 3, i8_code as u8, 0xff, 0, 1]
        );
        let big: Vec<u32> = (0..100_000).collect();
        let mut expected = ext_header(400_000, bulk::ext_code::<u32>().unwrap());
        expected.extend(big.iter().flat_map(|x| x.to_le_bytes()));
        assert_eq!(to_vec(&big).unwrap(), expected);
    }

    #[test]
    fn the_same_numbers_encode_alike_whatever_holds_them() {
        let data: Vec<f64> = (0..1000).map(|i| f64::from(i) * 0.25 - 3.0).collect();
        let bytes = to_vec(&data).unwrap();
        assert_eq!(to_vec(&data[..]).unwrap(), bytes);
        assert_eq!(to_vec(&&data[..]).unwrap(), bytes);
        assert_eq!(to_vec(&data.clone().into_boxed_slice()).unwrap(), bytes);
        assert_eq!(
            to_vec(&std::borrow::Cow::Borrowed(&data[..])).unwrap(),
            bytes
        );
        // A VecDeque that wraps around its buffer: two slices, one run.
        let mut deque = std::collections::VecDeque::<f64>::with_capacity(1000);
        deque.extend(&data[500..]);
        deque.extend(&data[..500]);
        deque.rotate_left(500);
        assert!(
            !deque.as_slices().1.is_empty(),
            "the test needs a wrapped deque"
        );
        assert_eq!(to_vec(&deque).unwrap(), bytes);
        // usize and isize are u64 and i64.
        assert_eq!(
            to_vec(&vec![1usize, 1 << 40]).unwrap(),
            to_vec(&vec![1u64, 1 << 40]).unwrap()
        );
        assert_eq!(
            to_vec(&vec![-1isize]).unwrap(),
            to_vec(&vec![-1i64]).unwrap()
        );
    }

    #[test]
    fn runs_keep_apart_what_differs() {
        let distinct = |a: Vec<u8>, b: Vec<u8>| assert_ne!(a, b);
        distinct(
            to_vec(&vec![0.0f64]).unwrap(),
            to_vec(&vec![-0.0f64]).unwrap(),
        );
        let quiet = f64::NAN;
        let other = f64::from_bits(quiet.to_bits() | 1);
        assert!(other.is_nan());
        distinct(to_vec(&vec![quiet]).unwrap(), to_vec(&vec![other]).unwrap());
        distinct(
            to_vec(&vec![0.0f32]).unwrap(),
            to_vec(&vec![-0.0f32]).unwrap(),
        );
        distinct(
            to_vec(&vec![1u8, 2]).unwrap(),
            to_vec(&vec![1i8, 2]).unwrap(),
        );
        distinct(to_vec(&vec![1u32]).unwrap(), to_vec(&vec![1i32]).unwrap());
        distinct(
            to_vec(&vec![1.0f32]).unwrap(),
            to_vec(&vec![1.0f64]).unwrap(),
        );
        // Empty runs: each type its own, none the same as an empty array or an empty Vec<u8>.
        let empties = [
            to_vec(&Vec::<u8>::new()).unwrap(),
            to_vec(&Vec::<i8>::new()).unwrap(),
            to_vec(&Vec::<f64>::new()).unwrap(),
            to_vec(&Vec::<f32>::new()).unwrap(),
            to_vec(&Vec::<String>::new()).unwrap(),
        ];
        assert_eq!(empties[0], vec![0xc4, 0]);
        assert_eq!(empties[2], ext_header(0, bulk::ext_code::<f64>().unwrap()));
        assert_eq!(empties[4], vec![0x90]);
        let all: std::collections::HashSet<_> = empties.iter().collect();
        assert_eq!(all.len(), empties.len());
        // One changed element in the middle of a long run.
        let a: Vec<f64> = (0..10_000).map(f64::from).collect();
        let mut b = a.clone();
        b[5_000] = 5_000.5;
        distinct(to_vec(&a).unwrap(), to_vec(&b).unwrap());
    }

    #[test]
    fn runs_at_depth_take_the_bulk_path() {
        #[derive(Serialize)]
        struct Sample {
            name: String,
            values: Vec<f64>,
            rows: Vec<Vec<i32>>,
            raw: Option<Vec<u8>>,
        }
        let sample = Sample {
            name: "s".into(),
            values: vec![0.5, 2.0],
            rows: vec![vec![-1], vec![]],
            raw: Some(vec![7]),
        };
        let i32_code = bulk::ext_code::<i32>().unwrap() as u8;
        let mut expected = vec![0x84, 0xa4, b'n', b'a', b'm', b'e', 0xa1, b's'];
        expected.extend([0xa6, b'v', b'a', b'l', b'u', b'e', b's']);
        expected.extend([0xd8, bulk::ext_code::<f64>().unwrap() as u8]);
        expected.extend(0.5f64.to_le_bytes());
        expected.extend(2.0f64.to_le_bytes());
        expected.extend([0xa4, b'r', b'o', b'w', b's', 0x92]); // Vec<Vec<i32>>: an array of runs
        expected.extend([0xd6, i32_code, 0xff, 0xff, 0xff, 0xff]);
        expected.extend([0xc7, 0, i32_code]);
        expected.extend([0xa3, b'r', b'a', b'w', 0x91, 0xc4, 1, 7]); // Some(v): [v]
        assert_eq!(to_vec(&sample).unwrap(), expected);

        // Inside maps (whose entries are buffered) and sequences of unknown length alike.
        let map: HashMap<&str, Vec<f64>> = [("b", vec![1.0]), ("a", vec![])].into();
        let mut expected = vec![0x82, 0xa1, b'a'];
        expected.extend(ext_header(0, bulk::ext_code::<f64>().unwrap()));
        expected.extend([0xa1, b'b', 0xd7, bulk::ext_code::<f64>().unwrap() as u8]);
        expected.extend(1.0f64.to_le_bytes());
        assert_eq!(to_vec(&map).unwrap(), expected);
    }

    #[test]
    fn other_sequences_stay_arrays() {
        assert_eq!(to_vec(&vec!["a"]).unwrap(), vec![0x91, 0xa1, b'a']);
        assert_eq!(to_vec(&vec![Some(1u8)]).unwrap(), vec![0x91, 0x91, 1]);
        assert_eq!(
            to_vec(&[1.5f32; 1]).unwrap(),
            vec![0x91, 0xca, 0x3f, 0xc0, 0, 0]
        );
        let set: std::collections::BTreeSet<u8> = [2, 1].into();
        assert_eq!(to_vec(&set).unwrap(), vec![0x92, 1, 2]);
    }

    #[test]
    fn a_hashing_sink_sees_the_bytes_a_vec_sink_does() {
        #[derive(Serialize)]
        struct Mixed {
            small: Vec<u16>,
            text: String,
            big: Vec<f64>,
            tail: u8,
        }
        for len in [0usize, 1, 100, 127, 128, 1000, 20_000, 200_000] {
            let value = (
                "head",
                Mixed {
                    small: (0..len as u16 % 700).collect(),
                    text: "x".repeat(len % 3000),
                    big: (0..len).map(|i| i as f64).collect(),
                    tail: 9,
                },
                vec![1u8; len],
            );
            let mut hasher = blake3::Hasher::new();
            let mut sink = KeySink::hasher(&mut hasher);
            write(&mut sink, &value).unwrap();
            drop(sink);
            assert_eq!(
                hasher.finalize(),
                blake3::hash(&to_vec(&value).unwrap()),
                "length {len}"
            );
        }
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
        let mut expected = ext_header(0, ORDERED_MAP_EXT);
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
