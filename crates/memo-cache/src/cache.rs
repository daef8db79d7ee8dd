//! The cache handle.
//!
//! [`Cache::prune`] (which `clear` and `clear_function` call) is in `crate::prune`, acting on
//! what `crate::evict` selects; `info` and `verify` add methods of their own.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::hash::BuildHasherDefault;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::blobs::{self, Aligned, Pieces, Plain, ReadFailure};
use crate::clock::{Clock, SystemClock};
use crate::codec;
use crate::compress::{self, Compression};
use crate::diagnostics::{self, CALLS, REMOTE, STORE, Short};
use crate::error::{Error, Result};
use crate::evict::Policy;
use crate::hints::{self, Hint, IndexHeader};
use crate::index::{self, Access, Index, NewEntry, Record, Removed, Schema};
use crate::key::{Digest, Function, Key, KeyHasher};
use crate::layout::{self, Layout};
use crate::lock::ComputeLocks;
use crate::progress::{Reporter, Step};
use crate::protocol::{self, At, Handling, Steps};
use crate::remote::{self, RemoteConfig, Tier};
use crate::ttl::{self, RowSync, Target};

/// Values up to this many stored bytes live inline in the index row; larger ones in blob files.
///
/// Measured with `cargo bench -p memo-cache-rs --bench inline` (2-core VM, medians): a hit read
/// inline beats a blob file up to 16 KiB (7.2 µs against 9.0 µs at 16 KiB) and loses from 32 KiB
/// on (12.6 µs against 11.2 µs); a store is 3-6x cheaper inline at every size, because a blob
/// costs a temp file and a rename. Past 16 KiB the inline values would also bloat the index that
/// every lookup and `ls` walks.
pub const DEFAULT_INLINE_THRESHOLD: usize = 16 * 1024;

/// Hit counts and last-use times are written at most this often (or once hits to
/// [`PENDING_LIMIT`] different keys are pending), so a hit costs a read and no write
/// transaction.
const FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// How often a reading handle checks that its index was not deleted under it, in ms: a value
/// of a deleted cache directory is served at most this long after the deletion.
const GONE_CHECK_MS: u64 = 10;

/// A monotonic clock in milliseconds that costs a hit next to nothing (`CLOCK_MONOTONIC_COARSE`,
/// a few milliseconds' resolution, on Linux).
fn coarse_ms() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime fills the struct it is given a pointer to.
        if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) } == 0 {
            return now.tv_sec as u64 * 1000 + now.tv_nsec as u64 / 1_000_000;
        }
    }
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}
const PENDING_LIMIT: usize = 1024;
/// A flush that failed (the write lock was taken) is tried again after this long at the soonest.
const PENDING_RETRY: Duration = Duration::from_millis(100);

/// How many times a store in a cache with a size limit evicts an eighth of the entries and tries
/// again when it finds the disk full.
const MAKE_ROOM_ROUNDS: usize = 4;

/// A handle writes first-hit files (see [`crate::hints`]) for at most this many of the keys it
/// stored or found in the index, when it closes.
const HINT_LIMIT: usize = 256;

/// A handle to one cache directory. Cheap to clone; clones share connections and settings.
///
/// ```
/// use memo_cache::{Cache, Function};
///
/// let dir = tempfile::tempdir().unwrap();
/// let cache = Cache::open(dir.path()).unwrap();
/// static SLOW_SQUARE: Function = Function::new("docs::slow_square", "v1", "u64");
///
/// let mut runs = 0;
/// let mut square = |x: u64| cache.get_or_compute(&SLOW_SQUARE, &(x,), || { runs += 1; x * x });
/// assert_eq!(square(12), 144);
/// assert_eq!(square(12), 144);
/// assert_eq!(runs, 1);
/// ```
#[derive(Clone, Debug)]
pub struct Cache {
    inner: Arc<Inner>,
}

/// How many lookups a handle answers from first-hit files before it opens the index: opening
/// costs about as much as a few dozen first hits, and an indexed hit is several times cheaper.
const FIRST_HITS: u32 = 32;

#[derive(Debug)]
struct Inner {
    layout: Layout,
    /// When a read last checked that the index is still at its path ([`coarse_ms`]).
    gone_checked: AtomicU64,
    /// Opened at the first lookup that first-hit files cannot answer, or at once for a new cache.
    index: OnceLock<Index>,
    /// Held while the index is being opened.
    opening: Mutex<()>,
    /// The index file's header, for first hits while `index` is not open.
    header: Option<IndexHeader>,
    read_only: bool,
    /// How an index opened at first need treats an older schema.
    schema: Schema,
    /// Keys to write first-hit files for when the handle closes.
    hint_keys: Mutex<HashSet<Key, BuildHasherDefault<KeyHasher>>>,
    clock: Arc<dyn Clock>,
    size_limit: Option<u64>,
    /// The order eviction under `size_limit` takes.
    policy: Policy,
    inline_threshold: usize,
    compression: Compression,
    pending: Mutex<Pending>,
    warned: Mutex<HashSet<&'static str>>,
    /// Per-key compute leases (see [`crate::lock`]).
    compute_locks: Arc<ComputeLocks>,
    write_timeout: Duration,
    /// Functions whose rows are to be brought to the ttl in force (see [`crate::ttl`]).
    row_sync: RowSync,
    /// Lookups answered from first-hit files so far. Past [`FIRST_HITS`] the index is opened:
    /// a first-hit file saves the opening once, but each costs a file read, several times an
    /// indexed hit.
    first_hits: AtomicU32,
    /// The shared tier behind the local directory, if one is configured (see [`crate::remote`]).
    tier: Option<Arc<Tier>>,
}

/// Hits not yet written to the index: count, latest time, and whether the value was read from
/// the index (not from a first-hit file), per key.
#[derive(Debug)]
struct Pending {
    hits: HashMap<Key, (u64, i64, bool), BuildHasherDefault<KeyHasher>>,
    since: Instant,
}

/// Options for opening a cache; start with [`Cache::builder`].
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let cache = memo_cache::Cache::builder(dir.path())
///     .size_limit(512 * 1024 * 1024)
///     .open()
///     .unwrap();
/// assert_eq!(cache.size_limit(), Some(512 * 1024 * 1024));
/// ```
#[derive(Debug, Clone)]
pub struct CacheBuilder {
    dir: PathBuf,
    size_limit: Option<u64>,
    policy: Policy,
    inline_threshold: usize,
    compression: Compression,
    clock: Arc<dyn Clock>,
    create: bool,
    read_only: bool,
    lease: Duration,
    write_timeout: Duration,
    remote: RemoteChoice,
}

#[derive(Debug, Clone)]
enum RemoteChoice {
    FromEnv,
    Off,
    On(RemoteConfig),
}

impl CacheBuilder {
    /// Use a shared tier behind the local directory (see [`RemoteConfig`]). Without this,
    /// `MEMO_CACHE_REDIS_URL` enables one when set. A tier this build was compiled without (its
    /// cargo feature is off) is not used, with a warning.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use memo_cache::{Cache, RemoteConfig};
    /// // Nothing listens on port 1: calls still work, local-only, with one warning.
    /// let cache = Cache::builder(dir.path())
    ///     .remote(RemoteConfig::new("redis://127.0.0.1:1").unwrap())
    ///     .open()
    ///     .unwrap();
    /// let f = memo_cache::Function::new("docs::f", "v1", "u8");
    /// assert_eq!(cache.get_or_compute(&f, &(1,), || 7u8), 7);
    /// ```
    #[must_use]
    pub fn remote(mut self, config: RemoteConfig) -> Self {
        self.remote = RemoteChoice::On(config);
        self
    }

    /// Use no shared tier, even when `MEMO_CACHE_REDIS_URL` is set: code that must stay local
    /// says so the same way whichever features a build has.
    #[must_use]
    pub fn no_remote(mut self) -> Self {
        self.remote = RemoteChoice::Off;
        self
    }

    /// Evict entries when a store takes the stored bytes past `bytes`: stale and expired
    /// entries first, then in the order of the [`policy`](CacheBuilder::policy) (by default
    /// [`Policy::CostAware`]: the entries that save the least compute time per byte go first).
    ///
    /// What the entries add to the index counts too: its pages in use past the first 64 KiB
    /// (an empty index takes 36 KiB), less the inline values already counted, and its WAL past
    /// the WAL's bound (a sixteenth of the space free when the cache opened, 64 KiB to 4 MiB).
    /// Those first 64 KiB and a WAL within its bound are a floor under any limit. A store that finds the disk full
    /// evicts an eighth of the entries and tries again (up to 4 times): the disk is then the
    /// tighter limit.
    #[must_use]
    pub fn size_limit(mut self, bytes: u64) -> Self {
        self.size_limit = Some(bytes);
        self
    }

    /// The order in which eviction under [`size_limit`](CacheBuilder::size_limit) removes
    /// entries, after stale and expired ones. Default [`Policy::CostAware`];
    /// [`Policy::Lru`] for least recently used first.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use memo_cache::{Cache, Policy};
    /// let cache = Cache::builder(dir.path())
    ///     .size_limit(1 << 30)
    ///     .policy(Policy::Lru)
    ///     .open()
    ///     .unwrap();
    /// assert_eq!(cache.policy(), Policy::Lru);
    /// ```
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// How long a process waiting for another's computation of the same key waits after the
    /// holder stops renewing its lease (it renews several times a second while it computes, so
    /// only a stopped or frozen holder stops) before computing the value itself, with a
    /// warning. Default [`DEFAULT_LEASE`](crate::DEFAULT_LEASE) (30 s), or
    /// `MEMO_CACHE_LOCK_LEASE` (e.g. `10s`) when set; at least 2 s. A live computation keeps
    /// its lease however long it runs. `#[disk_cache(lease = "10s")]` sets it per function.
    #[must_use]
    pub fn lock_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a write (a store, a removal) waits for another process's write lock on the
    /// index before giving up with [`Error::Busy`]. Default
    /// [`DEFAULT_WRITE_TIMEOUT`](crate::DEFAULT_WRITE_TIMEOUT) (5 s), or
    /// `MEMO_CACHE_WRITE_TIMEOUT` (e.g. `2s`) when set. Inside `get_or_compute` and
    /// `#[disk_cache]` a store that times out returns its value unstored, with one warning. Hits
    /// never wait for the write lock: their bookkeeping is put off while it is taken.
    #[must_use]
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Values of at most `bytes` stored bytes are kept inline in the index.
    #[must_use]
    pub fn inline_threshold(mut self, bytes: usize) -> Self {
        self.inline_threshold = bytes;
        self
    }

    /// Store values zstd-compressed at `level` (1 fastest to 22 smallest; 0 turns compression
    /// off, and so does a negative level; above 22 counts as 22) when their encoding is at least
    /// [`COMPRESS_FROM`](crate::COMPRESS_FROM) bytes and compression saves at least a tenth.
    /// Raw number arrays (`Vec<f64>` and kin) only with
    /// [`compress_numbers`](Self::compress_numbers). Default
    /// [`DEFAULT_COMPRESSION`](crate::DEFAULT_COMPRESSION), or `MEMO_CACHE_COMPRESS` when set; a
    /// function's own level ([`Function::with_compression`], `#[disk_cache(compress = 3)]`)
    /// takes precedence. Compressed or not, every value is read back alike: the setting
    /// changes only how new values are stored.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use memo_cache::{Cache, Function};
    /// let cache = Cache::builder(dir.path()).compress(9).open().unwrap();
    /// assert_eq!(cache.compression_level(), 9);
    /// let report = Function::new("docs::report", "v1", "String");
    /// let text = "status=ok took=12ms\n".repeat(1000);
    /// cache.put(&report, &(1,), &text).unwrap();
    /// let entry = &cache.entries(None).unwrap()[0];
    /// assert!(entry.compressed && entry.bytes < 1000);
    /// assert_eq!(cache.get::<_, String>(&report, &(1,)).unwrap(), Some(text));
    /// ```
    #[must_use]
    pub fn compress(mut self, level: i32) -> Self {
        self.compression.level = level.clamp(0, zstd::zstd_safe::max_c_level());
        self
    }

    /// Compress raw number arrays (`Vec<f64>`, `Vec<i32>` and kin) too, at the
    /// [`compress`](Self::compress) level. Off by default: on arbitrary floats zstd saves little
    /// and a hit loses the arrays' fast path (BENCHMARKS.md, "Compression"); on numbers with
    /// few distinct values it can save most of the space.
    #[must_use]
    pub fn compress_numbers(mut self, numbers: bool) -> Self {
        self.compression.numbers = numbers;
        self
    }

    /// Use `clock` for expiry and last-use times instead of the system clock.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Fail with [`Error::NotACache`] instead of creating a cache that does not exist yet, and
    /// with an [`Error::Index`] naming both versions instead of migrating an index of an older
    /// schema (an empty `index.sqlite3` is at version 0): opening never changes the directory.
    /// Used by tools that only look.
    #[must_use]
    pub fn existing_only(mut self) -> Self {
        self.create = false;
        self
    }

    /// Open without ever writing: stores are refused, hits are not counted, and an index of an
    /// older schema is refused as by [`existing_only`](Self::existing_only).
    #[must_use]
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self.create = false;
        self
    }

    /// Opens the cache.
    pub fn open(self) -> Result<Cache> {
        // Absolute, so that a later change of the working directory cannot move the cache.
        let dir = if self.dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &self.dir
        };
        let root = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        if std::fs::metadata(&root).is_ok_and(|m| !m.is_dir()) {
            return Err(Error::NotADirectory { path: root });
        }
        let layout = Layout::new(root);
        // A program's existing index of this build's schema is opened at first need: a process
        // whose first lookups first-hit files answer does not pay for opening SQLite. (Tools
        // that only look open it at once, so that a damaged index is reported at open.)
        let header = if self.create && !self.read_only && layout.has_index() {
            IndexHeader::open(&layout.index)
        } else {
            None
        };
        let index = OnceLock::new();
        let timeout = self.write_timeout;
        if header.is_none() {
            let opened = if self.create && !self.read_only {
                open_or_create(&layout, timeout)?
            } else if !layout.has_index() {
                return Err(if layout.root.is_dir() {
                    Error::NotACache {
                        path: layout.root.clone(),
                    }
                } else {
                    Error::io(
                        "opening cache directory",
                        &layout.root,
                        std::io::ErrorKind::NotFound.into(),
                    )
                });
            } else {
                open_index(&layout, self.read_only, Schema::AsFound, timeout)?
            };
            let _ = index.set(opened);
        }
        let tier = match self.remote {
            RemoteChoice::Off => None,
            RemoteChoice::On(config) => remote::connect(config),
            RemoteChoice::FromEnv => RemoteConfig::from_env()?.and_then(remote::connect),
        };
        let compute_locks = Arc::new(ComputeLocks::new(&layout.locks, self.lease));
        Ok(Cache {
            inner: Arc::new(Inner {
                layout,
                index,
                opening: Mutex::new(()),
                header,
                read_only: self.read_only,
                schema: if self.create && !self.read_only {
                    Schema::Migrate
                } else {
                    Schema::AsFound
                },
                hint_keys: Mutex::new(HashSet::default()),
                clock: self.clock,
                size_limit: self.size_limit,
                policy: self.policy,
                inline_threshold: self.inline_threshold,
                compression: self.compression,
                pending: Mutex::new(Pending {
                    hits: HashMap::default(),
                    since: Instant::now(),
                }),
                gone_checked: AtomicU64::new(coarse_ms()),
                warned: Mutex::new(HashSet::new()),
                compute_locks,
                write_timeout: self.write_timeout,
                row_sync: RowSync::default(),
                first_hits: AtomicU32::new(0),
                tier,
            }),
        })
    }
}

fn open_or_create(layout: &Layout, timeout: Duration) -> Result<Index> {
    if layout.has_index() {
        // An existing cache: open it as it is. Creating the marker files first would cost
        // syscalls on every open and would write into a directory whose index we may refuse.
        return open_existing(layout, Schema::Migrate, timeout);
    }
    match layout
        .create()
        .and_then(|()| Index::open(&layout.index, Access::ReadWrite, Schema::Migrate, timeout))
    {
        Ok(index) => Ok(index),
        // A cache on a read-only mount, or owned by someone else: still serve its hits.
        Err(e) if layout.has_index() && is_permission_problem(&e) => {
            open_read_only(layout, timeout).map_err(|_| e)
        }
        Err(e) => Err(e),
    }
}

fn open_existing(layout: &Layout, schema: Schema, timeout: Duration) -> Result<Index> {
    match Index::open(&layout.index, Access::ReadWrite, schema, timeout) {
        Err(e) if is_permission_problem(&e) => open_read_only(layout, timeout).map_err(|_| e),
        other => other,
    }
}

fn open_read_only(layout: &Layout, timeout: Duration) -> Result<Index> {
    Index::open(&layout.index, Access::ReadOnly, Schema::AsFound, timeout)
}

fn open_index(
    layout: &Layout,
    read_only: bool,
    schema: Schema,
    timeout: Duration,
) -> Result<Index> {
    if read_only {
        open_read_only(layout, timeout)
    } else {
        open_existing(layout, schema, timeout)
    }
}

fn is_permission_problem(e: &Error) -> bool {
    match e {
        Error::Io { source, .. } => matches!(
            source.kind(),
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
        ),
        Error::ReadOnly { .. } => true,
        Error::Index { source, .. } => matches!(
            source.sqlite_error_code(),
            Some(
                rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::PermissionDenied
            )
        ),
        _ => false,
    }
}

impl Cache {
    /// Opens the cache in `dir`, creating the directory (mode 0700), `CACHEDIR.TAG`, a
    /// `.gitignore` of `*` and the index when they are missing.
    ///
    /// A cache the process may read but not write opens read-only: hits are served, stores fail.
    pub fn open(dir: impl AsRef<Path>) -> Result<Cache> {
        Cache::builder(dir).open()
    }

    /// Opens the cache in [`default_dir`](crate::default_dir).
    pub fn open_default() -> Result<Cache> {
        Cache::open(layout::default_dir()?)
    }

    /// Options for opening the cache in `dir`.
    #[must_use]
    pub fn builder(dir: impl AsRef<Path>) -> CacheBuilder {
        CacheBuilder {
            dir: dir.as_ref().to_path_buf(),
            size_limit: None,
            policy: Policy::default(),
            inline_threshold: DEFAULT_INLINE_THRESHOLD,
            compression: Compression {
                level: compress::level_from_env().unwrap_or(compress::DEFAULT_COMPRESSION),
                numbers: false,
            },
            clock: Arc::new(SystemClock),
            create: true,
            read_only: false,
            lease: duration_from_env(LEASE_ENV).unwrap_or(crate::lock::DEFAULT_LEASE),
            write_timeout: duration_from_env(WRITE_TIMEOUT_ENV)
                .unwrap_or(index::DEFAULT_WRITE_TIMEOUT),
            remote: RemoteChoice::FromEnv,
        }
    }

    /// The cache directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.inner.layout.root
    }

    /// The size limit, if one was set.
    #[must_use]
    pub fn size_limit(&self) -> Option<u64> {
        self.inner.size_limit
    }

    /// The eviction order under the size limit.
    pub fn policy(&self) -> Policy {
        self.inner.policy
    }

    /// The zstd level new values are stored at (0: uncompressed); see
    /// [`CacheBuilder::compress`].
    #[must_use]
    pub fn compression_level(&self) -> i32 {
        self.inner.compression.level
    }

    /// The shared tier's settings, when one is configured (and built in).
    #[must_use]
    pub fn remote(&self) -> Option<&RemoteConfig> {
        self.inner.tier.as_deref().map(Tier::config)
    }

    /// The shared tier, when one is configured.
    pub(crate) fn tier(&self) -> Option<&Arc<Tier>> {
        self.inner.tier.as_ref()
    }

    /// The per-key compute leases of this machine.
    pub(crate) fn compute_locks(&self) -> &Arc<ComputeLocks> {
        &self.inner.compute_locks
    }

    /// True when this handle cannot write (a read-only directory or [`CacheBuilder::read_only`]).
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        match self.index() {
            Ok(index) => index.access() == Access::ReadOnly,
            Err(_) => self.inner.read_only,
        }
    }

    /// Like [`Cache::is_read_only`], without opening the index: before it is open, whether the
    /// handle was opened read-only.
    fn refuses_writes(&self) -> bool {
        self.inner
            .index
            .get()
            .map_or(self.inner.read_only, |index| {
                index.access() == Access::ReadOnly
            })
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// The index, opened now if it was not yet.
    pub(crate) fn index(&self) -> Result<&Index> {
        self.inner.index()
    }

    // ---- Reading ------------------------------------------------------------------------------

    /// The cached result of `func` for `args`, if there is a sound, unexpired one.
    ///
    /// A value whose bytes fail their hash check, whose blob is missing, or that no longer
    /// decodes into `T` is dropped with a warning and reported as a miss.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use memo_cache::{Cache, Function};
    /// let cache = Cache::open(dir.path()).unwrap();
    /// let f = Function::new("docs::f", "v1", "String");
    /// assert_eq!(cache.get::<_, String>(&f, &(1,)).unwrap(), None);
    /// cache.put(&f, &(1,), &"one".to_string()).unwrap();
    /// assert_eq!(cache.get::<_, String>(&f, &(1,)).unwrap().as_deref(), Some("one"));
    /// ```
    pub fn get<A, T>(&self, func: &Function, args: &A) -> Result<Option<T>>
    where
        A: Serialize + ?Sized,
        T: DeserializeOwned + Any,
    {
        let key = func.key(args)?;
        self.lookup(func, &key)
    }

    /// The local value of `key`, else the shared tier's (written back to the local directory),
    /// unexpired under `func`'s ttl.
    fn lookup<T: DeserializeOwned + Any>(&self, func: &Function, key: &Key) -> Result<Option<T>> {
        if let Some(value) = self.get_key_as(func.name(), Some(func), key)? {
            tracing::debug!(target: CALLS, function = func.name(), key = %Short(key), path = %self.dir().display(), "hit");
            return Ok(Some(value));
        }
        if let Some(tier) = &self.inner.tier
            && let Some(fetched) = tier.get(key, self.now_ms(), func.ttl())
        {
            let value = self.accept_remote(func, key, fetched);
            if value.is_some() {
                tracing::debug!(target: CALLS, function = func.name(), key = %Short(key), path = %self.dir().display(), "hit in the {} tier", tier.name());
            }
            return Ok(value);
        }
        diagnostics::explain_miss(self, func, key);
        Ok(None)
    }

    /// Decodes a value fetched from the shared tier and keeps a local copy.
    pub(crate) fn accept_remote<T: DeserializeOwned + Any>(
        &self,
        func: &Function,
        key: &Key,
        fetched: remote::Fetched,
    ) -> Option<T> {
        // Its creation time travels with it, and its expiry is bounded by this reader's ttl, so
        // the local row agrees with what this call decided.
        let created = fetched.created.unwrap_or_else(|| self.now_ms());
        let expires = ttl::deadline(Some(created), fetched.expires, func.ttl());
        if !self.is_read_only()
            && let Err(e) = self.put_bytes(
                func,
                key,
                &fetched.bytes,
                created,
                expires,
                false,
                &Record::default(),
            )
        {
            self.warn_once("write", &e);
        }
        match codec::decode::<T>(fetched.bytes) {
            Ok(value) => Some(value),
            Err(reason) => {
                tracing::warn!(
                    target: REMOTE,
                    "memo-cache: {} value {key} of {} does not decode ({reason}); recomputing",
                    self.inner.tier.as_ref().map_or("shared", |t| t.name()),
                    func.name()
                );
                None
            }
        }
    }

    /// Like [`Cache::get`], by key, in the local directory only. Without the [`Function`], only
    /// the expiry fixed when the value was stored applies, not a ttl.
    pub fn get_key<T: DeserializeOwned + Any>(&self, name: &str, key: &Key) -> Result<Option<T>> {
        self.get_key_as(name, None, key)
    }

    /// The local value of `key`, unexpired under `func`'s ttl: no shared tier asked.
    pub(crate) fn get_local<T: DeserializeOwned + Any>(
        &self,
        func: &Function,
        key: &Key,
    ) -> Result<Option<T>> {
        self.get_key_as(func.name(), Some(func), key)
    }

    /// True when a sound local value of `key` is stored, unexpired under `func`'s ttl; any
    /// failure to read counts as none.
    pub(crate) fn has_local(&self, func: &Function, key: &Key) -> bool {
        self.read_checked(func.name(), Some(func), key)
            .ok()
            .flatten()
            .is_some()
    }

    /// Like [`Cache::get_key`], under `func`'s ttl when given.
    fn get_key_as<T: DeserializeOwned + Any>(
        &self,
        name: &str,
        func: Option<&Function>,
        key: &Key,
    ) -> Result<Option<T>> {
        // A `Vec` of plain numbers is read straight into an allocation made for it.
        macro_rules! numbers {
            ($($n:ty),*) => {$(
                if TypeId::of::<T>() == TypeId::of::<Vec<$n>>() {
                    return self.get_key_into::<T, $n>(name, func, key);
                }
            )*};
        }
        numbers!(f64, f32, i64, u64, i32, u32);
        self.get_key_into::<T, u8>(name, func, key)
    }

    /// Like [`Cache::get_key_as`], the stored bytes read into an allocation made for `N`s.
    fn get_key_into<T: DeserializeOwned + Any, N: Plain>(
        &self,
        name: &str,
        func: Option<&Function>,
        key: &Key,
    ) -> Result<Option<T>> {
        let Some(bytes) = self.read_checked_as::<N>(name, func, key)? else {
            return Ok(None);
        };
        match codec::decode_aligned::<T, N>(bytes.bytes) {
            Ok(value) => {
                self.record_hit(key, !bytes.first_hit);
                Ok(Some(value))
            }
            Err(reason) => {
                self.drop_bad(
                    name,
                    key,
                    &bytes.hash,
                    &format!("stored value does not decode: {reason}"),
                );
                Ok(None)
            }
        }
    }

    /// True when a sound value, unexpired under `func`'s ttl, is stored for `func` and `args`.
    /// Reads and checks the bytes but does not decode them, and does not count as a hit.
    pub fn contains<A: Serialize + ?Sized>(&self, func: &Function, args: &A) -> Result<bool> {
        let key = func.key(args)?;
        if self.read_checked(func.name(), Some(func), &key)?.is_some() {
            return Ok(true);
        }
        if let Some(tier) = &self.inner.tier {
            return Ok(tier.get(&key, self.now_ms(), func.ttl()).is_some());
        }
        Ok(false)
    }

    /// True when a sound value is stored for `key`, locally or in the shared tier, and the expiry
    /// fixed when it was stored has not passed (without the [`Function`], no ttl applies).
    pub fn contains_key(&self, key: &Key) -> Result<bool> {
        if self.read_checked("?", None, key)?.is_some() {
            return Ok(true);
        }
        if let Some(tier) = &self.inner.tier {
            return Ok(tier.contains(key, self.now_ms()));
        }
        Ok(false)
    }

    #[doc(hidden)] // the encoded form, for `memo-cache show`
    /// The encoded value of an entry (format byte last; see [`crate::codec`]), its stored bytes
    /// hash-checked, then decompressed when they are compressed: always in one of the formats a
    /// value is encoded in, never [`FORMAT_ZSTD`](crate::codec::FORMAT_ZSTD).
    pub fn stored_bytes(&self, key: &Key) -> Result<Option<Vec<u8>>> {
        let Some(checked) = self.read_checked("?", None, key)? else {
            return Ok(None);
        };
        codec::expanded(checked.bytes)
            .map(Some)
            .map_err(|message| Error::DecodeValue {
                key: key.to_hex(),
                message,
            })
    }

    /// The checked bytes of `key`, unless expired: under `func`'s ttl when given (see
    /// [`crate::ttl`]), else by the expiry fixed at store time only.
    fn read_checked(
        &self,
        name: &str,
        func: Option<&Function>,
        key: &Key,
    ) -> Result<Option<Checked>> {
        Ok(self
            .read_checked_as::<u8>(name, func, key)?
            .map(|checked| Checked {
                bytes: checked.bytes.into_bytes(),
                hash: checked.hash,
                first_hit: checked.first_hit,
            }))
    }

    /// Like [`Cache::read_checked`], into an allocation made for `N`s.
    fn read_checked_as<N: Plain>(
        &self,
        name: &str,
        func: Option<&Function>,
        key: &Key,
    ) -> Result<Option<Checked<Aligned<N>>>> {
        let ttl = func.and_then(Function::ttl);
        if self.inner.index.get().is_none()
            && self.inner.first_hits.load(Ordering::Relaxed) < FIRST_HITS
            && let Some(found) = self.first_hit(key, func)
        {
            self.inner.first_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(found));
        }
        self.reopen_if_gone_now_and_then();
        let Some(row) = self.index()?.lookup(key)? else {
            return Ok(None);
        };
        if let (Some(func), Some(created)) = (func, row.created) {
            self.note_disagreement(func, created, row.expires);
        }
        if ttl::is_expired(row.created, row.expires, ttl, self.now_ms()) {
            return Ok(None);
        }
        let (bytes, digest) = match row.value {
            Some(bytes) => {
                let digest = Digest::of(&bytes);
                (Aligned::from_bytes(bytes), digest)
            }
            None => {
                let path = self.inner.layout.blob_path(key, &row.hash);
                match blobs::read_hashed_as::<N>(&path, row.size) {
                    Ok(read) => read,
                    Err(failure) => {
                        if matches!(failure, ReadFailure::Missing)
                            && !self.row_still_holds(key, &row.hash)?
                        {
                            // Removed by a prune or clear while we were reading: a plain miss.
                            return Ok(None);
                        }
                        self.drop_bad(name, key, &row.hash, &failure.to_string());
                        return Ok(None);
                    }
                }
            }
        };
        if bytes.len() as u64 != row.size || digest != row.hash {
            self.drop_bad(name, key, &row.hash, "stored bytes do not match their hash");
            return Ok(None);
        }
        Ok(Some(Checked {
            bytes,
            hash: row.hash,
            first_hit: false,
        }))
    }

    /// Notes `func` for its rows to be brought to its ttl when a row of it, created at
    /// `created`, has an expiry that says otherwise (see [`crate::ttl`]).
    fn note_disagreement(&self, func: &Function, created: i64, expires: Option<i64>) {
        if !ttl::agrees(created, expires, func.ttl())
            && let Some(target) = Target::of(func)
        {
            self.inner.row_sync.note(target);
        }
    }

    /// The value of `key` from its first-hit file, when that file can be believed (see
    /// [`crate::hints`]) and is unexpired under `func`'s ttl; `None` sends the lookup to the
    /// index, whatever the reason.
    fn first_hit<N: Plain>(
        &self,
        key: &Key,
        func: Option<&Function>,
    ) -> Option<Checked<Aligned<N>>> {
        let header = self.inner.header.as_ref()?;
        let epoch = header.epoch(&self.inner.layout.wal)?;
        let hint = hints::read(&self.inner.layout, key)?;
        if !header.believes(key, hint.epoch, epoch) {
            return None;
        }
        let ttl = func.and_then(Function::ttl);
        if ttl::is_expired(Some(hint.created), hint.expires, ttl, self.now_ms()) {
            // The index answers, and notes a row that disagrees with the ttl.
            return None;
        }
        let (bytes, digest) = match hint.value {
            Some(bytes) => {
                let digest = Digest::of(&bytes);
                (Aligned::from_bytes(bytes), digest)
            }
            None => {
                blobs::read_hashed_as::<N>(&self.inner.layout.blob_path(key, &hint.hash), hint.size)
                    .ok()?
            }
        };
        let sound = bytes.len() as u64 == hint.size && digest == hint.hash;
        if sound && let Some(func) = func {
            // A hit from a copy of the row: its expiry is the row's, so it is noted like one.
            self.note_disagreement(func, hint.created, hint.expires);
        }
        sound.then_some(Checked {
            bytes,
            hash: hint.hash,
            first_hit: true,
        })
    }

    /// When the stored entry of `key` becomes a miss for a reader with `ttl` (see
    /// [`crate::ttl`]): `None` when there is no entry, `Some(None)` for one that never does.
    /// One indexed row, for the memory tier's copy of a hit.
    pub(crate) fn expiry(
        &self,
        key: &Key,
        ttl: Option<Duration>,
    ) -> Result<Option<Option<SystemTime>>> {
        let times = self.index()?.read(|c| index::times(c, key))?;
        Ok(times.map(|(created, expires)| ttl::deadline(created, expires, ttl).map(ms_to_time)))
    }

    /// Read in autocommit, not from the held snapshot: the answer must be current.
    fn row_still_holds(&self, key: &Key, hash: &Digest) -> Result<bool> {
        Ok(self
            .index()?
            .read(|c| index::lookup(c, key))?
            .is_some_and(|row| row.hash == *hash))
    }

    /// Drops an entry found bad, with a warning naming it; never fails.
    fn drop_bad(&self, name: &str, key: &Key, hash: &Digest, reason: &str) {
        tracing::warn!(
            target: STORE,
            function = name,
            key = %Short(key),
            path = %self.dir().display(),
            "memo-cache: dropping cache entry {key} of {name}: {reason}; it will be recomputed"
        );
        if self.is_read_only() {
            return;
        }
        match self
            .index()
            .and_then(|index| index.write(|tx| index::delete_entry_if(tx, key, hash)))
        {
            Ok(Some(removed)) => self.remove_blobs(&[removed]),
            Ok(None) => {}
            Err(e) => self.warn_once("drop", &e),
        }
    }

    /// Counts a hit, to be written with others later; `from_index` when the value was read
    /// from the index, whose row then gets a first-hit file when the handle closes.
    fn record_hit(&self, key: &Key, from_index: bool) {
        if self.refuses_writes() {
            return;
        }
        let now = self.now_ms();
        let due = {
            let mut pending = self.inner.pending.lock().expect("pending lock");
            let slot = pending.hits.entry(*key).or_insert((0, now, false));
            slot.0 += 1;
            slot.1 = slot.1.max(now);
            slot.2 |= from_index;
            let waited = pending.since.elapsed();
            // While another process holds the write lock, a flush fails and the hits stay: try
            // again now and then, not at every hit.
            waited >= FLUSH_INTERVAL
                || (pending.hits.len() >= PENDING_LIMIT && waited >= PENDING_RETRY)
        };
        if due {
            self.flush_quietly();
        }
    }

    /// Writes batched hit counts and last-use times to the index. Done by itself from time to
    /// time and when the last handle is dropped; call it before reading statistics that must
    /// include this process's latest hits.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush_within(self.inner.write_timeout)
    }

    /// When the index file was deleted or replaced since this handle opened it (the cache
    /// directory removed by hand, say), makes the cache again and opens the new index, so that
    /// later stores are not written into a file nobody else can see.
    fn reopen_if_gone(&self) -> Result<()> {
        let Some(index) = self.inner.index.get() else {
            return Ok(());
        };
        if index.access() == Access::ReadOnly || !index.is_gone() {
            return Ok(());
        }
        tracing::warn!(target: STORE,
            path = %self.dir().display(),
            "memo-cache: the cache index {} was deleted or replaced while in use; making the \
             cache again",
            index.path().display()
        );
        self.inner.layout.create()?;
        self.inner.compute_locks.forget_file();
        index.reconnect()
    }

    /// [`Cache::reopen_if_gone`] before a read, at most once per [`GONE_CHECK_MS`]: a handle that
    /// only reads would otherwise go on serving the values of a cache directory deleted (and
    /// perhaps made again) under it, from connections to the deleted index (and the rows it
    /// keeps, whose counters no one moves any more). One `lstat` per interval, not per hit.
    fn reopen_if_gone_now_and_then(&self) {
        let now = coarse_ms();
        if now.saturating_sub(self.inner.gone_checked.load(Ordering::Relaxed)) < GONE_CHECK_MS {
            return;
        }
        self.inner.gone_checked.store(now, Ordering::Relaxed);
        if let Err(e) = self.reopen_if_gone() {
            self.warn_once("reopen", &e);
        }
    }

    /// Writes the batched hit statistics if the write lock is free now; if another process has
    /// it, they wait for a later flush. A hit never waits for the write lock.
    fn flush_quietly(&self) {
        if let Err(e) = self.inner.flush_within(Duration::ZERO) {
            tracing::debug!(target: STORE, "memo-cache: could not record hit statistics yet: {e}");
        }
    }

    // ---- Writing ------------------------------------------------------------------------------

    /// Stores `value` as the result of `func` for `args`, with the function's ttl.
    pub fn put<A, T>(&self, func: &Function, args: &A, value: &T) -> Result<()>
    where
        A: Serialize + ?Sized,
        T: Serialize + Any,
    {
        self.put_with_ttl(func, args, value, func.ttl())
    }

    /// Stores `value` as the result of `func` for `args`, expiring after `ttl` if given, or
    /// sooner when `func` has a shorter ttl. A read applies the ttl of the [`Function`] it is
    /// given as well: a value is served only while both allow it (see
    /// [`disk_cache`](crate::disk_cache)'s `ttl`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use memo_cache::{Cache, Function, ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new(1_000_000);
    /// let cache = Cache::builder(dir.path()).clock(clock.clone()).open().unwrap();
    /// let f = Function::new("docs::quote", "v1", "f64");
    /// cache.put_with_ttl(&f, &("ACME",), &12.5, Some(Duration::from_secs(60))).unwrap();
    /// assert_eq!(cache.get::<_, f64>(&f, &("ACME",)).unwrap(), Some(12.5));
    /// clock.advance(Duration::from_secs(61));
    /// assert_eq!(cache.get::<_, f64>(&f, &("ACME",)).unwrap(), None);
    /// ```
    pub fn put_with_ttl<A, T>(
        &self,
        func: &Function,
        args: &A,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<()>
    where
        A: Serialize + ?Sized,
        T: Serialize + Any,
    {
        let key = func.key(args)?;
        let args = crate::args_record::take(&key);
        let record = Record {
            args: args.bytes.as_deref(),
            args_size: args.size,
            ..Record::default()
        };
        self.put_recorded(func, &key, value, ttl, &record)
    }

    /// Stores `value` as the result of `func` for `args`, computed in `compute_time`: what the
    /// cost-aware eviction ([`Policy::CostAware`]) and the time-saved figures count it as.
    /// [`Cache::get_or_compute`] and `#[disk_cache]` measure it themselves; a value stored with
    /// [`Cache::put`] counts as costing nothing.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use memo_cache::{Cache, Function};
    /// use std::time::Duration;
    /// let cache = Cache::open(dir.path()).unwrap();
    /// let f = Function::new("docs::simulate", "v1", "f64");
    /// cache.put_timed(&f, &(7,), &0.25, Duration::from_secs(90)).unwrap();
    /// let entry = &cache.entries(Some("docs::simulate")).unwrap()[0];
    /// assert_eq!(entry.compute_time, Duration::from_secs(90));
    /// ```
    pub fn put_timed<A, T>(
        &self,
        func: &Function,
        args: &A,
        value: &T,
        compute_time: Duration,
    ) -> Result<()>
    where
        A: Serialize + ?Sized,
        T: Serialize + Any,
    {
        let key = func.key(args)?;
        let args = crate::args_record::take(&key);
        let record = Record::computed(compute_time, &args);
        self.put_recorded(func, &key, value, func.ttl(), &record)
    }

    /// Like [`Cache::put_with_ttl`], by key.
    pub fn put_key<T: Serialize + Any>(
        &self,
        func: &Function,
        key: &Key,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<()> {
        self.put_recorded(func, key, value, ttl, &Record::default())
    }

    /// [`Cache::put_key`] with what the index records beside the value.
    pub(crate) fn put_recorded<T: Serialize + Any>(
        &self,
        func: &Function,
        key: &Key,
        value: &T,
        ttl: Option<Duration>,
        record: &Record<'_>,
    ) -> Result<()> {
        // A large byte or number vector that stays uncompressed and local goes to its blob file
        // from its own memory, its format byte after it, without being copied into an encoding
        // first (the same stored bytes, one copy of the value fewer).
        let raw = codec::raw_parts(value).filter(|(body, _)| {
            self.inner.tier.is_none() && body.len() > self.inner.inline_threshold
        });
        let put_raw = |(body, format): (&[u8], u8)| {
            let now = self.now_ms();
            let expires = ttl::store_expiry(now, ttl, func);
            let pieces = Pieces {
                body,
                tail: &[format],
            };
            self.put_local(func, key, pieces, now, expires, record)
        };
        if let Some((body, format)) = raw
            && self
                .inner
                .compression
                .keeps(func.compression(), body, format)
        {
            return put_raw((body, format));
        }
        let encoded = match (codec::encode(value), raw) {
            (Ok(encoded), _) => encoded,
            // Only memory can fail a raw vector's encoding: it is stored as it is instead,
            // uncompressed, from its own memory.
            (Err(_), Some(raw)) => return put_raw(raw),
            (Err(message), None) => {
                return Err(Error::EncodeValue {
                    function: func.name().to_owned(),
                    message,
                });
            }
        };
        // An index without the `encoding` column (one this handle may not migrate) gets values
        // as they are encoded, as an older memo-cache stores them.
        let bytes = if self.index()?.has_costs() {
            self.inner.compression.apply(func.compression(), encoded)
        } else {
            encoded
        };
        let now = self.now_ms();
        let expires = ttl::store_expiry(now, ttl, func);
        self.put_bytes(func, key, &bytes, now, expires, true, record)
    }

    /// Stores a value's stored bytes (compressed or not: see [`crate::compress`]), computed at
    /// `created`, locally and, when `share` and a shared tier is configured, there too.
    #[allow(clippy::too_many_arguments)]
    fn put_bytes(
        &self,
        func: &Function,
        key: &Key,
        bytes: &[u8],
        created: i64,
        expires: Option<i64>,
        share: bool,
        record: &Record<'_>,
    ) -> Result<()> {
        let local = self.put_local(func, key, Pieces::whole(bytes), created, expires, record);
        if share && let Some(tier) = &self.inner.tier {
            let hash = Digest::of(bytes);
            tier.put(key, bytes, &hash, expires, self.now_ms(), func.name());
        }
        local
    }

    /// Stores locally; with a size limit, a store that finds the disk full evicts to make room
    /// and tries again, up to [`MAKE_ROOM_ROUNDS`] times ([`crate::space::make_room`]): the
    /// disk is then the tighter limit.
    fn put_local(
        &self,
        func: &Function,
        key: &Key,
        bytes: Pieces<'_>,
        created: i64,
        expires: Option<i64>,
        record: &Record<'_>,
    ) -> Result<()> {
        // A blob written past RLIMIT_FSIZE raises SIGXFSZ, which ends the process unless it is
        // ignored: a value that cannot fit in a file here is not written at all. (Making room
        // would not help, so this is not a full disk. The index's files SQLite keeps under the
        // limit itself: `space::size_pragmas`.)
        if bytes.len() > self.inner.inline_threshold
            && let Some(limit) = crate::space::file_size_limit()
            && bytes.len() as u64 >= limit
        {
            let why = format!(
                "the value's {} bytes are over this process's file size limit (RLIMIT_FSIZE, \
                 `ulimit -f`) of {limit} bytes; raise the limit to cache values this large",
                bytes.len()
            );
            return Err(Error::io(
                "not storing a value in",
                self.dir(),
                std::io::Error::new(std::io::ErrorKind::FileTooLarge, why),
            ));
        }
        let mut stored = self.put_local_once(func, key, bytes, created, expires, record);
        for _ in 0..MAKE_ROOM_ROUNDS {
            match stored {
                Err(e) if self.inner.size_limit.is_some() && index::is_full(&e) => {
                    if crate::space::make_room(self)? == 0 {
                        return Err(e);
                    }
                }
                other => return other,
            }
            stored = self.put_local_once(func, key, bytes, created, expires, record);
        }
        stored
    }

    fn put_local_once(
        &self,
        func: &Function,
        key: &Key,
        bytes: Pieces<'_>,
        created: i64,
        expires: Option<i64>,
        record: &Record<'_>,
    ) -> Result<()> {
        if let Some(limit) = self.inner.size_limit
            && bytes.len() as u64 > limit
        {
            tracing::debug!(
                target: STORE,
                function = func.name(),
                key = %Short(key),
                path = %self.dir().display(),
                "memo-cache: not storing a {} byte value of {}: larger than the size limit",
                bytes.len(),
                func.name()
            );
            return Ok(());
        }
        let hash = bytes.digest();
        let now = self.now_ms();
        let in_blob = bytes.len() > self.inner.inline_threshold;
        let inline = (!in_blob).then(|| bytes.joined());
        // Only a value kept in a blob file has a path (worked out per store, it cost a small store
        // 4% of its instructions).
        let blob_path = in_blob.then(|| self.inner.layout.blob_path(key, &hash));
        if self.inner.size_limit.is_some() {
            self.flush_quietly();
        }
        let record = Record {
            encoding: u8::from(bytes.last() == Some(codec::FORMAT_ZSTD)),
            ..*record
        };
        let entry = NewEntry {
            key,
            function_id: 0,
            size: bytes.len() as u64,
            hash: &hash,
            inline: inline.as_deref(),
            created,
            now,
            expires,
            record: None,
        };
        // Rows of functions whose ttl changed are brought to it under this write lock too.
        let target = Target::of(func);
        let probe = target.filter(|t| self.inner.row_sync.first_store(*t));
        let due = self.inner.row_sync.take_due();
        let mut attempts = 0;
        let mut synced = false;
        let mut store = || loop {
            self.reopen_if_gone()?;
            if let Some(blob_path) = &blob_path {
                blobs::write_pieces(&self.inner.layout, blob_path, bytes)?;
            }
            let timeout = func.write_timeout().unwrap_or(self.inner.write_timeout);
            let index = self.index()?;
            let costs = index.has_costs();
            let policy = if costs {
                self.inner.policy
            } else {
                Policy::Lru
            };
            let written = index.write_within(timeout, |tx| {
                // Whoever removes an old row's blob decides under this same write lock
                // (`remove_blobs`), and the same value under the same key has the same path: its
                // removal may have taken our file. Checked here, the row never goes in without it.
                if blob_path
                    .as_deref()
                    .is_some_and(|path| !blobs::is_file(path))
                {
                    return Ok(None);
                }
                let function_id = index::ensure_function(tx, func)?;
                bring_to_ttl(tx, &due, function_id, probe)?;
                let replaced = index::insert_entry(
                    tx,
                    &NewEntry {
                        function_id,
                        record: costs.then_some(&record),
                        ..entry
                    },
                )?;
                let evicted = match self.inner.size_limit {
                    Some(limit) => crate::evict::to_size_limit(tx, limit, key, now, policy)?,
                    None => Vec::new(),
                };
                Ok(Some((replaced, evicted)))
            });
            // A cache deleted between our check and the commit took the row with it: store again
            // in the one made anew.
            let lost = written.is_ok() && self.index()?.is_gone();
            synced |= matches!(written, Ok(Some(_)));
            match written {
                _ if lost && attempts < 3 => attempts += 1,
                Ok(None) if attempts < 3 => attempts += 1,
                Ok(None) => break Ok((None, Vec::new())),
                Ok(Some(done)) => break Ok(done),
                Err(e) => break Err(e),
            }
        };
        let written = store();
        if !synced {
            self.inner.row_sync.put_back(due, probe);
        }
        match written {
            Ok((replaced, evicted)) => {
                tracing::debug!(
                    target: STORE,
                    function = func.name(),
                    key = %Short(key),
                    path = %self.dir().display(),
                    bytes = bytes.len(),
                    in_blob,
                    "stored"
                );
                if let Some(limit) = self.inner.size_limit
                    && !evicted.is_empty()
                {
                    // Eviction keeps emptied function versions, so their names are still there.
                    let names = self
                        .index()
                        .and_then(|index| index.read(diagnostics::FunctionNames::if_logged))
                        .unwrap_or_default();
                    diagnostics::removed(
                        &evicted,
                        &names,
                        format_args!("evicted: the cache was over its size limit of {limit} bytes"),
                        self.dir(),
                    );
                }
                // The same value stored again lands at the same path: keep that file.
                let replaced = replaced.filter(|old| !(old.in_blob && old.hash == hash && in_blob));
                self.remove_blobs(replaced.as_slice());
                self.remove_blobs(&evicted);
                self.inner.want_hint(key);
                Ok(())
            }
            // Another process holds the write lock: taking it again to remove our blob would wait
            // as long once more. The file stays as an orphan, swept by the next prune.
            Err(e @ Error::Busy { .. }) => Err(e),
            Err(e) => {
                if in_blob {
                    self.remove_blobs(&[Removed {
                        key: *key,
                        hash,
                        size: bytes.len() as u64,
                        in_blob: true,
                        function_id: 0,
                    }]);
                }
                Err(e)
            }
        }
    }

    /// Removes the blob files of removed rows, unless a row holds the same value again.
    ///
    /// A writer storing the same value under the same key puts its file at the same path. The
    /// decision is taken under the index's write lock, under which that writer checks that its
    /// file is in place before inserting its row (`put_local`): deciding outside it could unlink
    /// the writer's file after its check, leaving a row without its bytes.
    ///
    /// Their first-hit files go too: the removal made them useless (it moved the epoch, with
    /// their keys' buckets in the removal log), and they should not hold on to disk space.
    pub(crate) fn remove_blobs(&self, removed: &[Removed]) {
        self.remove_blobs_reporting(removed, &Reporter::default());
    }

    /// Like [`Cache::remove_blobs`], saying how many files of how many are done.
    pub(crate) fn remove_blobs_reporting(&self, removed: &[Removed], progress: &Reporter) {
        if !removed.is_empty() && self.inner.layout.hints.is_dir() {
            hints::remove_many(&self.inner.layout, removed.iter().map(|r| &r.key));
        }
        let gone: Vec<&Removed> = removed.iter().filter(|r| r.in_blob).collect();
        if gone.is_empty() {
            return;
        }
        let result = self.index().and_then(|index| {
            index.write(|tx| {
                let total = gone.len() as u64;
                for (i, r) in gone.iter().enumerate() {
                    progress.tick(Step::RemovingFiles, i as u64, total);
                    if index::holds_blob(tx, &r.key, &r.hash)? {
                        continue;
                    }
                    if let Err(e) = blobs::remove(&self.inner.layout.blob_path(&r.key, &r.hash)) {
                        tracing::debug!(target: STORE, "memo-cache: {e}");
                    }
                }
                progress.report(Step::RemovingFiles, total, total);
                Ok(())
            })
        });
        if let Err(e) = result {
            // The files stay as orphans, swept by the next prune or `verify --fix`.
            tracing::debug!(target: STORE, "memo-cache: could not remove blob files: {e}");
        }
    }

    // ---- Computing ----------------------------------------------------------------------------

    /// The cached result of `func` for `args`, or `compute()`'s, which is then stored.
    ///
    /// When several processes or threads miss on the same key at once, one computes and the
    /// others wait for its result. Cache failures never change the result: they are logged with
    /// `tracing::warn!` (once per kind of failure per handle) and the value is computed.
    pub fn get_or_compute<A, T, F>(&self, func: &Function, args: &A, compute: F) -> T
    where
        A: Serialize + ?Sized,
        T: Serialize + DeserializeOwned + Any,
        F: FnOnce() -> T,
    {
        match self.get_or_try_compute(func, args, || Ok::<T, Infallible>(compute())) {
            Ok(value) => value,
            Err(never) => match never {},
        }
    }

    /// Like [`Cache::get_or_compute`] for a computation that can fail: only `Ok` is stored, an
    /// `Err` is returned as it is and the next call computes again.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use memo_cache::{Cache, Function};
    /// let cache = Cache::open(dir.path()).unwrap();
    /// let parse = Function::new("docs::parse", "v1", "i64");
    /// let r: Result<i64, String> = cache.get_or_try_compute(&parse, &("x",), || Err("not a number".into()));
    /// assert!(r.is_err());
    /// let r: Result<i64, String> = cache.get_or_try_compute(&parse, &("42",), || Ok(42));
    /// assert_eq!(r, Ok(42));
    /// assert!(cache.contains(&parse, &("42",)).unwrap());
    /// assert!(!cache.contains(&parse, &("x",)).unwrap());
    /// ```
    pub fn get_or_try_compute<A, T, E, F>(
        &self,
        func: &Function,
        args: &A,
        compute: F,
    ) -> Result<T, E>
    where
        A: Serialize + ?Sized,
        T: Serialize + DeserializeOwned + Any,
        F: FnOnce() -> Result<T, E>,
    {
        let key = match func.key(args) {
            Ok(key) => key,
            Err(e) => {
                self.warn_once("key", &e);
                return compute();
            }
        };
        let at = At {
            cache: self,
            func,
            key: &key,
        };
        let handling = Handling {
            split: |result| match result {
                Ok(value) => Ok(value),
                Err(e) => Err(Err(e)),
            },
            wrap: Ok,
            seen: |_: &T| {},
        };
        protocol::run(Steps::of(), at, handling, compute)
    }

    /// A lookup whose failure is logged and counted as a miss.
    pub(crate) fn get_quietly<T: DeserializeOwned + Any>(
        &self,
        func: &Function,
        key: &Key,
    ) -> Option<T> {
        self.lookup(func, key).unwrap_or_else(|e| {
            self.warn_once("read", &e);
            None
        })
    }

    /// A store whose failure is logged and otherwise ignored.
    pub(crate) fn put_quietly<T: Serialize + Any>(
        &self,
        func: &Function,
        key: &Key,
        value: &T,
        record: &Record<'_>,
    ) {
        if self.is_read_only() {
            return;
        }
        if let Err(e) = self.put_recorded(func, key, value, func.ttl(), record) {
            self.warn_once("write", &e);
        }
    }

    /// Logs `error` with `tracing::warn!` the first time a failure of this kind happens on this
    /// handle, and at debug level after that, so a full disk does not flood the log.
    pub(crate) fn warn_once(&self, kind: &'static str, error: &Error) {
        let first = self.inner.warned.lock().expect("warned lock").insert(kind);
        if first {
            diagnostics::cannot_use(
                Some(self.dir()),
                error,
                "continuing without the cache for this call",
            );
        } else {
            tracing::debug!(target: diagnostics::CACHE, path = %self.dir().display(), "memo-cache: {error}");
        }
    }

    // ---- Removing -----------------------------------------------------------------------------

    /// Removes the entry of `func` for `args`; true if there was one.
    pub fn remove<A: Serialize + ?Sized>(&self, func: &Function, args: &A) -> Result<bool> {
        self.remove_key(&func.key(args)?)
    }

    /// Removes the entry with `key`; true if there was one.
    pub fn remove_key(&self, key: &Key) -> Result<bool> {
        let removed = self.index()?.write(|tx| index::delete_entry(tx, key))?;
        self.remove_blobs(removed.as_slice());
        Ok(removed.is_some())
    }

    /// Removes every entry of the function named `name` (all its versions).
    pub fn clear_function(&self, name: &str) -> Result<crate::Removal> {
        self.prune(&crate::Prune::all().function(name))
    }

    /// Removes every entry, and sweeps orphan and temp files. Works on a full disk too, and
    /// gives the space back to the file system (see [`Cache::prune`]).
    pub fn clear(&self) -> Result<crate::Removal> {
        self.prune(&crate::Prune::all())
    }
}

struct Checked<B = Vec<u8>> {
    bytes: B,
    hash: Digest,
    /// Read from a first-hit file, not from the index.
    first_hit: bool,
}

impl Inner {
    fn index(&self) -> Result<&Index> {
        if let Some(index) = self.index.get() {
            return Ok(index);
        }
        let _opening = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(index) = self.index.get() {
            return Ok(index);
        }
        let opened = open_index(
            &self.layout,
            self.read_only,
            self.schema,
            self.write_timeout,
        )?;
        Ok(self.index.get_or_init(|| opened))
    }

    /// Writes the batched hit statistics, and brings the rows of functions noted to their ttl
    /// ([`crate::ttl`]), waiting at most `timeout` for the write lock; when that is not enough
    /// they stay batched for a later flush.
    fn flush_within(&self, timeout: Duration) -> Result<()> {
        let mut from_index = Vec::new();
        let updates: Vec<(Key, u64, i64)> = {
            let mut pending = self.pending.lock().expect("pending lock");
            pending.since = Instant::now();
            pending
                .hits
                .iter()
                .map(|(k, &(hits, at, read))| {
                    if read {
                        from_index.push(*k);
                    }
                    (*k, hits, at)
                })
                .collect()
        };
        from_index.iter().for_each(|key| self.want_hint(key));
        if updates.is_empty() && !self.row_sync.any_due() {
            return Ok(());
        }
        let index = self.index()?;
        if index.access() == Access::ReadOnly {
            self.pending.lock().expect("pending lock").hits.clear();
            self.row_sync.take_due();
            return Ok(());
        }
        let due = self.row_sync.take_due();
        let written = index.write_within(timeout, |tx| {
            index::touch(tx, &updates, index.has_costs())?;
            for target in &due {
                index::bring_to_ttl(tx, &target.identity, target.ttl_ms)?;
            }
            Ok(())
        });
        if written.is_err() {
            self.row_sync.put_back(due, None);
        }
        written?;
        // Take away what was written; hits counted meanwhile stay for the next flush.
        let mut pending = self.pending.lock().expect("pending lock");
        for (key, hits, _) in &updates {
            if let Some(slot) = pending.hits.get_mut(key) {
                slot.0 -= (*hits).min(slot.0);
                if slot.0 == 0 {
                    pending.hits.remove(key);
                }
            }
        }
        Ok(())
    }

    /// Notes `key` for a first-hit file when the handle closes.
    fn want_hint(&self, key: &Key) {
        let mut keys = self.hint_keys.lock().expect("hint keys lock");
        if keys.len() < HINT_LIMIT {
            keys.insert(*key);
        }
    }

    /// Writes the first-hit files of the keys noted (see [`crate::hints`]): their rows and the
    /// removal epoch, read in one read transaction, so each file copies a row current at the
    /// epoch it records.
    fn write_hints(&self) -> Result<()> {
        let keys: Vec<Key> = std::mem::take(&mut *self.hint_keys.lock().expect("hint keys lock"))
            .into_iter()
            .collect();
        let Some(index) = self.index.get() else {
            return Ok(());
        };
        if keys.is_empty() || index.access() == Access::ReadOnly {
            return Ok(());
        }
        let (epoch, rows) = index.read_snapshot(|tx| {
            let epoch = index::epoch(tx)?;
            let mut rows = Vec::with_capacity(keys.len());
            for key in &keys {
                if let Some(row) = index::lookup(tx, key)? {
                    rows.push((*key, row));
                }
            }
            Ok((epoch, rows))
        })?;
        // With `synchronous = NORMAL` a commit is durable only at the next sync of the WAL; a
        // power cut could otherwise leave a file copying a row the index lost (which a store
        // without a removal might then replace). The WAL has no locks of its own, so closing
        // this descriptor drops none of SQLite's. No WAL: everything is in the index file, which
        // every checkpoint syncs.
        match blobs::open_no_follow(&self.layout.wal) {
            Ok(wal) => wal
                .sync_data()
                .map_err(|e| Error::io("syncing", &self.layout.wal, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("opening", &self.layout.wal, e)),
        }
        let now = self.clock.now_ms();
        for (key, row) in rows {
            let Some(created) = row.created else { continue };
            if row.expires.is_some_and(|at| at <= now) {
                continue;
            }
            let hint = Hint {
                epoch,
                hash: row.hash,
                size: row.size,
                created,
                expires: row.expires,
                value: row.value,
            };
            hints::write(&self.layout, &key, &hint)?;
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}

impl Inner {
    /// What closing a handle does: writes the batched hit statistics and the first-hit files,
    /// then closes the index's connections (the last close removes the WAL, which lets the next
    /// process read first-hit files). Never fails; the handle stays usable.
    fn close(&self) {
        if let Err(e) = self.flush_within(index::CLOSE_FLUSH_TIMEOUT) {
            tracing::debug!(target: STORE, "memo-cache: could not record hit statistics: {e}");
        }
        if let Err(e) = self.write_hints() {
            tracing::debug!(target: STORE, "memo-cache: could not write first-hit files: {e}");
        }
        if let Some(index) = self.index.get() {
            index.close();
        }
    }
}

impl Cache {
    /// What dropping the last handle does, for a handle that is never dropped (a `static`):
    /// see `Inner::close`.
    pub(crate) fn close(&self) {
        self.inner.close();
    }
}

/// The environment variable that sets the compute lease of handles that do not set one.
pub const LEASE_ENV: &str = "MEMO_CACHE_LOCK_LEASE";
/// The environment variable that sets the write timeout of handles that do not set one.
pub const WRITE_TIMEOUT_ENV: &str = "MEMO_CACHE_WRITE_TIMEOUT";

/// A duration from the environment variable `name` (`"10s"`, `"500ms"`); `None` when unset, and
/// when it is not a duration, with a warning.
fn duration_from_env(name: &str) -> Option<Duration> {
    let text = std::env::var(name).ok().filter(|t| !t.is_empty())?;
    match humantime::parse_duration(&text) {
        Ok(duration) => Some(duration),
        Err(e) => {
            tracing::warn!(target: diagnostics::CACHE,
                "memo-cache: {name}={text:?} is not a duration ({e}); write one like \"10s\""
            );
            None
        }
    }
}

/// A Unix-millisecond time as a `SystemTime`.
pub(crate) fn ms_to_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// Brings the rows of the `due` functions to their ttl, and those of `function_id` when `probe`
/// finds some of its least recently used rows disagreeing with it (see [`crate::ttl`]).
fn bring_to_ttl(
    tx: &rusqlite::Transaction,
    due: &[Target],
    function_id: i64,
    probe: Option<Target>,
) -> rusqlite::Result<()> {
    for target in due {
        index::bring_to_ttl(tx, &target.identity, target.ttl_ms)?;
    }
    if let Some(target) = probe
        && !due.contains(&target)
        && index::disagrees_with_ttl(tx, function_id, target.ttl_ms, ttl::FIRST_STORE_PROBE)?
    {
        index::bring_to_ttl(tx, &target.identity, target.ttl_ms)?;
    }
    Ok(())
}
