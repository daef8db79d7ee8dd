//! [`KeySink`]: where a key's encoded arguments go, gathered for the hasher.

use std::fmt;
use std::io::Write;

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
    /// Appends while the bytes stay within `limit`; past it, writes nothing more and remembers
    /// that it overflowed.
    Capped {
        bytes: &'a mut Vec<u8>,
        limit: usize,
        overflowed: bool,
    },
}

/// Writes shorter than this are gathered; one blake3 chunk is 1 KiB.
const GATHER: usize = 1024;

/// Writes from this size are hashed with `update_rayon` (rayon's global pool, started on the
/// first such write). On the 2-core VM of BENCHMARKS.md ("Large arguments") every core beat one
/// from about 48 KiB: 1.23x at 64 KiB, 1.54x at 128 KiB (blake3's own rule of thumb), 1.9x from
/// 1 MiB; 32 KiB was 0.94x.
const PARALLEL: usize = 64 * 1024;

/// `hasher.update_rayon(bytes)`: every core on a large input. rayon panics when its pool cannot
/// start its threads (a process, thread or address-space limit); then this hashes on the calling
/// thread, from then on, so a key or a stored value never fails for want of a thread.
pub(crate) fn update_parallel(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static NO_POOL: AtomicBool = AtomicBool::new(false);
    if !NO_POOL.load(Ordering::Relaxed) {
        let mut trial = hasher.clone();
        let hashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            trial.update_rayon(bytes);
        }));
        if hashed.is_ok() {
            *hasher = trial;
            return;
        }
        NO_POOL.store(true, Ordering::Relaxed);
    }
    hasher.update(bytes);
}

struct Gather<'a> {
    hasher: &'a mut blake3::Hasher,
    buffer: [u8; GATHER],
    len: usize,
    /// Bytes written in all.
    total: u64,
}

impl Gather<'_> {
    #[inline]
    fn write(&mut self, buf: &[u8]) {
        self.total += buf.len() as u64;
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
            update_parallel(self.hasher, buf);
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
            total: 0,
        }))
    }

    /// Everything written to a hashing sink, while it all still sits in the gathering buffer
    /// (at most 1 KiB written, never flushed), and how many bytes were written in all.
    pub(crate) fn written(&self) -> (Option<&[u8]>, u64) {
        match &self.0 {
            Sink::Hash(gather) => {
                let all = (gather.total == gather.len as u64).then(|| &gather.buffer[..gather.len]);
                (all, gather.total)
            }
            Sink::Capped { bytes, .. } => (None, bytes.len() as u64),
        }
    }

    /// A sink appending to `bytes`, without a limit.
    #[cfg(test)]
    pub(crate) fn bytes(bytes: &'a mut Vec<u8>) -> Self {
        KeySink::capped(bytes, usize::MAX)
    }

    /// A sink appending to `bytes` while they stay within `limit` bytes in all; past that it
    /// drops what it is given and [`KeySink::overflowed`] says so.
    pub(crate) fn capped(bytes: &'a mut Vec<u8>, limit: usize) -> Self {
        KeySink(Sink::Capped {
            bytes,
            limit,
            overflowed: false,
        })
    }

    /// True when a capped sink was given more than its limit.
    pub(crate) fn overflowed(&self) -> bool {
        matches!(
            self.0,
            Sink::Capped {
                overflowed: true,
                ..
            }
        )
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
            Sink::Capped {
                bytes,
                limit,
                overflowed,
            } => {
                if *overflowed || buf.len() > limit.saturating_sub(bytes.len()) {
                    *overflowed = true;
                } else {
                    bytes.extend_from_slice(buf);
                }
            }
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
