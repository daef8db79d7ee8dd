//! The Redis tier (feature `redis`): a single server, a Redis Cluster, or either over TLS.
//!
//! # Layout in Redis
//!
//! ```text
//! <prefix>v:<key hex>     the value in its envelope (see the `remote` module)
//! <prefix>l:<key hex>     the fleet-wide compute lock: a random token, with an expiry
//! ```
//!
//! The prefix (default `memo-cache:`) is a namespace, so several projects share one Redis; the
//! CLI's `remote stats` and `remote clear` touch only keys under it, found with SCAN.
//!
//! # Locking
//!
//! `SET <lock> <token> NX PX <ttl>` takes the lock; renewing and releasing are scripts that act
//! only while the lock still holds the caller's token.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ::redis::ConnectionLike;

use super::RemoteConfig;
use super::config::redact;
use super::{Backend, RemoteStats};
use crate::diagnostics::REMOTE;
use crate::error::{Error, Result};
use crate::key::Key;

/// A connection to a single server or a cluster.
enum Conn {
    Single(::redis::Connection),
    Cluster(Box<::redis::cluster::ClusterConnection>),
}

impl Conn {
    fn open(config: &RemoteConfig) -> ::redis::RedisResult<Conn> {
        if config.urls.iter().any(|u| u.starts_with("rediss://")) {
            install_crypto_provider();
        }
        if config.is_cluster() {
            let client = ::redis::cluster::ClusterClientBuilder::new(config.urls.clone())
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.command_timeout)
                .build()?;
            Ok(Conn::Cluster(Box::new(client.get_connection()?)))
        } else {
            let client = ::redis::Client::open(config.urls[0].as_str())?;
            let conn = client.get_connection_with_timeout(config.connect_timeout)?;
            conn.set_read_timeout(Some(config.command_timeout))?;
            conn.set_write_timeout(Some(config.command_timeout))?;
            Ok(Conn::Single(conn))
        }
    }

    fn like(&mut self) -> &mut dyn ConnectionLike {
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

/// The Redis tier of one cache handle.
pub(super) struct RedisBackend {
    config: RemoteConfig,
    conn: Mutex<Option<Conn>>,
    health: Mutex<Health>,
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

impl RedisBackend {
    pub(super) fn new(config: &RemoteConfig) -> RedisBackend {
        RedisBackend {
            config: config.clone(),
            conn: Mutex::new(None),
            health: Mutex::new(Health::default()),
        }
    }

    fn lock_key(&self, key: &Key) -> String {
        format!("{}l:{}", self.config.prefix, key.to_hex())
    }

    /// Runs `f` on the connection, connecting first if needed. `None` while the tier is down
    /// or when `f` fails; failures are reported once per outage.
    fn run<T>(
        &self,
        f: impl FnOnce(&mut dyn ConnectionLike) -> ::redis::RedisResult<T>,
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

    fn failed(&self, e: &::redis::RedisError) {
        let mut health = self.health.lock().expect("health lock");
        health.retry_at = Some(Instant::now() + self.config.retry_after);
        if !health.warned {
            health.warned = true;
            tracing::warn!(target: REMOTE,
                "memo-cache: Redis tier {} unavailable ({e}); continuing with the local cache only, retrying every {:?}",
                self.config.display_urls(),
                self.config.retry_after
            );
        } else {
            tracing::debug!(target: REMOTE, "memo-cache: Redis tier still unavailable: {e}");
        }
    }

    fn succeeded(&self) {
        let mut health = self.health.lock().expect("health lock");
        if health.warned {
            tracing::info!(target: REMOTE,
                "memo-cache: Redis tier {} is back",
                self.config.display_urls()
            );
        }
        *health = Health::default();
    }
}

impl Backend for RedisBackend {
    fn get(&self, key: &Key) -> Option<Option<Vec<u8>>> {
        let name = self.config.value_key(key);
        self.run(|c| ::redis::cmd("GET").arg(&name).query(c))
    }

    fn set(&self, key: &Key, value: &[u8], ttl: Option<Duration>) -> Option<()> {
        let name = self.config.value_key(key);
        self.run(|c| {
            let mut cmd = ::redis::cmd("SET");
            cmd.arg(&name).arg(value);
            if let Some(ttl) = ttl {
                cmd.arg("PX").arg(ttl.as_millis() as u64);
            }
            cmd.query::<()>(c)
        })
    }

    fn lock(&self, key: &Key, token: &str, ttl: Duration) -> Option<bool> {
        let name = self.lock_key(key);
        let set: Option<Option<String>> = self.run(|c| {
            ::redis::cmd("SET")
                .arg(&name)
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query(c)
        });
        set.map(|reply| reply.is_some())
    }

    fn renew(&self, key: &Key, token: &str, ttl: Duration) -> Option<bool> {
        let name = self.lock_key(key);
        self.run(|c| {
            ::redis::Script::new(EXTEND)
                .key(&name)
                .arg(token)
                .arg(ttl.as_millis() as u64)
                .invoke::<i64>(c)
        })
        .map(|n| n > 0)
    }

    fn unlock(&self, key: &Key, token: &str) -> Option<bool> {
        let name = self.lock_key(key);
        self.run(|c| {
            ::redis::Script::new(UNLOCK)
                .key(&name)
                .arg(token)
                .invoke::<i64>(c)
        })
        .map(|n| n > 0)
    }

    fn item_name(&self, key: &Key) -> String {
        self.config.value_key(key)
    }
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
        let nodes: ::redis::RedisResult<String> = Conn::open(&single)
            .and_then(|mut c| ::redis::cmd("CLUSTER").arg("NODES").query(c.like()));
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
    mut visit: impl FnMut(&mut dyn ConnectionLike, &[String]) -> ::redis::RedisResult<()>,
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
            let (next, keys): (u64, Vec<String>) = ::redis::cmd("SCAN")
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
pub(super) fn stats(config: &RemoteConfig) -> Result<RemoteStats> {
    let mut stats = RemoteStats::default();
    let values_prefix = format!("{}v:", config.prefix);
    let locks_prefix = format!("{}l:", config.prefix);
    stats.nodes = scan_prefix(config, |conn, keys| {
        let values: Vec<&String> = keys
            .iter()
            .filter(|k| k.starts_with(&values_prefix))
            .collect();
        stats.locks += keys.iter().filter(|k| k.starts_with(&locks_prefix)).count() as u64;
        let mut pipe = ::redis::pipe();
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
pub(super) fn clear(config: &RemoteConfig) -> Result<u64> {
    let mut removed = 0u64;
    scan_prefix(config, |conn, keys| {
        let mut pipe = ::redis::pipe();
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
