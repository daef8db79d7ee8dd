//! The PostgreSQL tier (feature `postgres`): one database, one table per prefix. Durable where
//! Redis and memcached are volatile: what a team computed stays until it expires or is pruned.
//!
//! The module's parts: this file the backend (connections, deadlines, health) and its
//! settings; `schema.rs` the tables' names and migrations; `lane.rs` one connection's
//! statements (reading and writing rows, large values in slices); `admin.rs` the CLI's
//! operations.
//!
//! # Layout in the database
//!
//! ```text
//! memo_cache_schema                       ours: which prefix each table is of, at which version
//! memo_cache_<prefix>_<hash>              the values: key, value, hash, size, created, expires,
//!                                         function
//! memo_cache_<prefix>_<hash>_locks        the fleet-wide compute locks: key, token, expiry
//! ```
//!
//! A table's name is made from the prefix, never spliced from it: the prefix lowercased, every
//! run of other characters than `a-z0-9` made one `_`, cut to 24 characters, then the first 8 hex
//! digits of the prefix's blake3 (so `"a:b"` and `"a_b"` get different tables). Names are
//! `[a-z0-9_]` only and quoted anyway. The tier touches no other table.
//!
//! The value row keeps the envelope's fields (see the `remote` module) as columns, so a person
//! can read them with `psql`: `hash` (blake3 of `value`, checked on every fetch), `size`,
//! `created`, `expires` (`NULL`: none), `function` (its stable name, for `remote stats` and
//! `remote clear --func`). A reader takes a value's length from the value itself
//! (`octet_length`), not from `size`, so a row lying about its size is never fetched past the
//! limit. `value` is stored `EXTERNAL`: uncompressed in TOAST (memo-cache
//! compresses what is worth it before), which lets a reader fetch a large value in slices.
//!
//! # Migrations
//!
//! An append-only list of schema steps, `schema::MIGRATIONS`. On connecting, the tier reads its
//! table's version from `memo_cache_schema`; when behind (or on first use), it takes a
//! transaction-scoped advisory lock (so two processes starting at once do not race), creates
//! `memo_cache_schema` if missing, applies the missing steps and records the version, in one
//! transaction. A table at a newer version than this build knows is left alone: the tier stays
//! unavailable, with a warning naming both versions. So is a table of the prefix's name that
//! `memo_cache_schema` does not record for this prefix (someone else's table, or the table of
//! another prefix whose name collides with this one's): the tier never alters, claims or
//! clears it, and `remote stats|clear|prune` refuse it with the same reason.
//!
//! # Large values: streamed, not held twice
//!
//! Values of up to [`INLINE`] travel in one statement each way (binary parameters and
//! results). A larger value is written by `COPY ... FROM STDIN (FORMAT binary)` inside a
//! transaction that first deletes the key's old row: the value goes to the server in slices
//! of [`SLICE_OUT`], so storing it costs the caller's bytes plus about one slice. It is read
//! in a repeatable-read transaction (one snapshot, so a concurrent rewrite cannot mix two
//! values), [`SLICE_IN`] at a time with `substring`, into one buffer of the envelope's final
//! size: fetching it costs the value once plus one slice. Values over
//! [`RemoteConfig::max_value_bytes`] (256 MiB by default, and under bytea's 1 GiB limit) stay
//! local-only.
//!
//! # Locking
//!
//! A lock row with a lease, the same protocol as the other tiers: `INSERT .. ON CONFLICT DO
//! UPDATE .. WHERE <the old lease ran out>` takes it (atomic under the primary key), renewing
//! and releasing are `UPDATE`/`DELETE .. WHERE token = $2`, so only the holder can do either.
//! Lease times are the server's clock, so the nodes' clocks need not agree. Session advisory
//! locks were the other choice: they would free a dead holder's lock as soon as its connection
//! drops, but not a frozen holder's, and they tie the lock to a connection, which a reconnect
//! loses without telling its holder. Lock rows go over a connection of their own, so a long
//! transfer never delays the renewal of a lease.
//!
//! # Timeouts and failures
//!
//! The client is tokio-postgres, driven by a small single-threaded runtime per connection, so
//! every operation has a client-side deadline (the synchronous `postgres` wrapper has none: a
//! frozen server would hang a call): [`RemoteConfig::connect_timeout`] to connect,
//! [`RemoteConfig::command_timeout`] per statement, plus the time a value takes at 16 MiB/s.
//! The session also sets `lock_timeout` (a writer never queues long behind another writer of
//! the same key) and `idle_in_transaction_session_timeout` (a frozen client's transaction is
//! ended by the server); a large value's transaction sets `statement_timeout` to its own
//! deadline, so a database default shorter than the transfer (say 50 ms) does not cancel
//! every large COPY, and the server ends one the client no longer waits for. A failure drops
//! the connection; the tier is left alone for [`RemoteConfig::retry_after`], reported once per
//! outage, and reconnects by itself. The outage ends when both connections work again: one
//! refused at every try while the other works (a server out of connections) is one outage,
//! not a warning per call.
//!
//! # TLS
//!
//! `sslmode=require` (and `verify-ca`, `verify-full`) in the URL: TLS through rustls with ring,
//! verifying the server against the system's CAs, as for `rediss://` (so `require` is stricter
//! here than libpq's, which does not verify). `sslmode=disable`: plain. Without `sslmode`
//! (`prefer`), TLS when the server offers it, verified the same way.

mod admin;
mod lane;
mod schema;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio_postgres::Config;
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

pub(super) use admin::{clear, prune, stats};
use lane::Lane;
use schema::Tables;

use super::{Backend, Entry, HEADER, MAGIC, MAGIC_COMPRESSED, RemoteConfig};
use crate::diagnostics::REMOTE;
use crate::key::{Digest, Key};

/// Values up to this size travel in one statement.
pub(crate) const INLINE: usize = 1024 * 1024;
/// A large value is written in slices of this size.
const SLICE_OUT: usize = 1024 * 1024;
/// A large value is read in slices of this size.
const SLICE_IN: usize = 8 * 1024 * 1024;
/// bytea's limit is 1 GiB; the envelope's fields travel beside it.
const BYTEA_MAX: usize = (1 << 30) - 1024;
/// The slowest transfer a deadline allows for, in bytes per second.
const MIN_RATE: f64 = 16.0 * 1024.0 * 1024.0;
/// The client's settings from a `postgres://` URL, or why it is not one.
pub(crate) fn parse_url(url: &str) -> std::result::Result<Config, String> {
    // libpq's stricter modes: ours verifies the certificate in every mode that uses TLS.
    let url = url
        .replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require");
    let config: Config = url.parse().map_err(|e| format!("{e}"))?;
    if config.get_hosts().is_empty() {
        return Err("no host: expected postgres://user@host:port/db".into());
    }
    Ok(config)
}

/// The client's settings for `config`: its URL with our deadlines.
pub(super) fn client_config(config: &RemoteConfig) -> std::result::Result<Config, String> {
    let mut pg = parse_url(&config.urls[0])?;
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(config.connect_timeout);
    }
    if pg.get_tcp_user_timeout().is_none() {
        pg.tcp_user_timeout(config.command_timeout.max(Duration::from_secs(1)) * 5);
    }
    if pg.get_application_name().is_none() {
        pg.application_name("memo-cache");
    }
    let lock_timeout = config.command_timeout.as_millis().max(1);
    let ours = format!(
        "-c lock_timeout={lock_timeout} -c idle_in_transaction_session_timeout={}",
        config.lock_ttl.max(Duration::from_secs(10)).as_millis()
    );
    let options = match pg.get_options() {
        Some(theirs) if !theirs.trim().is_empty() => format!("{theirs} {ours}"),
        _ => ours,
    };
    pg.options(options);
    Ok(pg)
}

/// The TLS connector: rustls with ring, trusting the system's CAs (loaded once per process).
pub(super) fn tls() -> MakeRustlsConnect {
    static CONFIG: OnceLock<rustls::ClientConfig> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
    });
    MakeRustlsConnect::new(config.clone())
}

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error("{0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Other(String),
}

type Reply<T> = std::result::Result<T, Failure>;

/// A connection slot: its runtime (kept across reconnections) and its connection, if any.
#[derive(Default)]
struct Slot {
    runtime: Option<Runtime>,
    lane: Option<Lane>,
    /// The backend's failure count when `lane` connected: a failure on the other connection
    /// (a restarted server closes both) makes this one start afresh too, so one outage gives
    /// one warning.
    epoch: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.lane = None;
        // Dropping a runtime blocks, which panics inside an async context (a handle dropped at
        // the end of an async `main`); the only tasks are connections, closing anyway.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[derive(Debug, Default)]
struct Health {
    /// Set while the tier is considered down: do not try before this instant.
    retry_at: Option<Instant>,
    /// Whether this outage has been reported.
    warned: bool,
    /// When each connection (data, locks) last failed, while it has not worked since: the
    /// outage is over when both work again. Otherwise one that keeps failing while the other
    /// works (a server out of connections refusing the second) would make every call an outage
    /// of its own, with its warning and its "is back".
    down: [Option<Instant>; 2],
}

/// The PostgreSQL tier of one cache handle.
pub(super) struct PostgresBackend {
    config: RemoteConfig,
    /// `None` when the URL cannot be used (reported on first use).
    pg: std::result::Result<Config, String>,
    tables: Tables,
    /// Values travel on one connection, locks on another (see the module documentation).
    data: Mutex<Slot>,
    locks: Mutex<Slot>,
    health: Mutex<Health>,
    /// Failures so far (see [`Slot::epoch`]).
    failures: AtomicU64,
}

impl PostgresBackend {
    pub(super) fn new(config: &RemoteConfig) -> PostgresBackend {
        PostgresBackend {
            config: config.clone(),
            pg: client_config(config),
            tables: Tables::of(&config.prefix),
            data: Mutex::new(Slot::default()),
            locks: Mutex::new(Slot::default()),
            health: Mutex::new(Health::default()),
            failures: AtomicU64::new(0),
        }
    }

    /// The deadline of a statement moving `bytes`.
    fn budget(&self, bytes: usize) -> Duration {
        self.config.command_timeout + Duration::from_secs_f64(bytes as f64 / MIN_RATE)
    }

    /// Runs `op` on the connection of `slot`, connecting first if needed, within `budget`.
    /// `None` while the tier is down or when `op` fails; failures are reported once per outage.
    fn run<T: Send>(
        &self,
        slot: &Mutex<Slot>,
        budget: Duration,
        op: impl AsyncFnOnce(&mut Lane) -> Reply<T> + Send,
    ) -> Option<T> {
        if let Some(at) = self.health.lock().expect("health lock").retry_at
            && Instant::now() < at
        {
            return None;
        }
        let lane_index = usize::from(std::ptr::eq(slot, &self.locks));
        let pg = match &self.pg {
            Ok(pg) => pg,
            Err(reason) => {
                self.failed(lane_index, &Failure::Other(reason.clone()));
                return None;
            }
        };
        let mut slot = slot.lock().expect("connection lock");
        let slot = &mut *slot;
        if slot.runtime.is_none() {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => slot.runtime = Some(runtime),
                Err(e) => {
                    self.failed(
                        lane_index,
                        &Failure::Other(format!("cannot start its runtime: {e}")),
                    );
                    return None;
                }
            }
        }
        let epoch = self.failures.load(Ordering::Acquire);
        if slot.epoch != epoch {
            slot.lane = None;
            slot.epoch = epoch;
        }
        let runtime = slot.runtime.as_ref().expect("made above");
        let (tables, prefix) = (&self.tables, self.config.prefix.as_str());
        let connect_budget = self.config.connect_timeout + self.config.command_timeout * 2;
        let lane = &mut slot.lane;
        let outcome = block_on(runtime, move || async move {
            if lane.is_none() {
                let connecting =
                    tokio::time::timeout(connect_budget, Lane::connect(pg, tables, prefix));
                *lane = Some(match connecting.await {
                    Ok(connected) => connected?,
                    Err(_) => return Err(Failure::Timeout(connect_budget)),
                });
            }
            let lane = lane.as_mut().expect("connected above");
            match tokio::time::timeout(budget, op(lane)).await {
                Ok(done) => done,
                Err(_) => Err(Failure::Timeout(budget)),
            }
        });
        match outcome {
            Ok(value) => {
                self.succeeded(lane_index);
                Some(value)
            }
            Err(e) => {
                // The connection's state is unknown after a failure (a statement cut off by
                // the deadline, a transaction half done): start afresh.
                slot.lane = None;
                self.failed(lane_index, &e);
                None
            }
        }
    }

    /// Records a failure of connection `lane` (0 data, 1 locks).
    fn failed(&self, lane: usize, e: &Failure) {
        self.failures.fetch_add(1, Ordering::AcqRel);
        let mut health = self.health.lock().expect("health lock");
        let now = Instant::now();
        health.retry_at = Some(now + self.config.retry_after);
        health.down[lane] = Some(now);
        if !health.warned {
            health.warned = true;
            tracing::warn!(target: REMOTE,
                "memo-cache: PostgreSQL tier {} unavailable ({}); continuing with the local cache only, retrying every {:?}",
                self.config.display_urls(),
                describe(e),
                self.config.retry_after
            );
        } else {
            tracing::debug!(target: REMOTE, "memo-cache: PostgreSQL tier still unavailable: {}", describe(e));
        }
    }

    /// Records that connection `lane` worked: the outage is over when the other one is not
    /// failing either (or has not been tried for a while: a program that stopped taking locks).
    fn succeeded(&self, lane: usize) {
        let mut health = self.health.lock().expect("health lock");
        health.retry_at = None;
        health.down[lane] = None;
        let stale = (self.config.retry_after * 10).max(Duration::from_secs(10));
        let other = &mut health.down[1 - lane];
        if other.is_some_and(|at| at.elapsed() > stale) {
            *other = None;
        }
        if health.down.iter().any(Option::is_some) {
            return;
        }
        if health.warned {
            tracing::info!(target: REMOTE,
                "memo-cache: PostgreSQL tier {} is back",
                self.config.display_urls()
            );
        }
        *health = Health::default();
    }
}

/// A failure in one line: a database error's own message, not only "db error".
pub(super) fn describe(e: &Failure) -> String {
    match e {
        Failure::Postgres(pg) => match pg.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => pg.to_string(),
        },
        other => other.to_string(),
    }
}

/// Runs the future `work` makes to completion on `runtime`. Inside another runtime's context
/// (an async caller, or tokio's blocking pool), where `block_on` would panic, it runs on a
/// scoped thread.
pub(super) fn block_on<T: Send, F: Future<Output = T>>(
    runtime: &Runtime,
    work: impl FnOnce() -> F + Send,
) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime.block_on(work());
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| runtime.block_on(work()))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

impl Backend for PostgresBackend {
    fn get(&self, key: &Key) -> Option<Option<Vec<u8>>> {
        let max = self.config.max_value_bytes.min(BYTEA_MAX);
        // The whole fetch may take as long as the largest value; each statement of it only
        // what its bytes take, so a stalled server is noticed in seconds.
        let step = self.budget(INLINE);
        self.run(
            &self.data,
            self.budget(max) + step * 4,
            async |lane: &mut Lane| lane.fetch(&key.0, max, step).await,
        )
    }

    fn set(&self, key: &Key, value: &[u8], ttl: Option<Duration>) -> Option<()> {
        // The seam stores through `store`; an envelope given whole is taken apart.
        if value.len() < HEADER || !(&value[..3] == MAGIC || &value[..3] == MAGIC_COMPRESSED) {
            return None;
        }
        let word = |at: usize| i64::from_le_bytes(value[at..at + 8].try_into().expect("8"));
        let hash = Digest::from_slice(&value[3..35])?;
        let entry = Entry {
            bytes: &value[HEADER..],
            hash: &hash,
            created: word(35),
            expires: Some(word(43)).filter(|&at| at != 0),
            function: "",
        };
        self.store(key, &entry, ttl)
    }

    fn store(&self, key: &Key, entry: &Entry<'_>, _ttl: Option<Duration>) -> Option<()> {
        if entry.bytes.len() > BYTEA_MAX {
            return Some(());
        }
        let copy = self.tables.sql(
            "COPY {values} (key, hash, size, created, expires, function, value) \
             FROM STDIN (FORMAT binary)",
        );
        let budget = self.budget(entry.bytes.len());
        self.run(&self.data, budget, async |lane: &mut Lane| {
            match lane.store(&key.0, entry, &copy, budget).await {
                // Another node stored the key between our delete and our copy, or is writing
                // it now: its value is as good as ours.
                Err(Failure::Postgres(e))
                    if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                        || e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) =>
                {
                    Ok(())
                }
                other => other,
            }
        })
    }

    fn lock(&self, key: &Key, token: &str, ttl: Duration) -> Option<bool> {
        let ms = ttl.as_millis() as f64;
        self.run(&self.locks, self.budget(0), async |lane: &mut Lane| {
            let taken = lane
                .client
                .query_opt(&lane.lock, &[&key.0.as_slice(), &token, &ms])
                .await?;
            Ok(taken.is_some())
        })
    }

    fn renew(&self, key: &Key, token: &str, ttl: Duration) -> Option<bool> {
        let ms = ttl.as_millis() as f64;
        self.run(&self.locks, self.budget(0), async |lane: &mut Lane| {
            let renewed = lane
                .client
                .execute(&lane.renew, &[&key.0.as_slice(), &token, &ms])
                .await?;
            Ok(renewed > 0)
        })
    }

    fn unlock(&self, key: &Key, token: &str) -> Option<bool> {
        self.run(&self.locks, self.budget(0), async |lane: &mut Lane| {
            let removed = lane
                .client
                .execute(&lane.unlock, &[&key.0.as_slice(), &token])
                .await?;
            Ok(removed > 0)
        })
    }

    fn item_name(&self, key: &Key) -> String {
        format!("{} row {}", self.tables.name, key.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_stricter_sslmodes_mean_verified_tls() {
        assert!(parse_url("postgres://u@localhost:5432/db").is_ok());
        assert!(parse_url("postgresql://u:pw@db.example/x?sslmode=verify-full").is_ok());
        assert!(parse_url("postgres://u@h/db?sslmode=nonsense").is_err());
        let config = RemoteConfig::new("postgres://u@h:5433/db").unwrap();
        let pg = client_config(&config).unwrap();
        assert_eq!(pg.get_ports(), &[5433]);
        assert!(pg.get_options().unwrap().contains("lock_timeout=2000"));
        assert_eq!(pg.get_connect_timeout(), Some(&Duration::from_secs(2)));
    }
}
