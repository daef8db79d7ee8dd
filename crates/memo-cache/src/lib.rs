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
//!
//! A program with a subscriber is told through it, and its filter decides. Give the filter a
//! default: `EnvFilter::from_default_env()` alone, with `RUST_LOG` unset, lets errors through
//! and nothing else, so a cache that cannot be used would go unnoticed. The README's pattern:
//!
//! ```
//! use tracing_subscriber::EnvFilter;
//! use tracing_subscriber::filter::LevelFilter;
//!
//! // RUST_LOG when it is set; else warnings and errors, memo-cache's among them.
//! let filter = EnvFilter::builder()
//!     .with_default_directive(LevelFilter::WARN.into())
//!     .from_env_lossy();
//! tracing_subscriber::fmt().with_env_filter(filter).init();
//! ```
//!
//! # The package
//!
//! On crates.io this crate is `memo-cache-rs` (`cargo add memo-cache-rs`); in code it is
//! `memo_cache`. Its Cargo features are all off by default:
//!
//! - `tokio`: `#[disk_cache]` on an `async fn`, with cache I/O on tokio's blocking pool.
//! - `memcached`: the shared memcached tier (`MEMO_CACHE_REMOTE_URL=memcache://host:11211`, several
//!   servers comma-separated).
//! - `redis`: the shared Redis tier behind the local directory (`RemoteConfig`,
//!   `MEMO_CACHE_REMOTE_URL=redis://..`, or its older name `MEMO_CACHE_REDIS_URL`).
//! - `postgres`: the shared PostgreSQL tier (`MEMO_CACHE_REMOTE_URL=postgres://user@host/db`),
//!   durable, one table per prefix, values up to 256 MiB by default.
//!
//! A shared tier's URL given to a build without that tier's feature (in the environment, the
//! builder or `remote = ..`) is not ignored quietly: the process says so once on stderr (see
//! [`QUIET_ENV`]) and runs local-only.
//!
//! The `memo-cache` command (`cargo install --locked memo-cache-rs-cli`) lists, prunes, verifies
//! and clears cache directories.

#![warn(missing_docs)]

mod args_record;
mod blobs;
mod cache;
mod canonical;
mod clock;
// The stored value format, for the CLI's `show --value` and the tests that pin it; not an API.
#[doc(hidden)]
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
mod memory;
pub mod progress;
mod protocol;
mod prune;
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
pub use evict::{DEFAULT_FILE_GRACE, Policy, Prune, Removal};
pub use index::DEFAULT_WRITE_TIMEOUT;
pub use info::{EntryInfo, FunctionStats, Stats};
pub use key::{Digest, Function, KEY_FORMAT_VERSION, Key, Ordered, Unordered, parse_key};
pub use layout::{DIR_ENV, default_dir};
pub use lock::{DEFAULT_LEASE, MIN_LEASE};
pub use progress::{Progress, Step};
pub use remote::{
    REDIS_PREFIX_ENV, REDIS_URL_ENV, REMOTE_PREFIX_ENV, REMOTE_URL_ENV, RemoteConfig,
    RemoteFunctionStats, RemoteStats, ServerStats, remote_clear, remote_clear_function,
    remote_prune, remote_stats,
};
pub use verify::{Problem, ProblemKind, Verify, VerifyReport};

// Helpers of the `memo-cache` CLI (another crate, so they are public): the directory layout,
// the schema version it compares against, byte counts for people. Not part of the API.
#[doc(hidden)]
pub use evict::human_bytes;
#[doc(hidden)]
pub use index::SCHEMA_VERSION;
#[doc(hidden)]
pub use layout::{BLOBS_DIR, HINTS_DIR, INDEX_FILE, LOCKS_DIR, TMP_DIR};

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
#[path = "private/mod.rs"]
pub mod __private;

// What the types promise across threads and panics, checked at compile time so that a new field
// cannot take it away unnoticed. Handles are shared between threads (`#[disk_cache]` keeps one
// per function in a `static`), so every handle and error is `Send + Sync`. Unwind safety is
// stated only where it holds by itself: `Cache` and `CacheBuilder` hold the caller's `Clock`
// (`Arc<dyn Clock>`, which could be anything), and `Error` carries `io::Error` and SQLite errors
// (boxed `dyn Error` sources), so none of the three is `UnwindSafe`, nor are `Prune` and
// `Verify`, which may hold the caller's progress callback; wrap a `&Cache` in
// `AssertUnwindSafe` to use it inside `catch_unwind` (its locks shrug off poisoning).
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn unwind_safe<T: std::panic::UnwindSafe + std::panic::RefUnwindSafe>() {}
    send_sync::<Cache>();
    send_sync::<CacheBuilder>();
    send_sync::<Error>();
    send_sync::<Function>();
    send_sync::<Key>();
    send_sync::<Prune>();
    send_sync::<Verify>();
    unwind_safe::<Function>();
    unwind_safe::<Key>();
    send_sync::<Policy>();
    unwind_safe::<Policy>();
    unwind_safe::<Removal>();
    unwind_safe::<Stats>();
    unwind_safe::<FunctionStats>();
    unwind_safe::<EntryInfo>();
    unwind_safe::<VerifyReport>();
    unwind_safe::<Problem>();
    unwind_safe::<ManualClock>();
    send_sync::<RemoteConfig>();
    unwind_safe::<RemoteConfig>();
    unwind_safe::<RemoteStats>();
};
