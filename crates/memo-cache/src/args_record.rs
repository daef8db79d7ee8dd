//! The record of a call's arguments kept with its entry: the canonical bytes the key was hashed
//! from, when at most [`KEEP`], so `memo-cache ls --entries` and `show --args` can say which
//! entry is `fib(37)`. Only a record for people: never read back to find an entry, and the key
//! does not depend on it.
//!
//! The bytes are those the key's hasher was given, caught where they already are (the hashing
//! sink gathers small writes in a 1 KiB buffer) into a per-thread slot, together with the key
//! they made. A miss takes them from the slot before it computes: the key is always made on the
//! thread that then looks it up, and a slot whose key is not the miss's (a nested cached call
//! overwrote it) records nothing. Writing the slot costs a hit a copy of its argument bytes.

use std::cell::RefCell;

use crate::canonical::KeySink;
use crate::key::Key;

/// Argument encodings up to this many bytes are kept; longer ones only have their length kept.
pub(crate) const KEEP: usize = 1024;

/// The last key made on this thread and its argument bytes.
struct Slot {
    key: Option<Key>,
    /// Valid only when `kept`.
    bytes: Vec<u8>,
    kept: bool,
    total: u64,
}

thread_local! {
    static LAST: RefCell<Slot> = const {
        RefCell::new(Slot {
            key: None,
            bytes: Vec::new(),
            kept: false,
            total: 0,
        })
    };
}

/// Notes what `sink` was given, before the key is known.
#[inline]
pub(crate) fn note_args(sink: &KeySink<'_>) {
    let (all, total) = sink.written();
    let _ = LAST.try_with(|slot| {
        let Ok(mut slot) = slot.try_borrow_mut() else {
            return;
        };
        slot.key = None;
        slot.total = total;
        slot.kept = false;
        if let Some(bytes) = all.filter(|b| b.len() <= KEEP) {
            slot.bytes.clear();
            // Room for the longest kept at once: after a thread's first key, none allocates.
            slot.bytes.reserve(KEEP);
            slot.bytes.extend_from_slice(bytes);
            slot.kept = true;
        }
    });
}

/// Notes the key the bytes noted last made.
#[inline]
pub(crate) fn note_key(key: &Key) {
    let _ = LAST.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            slot.key = Some(*key);
        }
    });
}

/// The arguments of a call: their bytes when kept, and their length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Args {
    pub bytes: Option<Vec<u8>>,
    pub size: Option<u64>,
}

/// The arguments that made `key`, when it is the last key made on this thread; nothing
/// otherwise.
pub(crate) fn take(key: &Key) -> Args {
    LAST.try_with(|slot| {
        let slot = slot.try_borrow().ok()?;
        (slot.key.as_ref() == Some(key)).then(|| Args {
            bytes: slot.kept.then(|| slot.bytes.clone()),
            size: Some(slot.total),
        })
    })
    .ok()
    .flatten()
    .unwrap_or_default()
}
