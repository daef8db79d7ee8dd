//! How `#[disk_cache(memory = N)]` uses the in-memory tier (`crate::memory`, which only keeps
//! values): how values of the return type go in and come back out as clones ([`MemOps`], chosen
//! at compile time so a function without `memory` needs no `Clone`), and the key a call is
//! remembered by ([`Mem`]): the address of the function's identity and the canonical bytes of its
//! key arguments, or their digest when those are long.

use std::any::Any;

use crate::canonical::{self, KeySink};
use crate::key::Function;

use super::args::{KeyArgs, WriteArgs};

/// How a `memory = N` function puts values into its LRU and gets clones back out; `None` for
/// functions without one, so their return types need not be `Clone`.
pub struct MemOps<T> {
    pub(super) keep: fn(&T) -> Box<dyn Any + Send + Sync>,
    pub(super) take: fn(&(dyn Any + Send + Sync)) -> Option<T>,
}

impl<T> Clone for MemOps<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for MemOps<T> {}

impl<T> std::fmt::Debug for MemOps<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemOps")
    }
}

/// The values of a `memory = N` function are handed out as clones.
#[diagnostic::on_unimplemented(
    message = "`memory = N` hands out clones of cached values, but `{Self}` does not implement `Clone + Send + Sync`",
    label = "the return type must be `Clone + Send + Sync + 'static` with `memory = N`",
    note = "derive `Clone` for it, or drop the `memory` option"
)]
pub trait MemoryValue: Clone + Send + Sync + 'static {}
impl<T: Clone + Send + Sync + 'static> MemoryValue for T {}

/// The [`MemOps`] of a `memory = N` function.
pub fn cloning<T: MemoryValue>() -> Option<MemOps<T>> {
    Some(MemOps {
        keep: |value| Box::new(value.clone()),
        take: |any| any.downcast_ref::<T>().cloned(),
    })
}

/// What a `memory = N` call is remembered by: the address of its function's identity (unique per
/// function and instantiation for the life of the process) and the canonical bytes of its
/// arguments, the same bytes its disk key is hashed from.
pub struct Mem<T> {
    pub(super) ops: MemOps<T>,
    pub(super) key: Box<[u8]>,
}

impl<T> std::fmt::Debug for Mem<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mem")
            .field("key_len", &self.key.len())
            .finish()
    }
}

thread_local! {
    static MEMORY_KEY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on the memory key of a call, built in a reused per-thread buffer; `None` when the
/// arguments cannot be encoded (the disk path then logs why).
pub(super) fn with_memory_key<F: WriteArgs, R>(
    func: &'static Function,
    args: &KeyArgs<F>,
    f: impl FnOnce(Option<&[u8]>) -> R,
) -> R {
    MEMORY_KEY.with(|buffer| {
        let Ok(mut buffer) = buffer.try_borrow_mut() else {
            // Re-entered from inside a Serialize impl: use a fresh buffer.
            let mut fresh = Vec::new();
            return f(memory_key(&mut fresh, func, args).then_some(&fresh[..]));
        };
        let ok = memory_key(&mut buffer, func, args);
        f(ok.then_some(&buffer[..]))
    })
}

/// The longest argument encoding an LRU key keeps as it is; longer ones are keyed by their
/// blake3 digest (the disk key), so a large argument is neither copied into the key nor kept
/// alive in the LRU, and the reused buffer never grows past this.
const MEMORY_KEY_LIMIT: usize = 4096;

/// Marks a key by digest: the raw encoding of a tuple begins with an array or nil marker, never
/// with this byte, which MessagePack leaves unused.
const DIGEST_KEY: u8 = 0xc1;

fn memory_key<F: WriteArgs>(
    buffer: &mut Vec<u8>,
    func: &'static Function,
    args: &KeyArgs<F>,
) -> bool {
    buffer.clear();
    buffer.extend_from_slice(&(func as *const Function as usize).to_le_bytes());
    let prefix = buffer.len();
    let mut sink = KeySink::capped(buffer, MEMORY_KEY_LIMIT);
    let written = canonical::write_tuple_header(&mut sink, args.len)
        .and_then(|()| (args.write)(&mut sink))
        .is_ok();
    let overflowed = sink.overflowed();
    drop(sink);
    if !written {
        return false;
    }
    if overflowed {
        let Ok(key) = func.key_from_parts(args.len, &args.write) else {
            return false;
        };
        buffer.truncate(prefix);
        buffer.push(DIGEST_KEY);
        buffer.extend_from_slice(&key.0);
    }
    true
}
