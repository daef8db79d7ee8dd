//! The settings of a shared tier, parsed from one URL whose scheme picks the tier
//! (`redis://`, `rediss://`, several of those for a Redis Cluster, `memcache://`,
//! `postgres://`). Compiled
//! whatever the features: a URL that names a tier this build lacks is still understood, so the
//! user can be told (see `remote::connect`).

use std::time::Duration;

use crate::error::{Error, Result};
use crate::key::Key;

/// The environment variable that enables a shared tier, its URL's scheme picking which:
/// `redis://` or `rediss://` (several, comma-separated, for a Redis Cluster), `memcache://`
/// (several, comma-separated, for keys spread over servers) or `postgres://` (`postgresql://`).
pub const REMOTE_URL_ENV: &str = "MEMO_CACHE_REMOTE_URL";
/// The environment variable that overrides the key prefix.
pub const REMOTE_PREFIX_ENV: &str = "MEMO_CACHE_REMOTE_PREFIX";
/// The older name of [`REMOTE_URL_ENV`], still read when that is not set.
pub const REDIS_URL_ENV: &str = "MEMO_CACHE_REDIS_URL";
/// The older name of [`REMOTE_PREFIX_ENV`], still read when that is not set.
pub const REDIS_PREFIX_ENV: &str = "MEMO_CACHE_REDIS_PREFIX";

/// Which shared tier a [`RemoteConfig`] names, by its URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TierKind {
    /// `redis://`, `rediss://`; several URLs make a Redis Cluster.
    Redis,
    /// `memcache://`; several URLs spread keys over the servers.
    Memcached,
    /// `postgres://`, `postgresql://`: one database.
    Postgres,
}

impl TierKind {
    /// The name of the tier in messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            TierKind::Redis => "Redis",
            TierKind::Memcached => "memcached",
            TierKind::Postgres => "PostgreSQL",
        }
    }

    /// The cargo feature that builds the tier.
    pub(crate) fn feature(self) -> &'static str {
        match self {
            TierKind::Redis => "redis",
            TierKind::Memcached => "memcached",
            TierKind::Postgres => "postgres",
        }
    }
}

/// Settings of the shared tier.
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
/// let memcached = RemoteConfig::new("memcache://10.0.0.1:11211,memcache://10.0.0.2").unwrap();
/// assert_eq!(memcached.tier(), "memcached");
/// let postgres = RemoteConfig::new("postgres://cache@db.internal:5432/results").unwrap();
/// assert_eq!(postgres.tier(), "PostgreSQL");
/// assert!(RemoteConfig::new("http://nope").is_err());
/// assert!(RemoteConfig::new("redis://a:1,memcache://b:2").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    pub(crate) kind: TierKind,
    pub(crate) urls: Vec<String>,
    pub(crate) prefix: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) max_value_bytes: usize,
    pub(crate) lock_ttl: Duration,
    pub(crate) wait_timeout: Duration,
    pub(crate) retry_after: Duration,
}

impl RemoteConfig {
    /// From `redis://host:port[/db]` or `rediss://...` (TLS), or several URLs separated by commas
    /// (a Redis Cluster: give some or all of its nodes); or `memcache://host[:port]` (port
    /// 11211 by default), several separated by commas to spread keys over the servers; or
    /// `postgres://user[:password]@host[:port]/db[?sslmode=require]` (also `postgresql://`), one
    /// database. The PostgreSQL tier's defaults differ where the server does: a command
    /// timeout of 2 s and values up to 256 MiB.
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
        let kind = if urls[0].starts_with("memcache://") {
            TierKind::Memcached
        } else if is_postgres_url(&urls[0]) {
            TierKind::Postgres
        } else {
            TierKind::Redis
        };
        if kind == TierKind::Postgres && urls.len() > 1 {
            return Err(Error::BadRemote {
                url: redact(spec),
                reason: "the PostgreSQL tier takes one URL (one database)".into(),
            });
        }
        for url in &urls {
            match kind {
                TierKind::Redis => check_redis_url(url)?,
                TierKind::Postgres => check_postgres_url(url)?,
                TierKind::Memcached => {
                    if memcached_address(url).is_none() {
                        return Err(Error::BadRemote {
                            url: url.clone(),
                            reason: "expected memcache://host[:port], the port a number from 1 \
                                     to 65535, an IPv6 address in brackets \
                                     (memcache://[::1]:11211); every URL of a list alike"
                                .into(),
                        });
                    }
                }
            }
        }
        let postgres = kind == TierKind::Postgres;
        Ok(RemoteConfig {
            kind,
            urls,
            prefix: "memo-cache:".into(),
            connect_timeout: Duration::from_millis(if postgres { 2000 } else { 500 }),
            // A PostgreSQL commit waits for its WAL to reach the disk.
            command_timeout: Duration::from_millis(if postgres { 2000 } else { 500 }),
            max_value_bytes: if postgres { 256 } else { 16 } * 1024 * 1024,
            lock_ttl: Duration::from_secs(30),
            wait_timeout: Duration::from_secs(300),
            retry_after: Duration::from_secs(1),
        })
    }

    /// From `MEMO_CACHE_REMOTE_URL` (and `MEMO_CACHE_REMOTE_PREFIX`), else from their older
    /// names `MEMO_CACHE_REDIS_URL` (and `MEMO_CACHE_REDIS_PREFIX`), if set and not empty.
    pub fn from_env() -> Result<Option<Self>> {
        let set = |name| std::env::var(name).ok().filter(|s| !s.trim().is_empty());
        let Some(spec) = set(REMOTE_URL_ENV).or_else(|| set(REDIS_URL_ENV)) else {
            return Ok(None);
        };
        let mut config = RemoteConfig::new(&spec)?;
        if let Some(prefix) = std::env::var(REMOTE_PREFIX_ENV)
            .ok()
            .or_else(|| std::env::var(REDIS_PREFIX_ENV).ok())
        {
            config.prefix = prefix;
        }
        Ok(Some(config))
    }

    /// The namespace of this cache's keys in the tier (default `memo-cache:`).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long to wait for a connection (default 500 ms; PostgreSQL: 2 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for one command's answer (default 500 ms; PostgreSQL: 2 s, plus the
    /// time a large value takes at 16 MiB/s).
    #[must_use]
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Values larger than this stay local-only (default 16 MiB; PostgreSQL: 256 MiB, at most
    /// 1 GiB less a little, bytea's limit).
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
        self.kind == TierKind::Redis && self.urls.len() > 1
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

    /// The largest value written to the tier.
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

    /// Which tier the URL names: `"Redis"`, `"memcached"` or `"PostgreSQL"`.
    #[must_use]
    pub fn tier(&self) -> &'static str {
        self.kind.name()
    }

    /// The tier's name in messages.
    pub(crate) fn tier_name(&self) -> &'static str {
        self.kind.name()
    }
}

fn check_redis_url(url: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::BadRemote {
            url: redact(url),
            reason: reason.into(),
        })
    };
    let Some(rest) = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
    else {
        return bad(
            "expected redis://host:port, rediss://host:port, memcache://host:port or \
             postgres://user@host:port/db",
        );
    };
    // With the client built in, its parser decides; without, a URL must at least name a host.
    #[cfg(feature = "redis")]
    let valid = {
        let _ = rest;
        ::redis::parse_redis_url(url).is_some()
    };
    #[cfg(not(feature = "redis"))]
    let valid = {
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        host.split(['/', ':', '?'])
            .next()
            .is_some_and(|h| !h.is_empty())
    };
    if !valid {
        return bad("not a valid URL");
    }
    Ok(())
}

/// True for a `postgres://` or `postgresql://` URL.
pub(crate) fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn check_postgres_url(url: &str) -> Result<()> {
    // With the client built in, its parser decides; without, a URL must at least name a host.
    #[cfg(feature = "postgres")]
    let checked = super::postgres::parse_url(url).map(|_| ());
    #[cfg(not(feature = "postgres"))]
    let checked = {
        let rest = url.split_once("://").map_or("", |(_, rest)| rest);
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        match host.split(['/', ':', '?']).next() {
            Some(h) if !h.is_empty() => Ok(()),
            _ => Err("expected postgres://user@host:port/db".to_owned()),
        }
    };
    checked.map_err(|reason| Error::BadRemote {
        url: redact(url),
        reason,
    })
}

/// `host:port` of a `memcache://host[:port]` URL (port 11211 when not given). `None` for a URL
/// no connection could use: no host, a port that is not a number from 1 to 65535, an IPv6
/// address without its brackets, anything after the port.
pub(crate) fn memcached_address(url: &str) -> Option<String> {
    let rest = url.strip_prefix("memcache://")?.trim_end_matches('/');
    if rest.is_empty() || rest.contains(['/', '@', '?', ',']) || rest.starts_with(':') {
        return None;
    }
    let (host, port) = match rest.strip_prefix('[') {
        Some(inner) => {
            let (host, after) = inner.split_once(']')?;
            let port = match after {
                "" => None,
                after => Some(after.strip_prefix(':')?),
            };
            (format!("[{host}]"), port)
        }
        None => match rest.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (rest.to_owned(), None),
        },
    };
    if host.is_empty() || host == "[]" || host.contains(char::is_whitespace) {
        return None;
    }
    let port: u16 = match port {
        None => 11211,
        Some(port) => port.parse().ok().filter(|&p| p != 0)?,
    };
    Some(format!("{host}:{port}"))
}

/// The longest key prefix the memcached tier takes: memcached's keys are at most 250 bytes, and
/// the longest name after the prefix (generation, chunk name, write id, index) takes about 115.
#[cfg_attr(not(feature = "memcached"), allow(dead_code))]
pub(crate) const MEMCACHED_PREFIX_MAX: usize = 128;

/// Why `prefix` cannot be a memcached key prefix, if it cannot. Memcached's keys hold no spaces
/// nor control characters: a key with one is refused, and memcached then reads the data of a
/// refused `ms` as commands, so such a prefix would turn cached values into commands.
#[cfg_attr(not(feature = "memcached"), allow(dead_code))]
pub(crate) fn memcached_prefix_problem(prefix: &str) -> Option<String> {
    if prefix.len() > MEMCACHED_PREFIX_MAX {
        return Some(format!(
            "the key prefix is {} bytes; memcached keys are at most 250 bytes, which leaves {} \
             for the prefix: set a shorter MEMO_CACHE_REMOTE_PREFIX",
            prefix.len(),
            MEMCACHED_PREFIX_MAX
        ));
    }
    if prefix.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Some(format!(
            "the key prefix {prefix:?} holds a space or a control character, which memcached \
             keys cannot: set a MEMO_CACHE_REMOTE_PREFIX without them"
        ));
    }
    None
}

/// `url` with any password hidden: the user information, and a `password=` parameter.
pub(crate) fn redact(url: &str) -> String {
    // Not a URL (a libpq `key=value` string given by mistake): hide any `password=` word.
    if !url.contains("://") {
        return url
            .split(' ')
            .map(|word| {
                if word.starts_with("password=") {
                    "password=***"
                } else {
                    word
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
    }
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    };
    match url.split_once('?') {
        Some((base, query)) if query.contains("password=") => {
            let query: Vec<&str> = query
                .split('&')
                .map(|p| {
                    if p.starts_with("password=") {
                        "password=***"
                    } else {
                        p
                    }
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        _ => url,
    }
}
