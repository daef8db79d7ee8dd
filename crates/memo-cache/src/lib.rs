//! Persistent, process-safe memoization on disk: joblib.Memory for Rust.
//!
//! A [`Cache`] is a directory: an SQLite index (WAL mode) with one row per entry, plus blob files
//! for large values. Results are keyed by blake3 over the function's identity ([`Function`]:
//! stable name, code fingerprint, return type) and the canonical MessagePack encoding of the
//! arguments. Many threads and processes can share one directory; when several miss on the same
//! key at once, one computes and the others wait for its result.
//!
//! ```
//! use memo_cache::{Cache, Function};
//!
//! # let dir = tempfile::tempdir().unwrap();
//! let cache = Cache::open(dir.path())?;
//! static WORD_COUNT: Function = Function::new("docs::word_count", "v1", "usize");
//!
//! let text = "the quick brown fox";
//! let n = cache.get_or_compute(&WORD_COUNT, &(text,), || text.split_whitespace().count());
//! assert_eq!(n, 4);
//! // A second call, in this process or any later one, reads the stored result.
//! assert_eq!(cache.get::<_, usize>(&WORD_COUNT, &(text,))?, Some(4));
//! # Ok::<(), memo_cache::Error>(())
//! ```
//!
//! What is never returned: a value whose bytes fail their hash check, whose blob is missing, that
//! no longer decodes into the requested type, that has expired, or that was stored by another
//! version of the function. Each is a miss; the bad ones are dropped with a `tracing` warning.
//!
//! Most users meet this crate through the `#[disk_cache]` attribute, which builds on the same API.
//!
//! # Warnings and logging
//!
//! Events go through `tracing`, under the targets `memo_cache` (the cache cannot be used),
//! `memo_cache::calls` (debug: each hit, and each miss with its reason), `memo_cache::store`
//! (entries dropped as bad; debug: stored, evicted, pruned), `memo_cache::lock` and
//! `memo_cache::remote`, with the fields `function`, `key` (16 hex digits) and `path`.
//! `RUST_LOG=memo_cache=debug` under an `EnvFilter` says why each call computed. A process with
//! no subscriber that cannot use its cache gets one line on stderr instead, unless
//! [`QUIET_ENV`] (`MEMO_CACHE_QUIET=1`) is set.

#![warn(missing_docs)]

mod args_record;
mod blobs;
mod cache;
mod canonical;
mod clock;
pub mod codec;
mod compress;
mod diagnostics;
mod error;
mod evict;
mod hints;
mod index;
mod info;
mod key;
mod layout;
mod lock;
pub mod progress;
#[cfg(feature = "redis")]
pub mod remote;
mod space;
mod ttl;
mod verify;

pub use memo_cache_macros::disk_cache;

pub use cache::{Cache, CacheBuilder, DEFAULT_INLINE_THRESHOLD, LEASE_ENV, WRITE_TIMEOUT_ENV};
pub use clock::{Clock, ManualClock, SystemClock};
pub use compress::{COMPRESS_ENV, COMPRESS_FROM, DEFAULT_COMPRESSION, MAX_EXPANDED};
pub use diagnostics::QUIET_ENV;
pub use error::{Error, Result};
pub use evict::{DEFAULT_FILE_GRACE, Policy, Prune, Removal, human_bytes};
pub use index::{DEFAULT_WRITE_TIMEOUT, SCHEMA_VERSION};
pub use info::{EntryInfo, FunctionStats, Stats};
pub use key::{Digest, Function, KEY_FORMAT_VERSION, Key, Ordered, Unordered, parse_key};
pub use layout::{BLOBS_DIR, DIR_ENV, HINTS_DIR, INDEX_FILE, LOCKS_DIR, TMP_DIR, default_dir};
pub use lock::{DEFAULT_LEASE, MIN_LEASE};
pub use progress::{Progress, Step};
#[cfg(feature = "redis")]
pub use remote::{
    REDIS_PREFIX_ENV, REDIS_URL_ENV, RemoteConfig, RemoteStats, remote_clear, remote_stats,
};
pub use verify::{Problem, ProblemKind, Verify, VerifyReport};

/// The canonical MessagePack encoding that keys are hashed from (see [`Function::key`]).
///
/// ```
/// assert_eq!(memo_cache::canonical_bytes(&(1u8, "a")).unwrap(), vec![0x92, 0x01, 0xa1, b'a']);
/// ```
pub fn canonical_bytes<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    canonical::to_vec(value).map_err(|e| Error::EncodeKey {
        function: "?".into(),
        message: e.to_string(),
    })
}

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
