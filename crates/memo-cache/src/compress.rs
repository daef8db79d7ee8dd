//! Compressed values: zstd for stored values from [`COMPRESS_FROM`] bytes on.
//!
//! # Format
//!
//! A compressed value is one zstd frame of the encoded value (its own format byte included, see
//! [`crate::codec`]), followed by the format byte [`FORMAT_ZSTD`]. The stored bytes thus say
//! how they are stored, and only decoding needs to know: first-hit files, the Redis tier and
//! `verify` hand the bytes on as they are. The index row's `encoding` column records it as well
//! (1 = zstd), for `ls` and [`EntryInfo::compressed`](crate::EntryInfo::compressed). The hash
//! is over the stored bytes, so a damaged frame fails its check before zstd ever sees it, and
//! an entry's size, which eviction weighs, is what the disk holds.
//!
//! # What is compressed
//!
//! A value whose encoding is at least [`COMPRESS_FROM`] bytes (and at most [`MAX_EXPANDED`]),
//! at the level of its [`Function`](crate::Function) when it sets one
//! (`#[disk_cache(compress = 3)]`), else at the cache's
//! ([`CacheBuilder::compress`](crate::CacheBuilder::compress), `MEMO_CACHE_COMPRESS`, default
//! [`DEFAULT_COMPRESSION`]). Raw number arrays (`Vec<f64>` and kin) are left alone unless
//! asked for, by the function's own level or
//! [`CacheBuilder::compress_numbers`](crate::CacheBuilder::compress_numbers): measured
//! (BENCHMARKS.md, "Compression"), zstd saves little on arbitrary floats and costs their fast
//! hit path its speed. A compressed value is kept only when it saves at least a tenth.
//!
//! # Performance
//!
//! Measured with `cargo bench -p memo-cache-e2e --bench compression` (BENCHMARKS.md,
//! "Compression", 2-core VM): level 1 keeps 23-25% of 1 MB of log-like text or JSON-like
//! structs; levels 3 and 9 keep hardly less (24%, 20-21%) for 1.5-2x and 5-8x level 1's store
//! time. A hit then costs about 1 ms more per MB (zstd's expansion), a store a few ms per MB.
//! From 4 KiB on, a value keeps about a third of its bytes; below it the saving falls under
//! 1.3 KiB an entry while a hit still pays 5-7 µs, a third to a half of a small hit. Of 10^6
//! `f64`, a random walk keeps 89%, a smooth signal does not shrink at all, and counts with few
//! distinct values keep 11%, each with a hit 2.5-4x slower: hence numbers only when asked. A
//! large value whose first [`PROBE`] bytes do not shrink is not tried whole.
//!
//! # Bounds
//!
//! A frame must declare the size of what it holds, at most [`MAX_EXPANDED`], and is expanded
//! into an allocation of exactly that size: whatever a planted or damaged frame says, a reader
//! never allocates more, and a frame holding more than it declares is an error, a miss.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use zstd::zstd_safe::{self, DCtx, WriteBuf};

use crate::blobs::{self, Aligned, Plain};
use crate::codec::{self, FORMAT_ZSTD};

/// The zstd level of a cache that does not set one: see BENCHMARKS.md, "Compression".
pub const DEFAULT_COMPRESSION: i32 = 1;

/// Encoded values shorter than this are stored as they are: see BENCHMARKS.md, "Compression".
pub const COMPRESS_FROM: usize = 4 * 1024;

/// The most a compressed value may expand to; longer values are stored uncompressed, and a
/// frame that declares more is refused unread.
pub const MAX_EXPANDED: usize = 1 << 30;

/// The environment variable that sets the compression level of caches that do not set one
/// (`0` turns compression off).
pub const COMPRESS_ENV: &str = "MEMO_CACHE_COMPRESS";

/// A handle's compression settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Compression {
    /// zstd level; 0: off.
    pub level: i32,
    /// Raw number arrays too.
    pub numbers: bool,
}

impl Compression {
    /// The stored form of the value `encoded` of a function whose own level is `own`:
    /// compressed when it is large enough, of a kind this setting compresses, and saves a tenth.
    pub fn apply(self, own: Option<i32>, encoded: Vec<u8>) -> Vec<u8> {
        if !(COMPRESS_FROM..=MAX_EXPANDED).contains(&encoded.len()) {
            return encoded;
        }
        // A function's own level is asked for, numbers included.
        let (level, numbers) = match own {
            // As the builder takes a level: below 0 is off, above the highest the highest.
            Some(level) => (level.clamp(0, zstd_safe::max_c_level()), true),
            None => (self.level, self.numbers),
        };
        let numeric = codec::split(&encoded).is_some_and(|(format, _)| codec::is_numbers(format));
        if level == 0 || (numeric && !numbers) {
            return encoded;
        }
        if encoded.len() >= 4 * PROBE && !samples_compress(&encoded, level) {
            return encoded;
        }
        compress(&encoded, level).unwrap_or(encoded)
    }
}

impl Compression {
    /// True when [`apply`](Self::apply) surely keeps the value encoded as `body` followed by the
    /// format byte `format` as it is, so a store may write the two pieces without joining them;
    /// false when it would try zstd.
    pub(crate) fn keeps(self, own: Option<i32>, body: &[u8], format: u8) -> bool {
        if !(COMPRESS_FROM..=MAX_EXPANDED).contains(&(body.len() + 1)) {
            return true;
        }
        let (level, numbers) = match own {
            Some(level) => (level.clamp(0, zstd_safe::max_c_level()), true),
            None => (self.level, self.numbers),
        };
        if level == 0 || (codec::is_numbers(format) && !numbers) {
            return true;
        }
        body.len() >= 4 * PROBE && !samples_compress(body, level)
    }
}

/// A value of at least four times this many bytes is compressed whole only when samples of it
/// ([`samples_compress`]) do: a large value that does not (a media file, floats of full
/// precision) then costs a store a few percent more instead of twice as much, and at a high
/// level seconds instead of minutes.
const PROBE: usize = 64 * 1024;

/// How many samples [`samples_compress`] takes, and their length: [`PROBE`] bytes in all.
const SAMPLES: usize = 8;
const SAMPLE: usize = PROBE / SAMPLES;

/// True when samples spread evenly over `encoded` (the first at its start, the last at its
/// end) compress, together, to at most four fifths: the whole value then likely saves the
/// tenth it must. Looking at the start alone tried a value whose head compresses (a header, a
/// run of zeros) and whose rest does not whole: 50 MB of noise behind 70 KB of zeros took 24 s
/// at level 19, to be stored as it was.
fn samples_compress(encoded: &[u8], level: i32) -> bool {
    let step = (encoded.len() - SAMPLE) / (SAMPLES - 1);
    let packed: usize = (0..SAMPLES)
        .map(|i| {
            let sample = &encoded[i * step..i * step + SAMPLE];
            compress(sample, level).map_or(SAMPLE, |c| c.len())
        })
        .sum();
    packed * 5 <= PROBE * 4
}

/// `encoded` as a zstd frame at `level` followed by [`FORMAT_ZSTD`], when that is at most nine
/// tenths of its length.
pub(crate) fn compress(encoded: &[u8], level: i32) -> Option<Vec<u8>> {
    let budget = encoded.len() - encoded.len() / 10 - 1;
    // zstd stops with an error once the output outgrows the buffer: a value that does not
    // compress costs no larger allocation.
    // Without the memory for the output, the value is stored as it is.
    let mut out = blobs::try_byte_buffer(budget + 1)?;
    match zstd_safe::compress(&mut out, encoded, level) {
        Ok(n) if n <= budget => {
            out.push(FORMAT_ZSTD);
            Some(out)
        }
        _ => None,
    }
}

/// True when `stored` is a compressed value.
pub(crate) fn is_compressed(stored: &[u8]) -> bool {
    stored.last() == Some(&FORMAT_ZSTD)
}

/// What the zstd `frame` holds (an encoded value), in an allocation made for `N`s, within the
/// bounds above.
pub(crate) fn expand<N: Plain>(frame: &[u8]) -> Result<Aligned<N>, String> {
    let size = match zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) => size,
        Ok(None) => return Err("the compressed value does not declare its size".into()),
        Err(_) => return Err("the compressed value has no valid zstd frame header".into()),
    };
    if size > MAX_EXPANDED as u64 {
        return Err(format!(
            "the compressed value declares {size} bytes, over the limit of {MAX_EXPANDED}"
        ));
    }
    let size = size as usize;
    let fill = |dest: &mut [MaybeUninit<u8>]| {
        let mut dest = Uninit {
            buf: dest,
            filled: 0,
        };
        with_dctx(|dctx| dctx.decompress(&mut dest, frame))
            .map_err(|code| format!("zstd: {}", zstd_safe::get_error_name(code)))
    };
    // SAFETY: zstd reports as written only bytes it wrote (`WriteBuf::filled_until`).
    let expanded = unsafe { Aligned::<N>::filled(size, fill)? };
    if expanded.len() != size {
        return Err(format!(
            "the compressed value holds {} bytes, not the {size} it declares",
            expanded.len()
        ));
    }
    Ok(expanded)
}

/// Why the compressed value `frame` (the stored bytes without their format byte) could never be
/// read back, found without keeping what it expands to: for `verify`, which knows no type to
/// decode it as. The same refusals as [`expand`]: no declared size or one over the limit, a
/// frame that does not expand to what it declares, bytes after it, and a compressed value
/// inside it.
pub(crate) fn check_frame(frame: &[u8]) -> Result<(), String> {
    use std::io::Read;
    let size = match zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) if size <= MAX_EXPANDED as u64 => size,
        Ok(Some(size)) => {
            return Err(format!(
                "the compressed value declares {size} bytes, over the limit of {MAX_EXPANDED}"
            ));
        }
        Ok(None) => return Err("the compressed value does not declare its size".into()),
        Err(_) => return Err("the compressed value has no valid zstd frame header".into()),
    };
    match zstd_safe::find_frame_compressed_size(frame) {
        Ok(n) if n == frame.len() => {}
        Ok(n) => {
            return Err(format!(
                "{} bytes after the compressed value",
                frame.len() - n
            ));
        }
        Err(code) => return Err(format!("zstd: {}", zstd_safe::get_error_name(code))),
    }
    let mut decoder = zstd::stream::read::Decoder::with_buffer(frame)
        .map_err(|e| format!("zstd: {e}"))?
        .single_frame()
        .take(size + 1);
    let (mut total, mut last) = (0u64, None);
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        match decoder.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                last = Some(buf[n - 1]);
            }
            Err(e) => return Err(format!("zstd: {e}")),
        }
    }
    if total != size {
        return Err(format!(
            "the compressed value holds {total} bytes, not the {size} it declares"
        ));
    }
    if last == Some(codec::FORMAT_ZSTD) {
        return Err("a compressed value inside a compressed value".into());
    }
    Ok(())
}

/// Runs `f` on this thread's decompression context, made once: a context costs an allocation
/// of about 100 KiB and its set-up, several times the expansion of a small value.
fn with_dctx<R>(f: impl FnOnce(&mut DCtx<'static>) -> Result<R, usize>) -> Result<R, usize> {
    thread_local! {
        static DCTX: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
    }
    DCTX.with(|slot| match slot.try_borrow_mut() {
        Ok(mut slot) => {
            if slot.is_none() {
                *slot = DCtx::try_create();
            }
            match slot.as_mut() {
                Some(dctx) => f(dctx),
                None => f(&mut DCtx::create()),
            }
        }
        // Reentered (a decode inside a decode cannot happen, but a context of its own is safe).
        Err(_) => f(&mut DCtx::create()),
    })
}

/// Uninitialised memory zstd writes into.
struct Uninit<'a> {
    buf: &'a mut [MaybeUninit<u8>],
    filled: usize,
}

// SAFETY: the pointer is valid for `capacity()` bytes; `as_slice` covers the first `filled`,
// which `filled_until` is told zstd initialised.
unsafe impl WriteBuf for Uninit<'_> {
    fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `filled` bytes are initialised.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>(), self.filled) }
    }

    fn capacity(&self) -> usize {
        self.buf.len()
    }

    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.buf.as_mut_ptr().cast()
    }

    unsafe fn filled_until(&mut self, n: usize) {
        self.filled = n;
    }
}

/// The level from `MEMO_CACHE_COMPRESS`, when set: `None` when unset, and when it is not a
/// level, with a warning.
pub(crate) fn level_from_env() -> Option<i32> {
    let text = std::env::var(COMPRESS_ENV).ok()?;
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    match text.parse::<i32>() {
        Ok(level) if (0..=zstd_safe::max_c_level()).contains(&level) => Some(level),
        _ => {
            tracing::warn!(
                "memo-cache: {COMPRESS_ENV}={text:?} is not a zstd level; write 0 (off) or 1 \
                 (fastest) to {} (smallest)",
                zstd_safe::max_c_level()
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0u64;
        while out.len() < len {
            out.extend_from_slice(format!("line {i}: status=ok took={}ms\n", i % 97).as_bytes());
            i += 1;
        }
        out.truncate(len);
        out
    }

    fn encoded_text(len: usize) -> Vec<u8> {
        codec::encode(&String::from_utf8(text(len)).unwrap()).unwrap()
    }

    const ON: Compression = Compression {
        level: 3,
        numbers: false,
    };

    #[test]
    fn a_large_compressible_value_round_trips_through_zstd() {
        let encoded = encoded_text(100_000);
        let stored = ON.apply(None, encoded.clone());
        assert!(is_compressed(&stored));
        assert!(stored.len() < encoded.len() / 4);
        let expanded = expand::<u8>(&stored[..stored.len() - 1]).unwrap();
        assert!(expanded.bytes() == encoded);
    }

    #[test]
    fn small_off_and_incompressible_values_are_stored_as_encoded() {
        let small = encoded_text(COMPRESS_FROM - 10);
        assert_eq!(ON.apply(None, small.clone()), small);
        let large = encoded_text(50_000);
        let off = Compression { level: 0, ..ON };
        assert_eq!(off.apply(None, large.clone()), large);
        // The function's own 0 turns it off too.
        assert_eq!(ON.apply(Some(0), large.clone()), large);
        let noise = codec::encode(&noise(50_000)).unwrap();
        assert_eq!(ON.apply(None, noise.clone()), noise);
    }

    fn noise(len: usize) -> Vec<u8> {
        let mut state = 1u64;
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                (state >> 33) as u8
            })
            .collect()
    }

    #[test]
    fn a_large_value_is_tried_whole_only_when_samples_of_all_of_it_compress() {
        // Zeros first, then noise: the head compresses, the value does not.
        let mut bytes = vec![0u8; PROBE + 6_000];
        bytes.extend(noise(40 * PROBE));
        let encoded = codec::encode(&bytes).unwrap();
        assert!(!samples_compress(&encoded, 1));
        assert_eq!(ON.apply(None, encoded.clone()), encoded);
        // Noise first, then zeros: the head does not compress, the value does.
        let mut bytes = noise(PROBE);
        bytes.resize(8 * PROBE, 0);
        let encoded = codec::encode(&bytes).unwrap();
        assert!(samples_compress(&encoded, 1));
        assert!(is_compressed(&ON.apply(None, encoded)));
        // Text all through.
        let encoded = encoded_text(6 * PROBE);
        assert!(samples_compress(&encoded, 1));
        // Noise all through, shorter than four probes: tried whole, and stored as it was.
        let encoded = codec::encode(&noise(3 * PROBE)).unwrap();
        assert_eq!(ON.apply(None, encoded.clone()), encoded);
    }

    #[test]
    fn number_arrays_only_when_asked() {
        let zeros = codec::encode(&vec![0.0f64; 10_000]).unwrap();
        assert_eq!(ON.apply(None, zeros.clone()), zeros);
        assert!(is_compressed(&ON.apply(Some(1), zeros.clone())));
        let numbers = Compression {
            numbers: true,
            ..ON
        };
        assert!(is_compressed(&numbers.apply(None, zeros)));
    }

    #[test]
    fn a_frame_is_expanded_into_an_allocation_for_its_numbers() {
        let floats: Vec<f64> = (0..5000).map(|i| f64::from(i % 10)).collect();
        let stored = compress(&codec::encode(&floats).unwrap(), 3).unwrap();
        let expanded = expand::<f64>(&stored[..stored.len() - 1]).unwrap();
        assert_eq!(expanded.len(), floats.len() * 8 + 1);
        let back = expanded.into_vec(floats.len());
        assert_eq!(back.as_ptr() as usize % align_of::<f64>(), 0);
        assert_eq!(back, floats);
    }

    /// A frame header declaring `size` bytes, followed by one RLE block of `run` bytes.
    fn frame_declaring(size: u64, run: u32) -> Vec<u8> {
        let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd];
        // An 8-byte content size, single segment, no checksum, no dictionary.
        frame.push(0b1110_0000);
        frame.extend_from_slice(&size.to_le_bytes());
        // The last block, RLE, regenerating `run` copies of the next byte.
        let header = 1 | (1 << 1) | (run << 3);
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(b'a');
        frame
    }

    #[test]
    fn a_frame_declaring_more_than_the_limit_is_refused_unread() {
        let bomb = frame_declaring(1 << 40, 100_000);
        let err = expand::<u8>(&bomb).err().unwrap();
        assert!(err.contains("over the limit"), "{err}");
    }

    #[test]
    fn a_frame_holding_more_or_less_than_it_declares_is_refused() {
        assert!(expand::<u8>(&frame_declaring(10, 100_000)).is_err());
        assert!(expand::<u8>(&frame_declaring(100_000, 10)).is_err());
        assert!(expand::<u8>(&frame_declaring(100_000, 100_000)).is_ok());
    }

    #[test]
    fn damaged_frames_are_errors() {
        let encoded = encoded_text(20_000);
        let stored = compress(&encoded, 3).unwrap();
        let frame = &stored[..stored.len() - 1];
        assert!(expand::<u8>(&frame[..frame.len() / 2]).is_err());
        assert!(expand::<u8>(&frame[4..]).is_err());
        assert!(expand::<u8>(&[]).is_err());
        let mut flipped = frame.to_vec();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        // Either an error or, where zstd cannot tell (its frames carry no checksum: the stored
        // bytes' blake3 hash is the check), bytes of the declared length, never more.
        if let Ok(out) = expand::<u8>(&flipped) {
            assert_eq!(out.len(), encoded.len());
        }
    }
}
