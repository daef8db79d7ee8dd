//! The memcached tier (feature `memcached`): one server or several, keys spread over them by
//! consistent hashing.
//!
//! # The client
//!
//! A small client of memcached's meta protocol (memcached 1.6 and later), of our own, over one
//! blocking `TcpStream` per server with bounded connect, read and write timeouts. The Rust
//! clients looked at do not fit: the `memcache` crate (text and binary protocols) has `add`,
//! `touch` and `cas` but no compare-and-delete, so a lock could only be released by a holder
//! that might delete someone else's lock; `async-memcached` is async-only, which would drag a
//! runtime into every synchronous call. The meta protocol gives everything the tier needs in
//! four commands: `mg` (get, with the item's CAS value), `ms` (set, and add with `ME`, and a
//! compare-and-set with `C`), `md` with `C` (delete only if unchanged since read) and `ma`
//! (increment, for the namespace generation).
//!
//! # Layout in memcached
//!
//! ```text
//! <prefix>ns                  on each server, its namespace generation: a number, part of
//!                             every name below on that server
//! <prefix><gen>:v:<key hex>   the value in its envelope (see the `remote` module), or a manifest
//! <prefix><gen>:c:<key hex>:<write id>:<i>   chunk i of a value over the item limit
//! <prefix><gen>:l:<key hex>   the fleet-wide compute lock: a random token, with an expiry
//! ```
//!
//! An item is placed by its name without the generation, on the server the ring picks, and
//! named with that server's generation. Memcached cannot list keys, so `memo-cache remote clear`
//! increments every server's generation: every name from then on is new, and the old items age
//! out by memcached's LRU. Each server keeping its own generation means a server that is down
//! takes only its own keys away, never the whole namespace. A generation item that memcached
//! evicted is made again from the clock (milliseconds since the epoch), never from 0, so an
//! eviction cannot bring an old generation back. A process reads a server's generation at most
//! once a second: a clear reaches running processes within a second. A clear while a server is
//! down fails naming it (the others are cleared): that server's old values would come back with
//! it.
//!
//! # Large values: chunks under a manifest
//!
//! Memcached refuses items over its item size limit (1 MiB by default). A value whose envelope
//! is larger than [`CHUNK`] is stored as chunks of at most [`CHUNK`] bytes, written first, then
//! a manifest under the value's key naming them (`"MCK"` ‖ write id ‖ chunk count ‖ total
//! length). A reader fetches the manifest, then the chunks, and checks the whole envelope's
//! blake3 as for any value: a chunk lost to eviction, or one of another writer's, makes a miss,
//! never a wrong value. Chunks spread over the servers like any key. Values over
//! [`RemoteConfig::max_value_bytes`] (16 MiB by default) stay local-only, counted by
//! `memo-cache stats`.
//!
//! # Expirations
//!
//! A ttl becomes an expiration in whole seconds, rounded up. Memcached reads an expiration over
//! 30 days as an absolute Unix time, so a longer ttl is sent as one.
//!
//! # Several servers
//!
//! Keys are placed on a ring of 160 points per server (ketama's shape, with blake3 for its MD5),
//! so adding or removing a server moves about 1/n of the keys. A server that fails is left alone
//! for [`RemoteConfig::retry_after`]: its keys are local-only meanwhile, with one warning per
//! outage and one line when it is back.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{
    Backend, RemoteConfig, RemoteStats, ServerStats, memcached_address as address, redact,
};
use crate::diagnostics::REMOTE;
use crate::error::{Error, Result};
use crate::key::{Digest, Key};

/// The largest item this tier writes: under memcached's default limit of 1 MiB, with room for
/// the item's own header.
pub(crate) const CHUNK: usize = 1024 * 1024 - 4096;
/// Points per server on the hash ring.
const POINTS: usize = 160;
/// Expirations over this many seconds are absolute Unix times to memcached.
const RELATIVE_LIMIT: u64 = 30 * 24 * 3600;
/// How long a read namespace generation is used before it is read again.
const GENERATION_TTL: Duration = Duration::from_secs(1);
const MANIFEST: &[u8; 3] = b"MCK";

/// One memcached server: its address, connection and health.
struct Server {
    url: String,
    addr: String,
    conn: Mutex<Option<Conn>>,
    health: Mutex<Health>,
    /// This server's namespace generation and when it was read.
    generation: Mutex<Option<(u64, Instant)>>,
}

#[derive(Default)]
struct Health {
    retry_at: Option<Instant>,
    warned: bool,
}

struct Conn {
    reader: BufReader<Timed>,
    timeout: Duration,
}

/// A connection's stream, with the deadline of the command under way. The socket's own timeouts
/// bound each read and write; a server that sends a byte now and then (or reads one) meets every
/// one of them, so each read and write also checks the command's deadline.
struct Timed {
    stream: TcpStream,
    deadline: Instant,
}

impl Timed {
    fn check(&self) -> std::io::Result<()> {
        if Instant::now() >= self.deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the command took longer than its timeout",
            ));
        }
        Ok(())
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.check()?;
        self.stream.read(buf)
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.check()?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

/// The longest reply line read: a server's line past it is a protocol error, not a buffer that
/// grows as long as the server sends.
const MAX_LINE: u64 = 8192;
/// The most lines a `stats` reply may have.
const MAX_STATS: usize = 4096;

/// What went wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error("{}", io_words(.0))]
    Io(#[from] std::io::Error),
    #[error("unexpected reply {0:?}")]
    Protocol(String),
    /// The server refused a command with `SERVER_ERROR` (an item over its size limit, out of
    /// memory) and skipped its data: the connection is still in step and the server up.
    #[error("the server refused: {0}")]
    Refused(String),
}

type Reply<T> = std::result::Result<T, Failure>;

/// An I/O error in words: a socket's timeout shows on Linux as "Resource temporarily
/// unavailable (os error 11)", which says nothing of a server that did not answer.
fn io_words(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            "no answer within the timeout (the server is hung, overloaded or unreachable)".into()
        }
        _ => e.to_string(),
    }
}

impl Conn {
    fn open(addr: &str, config: &RemoteConfig) -> Reply<Conn> {
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
        let mut last = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, config.connect_timeout) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(config.command_timeout))?;
                    stream.set_write_timeout(Some(config.command_timeout))?;
                    stream.set_nodelay(true)?;
                    return Ok(Conn {
                        reader: BufReader::new(Timed {
                            stream,
                            deadline: Instant::now() + config.command_timeout,
                        }),
                        timeout: config.command_timeout,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| std::io::Error::other("the address resolves to nothing"))
            .into())
    }

    fn send(&mut self, parts: &[&[u8]]) -> Reply<()> {
        let stream = self.reader.get_mut();
        // One deadline per command, its reply included; a value's bytes add their own time
        // (see `data`).
        stream.deadline = Instant::now() + self.timeout;
        let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        parts.iter().for_each(|p| out.extend_from_slice(p));
        stream.write_all(&out)?;
        Ok(())
    }

    fn line(&mut self) -> Reply<String> {
        let mut line = Vec::new();
        if (&mut self.reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)?
            == 0
        {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        let line = String::from_utf8_lossy(&line);
        let Some(line) = line.strip_suffix("\r\n") else {
            return Err(Failure::Protocol(line.chars().take(80).collect()));
        };
        Ok(line.to_owned())
    }

    /// A value of `len` bytes and its `\r\n`.
    fn data(&mut self, len: usize) -> Reply<Vec<u8>> {
        // Its bytes may take a microsecond each (1 MB/s) past the command's timeout.
        self.reader.get_mut().deadline += Duration::from_micros(len as u64);
        let mut data = vec![0; len + 2];
        self.reader.read_exact(&mut data)?;
        if &data[len..] != b"\r\n" {
            return Err(Failure::Protocol("value not followed by CRLF".into()));
        }
        data.truncate(len);
        Ok(data)
    }

    /// `mg <key> v c`: the value and its CAS, if the item exists.
    fn get(&mut self, key: &str, max: usize) -> Reply<Option<(Vec<u8>, u64)>> {
        self.send(&[b"mg ", key.as_bytes(), b" v c\r\n"])?;
        let line = self.line()?;
        if line == "EN" {
            return Ok(None);
        }
        let mut words = line.split(' ');
        let (Some("VA"), Some(len)) = (words.next(), words.next()) else {
            return Err(Failure::Protocol(line));
        };
        let len: usize = len.parse().map_err(|_| Failure::Protocol(line.clone()))?;
        if len > max {
            return Err(Failure::Protocol(format!("a {len} byte item")));
        }
        let cas = words
            .find_map(|w| w.strip_prefix('c'))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| Failure::Protocol(line.clone()))?;
        Ok(Some((self.data(len)?, cas)))
    }

    /// `ms`: stores `value`; `mode` adds flags (`ME` add, `C<cas>` compare-and-set). True when
    /// stored.
    fn set(&mut self, key: &str, value: &[u8], exptime: u64, mode: &str) -> Reply<bool> {
        let head = format!("ms {key} {} T{exptime} {mode}\r\n", value.len());
        self.send(&[head.as_bytes(), value, b"\r\n"])?;
        match self.line()?.as_str() {
            "HD" => Ok(true),
            "NS" | "EX" | "NF" => Ok(false),
            other if other.starts_with("SERVER_ERROR") => Err(Failure::Refused(other.into())),
            other => Err(Failure::Protocol(other.into())),
        }
    }

    /// `md <key> C<cas>`: deletes the item if unchanged since its CAS was read.
    fn delete_if(&mut self, key: &str, cas: u64) -> Reply<bool> {
        let head = format!("md {key} C{cas}\r\n");
        self.send(&[head.as_bytes()])?;
        match self.line()?.as_str() {
            "HD" => Ok(true),
            "EX" | "NF" => Ok(false),
            other => Err(Failure::Protocol(other.into())),
        }
    }

    /// `ma <key> N0 J<initial>`: increments the number in `key`, made as `initial` when missing.
    fn increment(&mut self, key: &str, initial: u64) -> Reply<u64> {
        let head = format!("ma {key} N0 J{initial} v\r\n");
        self.send(&[head.as_bytes()])?;
        let line = self.line()?;
        let Some(len) = line.strip_prefix("VA ") else {
            return Err(Failure::Protocol(line));
        };
        let len: usize = len
            .split(' ')
            .next()
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| Failure::Protocol(line.clone()))?;
        let data = self.data(len)?;
        std::str::from_utf8(&data)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| Failure::Protocol("not a number".into()))
    }

    /// `stats` (or `stats <group>`): the server's statistics.
    fn stats(&mut self, group: &str) -> Reply<Vec<(String, String)>> {
        let head = if group.is_empty() {
            "stats\r\n".to_owned()
        } else {
            format!("stats {group}\r\n")
        };
        self.send(&[head.as_bytes()])?;
        let mut out = Vec::new();
        loop {
            let line = self.line()?;
            if line == "END" {
                return Ok(out);
            }
            if out.len() >= MAX_STATS {
                return Err(Failure::Protocol(format!(
                    "over {MAX_STATS} lines of stats"
                )));
            }
            let mut words = line.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("STAT"), Some(name), Some(value)) => out.push((name.into(), value.into())),
                _ => return Err(Failure::Protocol(line)),
            }
        }
    }
}

impl Server {
    /// Runs `f` on this server's connection, connecting first if needed. `None` while the
    /// server is down or when `f` fails; failures are reported once per outage.
    fn run<T>(&self, config: &RemoteConfig, f: impl FnOnce(&mut Conn) -> Reply<T>) -> Option<T> {
        if let Some(at) = self.health.lock().expect("health lock").retry_at
            && Instant::now() < at
        {
            return None;
        }
        let mut slot = self.conn.lock().expect("connection lock");
        // Another thread may have found the server down while this one waited for the
        // connection: waiting in line for a hung server would cost each caller a timeout.
        if let Some(at) = self.health.lock().expect("health lock").retry_at
            && Instant::now() < at
        {
            return None;
        }
        if slot.is_none() {
            match Conn::open(&self.addr, config) {
                Ok(conn) => *slot = Some(conn),
                Err(e) => {
                    drop(slot);
                    self.failed(config, &e);
                    return None;
                }
            }
        }
        let conn = slot.as_mut().expect("connected above");
        match f(conn) {
            Ok(value) => {
                drop(slot);
                self.succeeded();
                Some(value)
            }
            Err(Failure::Refused(reply)) => {
                // In step and up: only this command failed.
                drop(slot);
                tracing::debug!(target: REMOTE, "memo-cache: memcached server {} refused: {reply}", redact(&self.url));
                None
            }
            Err(e) => {
                // The stream's place in the protocol is unknown after a failure: start afresh.
                *slot = None;
                drop(slot);
                self.failed(config, &e);
                None
            }
        }
    }

    fn failed(&self, config: &RemoteConfig, e: &Failure) {
        let mut health = self.health.lock().expect("health lock");
        health.retry_at = Some(Instant::now() + config.retry_after);
        if !health.warned {
            health.warned = true;
            tracing::warn!(target: REMOTE,
                "memo-cache: memcached server {} unavailable ({e}); its keys stay local-only, retrying every {:?}",
                redact(&self.url),
                config.retry_after
            );
        } else {
            tracing::debug!(target: REMOTE, "memo-cache: memcached server {} still unavailable: {e}", redact(&self.url));
        }
    }

    fn succeeded(&self) {
        let mut health = self.health.lock().expect("health lock");
        if health.warned {
            tracing::info!(target: REMOTE, "memo-cache: memcached server {} is back", redact(&self.url));
        }
        *health = Health::default();
    }
}

/// The servers and the ring placing keys on them.
pub(super) struct MemcachedBackend {
    config: RemoteConfig,
    servers: Vec<Server>,
    /// (point, server index), sorted by point.
    ring: Vec<(u32, usize)>,
    writes: AtomicU64,
}

impl MemcachedBackend {
    pub(super) fn new(config: &RemoteConfig) -> MemcachedBackend {
        let servers: Vec<Server> = config
            .urls
            .iter()
            .map(|url| Server {
                url: url.clone(),
                addr: address(url).unwrap_or_default(),
                conn: Mutex::new(None),
                health: Mutex::new(Health::default()),
                generation: Mutex::new(None),
            })
            .collect();
        let ring = ring(&servers.iter().map(|s| s.addr.as_str()).collect::<Vec<_>>());
        MemcachedBackend {
            config: config.clone(),
            servers,
            ring,
            writes: AtomicU64::new(0),
        }
    }

    /// The server an item is placed on, by its name without generation (`v:<key hex>`), and
    /// its full name there. `None` while that server is unavailable.
    fn item(&self, base: &str) -> Option<(&Server, String)> {
        let server = &self.servers[place(&self.ring, base)];
        let generation = self.generation(server)?;
        Some((server, format!("{}{generation}:{base}", self.config.prefix)))
    }

    fn name(kind: &str, key: &Key) -> String {
        format!("{kind}:{}", key.to_hex())
    }

    /// `server`'s namespace generation, read at most once a second.
    fn generation(&self, server: &Server) -> Option<u64> {
        let mut cached = server.generation.lock().expect("generation lock");
        if let Some((generation, at)) = *cached
            && at.elapsed() < GENERATION_TTL
        {
            return Some(generation);
        }
        let name = generation_key(&self.config);
        let generation = server
            .run(&self.config, |c| generation_on(c, &name))
            .flatten()?;
        *cached = Some((generation, Instant::now()));
        Some(generation)
    }

    /// Runs `f` with the full name of the item `base` on its server.
    fn on<T>(&self, base: &str, f: impl FnOnce(&mut Conn, &str) -> Reply<T>) -> Option<T> {
        let (server, name) = self.item(base)?;
        server.run(&self.config, |c| f(c, &name))
    }

    fn max_item(&self) -> usize {
        self.config.max_value_bytes.max(CHUNK) + 1024
    }
}

/// The generation item's name.
fn generation_key(config: &RemoteConfig) -> String {
    format!("{}ns", config.prefix)
}

/// Reads the generation on the server holding it, making it from the clock when missing.
fn generation_on(conn: &mut Conn, name: &str) -> Reply<Option<u64>> {
    let parse = |value: &[u8]| std::str::from_utf8(value).ok()?.trim().parse().ok();
    if let Some((value, _)) = conn.get(name, 64)? {
        // Not a number: written by something else. Nothing on this server can be named until
        // it is gone; say so (as a failure, reported once per outage) rather than go quiet.
        return match parse(&value) {
            Some(generation) => Ok(Some(generation)),
            None => Err(Failure::Protocol(format!(
                "the namespace generation item {name} holds {:?}, not a number (not memo-cache's): \
                 delete it",
                String::from_utf8_lossy(&value[..value.len().min(40)])
            ))),
        };
    }
    let now = crate::clock::system_time_ms(std::time::SystemTime::now()).max(1) as u64;
    // `add`: of two processes making it at once, one wins and both read its number.
    conn.set(name, now.to_string().as_bytes(), 0, "ME")?;
    Ok(conn.get(name, 64)?.and_then(|(value, _)| parse(&value)))
}

/// The ring of `servers`: [`POINTS`] points each.
fn ring(servers: &[&str]) -> Vec<(u32, usize)> {
    let mut ring = Vec::with_capacity(servers.len() * POINTS);
    for (index, server) in servers.iter().enumerate() {
        for point in 0..POINTS / 4 {
            let digest = Digest::of(format!("{server}-{point}").as_bytes());
            for i in 0..4 {
                let bytes: [u8; 4] = digest.0[i * 4..i * 4 + 4].try_into().expect("4 bytes");
                ring.push((u32::from_le_bytes(bytes), index));
            }
        }
    }
    ring.sort_unstable();
    ring
}

/// The index of the server on `ring` that holds `name`: the first point at or after its hash.
fn place(ring: &[(u32, usize)], name: &str) -> usize {
    if ring.len() <= POINTS {
        return 0;
    }
    let digest = Digest::of(name.as_bytes());
    let point = u32::from_le_bytes(digest.0[..4].try_into().expect("4 bytes"));
    let at = ring.partition_point(|(p, _)| *p < point);
    ring[at % ring.len()].1
}

/// Expiration of a ttl, in memcached's terms: seconds (rounded up), or past 30 days an absolute
/// Unix time. 0: none.
fn expiration(ttl: Option<Duration>) -> u64 {
    let Some(ttl) = ttl else { return 0 };
    let seconds = ttl.as_millis().div_ceil(1000).max(1) as u64;
    if seconds <= RELATIVE_LIMIT {
        return seconds;
    }
    let now = crate::clock::system_time_ms(std::time::SystemTime::now()).max(0) as u64 / 1000;
    let at = now.saturating_add(seconds);
    // Memcached reads an expiration as a 32-bit number: past January 2038 it would wrap into
    // the past and the item be stored already expired. Such an item is kept without one; the
    // envelope's expiry still applies when it is read.
    if at > i32::MAX as u64 { 0 } else { at }
}

impl Backend for MemcachedBackend {
    fn get(&self, key: &Key) -> Option<Option<Vec<u8>>> {
        let max = self.max_item();
        let Some((value, _)) = self.on(&Self::name("v", key), |c, name| c.get(name, max))? else {
            return Some(None);
        };
        if value.len() < 3 || &value[..3] != MANIFEST {
            return Some(Some(value));
        }
        // A manifest: write id (16 hex), count, total length.
        let text = std::str::from_utf8(&value[3..]).ok();
        let fields: Vec<&str> = text.map(|t| t.split(' ').collect()).unwrap_or_default();
        let (Some(id), Some(count), Some(total)) = (
            // A write id is 16 hex digits; anything else would go into the chunks' names
            // (a CRLF in it, into the stream as a command).
            fields
                .first()
                .filter(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())),
            fields.get(1).and_then(|n| n.parse::<usize>().ok()),
            fields.get(2).and_then(|n| n.parse::<usize>().ok()),
        ) else {
            return Some(Some(value));
        };
        if total > self.config.max_value_bytes + 1024 {
            // A writer allowed more than this process: a value this one does not take, not a
            // foreign one (which would be warned of on every call).
            tracing::debug!(target: REMOTE,
                "memo-cache: a memcached value of {total} bytes, over this process's max_value_bytes: a miss"
            );
            return Some(None);
        }
        if count > total / CHUNK + 1 {
            return Some(Some(value));
        }
        let mut whole = Vec::with_capacity(total);
        for i in 0..count {
            let chunk = format!("{}:{id}:{i}", Self::name("c", key));
            match self.on(&chunk, |c, name| c.get(name, CHUNK))? {
                Some((bytes, _)) => whole.extend_from_slice(&bytes),
                // Evicted, or never finished: a miss.
                None => return Some(None),
            }
        }
        Some(Some(whole))
    }

    fn set(&self, key: &Key, value: &[u8], ttl: Option<Duration>) -> Option<()> {
        let exptime = expiration(ttl);
        let base = Self::name("v", key);
        if value.len() <= CHUNK {
            self.on(&base, |c, name| c.set(name, value, exptime, ""))?;
            return Some(());
        }
        let seed = format!(
            "{}-{}-{:?}",
            std::process::id(),
            self.writes.fetch_add(1, Ordering::Relaxed),
            Instant::now()
        );
        let id = &Digest::of(seed.as_bytes()).to_hex()[..16];
        let mut count = 0;
        for (i, piece) in value.chunks(CHUNK).enumerate() {
            let chunk = format!("{}:{id}:{i}", Self::name("c", key));
            if !self.on(&chunk, |c, name| c.set(name, piece, exptime, ""))? {
                return None;
            }
            count += 1;
        }
        let manifest = format!("MCK{id} {count} {}", value.len());
        self.on(&base, |c, name| {
            c.set(name, manifest.as_bytes(), exptime, "")
        })?;
        Some(())
    }

    fn lock(&self, key: &Key, token: &str, ttl: Duration) -> Option<bool> {
        let exptime = expiration(Some(ttl));
        self.on(&Self::name("l", key), |c, name| {
            c.set(name, token.as_bytes(), exptime, "ME")
        })
    }

    fn renew(&self, key: &Key, token: &str, ttl: Duration) -> Option<bool> {
        let exptime = expiration(Some(ttl));
        self.on(&Self::name("l", key), |c, name| match c.get(name, 256)? {
            Some((held, cas)) if held == token.as_bytes() => {
                c.set(name, token.as_bytes(), exptime, &format!("C{cas}"))
            }
            _ => Ok(false),
        })
    }

    fn unlock(&self, key: &Key, token: &str) -> Option<bool> {
        self.on(&Self::name("l", key), |c, name| match c.get(name, 256)? {
            Some((held, cas)) if held == token.as_bytes() => c.delete_if(name, cas),
            _ => Ok(false),
        })
    }

    fn item_name(&self, key: &Key) -> String {
        let base = Self::name("v", key);
        self.item(&base).map_or_else(
            || format!("{}?:{base}", self.config.prefix),
            |(_, name)| name,
        )
    }
}

/// A one-off connection to every server, for the CLI: each server's address and `f`'s answer.
fn each_server<T>(
    config: &RemoteConfig,
    mut f: impl FnMut(&mut Conn) -> Reply<T>,
) -> Result<Vec<(String, T)>> {
    let mut out = Vec::new();
    for url in &config.urls {
        let addr = address(url).unwrap_or_default();
        let answer = Conn::open(&addr, config).and_then(|mut conn| f(&mut conn));
        match answer {
            Ok(answer) => out.push((redact(url), answer)),
            Err(e) => {
                return Err(Error::RemoteServer {
                    url: redact(url),
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// What memcached can tell: its servers' item and byte counts, and this prefix's generation.
pub(super) fn stats(config: &RemoteConfig) -> Result<RemoteStats> {
    let answers = each_server(config, |conn| conn.stats(""))?;
    let mut stats = RemoteStats {
        nodes: answers.len(),
        ..RemoteStats::default()
    };
    for (url, answer) in answers {
        let number = |name: &str| {
            answer
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        stats.values += number("curr_items");
        stats.bytes += number("bytes");
        stats.servers.push(ServerStats {
            url,
            items: number("curr_items"),
            bytes: number("bytes"),
            limit_bytes: number("limit_maxbytes"),
            hits: number("get_hits"),
            misses: number("get_misses"),
            evictions: number("evictions"),
            generation: None,
        });
    }
    let name = generation_key(config);
    let generations = each_server(config, |conn| generation_on(conn, &name))?;
    stats.generation = generations.first().and_then(|(_, g)| *g);
    for (server, (_, generation)) in stats.servers.iter_mut().zip(generations) {
        server.generation = generation;
    }
    Ok(stats)
}

/// Moves `config`'s namespace to a new generation on every server: every value stored before is
/// unreachable (memcached ages the items out). Returns the first server's new generation; a
/// server that cannot be reached fails the clear, naming it, after the others are cleared.
pub(super) fn clear(config: &RemoteConfig) -> Result<u64> {
    let name = generation_key(config);
    let now = crate::clock::system_time_ms(std::time::SystemTime::now()).max(1) as u64;
    let mut first = None;
    let mut failed = None;
    for url in &config.urls {
        let single = RemoteConfig {
            urls: vec![url.clone()],
            ..config.clone()
        };
        match each_server(&single, |conn| conn.increment(&name, now)) {
            Ok(answers) => {
                first = first.or(answers.first().map(|(_, g)| *g));
            }
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    if let Some(Error::RemoteServer { message, .. }) = &mut failed
        && config.urls.len() > 1
    {
        message.push_str(
            "; the servers that answered were cleared: run the clear again once this one is \
             back, or its old values return with it",
        );
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(first.unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expirations_past_30_days_are_absolute() {
        assert_eq!(expiration(None), 0);
        assert_eq!(expiration(Some(Duration::from_millis(1))), 1);
        assert_eq!(expiration(Some(Duration::from_millis(1500))), 2);
        assert_eq!(
            expiration(Some(Duration::from_secs(RELATIVE_LIMIT))),
            RELATIVE_LIMIT
        );
        let long = expiration(Some(Duration::from_secs(RELATIVE_LIMIT + 1)));
        assert!(long > 1_700_000_000, "an absolute time: {long}");
        // Past 2038 memcached's 32-bit expiration would wrap into the past: none instead.
        assert_eq!(
            expiration(Some(Duration::from_secs(20 * 365 * 24 * 3600))),
            0
        );
        assert_eq!(expiration(Some(Duration::MAX)), 0);
    }

    #[test]
    fn adding_a_server_moves_about_a_third_of_the_keys_from_two() {
        let two = ring(&["a:1", "b:1"]);
        let three = ring(&["a:1", "b:1", "c:1"]);
        let names: Vec<String> = (0..3000).map(|i| format!("k{i}")).collect();
        let moved = names
            .iter()
            .filter(|n| place(&two, n) != place(&three, n))
            .count();
        // Only the keys the new server takes move: about a third.
        assert!((700..1300).contains(&moved), "{moved} of 3000 moved");
        for n in &names {
            let (before, after) = (place(&two, n), place(&three, n));
            assert!(
                before == after || after == 2,
                "{n} moved between old servers"
            );
        }
        let on_each =
            |ring: &[(u32, usize)], s| names.iter().filter(|n| place(ring, n) == s).count();
        for s in 0..3 {
            assert!(
                (700..1300).contains(&on_each(&three, s)),
                "server {s}: {}",
                on_each(&three, s)
            );
        }
    }
}
