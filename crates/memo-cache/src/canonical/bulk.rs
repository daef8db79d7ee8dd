//! Runs of plain numbers: a slice, `Vec` or `VecDeque` of one primitive number type, written as
//! one header and then the elements' little-endian bytes in one piece.
//!
//! serde hands every such sequence to `Serializer::collect_seq` as `&[T]`, `&Vec<T>` or
//! `&VecDeque<T>` (a `Box<[T]>`, `Arc<[T]>` or `Cow<[T]>` forwards to `[T]`). Element by element,
//! each number costs a trip through serde and a marker byte, which held a key's hasher to
//! 10-200 MB/s; as a run, the numbers cost one header and, on a little-endian host, one write
//! straight from their memory, which the hasher takes at blake3's speed.
//!
//! # Encoding
//!
//! - `u8`: MessagePack bin, the bytes as they are. That is what `serialize_bytes` writes, so a
//!   `Vec<u8>`, a `&[u8]` and a `serde_bytes::ByteBuf` of the same bytes give one key.
//! - every other type: MessagePack ext in its smallest form for the payload's length (fixext for
//!   1, 2, 4, 8 or 16 bytes, else ext 8/16/32), with the element type's code from `ext_code`
//!   (16-26) and as payload each element's little-endian bytes at its full width: floats by
//!   their bits, so `-0.0` and `0.0`, and NaNs of different payloads, stay apart. `usize` and
//!   `isize` are written as `u64` and `i64` (code and width), so 32- and 64-bit hosts agree.
//! - a run whose payload would pass MessagePack's 4 GiB - 1 limit is left to the element by
//!   element array encoding.
//!
//! The element type is part of the code, so `Vec<i32>` and `Vec<i64>` of the same numbers, which
//! both encode element by element as the same array, are now distinct keys; and a fixed-size
//! array (`[f64; 3]`, a serde tuple) still encodes as an array, apart from the same numbers in a
//! `Vec`. Neither matters to a key: one function's argument has one type.
//!
//! # Soundness
//!
//! Recognising `&[T]` among all the types `collect_seq` is called with needs their type
//! identity, and those types borrow (`&'a [T]`), so `std::any::Any` cannot tell: `typeid::of`
//! gives the `TypeId` of any type, lifetimes erased. The two `unsafe` blocks are in
//! [`parts_of`] (a reference cast once the types are known equal) and [`memory`] (a slice of
//! primitive numbers seen as bytes); each states why it is sound.

use std::any::TypeId;
use std::collections::VecDeque;
use std::io::Write;

use rmp::encode;

use super::{R, io};

/// A primitive number type whose runs are written in bulk. Implemented here for the primitive
/// integers and floats only: the soundness of [`parts_of`] and [`memory`] rests on that.
trait Plain: Copy + 'static {
    /// The ext type code of a run, `None` for bin (`u8`).
    const EXT: Option<i8>;
    /// Bytes per element in the payload.
    const WIDTH: usize;
    /// True when an element's memory is its payload bytes (a little-endian host, same width).
    const NATIVE: bool;
    /// Writes the payload bytes of `self` into `out`, `WIDTH` bytes long.
    fn put(self, out: &mut [u8]);
}

macro_rules! plain {
    ($($t:ty => $wire:ty, $ext:expr;)*) => {$(
        impl Plain for $t {
            const EXT: Option<i8> = $ext;
            const WIDTH: usize = size_of::<$wire>();
            const NATIVE: bool =
                cfg!(target_endian = "little") && size_of::<$t>() == size_of::<$wire>();
            #[inline]
            fn put(self, out: &mut [u8]) {
                #[allow(clippy::unnecessary_cast)]
                out.copy_from_slice(&(self as $wire).to_le_bytes());
            }
        }
    )*};
}

plain! {
    u8 => u8, None;
    i8 => i8, Some(16);
    u16 => u16, Some(17);
    i16 => i16, Some(18);
    u32 => u32, Some(19);
    i32 => i32, Some(20);
    u64 => u64, Some(21);
    usize => u64, Some(21);
    i64 => i64, Some(22);
    isize => i64, Some(22);
    u128 => u128, Some(23);
    i128 => i128, Some(24);
    f32 => f32, Some(25);
    f64 => f64, Some(26);
}

/// The ext type code of a run of `T`s, for the module docs and tests: `None` for `u8` (bin) and
/// for types that are not written in bulk.
#[cfg(test)]
pub(super) fn ext_code<T: 'static>() -> Option<i8> {
    macro_rules! code {
        ($($t:ty),*) => {$(
            if TypeId::of::<T>() == TypeId::of::<$t>() {
                return <$t as Plain>::EXT;
            }
        )*};
    }
    code!(
        i8, u16, i16, u32, i32, u64, usize, i64, isize, u128, i128, f32, f64
    );
    None
}

/// Writes `iter` as a run when it is a slice, `Vec` or `VecDeque` of a [`Plain`] type; false
/// when it is not (or too long for one run), and nothing was written.
#[inline]
pub(super) fn write_if_plain<W: Write, I>(out: &mut W, iter: &I) -> R<bool> {
    macro_rules! try_each {
        ($($t:ty),*) => {$(
            if let Some(parts) = parts_of::<I, $t>(iter) {
                return write_run(out, parts);
            }
        )*};
    }
    try_each!(
        u8, f64, f32, i8, u16, i16, u32, i32, u64, usize, i64, isize, u128, i128
    );
    Ok(false)
}

/// The elements of `iter`, in order, when its type is `&[T]`, `&Vec<T>` or `&VecDeque<T>`.
#[inline]
fn parts_of<'s, I, T: Plain>(iter: &'s I) -> Option<[&'s [T]; 2]> {
    let id = typeid::of::<I>();
    let ptr: *const I = iter;
    // SAFETY (all three): the `TypeId`s are equal, so `I` is the named type up to its one
    // lifetime: `I = &'a X` with `X` one of `[T]`, `Vec<T>`, `VecDeque<T>`, none of which has a
    // lifetime of its own (`T: Plain` is a primitive number). `&'s I` is well formed, so
    // `'a: 's`, and reading `&'s &'a X` as `&'s &'s X` only shortens a lifetime: the same
    // coercion the compiler would make by variance, on the same pointer and layout.
    if id == TypeId::of::<&'static [T]>() {
        let run: &'s &'s [T] = unsafe { &*ptr.cast::<&'s [T]>() };
        Some([run, &[]])
    } else if id == TypeId::of::<&'static Vec<T>>() {
        let vec: &'s &'s Vec<T> = unsafe { &*ptr.cast::<&'s Vec<T>>() };
        Some([vec.as_slice(), &[]])
    } else if id == TypeId::of::<&'static VecDeque<T>>() {
        let deque: &'s &'s VecDeque<T> = unsafe { &*ptr.cast::<&'s VecDeque<T>>() };
        let (front, back) = deque.as_slices();
        Some([front, back])
    } else {
        None
    }
}

/// Writes the header and payload of a run made of `parts`; false, with nothing written, when
/// the payload is past MessagePack's limit.
fn write_run<W: Write, T: Plain>(out: &mut W, parts: [&[T]; 2]) -> R<bool> {
    let elements = parts[0].len() + parts[1].len();
    let Some(bytes) = elements
        .checked_mul(T::WIDTH)
        .and_then(|n| u32::try_from(n).ok())
    else {
        return Ok(false);
    };
    match T::EXT {
        None => encode::write_bin_len(out, bytes).map(drop)?,
        Some(code) => encode::write_ext_meta(out, bytes, code).map(drop)?,
    }
    for part in parts {
        write_payload(out, part)?;
    }
    Ok(true)
}

/// The little-endian bytes of `part`: its memory as it is on a little-endian host, one write
/// (a key's sink hands a large one to blake3 whole); converted through a stack buffer otherwise.
fn write_payload<W: Write, T: Plain>(out: &mut W, part: &[T]) -> R {
    if T::NATIVE {
        return out.write_all(memory(part)).map_err(io);
    }
    let mut buffer = [0u8; 4096];
    for chunk in part.chunks(buffer.len() / T::WIDTH) {
        let used = chunk.len() * T::WIDTH;
        for (x, slot) in chunk.iter().zip(buffer.chunks_exact_mut(T::WIDTH)) {
            x.put(slot);
        }
        out.write_all(&buffer[..used]).map_err(io)?;
    }
    Ok(())
}

/// The memory of `part` as bytes.
fn memory<T: Plain>(part: &[T]) -> &[u8] {
    // SAFETY: `T` is a primitive integer or float (`Plain` is implemented for nothing else): no
    // padding, every byte initialised, any alignment is at least `u8`'s. The length is the
    // slice's own size in bytes, inside its one allocation, borrowed for as long as `part`.
    unsafe { std::slice::from_raw_parts(part.as_ptr().cast::<u8>(), size_of_val(part)) }
}

#[cfg(test)]
mod tests {
    use super::super::{Canonical, KeySink, Maps, to_vec, write};
    use super::*;
    use serde::{Serialize, ser};
    use std::collections::HashMap;

    /// Header of a run of `len` payload bytes with ext `code`, as rmp writes it.
    fn ext_header(len: u32, code: i8) -> Vec<u8> {
        let mut out = Vec::new();
        encode::write_ext_meta(&mut out, len, code).unwrap();
        out
    }

    #[test]
    fn a_run_is_one_header_then_its_little_endian_bytes() {
        let f64_code = ext_code::<f64>().unwrap();
        let mut expected = vec![0xd8, f64_code as u8]; // fixext16: two f64s
        expected.extend(1.0f64.to_le_bytes());
        expected.extend((-0.5f64).to_le_bytes());
        assert_eq!(to_vec(&vec![1.0f64, -0.5]).unwrap(), expected);

        let u16_code = ext_code::<u16>().unwrap();
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
        let i8_code = ext_code::<i8>().unwrap();
        assert_eq!(
            to_vec(&vec![-1i8, 0, 1]).unwrap(),
            vec![0xc7, 3, i8_code as u8, 0xff, 0, 1]
        );
        let big: Vec<u32> = (0..100_000).collect();
        let mut expected = ext_header(400_000, ext_code::<u32>().unwrap());
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
        assert_eq!(empties[2], ext_header(0, ext_code::<f64>().unwrap()));
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
        let i32_code = ext_code::<i32>().unwrap() as u8;
        let mut expected = vec![0x84, 0xa4, b'n', b'a', b'm', b'e', 0xa1, b's'];
        expected.extend([0xa6, b'v', b'a', b'l', b'u', b'e', b's']);
        expected.extend([0xd8, ext_code::<f64>().unwrap() as u8]);
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
        expected.extend(ext_header(0, ext_code::<f64>().unwrap()));
        expected.extend([0xa1, b'b', 0xd7, ext_code::<f64>().unwrap() as u8]);
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
}
