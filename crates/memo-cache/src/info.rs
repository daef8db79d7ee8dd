//! Looking inside a cache: statistics, functions and entry metadata. The CLI is built on these.

use std::ops::ControlFlow;
use std::time::{Duration, SystemTime};

use rusqlite::{OptionalExtension, params};

use crate::cache::{Cache, ms_to_time};
use crate::error::{Error, Result};
use crate::key::{Digest, Key, hex_value};

/// Totals over a whole cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Entries stored.
    pub entries: u64,
    /// Stored value bytes (inline and in blobs).
    pub bytes: u64,
    /// Of those, bytes held in blob files.
    pub blob_bytes: u64,
    /// Bytes of the index files (database, WAL, shared memory).
    pub index_bytes: u64,
    /// Of those, the WAL's: commits not yet copied back into the database file, up to a bound
    /// (a sixteenth of the space free, 64 KiB to 4 MiB) past which it is cut back. Entries
    /// removed free their pages in the database file, which a large prune or a clear gives
    /// back to the file system.
    pub wal_bytes: u64,
    /// What the cache takes on disk: index files plus blob files.
    pub disk_bytes: u64,
    /// Distinct function names.
    pub functions: u64,
    /// Entries of function versions that are no longer current.
    pub stale: u64,
    /// Their bytes.
    pub stale_bytes: u64,
    /// Entries past their expiry.
    pub expired: u64,
    /// Their bytes.
    pub expired_bytes: u64,
    /// Hits over the entries held now (as of the last flush of hit statistics).
    pub hits: u64,
    /// Compute time those hits saved: each entry's hits times its compute time.
    pub saved: Duration,
    /// Compute time the entries held now took, summed.
    pub compute_time: Duration,
    /// With a Redis tier: entries too large for it, kept in the local directory only.
    pub local_only: Option<u64>,
    /// Their bytes.
    pub local_only_bytes: Option<u64>,
}

/// One function name's share of a cache, all its versions together.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FunctionStats {
    /// The function's stable name.
    pub name: String,
    /// Entries of every version.
    pub entries: u64,
    /// Their stored bytes.
    pub bytes: u64,
    /// Entries of versions that are no longer current.
    pub stale_entries: u64,
    /// Their stored bytes.
    pub stale_bytes: u64,
    /// The latest use of any of its entries.
    pub last_used: Option<SystemTime>,
    /// The current version's fingerprint.
    pub fingerprint: Option<String>,
    /// The current version's return type.
    pub return_type: Option<String>,
    /// Hits over its entries held now.
    pub hits: u64,
    /// Compute time its entries took, summed (zero for entries stored with `put`).
    pub compute_time: Duration,
    /// Compute time its hits saved: each entry's hits times its compute time.
    pub saved: Duration,
}

impl FunctionStats {
    /// Compute time saved per MiB held: what a byte of this function's entries is worth.
    pub fn saved_per_mib(&self) -> Duration {
        saved_per_mib(self.saved, self.bytes)
    }
}

/// `saved` per MiB of `bytes` (zero for no bytes).
pub(crate) fn saved_per_mib(saved: Duration, bytes: u64) -> Duration {
    if bytes == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(saved.as_secs_f64() * (1024.0 * 1024.0) / bytes as f64)
}

/// One entry's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryInfo {
    /// The key.
    pub key: Key,
    /// The function's stable name.
    pub function: String,
    /// The fingerprint of the version that stored it.
    pub fingerprint: String,
    /// The return type of that version.
    pub return_type: String,
    /// True when that version is no longer current: the entry will never be served.
    pub stale: bool,
    /// Stored bytes.
    pub bytes: u64,
    /// True when the value is in a blob file rather than inline.
    pub in_blob: bool,
    /// The hash of the stored bytes.
    pub hash: Digest,
    /// When it was stored.
    pub created: SystemTime,
    /// When it was last read (as of the last flush of hit statistics).
    pub last_used: SystemTime,
    /// How often it was read.
    pub hits: u64,
    /// When it expires, if it does.
    pub expires: Option<SystemTime>,
    /// How long computing the value took, as the cache measured it; zero when unknown (stored
    /// with [`Cache::put`], fetched from a shared tier, or written by a memo-cache before 0.2).
    pub compute_time: Duration,
    /// The canonical encoding of the arguments (MessagePack, see `KEY_FORMAT_VERSION`), when
    /// at most 1 KiB; a record for people, never used to find the entry.
    pub args: Option<Vec<u8>>,
    /// The length of that encoding, when recorded (also when the bytes were too long to keep).
    pub args_size: Option<u64>,
    /// True when the value is stored zstd-compressed.
    pub compressed: bool,
}

impl EntryInfo {
    /// True when the entry has expired at `now`.
    #[must_use]
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }
}

/// The columns [`entry_info`] reads, from an index with the schema version 3 columns or without.
fn entry_columns(costs: bool) -> &'static str {
    if costs {
        "e.key, f.name, f.fingerprint, f.return_type, f.current, e.size, e.value IS NULL,
        e.hash, e.created, e.last_used, e.hits, e.expires, e.compute_us, e.args, e.args_size,
        e.encoding"
    } else {
        "e.key, f.name, f.fingerprint, f.return_type, f.current, e.size, e.value IS NULL,
        e.hash, e.created, e.last_used, e.hits, e.expires, 0, NULL, NULL, 0"
    }
}

/// Hits, compute time and time saved, summed over `functions` rows (zero without the columns).
fn cost_sums(costs: bool) -> &'static str {
    if costs {
        "coalesce(sum(hits), 0), coalesce(sum(compute_us), 0), coalesce(sum(saved_us), 0)"
    } else {
        "0, 0, 0"
    }
}

/// Microseconds from column `i`: a count the triggers keep, which SQLite turns into a float
/// when a sum passes 2^63 (hits x compute time of entries that took years); zero for anything
/// that is not a number (a hand-edited index), so one odd row cannot stop `ls` or `stats`.
fn micros(r: &rusqlite::Row<'_>, i: usize) -> Duration {
    let us = match r.get_ref(i) {
        Ok(rusqlite::types::ValueRef::Integer(n)) => n.max(0) as f64,
        Ok(rusqlite::types::ValueRef::Real(x)) if x > 0.0 => x,
        _ => 0.0,
    };
    Duration::try_from_secs_f64(us / 1e6).unwrap_or(Duration::MAX)
}

fn entry_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<EntryInfo> {
    let digest = |i: usize| -> rusqlite::Result<Digest> {
        Digest::from_slice(&r.get::<_, Vec<u8>>(i)?).ok_or(rusqlite::Error::InvalidColumnType(
            i,
            "digest".into(),
            rusqlite::types::Type::Blob,
        ))
    };
    Ok(EntryInfo {
        key: digest(0)?,
        function: r.get(1)?,
        fingerprint: r.get(2)?,
        return_type: r.get(3)?,
        stale: !r.get::<_, bool>(4)?,
        bytes: r.get::<_, i64>(5)?.max(0) as u64,
        in_blob: r.get(6)?,
        hash: digest(7)?,
        created: ms_to_time(r.get(8)?),
        last_used: ms_to_time(r.get(9)?),
        hits: r.get::<_, i64>(10)?.max(0) as u64,
        expires: r.get::<_, Option<i64>>(11)?.map(ms_to_time),
        compute_time: micros(r, 12),
        args: r.get(13).ok().flatten(),
        args_size: r
            .get::<_, Option<i64>>(14)
            .ok()
            .flatten()
            .map(|n| n.max(0) as u64),
        compressed: matches!(r.get_ref(15), Ok(rusqlite::types::ValueRef::Integer(1))),
    })
}

impl Cache {
    /// Totals over the cache. Reads a few rows, whatever the cache's size.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use memo_cache::{Cache, Function};
    /// let cache = Cache::open(dir.path()).unwrap();
    /// cache.put(&Function::new("docs::f", "v1", "String"), &(1,), &"x".repeat(100)).unwrap();
    /// let stats = cache.stats().unwrap();
    /// assert_eq!((stats.entries, stats.functions), (1, 1));
    /// assert!(stats.bytes > 100);
    /// ```
    pub fn stats(&self) -> Result<Stats> {
        let now = self.now_ms();
        let costs = self.index()?.has_costs();
        let mut stats = self.index()?.read(|c| {
            let mut stats = c.query_row(
                &format!(
                    "SELECT coalesce(sum(entries), 0), coalesce(sum(bytes), 0), coalesce(sum(blob_bytes), 0),
                        count(DISTINCT CASE WHEN entries > 0 OR current = 1 THEN name END),
                        coalesce(sum(CASE WHEN current = 0 THEN entries END), 0),
                        coalesce(sum(CASE WHEN current = 0 THEN bytes END), 0),
                        {}
                     FROM functions",
                    cost_sums(costs)
                ),
                [],
                |r| {
                    let n = |i| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
                    Ok(Stats {
                        entries: n(0)?,
                        bytes: n(1)?,
                        blob_bytes: n(2)?,
                        functions: n(3)?,
                        stale: n(4)?,
                        stale_bytes: n(5)?,
                        hits: n(6)?,
                        compute_time: micros(r, 7),
                        saved: micros(r, 8),
                        ..Stats::default()
                    })
                },
            )?;
            (stats.expired, stats.expired_bytes) = c.query_row(
                "SELECT count(*), coalesce(sum(size), 0) FROM entries WHERE expires IS NOT NULL AND expires <= ?1",
                [now],
                |r| Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get::<_, i64>(1)?.max(0) as u64)),
            )?;
            Ok(stats)
        })?;
        let index = self.index()?.path();
        let size = |suffix: &str| {
            let mut p = index.as_os_str().to_owned();
            p.push(suffix);
            std::fs::metadata(p).map_or(0, |m| m.len())
        };
        stats.wal_bytes = size("-wal");
        stats.index_bytes = size("") + stats.wal_bytes + size("-shm");
        stats.disk_bytes = stats.index_bytes + stats.blob_bytes;
        if let Some(remote) = self.remote() {
            let limit = remote.max_value() as i64;
            let (n, bytes) = self.index()?.read(|c| {
                c.query_row(
                    "SELECT count(*), coalesce(sum(size), 0) FROM entries WHERE size > ?1",
                    [limit],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?.max(0) as u64,
                            r.get::<_, i64>(1)?.max(0) as u64,
                        ))
                    },
                )
            })?;
            (stats.local_only, stats.local_only_bytes) = (Some(n), Some(bytes));
        }
        Ok(stats)
    }

    /// One row per function name, sorted by name.
    pub fn functions(&self) -> Result<Vec<FunctionStats>> {
        let costs = self.index()?.has_costs();
        self.index()?.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT name, coalesce(sum(entries), 0), coalesce(sum(bytes), 0),
                        coalesce(sum(CASE WHEN current = 0 THEN entries END), 0),
                        coalesce(sum(CASE WHEN current = 0 THEN bytes END), 0),
                        max(last_used),
                        max(CASE WHEN current = 1 THEN fingerprint END),
                        max(CASE WHEN current = 1 THEN return_type END),
                        {}
                 FROM functions GROUP BY name HAVING sum(entries) > 0 OR max(current) = 1 ORDER BY name",
                cost_sums(costs)
            ))?;
            let rows = stmt.query_map([], |r| {
                let n = |i| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
                Ok(FunctionStats {
                    name: r.get(0)?,
                    entries: n(1)?,
                    bytes: n(2)?,
                    stale_entries: n(3)?,
                    stale_bytes: n(4)?,
                    last_used: r.get::<_, Option<i64>>(5)?.filter(|&ms| ms > 0).map(ms_to_time),
                    fingerprint: r.get(6)?,
                    return_type: r.get(7)?,
                    hits: n(8)?,
                    compute_time: micros(r, 9),
                    saved: micros(r, 10),
                })
            })?;
            rows.collect()
        })
    }

    /// Calls `visit` with each entry's metadata (of one function, if named), streaming, until it
    /// returns `ControlFlow::Break`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use memo_cache::{Cache, Function};
    /// use std::ops::ControlFlow;
    /// let cache = Cache::open(dir.path()).unwrap();
    /// let f = Function::new("docs::f", "v1", "u32");
    /// for i in 0..3u32 { cache.put(&f, &(i,), &i).unwrap(); }
    /// let mut n = 0;
    /// cache.for_each_entry(Some("docs::f"), |entry| { n += 1; ControlFlow::Continue(()) }).unwrap();
    /// assert_eq!(n, 3);
    /// ```
    pub fn for_each_entry(
        &self,
        function: Option<&str>,
        mut visit: impl FnMut(EntryInfo) -> ControlFlow<()>,
    ) -> Result<()> {
        let costs = self.index()?.has_costs();
        self.index()?.read(|c| {
            let sql = format!(
                "SELECT {} FROM entries e JOIN functions f ON f.id = e.function_id
                 WHERE (?1 IS NULL OR f.name = ?1)
                   AND typeof(e.key) = 'blob' AND length(e.key) = 32
                   AND typeof(e.hash) = 'blob' AND length(e.hash) = 32",
                entry_columns(costs)
            );
            let mut stmt = c.prepare(&sql)?;
            let mut rows = stmt.query([function])?;
            while let Some(row) = rows.next()? {
                if visit(entry_info(row)?).is_break() {
                    break;
                }
            }
            Ok(())
        })
    }

    /// All entries' metadata (of one function, if named).
    pub fn entries(&self, function: Option<&str>) -> Result<Vec<EntryInfo>> {
        let mut out = Vec::new();
        self.for_each_entry(function, |e| {
            out.push(e);
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// One entry's metadata.
    pub fn entry(&self, key: &Key) -> Result<Option<EntryInfo>> {
        let costs = self.index()?.has_costs();
        self.index()?.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {} FROM entries e JOIN functions f ON f.id = e.function_id WHERE e.key = ?1",
                entry_columns(costs)
            ))?
            .query_row([&key.0[..]], entry_info)
            .optional()
        })
    }

    /// The key of the one entry whose hex starts with `prefix` (at least 4 digits unless the
    /// cache is tiny... any length is accepted as long as it is unambiguous).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use memo_cache::{Cache, Function};
    /// let cache = Cache::open(dir.path()).unwrap();
    /// let f = Function::new("docs::f", "v1", "u32");
    /// cache.put(&f, &(1,), &1u32).unwrap();
    /// let key = f.key(&(1,)).unwrap();
    /// assert_eq!(cache.resolve_key(&key.to_hex()[..8]).unwrap(), key);
    /// ```
    pub fn resolve_key(&self, prefix: &str) -> Result<Key> {
        let digits: Vec<u8> = prefix
            .bytes()
            .map(hex_value)
            .collect::<Option<_>>()
            .filter(|d: &Vec<u8>| !d.is_empty() && d.len() <= 64)
            .ok_or_else(|| Error::BadKey(prefix.to_owned()))?;
        let bound = |fill: u8| {
            let mut out = [fill; 32];
            for (i, d) in digits.iter().enumerate() {
                let byte = &mut out[i / 2];
                *byte = if i % 2 == 0 {
                    (d << 4) | (*byte & 0x0f)
                } else {
                    (*byte & 0xf0) | d
                };
            }
            out
        };
        let (low, high) = (bound(0x00), bound(0xff));
        let keys: Vec<Vec<u8>> = self.index()?.read(|c| {
            let mut stmt =
                c.prepare_cached("SELECT key FROM entries WHERE key >= ?1 AND key <= ?2 LIMIT 2")?;
            let rows = stmt.query_map(params![&low[..], &high[..]], |r| r.get(0))?;
            rows.collect()
        })?;
        match keys.as_slice() {
            [only] => Digest::from_slice(only).ok_or_else(|| Error::NoSuchKey(prefix.to_owned())),
            [] => Err(Error::NoSuchKey(prefix.to_owned())),
            _ => {
                let count = self.index()?.read(|c| {
                    c.query_row(
                        "SELECT count(*) FROM entries WHERE key >= ?1 AND key <= ?2",
                        params![&low[..], &high[..]],
                        |r| r.get::<_, i64>(0),
                    )
                })?;
                Err(Error::AmbiguousKey {
                    prefix: prefix.to_owned(),
                    count: count as usize,
                })
            }
        }
    }
}
