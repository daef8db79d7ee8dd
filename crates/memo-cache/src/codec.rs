//! Stored values: how a result becomes bytes on disk and back.
//!
//! A stored value is a payload followed by one format byte:
//!
//! | format | payload |
//! |--------|---------|
//! | `0x01` | MessagePack (rmp-serde): structs as maps with field names, byte sequences as bin |
//! | `0x02` | a `Vec<u8>`, raw |
//! | `0x10`..`0x15` | a `Vec` of `f64`, `f32`, `i64`, `u64`, `i32`, `u32`, little-endian |
//! | `0x20` | one zstd frame holding a stored value of the formats above, format byte included |
//!
//! Values are compressed (`0x20`) at store time, by the rules of `compress.rs` in this crate;
//! [`decode`] and [`expanded`] undo it, within its bounds. A frame inside a frame is refused.
//!
//! Structs are stored with their field names so that a reordered or renamed field makes an old
//! entry fail to decode (a miss) instead of decoding into the wrong fields.
//!
//! # Performance
//!
//! serde hands a `Vec<f64>` over one element at a time, and MessagePack spends a marker byte and a
//! call on each; a million of them took milliseconds to decode. Plain vectors of numbers and bytes
//! are therefore recognised by type and copied as raw little-endian arrays. The format byte comes
//! last so that a stored `Vec<u8>` becomes the result by dropping one byte, without a copy; and a
//! blob read into an allocation made for the wanted `Vec<f64>` (or other number) is that vector
//! once its format byte is checked (`decode_aligned`): the file's bytes are copied once, by
//! `read(2)`, into the buffer the caller gets.

use std::any::{Any, TypeId};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::blobs::{Aligned, Plain};

/// Payload is MessagePack.
pub const FORMAT_MSGPACK: u8 = 0x01;
/// Payload is a raw byte vector.
pub const FORMAT_BYTES: u8 = 0x02;
/// Payload is little-endian `f64`s.
pub const FORMAT_F64: u8 = 0x10;
/// Payload is little-endian `f32`s.
pub const FORMAT_F32: u8 = 0x11;
/// Payload is little-endian `i64`s.
pub const FORMAT_I64: u8 = 0x12;
/// Payload is little-endian `u64`s.
pub const FORMAT_U64: u8 = 0x13;
/// Payload is little-endian `i32`s.
pub const FORMAT_I32: u8 = 0x14;
/// Payload is little-endian `u32`s.
pub const FORMAT_U32: u8 = 0x15;
/// Payload is a zstd frame of another stored value.
pub const FORMAT_ZSTD: u8 = 0x20;

/// True for the raw number array formats (`0x10`..`0x15`).
pub fn is_numbers(format: u8) -> bool {
    (FORMAT_F64..=FORMAT_U32).contains(&format)
}

/// The encoded value in `stored`: the bytes themselves, or what their zstd frame holds.
///
/// ```
/// use memo_cache::codec;
/// let encoded = codec::encode(&"a".repeat(10_000)).unwrap();
/// assert_eq!(codec::expanded(encoded.clone()).unwrap(), encoded);
/// ```
pub fn expanded(stored: Vec<u8>) -> Result<Vec<u8>, String> {
    match compressed_frame(&stored) {
        Some(frame) => Ok(crate::compress::expand::<u8>(frame)?.into_bytes()),
        None => Ok(stored),
    }
}

/// The zstd frame of a compressed value.
fn compressed_frame(stored: &[u8]) -> Option<&[u8]> {
    match stored.split_last() {
        Some((&FORMAT_ZSTD, frame)) => Some(frame),
        _ => None,
    }
}

/// Encodes `value` for storage.
///
/// Fails with a message when `value`'s `Serialize` does, or when there is no memory for the
/// encoding (an address-space limit): a store then fails, where a copy that aborted on
/// allocation failure would have ended the process.
pub fn encode<T: Serialize + Any>(value: &T) -> Result<Vec<u8>, String> {
    let no_memory = |len: usize| format!("not enough memory for its {len}-byte encoding");
    let any = value as &dyn Any;
    if let Some(bytes) = any.downcast_ref::<Vec<u8>>() {
        let mut out =
            crate::blobs::try_byte_buffer(bytes.len() + 1).ok_or_else(|| no_memory(bytes.len()))?;
        out.extend_from_slice(bytes);
        out.push(FORMAT_BYTES);
        return Ok(out);
    }
    macro_rules! numeric {
        ($($t:ty => $format:expr),*) => {$(
            if let Some(items) = any.downcast_ref::<Vec<$t>>() {
                let len = items.len() * size_of::<$t>();
                let mut out = crate::blobs::try_byte_buffer(len + 1).ok_or_else(|| no_memory(len))?;
                if cfg!(target_endian = "little") {
                    // SAFETY: plain numbers, no padding: their memory is `len` initialised bytes.
                    out.extend_from_slice(unsafe {
                        std::slice::from_raw_parts(items.as_ptr().cast::<u8>(), len)
                    });
                } else {
                    for item in items {
                        out.extend_from_slice(&item.to_le_bytes());
                    }
                }
                out.push($format);
                return Ok(out);
            }
        )*};
    }
    numeric!(f64 => FORMAT_F64, f32 => FORMAT_F32, i64 => FORMAT_I64, u64 => FORMAT_U64,
             i32 => FORMAT_I32, u32 => FORMAT_U32);
    let mut out = Growing(Vec::new());
    let mut serializer = rmp_serde::Serializer::new(&mut out)
        .with_struct_map()
        .with_bytes(rmp_serde::config::BytesMode::ForceIterables);
    value
        .serialize(&mut serializer)
        .map_err(|e| e.to_string())?;
    let mut out = out.0;
    out.try_reserve(1).map_err(|_| no_memory(out.len() + 1))?;
    out.push(FORMAT_MSGPACK);
    Ok(out)
}

/// A vector that reports running out of memory as a write error (which the serializer passes
/// on) instead of aborting the process, as `Vec`'s own `Write` would.
struct Growing(Vec<u8>);

impl std::io::Write for Growing {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.0.capacity() - self.0.len() < bytes.len() {
            self.grow(bytes.len())?;
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    #[inline]
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write(bytes).map(drop)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Growing {
    #[cold]
    fn grow(&mut self, more: usize) -> std::io::Result<()> {
        self.0.try_reserve(more).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!(
                    "not enough memory for its encoding past {} bytes",
                    self.0.len()
                ),
            )
        })
    }
}

/// The memory of a byte vector, or of a number vector on a little-endian machine, and its format
/// byte: what [`encode`] would copy and then append, for a store that writes the two as they
/// are. `None` for any other value.
pub(crate) fn raw_parts<T: Any>(value: &T) -> Option<(&[u8], u8)> {
    let any = value as &dyn Any;
    if let Some(bytes) = any.downcast_ref::<Vec<u8>>() {
        return Some((bytes, FORMAT_BYTES));
    }
    if cfg!(target_endian = "big") {
        return None;
    }
    macro_rules! numeric {
        ($($t:ty => $format:expr),*) => {$(
            if let Some(items) = any.downcast_ref::<Vec<$t>>() {
                // SAFETY: plain numbers, no padding: their memory is initialised bytes, borrowed
                // for as long as `value` is.
                let bytes = unsafe {
                    std::slice::from_raw_parts(items.as_ptr().cast::<u8>(), size_of_val(&items[..]))
                };
                return Some((bytes, $format));
            }
        )*};
    }
    numeric!(f64 => FORMAT_F64, f32 => FORMAT_F32, i64 => FORMAT_I64, u64 => FORMAT_U64,
             i32 => FORMAT_I32, u32 => FORMAT_U32);
    None
}

/// Decodes stored bytes into a `T`; consumes the buffer so a byte vector is returned in place.
pub fn decode<T: DeserializeOwned + Any>(stored: Vec<u8>) -> Result<T, String> {
    if let Some(frame) = compressed_frame(&stored) {
        return decode_aligned_encoded(crate::compress::expand::<u8>(frame)?);
    }
    decode_encoded(stored)
}

/// Decodes an encoded (uncompressed) value.
fn decode_encoded<T: DeserializeOwned + Any>(mut stored: Vec<u8>) -> Result<T, String> {
    let format = stored.pop().ok_or("the stored value is empty")?;
    let wanted = TypeId::of::<T>();
    if format == FORMAT_BYTES {
        if wanted != TypeId::of::<Vec<u8>>() {
            return Err("stored as bytes, requested as another type".into());
        }
        return Ok(cast(stored));
    }
    macro_rules! numeric {
        ($($t:ty => $format:expr),*) => {$(
            if format == $format {
                if wanted != TypeId::of::<Vec<$t>>() {
                    return Err(format!("stored as Vec<{}>, requested as another type", stringify!($t)));
                }
                if stored.len() % size_of::<$t>() != 0 {
                    return Err("truncated numeric array".into());
                }
                return Ok(cast(numbers_from_le::<$t>(&stored)));
            }
        )*};
    }
    numeric!(f64 => FORMAT_F64, f32 => FORMAT_F32, i64 => FORMAT_I64, u64 => FORMAT_U64,
             i32 => FORMAT_I32, u32 => FORMAT_U32);
    if format != FORMAT_MSGPACK {
        return Err(format!("unknown value format 0x{format:02x}"));
    }
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(&stored);
    deserializer.set_max_depth(MAX_DEPTH);
    let value = T::deserialize(&mut deserializer).map_err(|e| e.to_string())?;
    // A value stored by `encode` is one MessagePack value and its format byte, nothing more:
    // bytes after it mean these are not the bytes that were stored.
    match msgpack_len(&stored) {
        Some(len) if len == stored.len() => Ok(value),
        Some(len) => Err(format!(
            "{} bytes after the MessagePack value",
            stored.len() - len
        )),
        None => Err("not one whole MessagePack value".into()),
    }
}

/// The length of the MessagePack value at the start of `bytes`, walking its markers without
/// decoding anything (`None` when it is cut short). rmp-serde's borrowing reader does not say
/// where a value ended; this costs a step per marker, and a string or binary is skipped whole.
fn msgpack_len(bytes: &[u8]) -> Option<usize> {
    use rmp::Marker;
    let (mut at, mut pending) = (0usize, 1u64);
    let be = |at: usize, n: usize| -> Option<u64> {
        let field = bytes.get(at..at.checked_add(n)?)?;
        Some(field.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
    };
    while pending > 0 {
        // Every value takes at least a byte: more pending than bytes left is a cut value
        // (and keeps a hostile array length from counting for long).
        if pending > (bytes.len() - at) as u64 {
            return None;
        }
        pending -= 1;
        let marker = Marker::from_u8(*bytes.get(at)?);
        at += 1;
        // (bytes of a length field, bytes after the marker and the field, values it holds)
        let (field, skip, holds) = match marker {
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
                (0, 0, 0)
            }
            Marker::Reserved => return None,
            Marker::U8 | Marker::I8 => (0, 1, 0),
            Marker::U16 | Marker::I16 => (0, 2, 0),
            Marker::U32 | Marker::I32 | Marker::F32 => (0, 4, 0),
            Marker::U64 | Marker::I64 | Marker::F64 => (0, 8, 0),
            Marker::FixStr(n) => (0, u64::from(n), 0),
            Marker::Str8 | Marker::Bin8 => (1, 0, 0),
            Marker::Str16 | Marker::Bin16 => (2, 0, 0),
            Marker::Str32 | Marker::Bin32 => (4, 0, 0),
            Marker::FixExt1 => (0, 2, 0),
            Marker::FixExt2 => (0, 3, 0),
            Marker::FixExt4 => (0, 5, 0),
            Marker::FixExt8 => (0, 9, 0),
            Marker::FixExt16 => (0, 17, 0),
            // The length, then the type byte and the data.
            Marker::Ext8 => (1, 1, 0),
            Marker::Ext16 => (2, 1, 0),
            Marker::Ext32 => (4, 1, 0),
            Marker::FixArray(n) => (0, 0, u64::from(n)),
            Marker::FixMap(n) => (0, 0, 2 * u64::from(n)),
            Marker::Array16 | Marker::Map16 | Marker::Array32 | Marker::Map32 => {
                let width = if matches!(marker, Marker::Array16 | Marker::Map16) {
                    2
                } else {
                    4
                };
                let n = be(at, width)?;
                at += width;
                let per = if matches!(marker, Marker::Map16 | Marker::Map32) {
                    2
                } else {
                    1
                };
                pending += per * n;
                continue;
            }
        };
        let len = if field > 0 { be(at, field)? } else { 0 };
        at += field;
        let skip = usize::try_from(skip + len).ok()?;
        at = at.checked_add(skip).filter(|&end| end <= bytes.len())?;
        pending += holds;
    }
    Some(at)
}

/// Decodes stored bytes held in an allocation made for `N`s: when `T` is `Vec<N>` and the bytes
/// are its raw format, the allocation itself is the result; anything else decodes as [`decode`]
/// would (bytes held for `u8` without a copy, others copied first).
/// A compressed value is expanded into a new allocation made for `N`s, so a `Vec<N>` is still
/// handed out as the buffer its bytes were written to.
pub(crate) fn decode_aligned<T: DeserializeOwned + Any, N: Plain>(
    stored: Aligned<N>,
) -> Result<T, String> {
    if let Some(frame) = compressed_frame(stored.bytes()) {
        return decode_aligned_encoded(crate::compress::expand::<N>(frame)?);
    }
    decode_aligned_encoded(stored)
}

/// [`decode_aligned`] of an encoded (uncompressed) value.
fn decode_aligned_encoded<T: DeserializeOwned + Any, N: Plain>(
    stored: Aligned<N>,
) -> Result<T, String> {
    if TypeId::of::<N>() == TypeId::of::<u8>() {
        let stored: Aligned<u8> = cast(stored);
        return decode_encoded(stored.into_bytes());
    }
    let raw = raw_format::<N>();
    if cfg!(target_endian = "little")
        && TypeId::of::<T>() == TypeId::of::<Vec<N>>()
        && stored.bytes().last() == Some(&raw)
    {
        let payload = stored.len() - 1;
        if !payload.is_multiple_of(size_of::<N>()) {
            return Err("truncated numeric array".into());
        }
        return Ok(cast(stored.into_vec(payload / size_of::<N>())));
    }
    decode_encoded(stored.bytes().to_vec())
}

/// The raw array format of `N` (`FORMAT_BYTES` for `u8`).
fn raw_format<N: Plain>() -> u8 {
    let id = TypeId::of::<N>();
    [
        (TypeId::of::<f64>(), FORMAT_F64),
        (TypeId::of::<f32>(), FORMAT_F32),
        (TypeId::of::<i64>(), FORMAT_I64),
        (TypeId::of::<u64>(), FORMAT_U64),
        (TypeId::of::<i32>(), FORMAT_I32),
        (TypeId::of::<u32>(), FORMAT_U32),
    ]
    .into_iter()
    .find_map(|(t, format)| (t == id).then_some(format))
    .unwrap_or(FORMAT_BYTES)
}

/// How deeply a stored value may nest. Decoding recurses once per level (several frames in a
/// debug build), and rmp-serde's default of 1024 overflowed a 2 MiB thread stack (a tokio worker,
/// a test thread) on a crafted value, aborting the process; a deeper value is a miss instead.
const MAX_DEPTH: usize = 256;

/// Numbers from their little-endian bytes (`bytes.len()` a multiple of their size): one `memcpy`
/// on a little-endian machine, where element-wise `from_le_bytes` cost twice as much.
fn numbers_from_le<N: Number>(bytes: &[u8]) -> Vec<N> {
    let n = bytes.len() / size_of::<N>();
    if cfg!(target_endian = "little") {
        let mut out: Vec<N> = Vec::with_capacity(n);
        // SAFETY: every bit pattern is a valid `N` (plain integers and floats), the destination
        // has room for `n` of them, and the two buffers are distinct allocations.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                out.as_mut_ptr().cast::<u8>(),
                n * size_of::<N>(),
            );
            out.set_len(n);
        }
        out
    } else {
        bytes.chunks_exact(size_of::<N>()).map(N::from_le).collect()
    }
}

/// The plain numbers with a raw array format.
trait Number: Copy {
    fn from_le(bytes: &[u8]) -> Self;
}

macro_rules! number {
    ($($t:ty),*) => {$(
        impl Number for $t {
            fn from_le(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("chunk size"))
            }
        }
    )*};
}
number!(f64, f32, i64, u64, i32, u32);

/// Moves a value whose type has been checked to be `T` into a `T`.
fn cast<T: Any, U: Any>(value: U) -> T {
    *(Box::new(value) as Box<dyn Any>)
        .downcast::<T>()
        .expect("type checked by the caller")
}

/// The format byte of stored bytes, and the payload before it.
#[must_use]
pub fn split(stored: &[u8]) -> Option<(u8, &[u8])> {
    let (format, payload) = stored.split_last()?;
    Some((*format, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn the_walk_finds_the_end_of_every_value_encode_writes() {
        use std::collections::BTreeMap;
        #[derive(Serialize)]
        struct S {
            a: f64,
            b: Vec<u8>,
            c: Option<String>,
            d: BTreeMap<String, (i64, u64, i8, f32)>,
            e: Vec<Vec<bool>>,
        }
        let long = "x".repeat(70_000);
        let map: BTreeMap<String, (i64, u64, i8, f32)> = (0..40)
            .map(|i| (format!("k{i}"), (-i * 100_000, (i as u64) << 40, -3, 0.5)))
            .collect();
        let values: Vec<Vec<u8>> = vec![
            encode(&S {
                a: 1.5,
                b: vec![7; 300],
                c: Some(long.clone()),
                d: map,
                e: vec![vec![true; 20]; 70_000],
            })
            .unwrap(),
            encode(&()).unwrap(),
            encode(&(u64::MAX, i64::MIN, "", vec![(); 16])).unwrap(),
            encode(&vec!["é".repeat(40); 3]).unwrap(),
        ];
        for stored in values {
            let payload = &stored[..stored.len() - 1];
            assert_eq!(msgpack_len(payload), Some(payload.len()));
            assert_eq!(
                msgpack_len(&payload[..payload.len() - 1]),
                None,
                "cut short"
            );
        }
        // Hostile lengths: an array of 2^32 - 1 values in 5 bytes, a string longer than what
        // follows.
        assert_eq!(msgpack_len(&[0xdd, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(msgpack_len(&[0xdb, 0xff, 0xff, 0xff, 0xff, b'a']), None);
        assert_eq!(msgpack_len(&[0xc1]), None);
    }

    #[test]
    fn bytes_after_the_value_are_refused() {
        let mut stored = encode(&5u64).unwrap();
        let format = stored.pop().unwrap();
        stored.extend_from_slice(&[0xc1, 0xc1, b'x']);
        stored.push(format);
        let err = decode::<u64>(stored).unwrap_err();
        assert!(err.contains("3 bytes after the MessagePack value"), "{err}");
    }

    #[test]
    fn fast_paths_round_trip() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(decode::<Vec<u8>>(encode(&bytes).unwrap()).unwrap(), bytes);
        let floats: Vec<f64> = (0..1000).map(|i| i as f64 * 0.5 - 3.0).collect();
        assert_eq!(
            decode::<Vec<f64>>(encode(&floats).unwrap()).unwrap(),
            floats
        );
        let ints: Vec<i32> = vec![-1, 0, i32::MAX];
        assert_eq!(decode::<Vec<i32>>(encode(&ints).unwrap()).unwrap(), ints);
    }

    #[test]
    fn structs_round_trip_with_field_names() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct S {
            a: f64,
            b: Vec<u8>,
            c: Option<String>,
        }
        let s = S {
            a: 1.5,
            b: vec![1, 2, 3],
            c: Some("x".into()),
        };
        let stored = encode(&s).unwrap();
        assert_eq!(decode::<S>(stored).unwrap(), s);

        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Renamed {
            z: f64,
        }
        assert!(decode::<Renamed>(encode(&s).unwrap()).is_err());
    }

    #[test]
    fn a_byte_vector_is_stored_as_bin_inside_structs() {
        let stored = encode(&(vec![7u8; 300],)).unwrap();
        // fixarray(1), bin16 marker, length 300, then the bytes.
        assert_eq!(&stored[..4], &[0x91, 0xc5, 0x01, 0x2c]);
    }

    /// Edge values through the raw formats, decoded both ways: from plain bytes (inline values,
    /// Redis) and in place from a buffer aligned for the numbers (blobs).
    fn both_ways<T>(value: &T) -> (T, T)
    where
        T: Serialize + DeserializeOwned + Any,
    {
        let stored = encode(value).unwrap();
        let plain = decode::<T>(stored.clone()).unwrap();
        let aligned = match TypeId::of::<T>() {
            t if t == TypeId::of::<Vec<f64>>() => {
                decode_aligned::<T, f64>(Aligned::from_bytes(stored))
            }
            t if t == TypeId::of::<Vec<u32>>() => {
                decode_aligned::<T, u32>(Aligned::from_bytes(stored))
            }
            _ => decode_aligned::<T, u8>(Aligned::from_bytes(stored)),
        };
        (plain, aligned.unwrap())
    }

    #[test]
    fn edge_values_round_trip_bit_for_bit() {
        let nan_payload = f64::from_bits(0x7ff8_dead_beef_0001);
        let floats = vec![
            -0.0,
            0.0,
            nan_payload,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE / 2.0,
        ];
        for value in [Vec::new(), vec![-0.0], floats] {
            let bits: Vec<u64> = value.iter().map(|x| x.to_bits()).collect();
            let (plain, aligned) = both_ways(&value);
            assert_eq!(plain.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), bits);
            assert_eq!(
                aligned.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                bits
            );
        }
        for len in [0usize, 1, 7, 9, 4095, 65_537] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            assert_eq!(both_ways(&bytes), (bytes.clone(), bytes));
        }
        let ints = vec![u32::MAX, 0, 1];
        assert_eq!(both_ways(&ints), (ints.clone(), ints));
    }

    #[test]
    fn nested_structs_with_float_vectors_round_trip() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Inner {
            samples: Vec<f64>,
            raw: Vec<u8>,
        }
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Outer {
            name: String,
            inner: Vec<Inner>,
            weights: Vec<f64>,
        }
        let value = Outer {
            name: "run".into(),
            inner: vec![
                Inner {
                    samples: vec![-0.0, 1.5, f64::INFINITY],
                    raw: vec![1, 2, 3],
                },
                Inner {
                    samples: Vec::new(),
                    raw: Vec::new(),
                },
            ],
            weights: (0..10_000).map(|i| i as f64 / 3.0).collect(),
        };
        let (plain, aligned) = both_ways(&value);
        assert_eq!(plain, value);
        assert_eq!(aligned, value);
    }

    #[test]
    fn an_aligned_buffer_of_another_format_decodes_as_its_format_says() {
        // A `Vec<f64>` wanted, a `Vec<u64>` stored: an error, never the bits reinterpreted.
        let stored = encode(&vec![1u64, 2]).unwrap();
        assert!(decode_aligned::<Vec<f64>, f64>(Aligned::from_bytes(stored)).is_err());
        // A truncated array is an error too.
        let mut stored = encode(&vec![1.0f64, 2.0]).unwrap();
        stored.remove(0);
        assert!(decode_aligned::<Vec<f64>, f64>(Aligned::from_bytes(stored)).is_err());
    }

    #[test]
    fn mismatched_formats_are_errors_not_garbage() {
        let stored = encode(&vec![1.0f64, 2.0]).unwrap();
        assert!(decode::<Vec<u64>>(stored.clone()).is_err());
        assert!(decode::<String>(stored).is_err());
        assert!(decode::<u8>(Vec::new()).is_err());
        assert!(decode::<u8>(vec![0xff]).is_err());
    }
}
