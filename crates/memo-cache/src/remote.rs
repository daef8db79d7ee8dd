//! The shared second level on Redis: a result computed on one machine is reused on every other.
//!
//! The local directory stays the first level. Read path: local, then Redis, then compute; a Redis
//! hit is written to the local directory, a computed value goes to both. Values in Redis carry
//! the same blake3 hash as local ones and are checked on every fetch.
//!
//! # Layout in Redis
//!
//! ```text
//! <prefix>v:<key hex>     "MC2" or "MC3" ‖ blake3 of the value (32) ‖ creation ms, LE i64 (8)
//!                         ‖ expiry ms, LE i64 (8; 0 = none) ‖ value
//! <prefix>l:<key hex>     the fleet-wide compute lock: a random token, with an expiry
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
//! The prefix (default `memo-cache:`) is a namespace, so several projects share one Redis; the
//! CLI's `remote stats` and `remote clear` touch only keys under it, found with SCAN.
//!
//! # Locking
//!
//! One node computes a key while the others wait: `SET <lock> <token> NX PX <ttl>`; the holder
//! extends the expiry from a watchdog thread while it computes and releases with a script that
//! deletes the lock only if it still holds its token. A waiter polls for the value; if the lock
//! disappears without a value (its holder died) it takes the lock itself, and after
//! [`RemoteConfig::wait_timeout`] it gives up and computes.
//!
//! # Failures
//!
//! Redis down, slow or refusing writes never changes a result: the call goes on local-only. The
//! first failure of an outage is logged with `tracing::warn!`, later ones are not; the tier is
//! left alone for a short backoff, then tried again, and its return is logged once.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::ConnectionLike;

use crate::error::{Error, Result};
use crate::key::{Digest, Key};

/// The environment variable that enables the Redis tier: one URL, or several (separated by
/// commas) for a Redis Cluster.
pub const REDIS_URL_ENV: &str = "MEMO_CACHE_REDIS_URL";
/// The environment variable that overrides the key prefix.
pub const REDIS_PREFIX_ENV: &str = "MEMO_CACHE_REDIS_PREFIX";

const MAGIC: &[u8; 3] = b"MC2";
/// The layout of [`MAGIC`], for a value whose bytes are compressed.
const MAGIC_COMPRESSED: &[u8; 3] = b"MC3";
const HEADER: usize = 3 + 32 + 8 + 8;
/// The layout before the creation time: magic, hash, expiry.
const MAGIC_V1: &[u8; 3] = b"MC1";
const HEADER_V1: usize = 3 + 32 + 8;

/// Settings of the Redis tier.
///
/// ```
/// use memo_cache::RemoteConfig;
/// use std::time::Duration;
///
/// let single = RemoteConfig::new("redis://127.0.0.1:6379").unwrap();
/// assert!(!single.is_cluster());
/// let cluster = RemoteConfig::new("redis://10.0.0.1:7000,redis://10.0.0.2:7000")
///     .unwrap()
///     .prefix("my-project:")
///     .command_timeout(Duration::from_millis(200));
/// assert!(cluster.is_cluster());
/// assert!(RemoteConfig::new("http://nope").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    urls: Vec<String>,
    prefix: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    max_value_bytes: usize,
    lock_ttl: Duration,
    wait_timeout: Duration,
    retry_after: Duration,
}

impl RemoteConfig {
    /// From `redis://host:port[/db]` or `rediss://...` (TLS), or several URLs separated by commas
    /// (a Redis Cluster: give some or all of its nodes).
    pub fn new(spec: &str) -> Result<Self> {
        let urls: Vec<String> = spec
            .split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if urls.is_empty() {
            return Err(Error::BadRemote {
                url: spec.to_owned(),
                reason: "no URL given".into(),
            });
        }
        for url in &urls {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(Error::BadRemote {
                    url: url.clone(),
                    reason: "expected redis://host:port or rediss://host:port".into(),
                });
            }
            if redis::parse_redis_url(url).is_none() {
                return Err(Error::BadRemote {
                    url: url.clone(),
                    reason: "not a valid URL".into(),
                });
            }
        }
        Ok(RemoteConfig {
            urls,
            prefix: "memo-cache:".into(),
            connect_timeout: Duration::from_millis(500),
            command_timeout: Duration::from_millis(500),
            max_value_bytes: 16 * 1024 * 1024,
            lock_ttl: Duration::from_secs(30),
            wait_timeout: Duration::from_secs(300),
            retry_after: Duration::from_secs(1),
        })
    }

    /// From `MEMO_CACHE_REDIS_URL` (and `MEMO_CACHE_REDIS_PREFIX`), if set and not empty.
    pub fn from_env() -> Result<Option<Self>> {
        let Some(spec) = std::env::var(REDIS_URL_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty())
        else {
            return Ok(None);
        };
        let mut config = RemoteConfig::new(&spec)?;
        if let Ok(prefix) = std::env::var(REDIS_PREFIX_ENV) {
            config.prefix = prefix;
        }
        Ok(Some(config))
    }

    /// The namespace of this cache's keys in Redis (default `memo-cache:`).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long to wait for a connection (default 500 ms).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for one command's answer (default 500 ms).
    #[must_use]
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Values larger than this stay local-only (default 16 MiB).
    #[must_use]
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// The expiry of a fleet-wide compute lock, renewed while its holder computes (default 30 s).
    #[must_use]
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// How long a node waits for another node's computation before computing itself
    /// (default 5 min).
    #[must_use]
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// How long the tier is left alone after a failure before it is tried again (default 1 s).
    #[must_use]
    pub fn retry_after(mut self, pause: Duration) -> Self {
        self.retry_after = pause;
        self
    }

    /// True when several URLs were given: a Redis Cluster.
    #[must_use]
    pub fn is_cluster(&self) -> bool {
        self.urls.len() > 1
    }

    /// The URLs given, with any password hidden.
    #[must_use]
    pub fn display_urls(&self) -> String {
        self.urls
            .iter()
            .map(|u| redact(u))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The key prefix.
    #[must_use]
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// The largest value written to Redis.
    #[must_use]
    pub fn max_value(&self) -> usize {
        self.max_value_bytes
    }

    #[doc(hidden)] // the Redis key of a value: for tests
    /// The Redis key holding the value of `key`.
    #[must_use]
    pub fn value_key(&self, key: &Key) -> String {
        format!("{}v:{}", self.prefix, key.to_hex())
    }

    fn lock_key(&self, key: &Key) -> String {
        format!("{}l:{}", self.prefix, key.to_hex())
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// A connection to a single server or a cluster.
pub(crate) enum Conn {
    Single(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Conn {
    pub(crate) fn open(config: &RemoteConfig) -> redis::RedisResult<Conn> {
        if config.urls.iter().any(|u| u.starts_with("rediss://")) {
            install_crypto_provider();
        }
        if config.is_cluster() {
            let client = redis::cluster::ClusterClientBuilder::new(config.urls.clone())
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.command_timeout)
                .build()?;
            Ok(Conn::Cluster(Box::new(client.get_connection()?)))
        } else {
            let client = redis::Client::open(config.urls[0].as_str())?;
            let conn = client.get_connection_with_timeout(config.connect_timeout)?;
            conn.set_read_timeout(Some(config.command_timeout))?;
            conn.set_write_timeout(Some(config.command_timeout))?;
            Ok(Conn::Single(conn))
        }
    }

    pub(crate) fn like(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::Single(c) => c,
            Conn::Cluster(c) => c.as_mut(),
        }
    }
}

fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A value fetched from Redis, hash-checked.
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
    Acquired(RemoteLock),
    /// Nothing came in time, or the tier became unavailable: compute without the fleet lock.
    GaveUp,
}

/// What an attempt to take the fleet-wide lock gave.
pub(crate) enum Attempt {
    Acquired(RemoteLock),
    Held,
    Unavailable,
}

/// The Redis tier of one cache handle.
pub(crate) struct Remote {
    config: RemoteConfig,
    conn: Mutex<Option<Conn>>,
    health: Mutex<Health>,
    tokens: AtomicU64,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("urls", &self.config.display_urls())
            .field("prefix", &self.config.prefix)
            .finish()
    }
}

#[derive(Debug, Default)]
struct Health {
    /// Set while the tier is considered down: do not try before this instant.
    retry_at: Option<Instant>,
    /// Whether this outage has been reported.
    warned: bool,
}

const UNLOCK: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end"#;
const EXTEND: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) else return 0 end"#;

impl Remote {
    pub fn new(config: RemoteConfig) -> Arc<Remote> {
        Arc::new(Remote {
            config,
            conn: Mutex::new(None),
            health: Mutex::new(Health::default()),
            tokens: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &RemoteConfig {
        &self.config
    }

    /// Runs `f` on the connection, connecting first if needed. `None` while the tier is down
    /// or when `f` fails; failures are reported once per outage.
    fn run<T>(
        &self,
        f: impl FnOnce(&mut dyn ConnectionLike) -> redis::RedisResult<T>,
    ) -> Option<T> {
        if let Some(at) = self.health.lock().expect("health lock").retry_at
            && Instant::now() < at
        {
            return None;
        }
        let mut slot = self.conn.lock().expect("connection lock");
        if slot.is_none() {
            match Conn::open(&self.config) {
                Ok(conn) => *slot = Some(conn),
                Err(e) => {
                    drop(slot);
                    self.failed(&e);
                    return None;
                }
            }
        }
        let conn = slot.as_mut().expect("connected above");
        match f(conn.like()) {
            Ok(value) => {
                drop(slot);
                self.succeeded();
                Some(value)
            }
            Err(e) => {
                // After an I/O error or timeout the connection's state is unknown: start afresh.
                if e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_unrecoverable_error()
                {
                    *slot = None;
                }
                drop(slot);
                self.failed(&e);
                None
            }
        }
    }

    fn failed(&self, e: &redis::RedisError) {
        let mut health = self.health.lock().expect("health lock");
        health.retry_at = Some(Instant::now() + self.config.retry_after);
        if !health.warned {
            health.warned = true;
            tracing::warn!(target: crate::diagnostics::REMOTE,
                "memo-cache: Redis tier {} unavailable ({e}); continuing with the local cache only, retrying every {:?}",
                self.config.display_urls(),
                self.config.retry_after
            );
        } else {
            tracing::debug!(target: crate::diagnostics::REMOTE, "memo-cache: Redis tier still unavailable: {e}");
        }
    }

    fn succeeded(&self) {
        let mut health = self.health.lock().expect("health lock");
        if health.warned {
            tracing::info!(target: crate::diagnostics::REMOTE,
                "memo-cache: Redis tier {} is back",
                self.config.display_urls()
            );
        }
        *health = Health::default();
    }

    /// The value of `key`, if Redis has a sound one that is unexpired for a reader with `ttl`.
    pub fn get(&self, key: &Key, now: i64, ttl: Option<Duration>) -> Option<Fetched> {
        let name = self.config.value_key(key);
        let raw: Option<Vec<u8>> = self.run(|c| redis::cmd("GET").arg(&name).query(c))?;
        let raw = raw?;
        match decode(raw, now, ttl) {
            Ok(fetched) => fetched,
            Err(reason) => {
                tracing::warn!(target: crate::diagnostics::REMOTE,
                    "memo-cache: ignoring Redis value {name}: {reason}; it will be recomputed"
                );
                None
            }
        }
    }

    /// True when Redis holds a value for `key` that its stored expiry allows.
    pub fn contains(&self, key: &Key, now: i64) -> bool {
        self.get(key, now, None).is_some()
    }

    /// Stores `bytes` (hashing to `hash`), created at `now`, unless larger than the configured
    /// maximum or expired.
    pub fn put(&self, key: &Key, bytes: &[u8], hash: &Digest, expires: Option<i64>, now: i64) {
        if bytes.len() > self.config.max_value_bytes {
            tracing::debug!(target: crate::diagnostics::REMOTE,
                "memo-cache: {key} is {} bytes, over the Redis limit: kept local-only",
                bytes.len()
            );
            return;
        }
        let ttl_ms = match expires {
            Some(at) if at <= now => return,
            Some(at) => Some(at - now),
            None => None,
        };
        let mut value = Vec::with_capacity(HEADER + bytes.len());
        value.extend_from_slice(if crate::compress::is_compressed(bytes) {
            MAGIC_COMPRESSED
        } else {
            MAGIC
        });
        value.extend_from_slice(&hash.0);
        value.extend_from_slice(&now.to_le_bytes());
        value.extend_from_slice(&expires.unwrap_or(0).to_le_bytes());
        value.extend_from_slice(bytes);
        let name = self.config.value_key(key);
        self.run(|c| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&name).arg(&value);
            if let Some(ms) = ttl_ms {
                cmd.arg("PX").arg(ms);
            }
            cmd.query::<()>(c)
        });
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
        let name = self.config.lock_key(key);
        let token = self.token();
        let ttl = self.config.lock_ttl.as_millis() as u64;
        let set: Option<Option<String>> = self.run(|c| {
            redis::cmd("SET")
                .arg(&name)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(ttl)
                .query(c)
        });
        match set {
            None => Attempt::Unavailable,
            Some(None) => Attempt::Held,
            Some(Some(_)) => Attempt::Acquired(RemoteLock::start(self.clone(), name, token)),
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
                    tracing::warn!(target: crate::diagnostics::REMOTE,
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
pub(crate) struct RemoteLock {
    remote: Arc<Remote>,
    name: String,
    token: String,
    stop: Option<mpsc::Sender<()>>,
    watchdog: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for RemoteLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteLock")
            .field("name", &self.name)
            .finish()
    }
}

impl RemoteLock {
    fn start(remote: Arc<Remote>, name: String, token: String) -> RemoteLock {
        let (stop, stopped) = mpsc::channel::<()>();
        let ttl = remote.config.lock_ttl;
        let (r, n, t) = (remote.clone(), name.clone(), token.clone());
        let watchdog = std::thread::Builder::new()
            .name("memo-cache-lock".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(ttl / 3) {
                    r.run(|c| {
                        redis::Script::new(EXTEND)
                            .key(&n)
                            .arg(&t)
                            .arg(ttl.as_millis() as u64)
                            .invoke::<i64>(c)
                    });
                }
            })
            .ok();
        RemoteLock {
            remote,
            name,
            token,
            stop: Some(stop),
            watchdog,
        }
    }
}

impl Drop for RemoteLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(watchdog) = self.watchdog.take() {
            let _ = watchdog.join();
        }
        let (name, token) = (&self.name, &self.token);
        self.remote.run(|c| {
            redis::Script::new(UNLOCK)
                .key(name)
                .arg(token)
                .invoke::<i64>(c)
        });
    }
}

/// What the Redis tier holds under this cache's prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteStats {
    /// The servers scanned (every master of a cluster).
    pub nodes: usize,
    /// Stored values.
    pub values: u64,
    /// Their bytes, headers included.
    pub bytes: u64,
    /// Compute locks held right now.
    pub locks: u64,
}

/// Every master of the tier: the one server, or the masters a cluster reports.
fn masters(config: &RemoteConfig) -> Result<Vec<String>> {
    if !config.is_cluster() {
        return Ok(config.urls.clone());
    }
    let mut last_error = None;
    for url in &config.urls {
        let single = RemoteConfig {
            urls: vec![url.clone()],
            ..config.clone()
        };
        let nodes: redis::RedisResult<String> = Conn::open(&single)
            .and_then(|mut c| redis::cmd("CLUSTER").arg("NODES").query(c.like()));
        match nodes {
            Ok(nodes) => {
                let scheme = if url.starts_with("rediss://") {
                    "rediss"
                } else {
                    "redis"
                };
                let auth = url
                    .find('@')
                    .map(|at| &url[url.find("://").map_or(0, |s| s + 3)..=at])
                    .unwrap_or("");
                return Ok(nodes
                    .lines()
                    .filter_map(|line| {
                        let fields: Vec<&str> = line.split_whitespace().collect();
                        let (address, flags) = (fields.get(1)?, fields.get(2)?);
                        (flags.contains("master")
                            && !flags.contains("fail")
                            && !flags.contains("noaddr"))
                        .then(|| {
                            format!(
                                "{scheme}://{auth}{}",
                                address.split('@').next().unwrap_or(address)
                            )
                        })
                    })
                    .collect());
            }
            Err(e) => {
                last_error = Some(Error::Remote {
                    url: redact(url),
                    source: e,
                })
            }
        }
    }
    Err(last_error.expect("a cluster config has URLs"))
}

/// Escapes glob characters so SCAN's MATCH takes the prefix literally.
fn glob_literal(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('*');
    out
}

/// Calls `visit` with the connection and each batch of keys under the prefix, node by node.
fn scan_prefix(
    config: &RemoteConfig,
    mut visit: impl FnMut(&mut dyn ConnectionLike, &[String]) -> redis::RedisResult<()>,
) -> Result<usize> {
    let pattern = glob_literal(&config.prefix);
    let nodes = masters(config)?;
    for url in &nodes {
        let single = RemoteConfig {
            urls: vec![url.clone()],
            ..config.clone()
        };
        let failed = |source| Error::Remote {
            url: redact(url),
            source,
        };
        let mut conn = Conn::open(&single).map_err(failed)?;
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(conn.like())
                .map_err(failed)?;
            if !keys.is_empty() {
                visit(conn.like(), &keys).map_err(failed)?;
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }
    Ok(nodes.len())
}

/// Counts what the tier holds under `config`'s prefix (SCAN, never KEYS).
pub fn remote_stats(config: &RemoteConfig) -> Result<RemoteStats> {
    let mut stats = RemoteStats::default();
    let values_prefix = format!("{}v:", config.prefix);
    let locks_prefix = format!("{}l:", config.prefix);
    stats.nodes = scan_prefix(config, |conn, keys| {
        let values: Vec<&String> = keys
            .iter()
            .filter(|k| k.starts_with(&values_prefix))
            .collect();
        stats.locks += keys.iter().filter(|k| k.starts_with(&locks_prefix)).count() as u64;
        let mut pipe = redis::pipe();
        for key in &values {
            pipe.cmd("STRLEN").arg(key.as_str());
        }
        let lengths: Vec<u64> = pipe.query(conn)?;
        stats.values += lengths.iter().filter(|&&n| n > 0).count() as u64;
        stats.bytes += lengths.iter().sum::<u64>();
        Ok(())
    })?;
    Ok(stats)
}

/// Removes every key under `config`'s prefix (SCAN and UNLINK, never FLUSHALL); returns how many.
pub fn remote_clear(config: &RemoteConfig) -> Result<u64> {
    let mut removed = 0u64;
    scan_prefix(config, |conn, keys| {
        let mut pipe = redis::pipe();
        for key in keys {
            // One key per command: in a cluster, keys of different slots cannot share one.
            pipe.cmd("UNLINK").arg(key.as_str());
        }
        let counts: Vec<u64> = pipe.query(conn)?;
        removed += counts.iter().sum::<u64>();
        Ok(())
    })?;
    Ok(removed)
}
