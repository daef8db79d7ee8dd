//! Shared tiers: a second level behind the local directory, so a result computed on one machine
//! is reused on every other.
//!
//! The local directory stays the first level. Read path: local, then the shared tier, then
//! compute; a shared hit is written to the local directory, a computed value goes to both.
//!
//! # The seam
//!
//! A tier is a `Backend` (a private trait): a handful of primitive operations (get, set, take a
//! lock item if free, renew it, release it if still ours) on one kind of server, each in its own
//! module and behind its own cargo feature:
//!
//! | tier | module | feature | URL |
//! |---|---|---|---|
//! | Redis, Redis Cluster | `redis.rs` | `redis` | `redis://`, `rediss://` (TLS) |
//! | memcached | `memcached.rs` | `memcached` | `memcache://` |
//! | PostgreSQL | `postgres/` | `postgres` | `postgres://`, `postgresql://` |
//!
//! Everything else is written once, here, for every tier: the value's envelope and its hash
//! check, the size limit, and the fleet-wide compute-once protocol
//! (a lock item holding a random token with an expiry, renewed by a watchdog while its holder
//! computes, released only by its holder; a waiter polls for the value, takes over when the
//! lock vanishes without one, and gives up after [`RemoteConfig::wait_timeout`]). The cache
//! holds an `Option<Arc<Tier>>` chosen once from configuration (`connect`); the code that
//! uses it never asks which backend it has. A feature flag decides which modules exist, not which
//! branch a hot path takes.
//!
//! # The value envelope
//!
//! ```text
//! "MC2" or "MC3" ‖ blake3 of the value (32) ‖ creation ms, LE i64 (8) ‖ expiry ms, LE i64 (8;
//! 0 = none) ‖ value
//! ```
//!
//! The creation time lets a reader apply the ttl its code has now, not only the expiry the
//! writer fixed (`ttl.rs` in this crate). Values of the older layout (`"MC1"`, without it) are
//! still read: a reader without a ttl takes them, one with a ttl cannot tell their age and
//! computes again (storing the new layout). Older memo-cache builds ignore `"MC2"` values with
//! a warning and compute.
//!
//! A value travels as it is stored locally: compressed values (see `compress.rs` in this crate)
//! as their zstd frame, with the hash of the local row, so the network carries the smaller
//! bytes and a node that fetches one keeps it as it came. Those are tagged `"MC3"` (the layout
//! of `"MC2"`), which builds from before compression ignore with a warning and compute, rather
//! than fetch bytes they cannot decode; uncompressed values keep `"MC2"`, which every build
//! since reads.
//!
//! # Failures
//!
//! A tier down, slow or refusing writes never changes a result: the call goes on local-only.
//! Each backend reports the first failure of an outage with `tracing::warn!`, later ones at
//! debug level, leaves the server alone for [`RemoteConfig::retry_after`], then tries again and
//! logs its return once.

mod config;
#[cfg(feature = "memcached")]
mod memcached;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub(crate) use config::TierKind;
#[cfg(feature = "memcached")]
pub(crate) use config::memcached_address;
#[cfg(any(feature = "memcached", feature = "postgres"))]
pub(crate) use config::redact;
pub use config::{
    REDIS_PREFIX_ENV, REDIS_URL_ENV, REMOTE_PREFIX_ENV, REMOTE_URL_ENV, RemoteConfig,
};

use crate::diagnostics::REMOTE;
use crate::error::{Error, Result};
use crate::key::{Digest, Key};

const MAGIC: &[u8; 3] = b"MC2";
/// The layout of [`MAGIC`], for a value whose bytes are compressed.
const MAGIC_COMPRESSED: &[u8; 3] = b"MC3";
const HEADER: usize = 3 + 32 + 8 + 8;
/// The layout before the creation time: magic, hash, expiry.
const MAGIC_V1: &[u8; 3] = b"MC1";
const HEADER_V1: usize = 3 + 32 + 8;

/// The primitive operations of one kind of shared tier. `None` means the tier (or the server
/// holding `key`) is unavailable; the backend has reported it, once per outage.
pub(crate) trait Backend: Send + Sync {
    /// The raw envelope stored for `key`, if any.
    fn get(&self, key: &Key) -> Option<Option<Vec<u8>>>;
    /// Stores `value` under `key`, to expire after `ttl` when given.
    fn set(&self, key: &Key, value: &[u8], ttl: Option<Duration>) -> Option<()>;
    /// Stores `entry` under `key`: by default its envelope through [`Backend::set`]. A tier that
    /// keeps the envelope's fields apart (PostgreSQL's columns) takes them as they are, and
    /// needs no second copy of the value.
    fn store(&self, key: &Key, entry: &Entry<'_>, ttl: Option<Duration>) -> Option<()> {
        self.set(key, &entry.envelope(), ttl)
    }
    /// Takes the lock item of `key` with `token` if nobody holds it; true when taken.
    fn lock(&self, key: &Key, token: &str, ttl: Duration) -> Option<bool>;
    /// Extends the lock item of `key` to `ttl` from now if it still holds `token`.
    fn renew(&self, key: &Key, token: &str, ttl: Duration) -> Option<bool>;
    /// Removes the lock item of `key` if it still holds `token`.
    fn unlock(&self, key: &Key, token: &str) -> Option<bool>;
    /// The name of the item holding the value of `key`, for messages.
    fn item_name(&self, key: &Key) -> String;
}

/// A value on its way to the tier, with what its envelope records and the function it is of.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry<'a> {
    pub bytes: &'a [u8],
    pub hash: &'a Digest,
    pub created: i64,
    pub expires: Option<i64>,
    /// The function's stable name (kept by tiers that can list by it).
    #[allow(dead_code)] // read by the PostgreSQL tier only
    pub function: &'a str,
}

impl Entry<'_> {
    /// The value in its envelope (see the module documentation).
    pub fn envelope(&self) -> Vec<u8> {
        encode(self.bytes, self.hash, self.created, self.expires)
    }
}

/// The shared tier of one cache handle: a backend with the protocol around it.
pub(crate) struct Tier {
    config: RemoteConfig,
    backend: Box<dyn Backend>,
    tokens: AtomicU64,
}

impl fmt::Debug for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tier")
            .field("kind", &self.config.kind)
            .field("urls", &self.config.display_urls())
            .field("prefix", &self.config.prefix)
            .finish()
    }
}

/// The tier `config` names, when this build has it. A URL naming a tier the build lacks gives
/// `None`, with a warning that says which feature to enable.
pub(crate) fn connect(config: RemoteConfig) -> Option<Arc<Tier>> {
    let backend = backend(&config)?;
    Some(Arc::new(Tier {
        config,
        backend,
        tokens: AtomicU64::new(0),
    }))
}

/// The one place that asks which tier a configuration names.
fn backend(config: &RemoteConfig) -> Option<Box<dyn Backend>> {
    match config.kind {
        #[cfg(feature = "redis")]
        TierKind::Redis => Some(Box::new(redis::RedisBackend::new(config))),
        #[cfg(feature = "memcached")]
        TierKind::Memcached => match config::memcached_prefix_problem(&config.prefix) {
            None => Some(Box::new(memcached::MemcachedBackend::new(config))),
            Some(reason) => {
                crate::diagnostics::tier_unusable(&config.display_urls(), "memcached", &reason);
                None
            }
        },
        #[cfg(feature = "postgres")]
        TierKind::Postgres => Some(Box::new(postgres::PostgresBackend::new(config))),
        #[allow(unreachable_patterns)]
        kind => {
            crate::diagnostics::tier_not_built(&config.display_urls(), kind.name(), kind.feature());
            None
        }
    }
}

/// A value fetched from the shared tier, hash-checked.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub bytes: Vec<u8>,
    /// `None` for a value stored by an older memo-cache, which did not record it.
    pub created: Option<i64>,
    pub expires: Option<i64>,
}

/// What waiting for another node's computation came to.
pub(crate) enum Waited {
    /// It stored the value.
    Value(Fetched),
    /// Its lock vanished without a value (it died or failed); we hold the lock now.
    Acquired(FleetLock),
    /// Nothing came in time, or the tier became unavailable: compute without the fleet lock.
    GaveUp,
}

/// What an attempt to take the fleet-wide lock gave.
pub(crate) enum Attempt {
    Acquired(FleetLock),
    Held,
    Unavailable,
}

impl Tier {
    pub fn config(&self) -> &RemoteConfig {
        &self.config
    }

    /// The tier's name in messages ("Redis", "memcached").
    pub fn name(&self) -> &'static str {
        self.config.tier_name()
    }

    /// The value of `key`, if the tier has a sound one that is unexpired for a reader with `ttl`.
    pub fn get(&self, key: &Key, now: i64, ttl: Option<Duration>) -> Option<Fetched> {
        let raw = self.backend.get(key)??;
        match decode(raw, now, ttl) {
            Ok(fetched) => fetched,
            Err(reason) => {
                tracing::warn!(target: REMOTE,
                    "memo-cache: ignoring {} value {}: {reason}; it will be recomputed",
                    self.name(),
                    self.backend.item_name(key)
                );
                None
            }
        }
    }

    /// True when the tier holds a value for `key` that its stored expiry allows.
    pub fn contains(&self, key: &Key, now: i64) -> bool {
        self.get(key, now, None).is_some()
    }

    /// Stores `bytes` (hashing to `hash`), a value of `function` created at `now`, unless larger
    /// than the configured maximum or expired.
    pub fn put(
        &self,
        key: &Key,
        bytes: &[u8],
        hash: &Digest,
        expires: Option<i64>,
        now: i64,
        function: &str,
    ) {
        if bytes.len() > self.config.max_value_bytes {
            tracing::debug!(target: REMOTE,
                "memo-cache: {key} is {} bytes, over the {} limit: kept local-only",
                bytes.len(),
                self.name()
            );
            return;
        }
        let ttl = match expires {
            Some(at) if at <= now => return,
            Some(at) => Some(Duration::from_millis((at - now) as u64)),
            None => None,
        };
        let entry = Entry {
            bytes,
            hash,
            created: now,
            expires,
            function,
        };
        self.backend.store(key, &entry, ttl);
    }

    fn token(&self) -> String {
        let n = self.tokens.fetch_add(1, Ordering::Relaxed);
        let seed = format!(
            "{}-{}-{:?}-{n}",
            std::process::id(),
            crate::clock::system_time_ms(std::time::SystemTime::now()),
            Instant::now()
        );
        Digest::of(seed.as_bytes()).to_hex()[..32].to_owned()
    }

    /// Tries to take the fleet-wide lock of `key` without waiting.
    pub fn try_lock(self: &Arc<Self>, key: &Key) -> Attempt {
        let token = self.token();
        match self.backend.lock(key, &token, self.config.lock_ttl) {
            None => Attempt::Unavailable,
            Some(false) => Attempt::Held,
            Some(true) => Attempt::Acquired(FleetLock::start(self.clone(), *key, token)),
        }
    }

    /// Waits for whoever holds the lock of `key` to store its value (one unexpired for `ttl`).
    pub fn wait(
        self: &Arc<Self>,
        key: &Key,
        ttl: Option<Duration>,
        now: impl Fn() -> i64,
    ) -> Waited {
        let deadline = Instant::now() + self.config.wait_timeout;
        let mut pause = Duration::from_millis(20);
        loop {
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(250));
            if let Some(fetched) = self.get(key, now(), ttl) {
                return Waited::Value(fetched);
            }
            match self.try_lock(key) {
                Attempt::Acquired(lock) => {
                    // The holder may have stored the value and released just now.
                    if let Some(fetched) = self.get(key, now(), ttl) {
                        return Waited::Value(fetched);
                    }
                    return Waited::Acquired(lock);
                }
                Attempt::Unavailable => return Waited::GaveUp,
                Attempt::Held if Instant::now() >= deadline => {
                    tracing::warn!(target: REMOTE,
                        "memo-cache: waited {:?} for another node computing {key}; computing here",
                        self.config.wait_timeout
                    );
                    return Waited::GaveUp;
                }
                Attempt::Held => {}
            }
        }
    }
}

/// The envelope of a value: see the module documentation.
fn encode(bytes: &[u8], hash: &Digest, now: i64, expires: Option<i64>) -> Vec<u8> {
    let mut value = Vec::with_capacity(HEADER + bytes.len());
    value.extend_from_slice(&header(bytes, hash, now, expires));
    value.extend_from_slice(bytes);
    value
}

/// The envelope's header of a value (`bytes`), for a tier that puts it in front itself.
fn header(bytes: &[u8], hash: &Digest, created: i64, expires: Option<i64>) -> [u8; HEADER] {
    let mut header = [0; HEADER];
    header[..3].copy_from_slice(if crate::compress::is_compressed(bytes) {
        MAGIC_COMPRESSED
    } else {
        MAGIC
    });
    header[3..35].copy_from_slice(&hash.0);
    header[35..43].copy_from_slice(&created.to_le_bytes());
    header[43..].copy_from_slice(&expires.unwrap_or(0).to_le_bytes());
    header
}

fn decode(
    mut raw: Vec<u8>,
    now: i64,
    ttl: Option<Duration>,
) -> std::result::Result<Option<Fetched>, &'static str> {
    let word = |raw: &[u8], at: usize| i64::from_le_bytes(raw[at..at + 8].try_into().expect("8"));
    let (created, expires, header) =
        if raw.len() >= HEADER && (&raw[..3] == MAGIC || &raw[..3] == MAGIC_COMPRESSED) {
            (Some(word(&raw, 35)), word(&raw, 43), HEADER)
        } else if raw.len() >= HEADER_V1 && &raw[..3] == MAGIC_V1 {
            (None, word(&raw, 35), HEADER_V1)
        } else {
            return Err("not a memo-cache value");
        };
    let hash = Digest::from_slice(&raw[3..35]).expect("32 bytes");
    let expires = (expires != 0).then_some(expires);
    if crate::ttl::is_expired(created, expires, ttl, now) {
        return Ok(None);
    }
    raw.drain(..header);
    if Digest::of(&raw) != hash {
        return Err("bytes do not match their hash");
    }
    Ok(Some(Fetched {
        bytes: raw,
        created,
        expires,
    }))
}

/// A held fleet-wide lock; renewed by a watchdog thread while held, released on drop.
pub(crate) struct FleetLock {
    tier: Arc<Tier>,
    key: Key,
    token: String,
    stop: Option<mpsc::Sender<()>>,
    watchdog: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for FleetLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetLock").field("key", &self.key).finish()
    }
}

impl FleetLock {
    fn start(tier: Arc<Tier>, key: Key, token: String) -> FleetLock {
        let (stop, stopped) = mpsc::channel::<()>();
        let ttl = tier.config.lock_ttl;
        let (t, k, tok) = (tier.clone(), key, token.clone());
        let watchdog = std::thread::Builder::new()
            .name("memo-cache-lock".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(ttl / 3) {
                    t.backend.renew(&k, &tok, ttl);
                }
            })
            .ok();
        FleetLock {
            tier,
            key,
            token,
            stop: Some(stop),
            watchdog,
        }
    }
}

impl Drop for FleetLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(watchdog) = self.watchdog.take() {
            let _ = watchdog.join();
        }
        self.tier.backend.unlock(&self.key, &self.token);
    }
}

/// What the shared tier holds under a cache's prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteStats {
    /// The servers scanned (every master of a cluster).
    pub nodes: usize,
    /// Stored values.
    pub values: u64,
    /// Their bytes, headers included.
    pub bytes: u64,
    /// Compute locks held right now (Redis only: memcached cannot list them).
    pub locks: u64,
    /// Each server's own figures (memcached: all its items, not only this prefix's).
    pub servers: Vec<ServerStats>,
    /// The prefix's namespace generation on the first server (memcached; each server keeps its
    /// own, see [`ServerStats::generation`]).
    pub generation: Option<u64>,
    /// The table holding the prefix's values (PostgreSQL).
    pub table: Option<String>,
    /// What the table takes on the server's disk, indexes and TOAST included (PostgreSQL).
    pub disk_bytes: Option<u64>,
    /// Values whose expiry has passed, waiting for `remote prune` (PostgreSQL).
    pub expired: u64,
    /// Values and bytes per function, largest first (PostgreSQL: other tiers do not record the
    /// function).
    pub functions: Vec<RemoteFunctionStats>,
}

/// What the shared tier holds of one function (PostgreSQL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteFunctionStats {
    /// The function's stable name.
    pub name: String,
    /// Its stored values.
    pub values: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// What one server of a memcached tier reports about itself (`stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// The server, password hidden.
    pub url: String,
    /// Items stored (every user's).
    pub items: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The memory limit.
    pub limit_bytes: u64,
    /// Lookups that found their item, since the server started.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Items evicted to make room.
    pub evictions: u64,
    /// The prefix's namespace generation on this server.
    pub generation: Option<u64>,
}

/// Counts what the tier holds under `config`'s prefix.
pub fn remote_stats(config: &RemoteConfig) -> Result<RemoteStats> {
    match config.kind {
        #[cfg(feature = "redis")]
        TierKind::Redis => redis::stats(config),
        #[cfg(feature = "memcached")]
        TierKind::Memcached => {
            memcached_prefix_usable(config)?;
            memcached::stats(config)
        }
        #[cfg(feature = "postgres")]
        TierKind::Postgres => postgres::stats(config),
        #[allow(unreachable_patterns)]
        kind => Err(missing_feature(config, kind)),
    }
}

/// Removes every value under `config`'s prefix; returns how many keys went. On memcached, which
/// cannot list keys, moves the prefix to a new namespace generation instead (its old items age
/// out) and returns 0; [`RemoteStats::generation`] shows the new one.
pub fn remote_clear(config: &RemoteConfig) -> Result<u64> {
    match config.kind {
        #[cfg(feature = "redis")]
        TierKind::Redis => redis::clear(config),
        #[cfg(feature = "memcached")]
        TierKind::Memcached => {
            memcached_prefix_usable(config)?;
            memcached::clear(config).map(|_| 0)
        }
        #[cfg(feature = "postgres")]
        TierKind::Postgres => postgres::clear(config, None),
        #[allow(unreachable_patterns)]
        kind => Err(missing_feature(config, kind)),
    }
}

/// An error naming the prefix when memcached cannot take it as a key prefix.
#[cfg(feature = "memcached")]
fn memcached_prefix_usable(config: &RemoteConfig) -> Result<()> {
    match config::memcached_prefix_problem(&config.prefix) {
        None => Ok(()),
        Some(reason) => Err(Error::BadRemote {
            url: config.display_urls(),
            reason,
        }),
    }
}

/// Removes the values of the function named `function` under `config`'s prefix; returns how
/// many went. PostgreSQL only: Redis and memcached do not record which function a value is of.
pub fn remote_clear_function(config: &RemoteConfig, function: &str) -> Result<u64> {
    match config.kind {
        #[cfg(feature = "postgres")]
        TierKind::Postgres => postgres::clear(config, Some(function)),
        TierKind::Redis | TierKind::Memcached => {
            let _ = function;
            Err(unsupported(
                config,
                "clearing one function",
                "its keys do not record which function a value is of; clear the whole prefix",
            ))
        }
        #[allow(unreachable_patterns)]
        kind => Err(missing_feature(config, kind)),
    }
}

/// Removes the values under `config`'s prefix whose expiry has passed and, with `older_than`,
/// those created longer ago than that (and lock rows whose lease ran out); returns how many
/// values went. PostgreSQL only: Redis and memcached drop expired values themselves and do not
/// keep a value's age.
pub fn remote_prune(config: &RemoteConfig, older_than: Option<Duration>) -> Result<u64> {
    match config.kind {
        #[cfg(feature = "postgres")]
        TierKind::Postgres => postgres::prune(config, older_than),
        TierKind::Redis | TierKind::Memcached => {
            let _ = older_than;
            Err(unsupported(
                config,
                "prune",
                "the server drops expired values by itself and keeps no value's age; use \
                 `remote clear`, or the server's own memory limit",
            ))
        }
        #[allow(unreachable_patterns)]
        kind => Err(missing_feature(config, kind)),
    }
}

fn unsupported(config: &RemoteConfig, operation: &str, reason: &str) -> Error {
    Error::RemoteUnsupported {
        tier: config.tier_name().to_owned(),
        operation: operation.to_owned(),
        reason: reason.to_owned(),
    }
}

#[allow(dead_code)] // used in builds that lack a tier
fn missing_feature(config: &RemoteConfig, kind: TierKind) -> Error {
    Error::BadRemote {
        url: config.display_urls(),
        reason: format!(
            "this build of memo-cache has no {} tier: enable its `{}` cargo feature",
            kind.name(),
            kind.feature()
        ),
    }
}
