//! The SQLite index: one row per entry, one row per function version.
//!
//! All SQL lives here; what to evict and when is decided in [`crate::evict`].
//!
//! # Locking
//!
//! WAL mode lets readers run beside one writer. Every write transaction starts with
//! `BEGIN IMMEDIATE`, so a writer waits for the write lock up front (under the busy timeout)
//! instead of failing halfway when a read transaction tries to upgrade. Busy results that slip
//! through are retried here, with backoff, until the handle's write timeout has passed (default
//! [`DEFAULT_WRITE_TIMEOUT`]); then the write fails with [`Error::Busy`], so that a stopped
//! process holding the write lock costs a bounded wait. Hit bookkeeping does not wait at all
//! ([`Index::try_write`]).
//!
//! # Files
//!
//! SQLite opens the index with `SQLITE_OPEN_NOFOLLOW`, under the cache directory's resolved
//! path, and opens its `-wal`, `-shm` and `-journal` files with `O_NOFOLLOW`: a symlink planted
//! in place of any of them is refused (with [`Error::Symlink`]), never followed to another
//! application's database. A FIFO, directory or device in place of the index is refused before
//! SQLite sees it ([`Error::NotAFile`]).
//!
//! # Compatibility
//!
//! `PRAGMA user_version` holds the number of [`MIGRATIONS`] applied. The list is append-only: an
//! older index is brought forward by an open that may create the cache ([`Schema::Migrate`]),
//! and refused with both versions named by one that may not ([`Schema::AsFound`]: tools that
//! only look, which must change nothing, and never an older program's cache under it). An index
//! from a newer memo-cache is always refused with both versions named. Nothing is deleted.
//!
//! # Performance
//!
//! Aggregates per function (entries, bytes, last use) are kept by triggers, so `stats` and `ls`
//! read a handful of rows whatever the size of the cache. Statements are prepared once per
//! connection (`prepare_cached`), and connections are pooled per handle.
//!
//! # The held read snapshot
//!
//! An autocommit read takes and drops SQLite's WAL read lock (two `fcntl` calls on the `-shm`
//! file, and an `fstat`) around every statement: more than half of a small hit. So a handle
//! that keeps looking keys up while nobody writes keeps one read transaction open, on a
//! connection of its own, and serves [`Index::lookup`] from it. A reader that holds a snapshot
//! while others write is harmful, though: it keeps checkpoints from copying the newer frames
//! back and the WAL from being reset, so the WAL grows and every later commit pays for a
//! checkpoint attempt. The rules:
//!
//! - **Hold only what blocks nobody.** A snapshot is begun only when the WAL has been copied
//!   back into the database file entirely (the checkpoint's `nBackfill` equals `mxFrame`): such
//!   a reader uses SQLite's read mark 0, which does not stop a writer from resetting the WAL.
//!   It would stop a checkpoint from copying back frames committed after it began, so:
//! - **End it at the next commit.** Every commit, by any process, bumps the change counter in
//!   SQLite's WAL-index header, which each connection maps from the `-shm` file
//!   ([the WAL-index format](https://sqlite.org/walformat.html)); reading it is a memory load.
//!   A lookup that sees it moved ends the snapshot and reads in autocommit. So a snapshot never
//!   misses a commit: a hit from it is what an autocommit read would return.
//! - **Begin one only after a quiet spell.** A new snapshot waits until the counter has not
//!   moved for [`QUIET`]; then, if the WAL is not all copied back, this handle runs a passive
//!   checkpoint itself (at most once per [`CHECKPOINT_EVERY`]). Under a steady stream of
//!   commits a handle reads in autocommit, as if it held nothing.
//! - **Never for long.** A small thread ends a snapshot [`SNAPSHOT_AGE`] after it began, so an
//!   idle handle does not hold one.
//! - **Not across own writes, but at once after them.** A write transaction of this handle
//!   first ends the snapshot (unless another thread is reading from it at that moment; its next
//!   lookup sees the commit). After its own commit, though, a handle holds a snapshot at its
//!   next lookup, with no quiet spell and no checkpoint, for as long as the counters show that
//!   commit as the last: a batch job that stores and then reuses its results would otherwise
//!   read in autocommit for the quiet spell and then wait for a checkpoint (two syncs), or for a
//!   second when that checkpoint could not copy everything back. Such a snapshot may use a read
//!   mark above 0, which pins no frame: nothing was committed after it began, and it ends at
//!   the next commit like any other. What it can hold up is the restart of the WAL by a writer
//!   that begins meanwhile, which then appends its frames instead, once per own commit.
//!   (Measured with `cargo bench -p memo-cache-bench --bench peers -- --only own`: hits begun
//!   within 5 ms of the last store went from 5.0-5.6 µs to the steady figure.)
//! - **A miss is confirmed.** A key absent from a held snapshot is looked up again in
//!   autocommit before it is reported missing, since a miss means computing the value again.
//! - **Only a busy handle holds one.** The first [`SNAPSHOT_AFTER`] lookups read in autocommit,
//!   so a process that opens the cache for one hit starts no thread; a lookup that finds the
//!   snapshot in use by another thread reads in autocommit too.
//! - **Rows found are kept until the next commit.** For the same reason a snapshot may be held
//!   (the counters have not moved, so nobody has committed), a row found in it is still what
//!   SQLite would return while the counters stay where they were when it was found: the handle
//!   keeps such rows (inline values up to [`ROWS_BYTES`] in all) and answers a lookup of one
//!   without a statement, until the counters move (then they are all dropped) or the
//!   connection is replaced. Holding them holds no lock, so they may outlive the snapshot.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

use crate::blobs;
use crate::error::{Error, Result};
use crate::hints::{self, Buckets};
use crate::layout::{HINTS_DIR, wal_path};

/// How long a write waits for another process's write lock before giving up, by default.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an open waits to migrate an index another process is writing: once per cache.
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a read waits while another connection keeps the database locked. In WAL mode a
/// reader waits only while a connection recovers the WAL after a crash (reading all of it, which
/// took over 100 ms beside four writers killed at random), unless a process holds the database
/// in exclusive locking mode: then no read can be had at all, and a lookup gives up after this
/// long and is a miss.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// How long hit bookkeeping waits for the write lock when a handle closes.
pub(crate) const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_millis(100);

/// The longest path SQLite's Unix VFS accepts for a database file.
const MAX_PATH: usize = 512;

/// How long a held read snapshot lives; see "The held read snapshot" above.
pub(crate) const SNAPSHOT_AGE: Duration = Duration::from_millis(10);

/// How long the database must go without a commit before a handle holds a read snapshot.
pub(crate) const QUIET: Duration = Duration::from_millis(2);

/// A handle runs a checkpoint, to be able to hold a snapshot, at most this often.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Lookups a handle makes in autocommit before it holds a read snapshot.
const SNAPSHOT_AFTER: u32 = 8;

/// The schema, one migration per version; append only.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: functions with trigger-kept aggregates, entries with inline or blob values.
    r#"
    CREATE TABLE functions (
        id          INTEGER PRIMARY KEY,
        identity    BLOB NOT NULL UNIQUE,
        name        TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        return_type TEXT NOT NULL,
        current     INTEGER NOT NULL DEFAULT 1,
        entries     INTEGER NOT NULL DEFAULT 0,
        bytes       INTEGER NOT NULL DEFAULT 0,
        blob_bytes  INTEGER NOT NULL DEFAULT 0,
        last_used   INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX functions_name ON functions(name);
    CREATE TABLE entries (
        key         BLOB PRIMARY KEY,
        function_id INTEGER NOT NULL,
        size        INTEGER NOT NULL,
        hash        BLOB NOT NULL,
        value       BLOB,
        created     INTEGER NOT NULL,
        last_used   INTEGER NOT NULL,
        hits        INTEGER NOT NULL DEFAULT 0,
        expires     INTEGER
    );
    CREATE INDEX entries_last_used ON entries(last_used, key);
    CREATE INDEX entries_function ON entries(function_id, last_used);
    CREATE INDEX entries_expires ON entries(expires) WHERE expires IS NOT NULL;
    CREATE TRIGGER entries_insert AFTER INSERT ON entries BEGIN
        UPDATE functions SET
            entries = entries + 1,
            bytes = bytes + NEW.size,
            blob_bytes = blob_bytes + (CASE WHEN NEW.value IS NULL THEN NEW.size ELSE 0 END),
            last_used = max(last_used, NEW.last_used)
        WHERE id = NEW.function_id;
    END;
    CREATE TRIGGER entries_delete AFTER DELETE ON entries BEGIN
        UPDATE functions SET
            entries = entries - 1,
            bytes = bytes - OLD.size,
            blob_bytes = blob_bytes - (CASE WHEN OLD.value IS NULL THEN OLD.size ELSE 0 END)
        WHERE id = OLD.function_id;
    END;
    CREATE TRIGGER entries_touch AFTER UPDATE OF last_used ON entries BEGIN
        UPDATE functions SET last_used = max(last_used, NEW.last_used)
        WHERE id = NEW.function_id;
    END;
    "#,
    // 2: the removal epoch (`PRAGMA application_id`), moved on by every removal of a row; the
    // first-hit files in `hints/` are valid only while it stands still, or while the moves
    // recorded in the removal log spared their keys (see `crate::hints`).
    // An older memo-cache, which would remove rows without moving it, refuses this version.
    // `Index::migrate` starts the epoch at a random value, so that first-hit files left beside
    // an index made again from scratch do not match it.
    "",
    // 3: what each entry cost and saved, and what the cost-aware eviction orders by.
    // - `compute_us`: the wall time the value took to compute, in microseconds, measured by the
    //   cache around the compute closure; 0 when unknown (stored with `put`, or fetched from a
    //   shared tier).
    // - `priority`: the entry's GreedyDual-Size-Frequency priority (see `crate::evict`), indexed
    //   with `last_used` so that eviction walks the index and ties go least recently used first.
    // - `args`: the canonical argument bytes when at most `ARGS_RECORD_MAX`, NULL otherwise;
    //   `args_size` their length (NULL: not recorded). A record for people, never part of the key.
    // - `encoding`: how the value is stored: 0 as encoded, 1 zstd-compressed.
    // Per function, kept by triggers like the other aggregates: the entries' summed compute time,
    // hits, and time saved (hits x compute time), over the entries held now.
    // Older indexes read with these as zero (see `Index::has_costs`).
    r#"
    ALTER TABLE entries ADD COLUMN compute_us INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE entries ADD COLUMN priority REAL NOT NULL DEFAULT 0;
    ALTER TABLE entries ADD COLUMN args BLOB;
    ALTER TABLE entries ADD COLUMN args_size INTEGER;
    ALTER TABLE entries ADD COLUMN encoding INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX entries_priority ON entries(priority, last_used);
    ALTER TABLE functions ADD COLUMN compute_us INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE functions ADD COLUMN hits INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE functions ADD COLUMN saved_us INTEGER NOT NULL DEFAULT 0;
    UPDATE functions SET hits = coalesce((SELECT sum(hits) FROM entries WHERE function_id = functions.id), 0);
    UPDATE entries SET priority = 0;
    CREATE TABLE policy (
        name  TEXT PRIMARY KEY,
        value
    ) WITHOUT ROWID;
    INSERT INTO policy (name, value) VALUES ('clock', 0.0);
    DROP TRIGGER entries_insert;
    CREATE TRIGGER entries_insert AFTER INSERT ON entries BEGIN
        UPDATE functions SET
            entries = entries + 1,
            bytes = bytes + NEW.size,
            blob_bytes = blob_bytes + (CASE WHEN NEW.value IS NULL THEN NEW.size ELSE 0 END),
            last_used = max(last_used, NEW.last_used),
            compute_us = compute_us + NEW.compute_us,
            hits = hits + NEW.hits,
            saved_us = saved_us + NEW.hits * NEW.compute_us
        WHERE id = NEW.function_id;
    END;
    DROP TRIGGER entries_delete;
    CREATE TRIGGER entries_delete AFTER DELETE ON entries BEGIN
        UPDATE functions SET
            entries = entries - 1,
            bytes = bytes - OLD.size,
            blob_bytes = blob_bytes - (CASE WHEN OLD.value IS NULL THEN OLD.size ELSE 0 END),
            compute_us = compute_us - OLD.compute_us,
            hits = hits - OLD.hits,
            saved_us = saved_us - OLD.hits * OLD.compute_us
        WHERE id = OLD.function_id;
    END;
    DROP TRIGGER entries_touch;
    CREATE TRIGGER entries_touch AFTER UPDATE OF last_used, hits ON entries BEGIN
        UPDATE functions SET
            last_used = max(last_used, NEW.last_used),
            hits = hits + NEW.hits - OLD.hits,
            saved_us = saved_us + NEW.hits * NEW.compute_us - OLD.hits * OLD.compute_us
        WHERE id = NEW.function_id;
    END;
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The oldest schema version with the tables of [`SCHEMA_VERSION`]: an open that may not migrate
/// (a tool that only looks, a read-only handle) uses such an index as it is. Version 2 only
/// started the removal epoch, which such an open moves too; first-hit files are written and
/// read only at version 2.
const SAME_TABLES_SINCE: i64 = 1;

/// How a handle may use the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read and write; create the file when missing.
    ReadWrite,
    /// Read only: the directory or file cannot be written (or the caller asked).
    ReadOnly,
}

/// Whether an open may bring an older schema forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Schema {
    /// Migrate an older schema: an open that may create the cache.
    Migrate,
    /// Refuse an older schema, changing nothing: an open of an existing cache only.
    AsFound,
}

/// A pool of connections to one index file.
#[derive(Debug)]
pub(crate) struct Index {
    path: PathBuf,
    /// `path` under the directory's resolved path: SQLite refuses any symlink in what it opens.
    open_path: PathBuf,
    access: Access,
    write_timeout: Duration,
    /// The index file's device and inode when opened, to notice a deleted or replaced index.
    file_id: Mutex<Option<(u64, u64)>>,
    /// Read-only connections open the file as immutable; see [`Index::open`].
    immutable: bool,
    /// This read-only handle started the `-wal` and `-shm` files; see [`Index::close_wal`].
    close_wal: bool,
    pool: Mutex<Vec<Connection>>,
    /// Lookups so far, counted up to [`SNAPSHOT_AFTER`].
    lookups: AtomicU32,
    /// The held read snapshot, set up at the first lookup past [`SNAPSHOT_AFTER`]; `None` inside
    /// when its thread could not be started.
    held: OnceLock<Option<Arc<Held>>>,
    /// The WAL-index header's counters right after this handle's last commit (0: none yet).
    own_commit: AtomicU64,
    /// The index is in WAL mode (found at the first commit).
    wal: OnceLock<bool>,
    /// The schema version this handle reads and writes: [`SCHEMA_VERSION`], or an older one an
    /// open that may not migrate uses as it is (see [`Index::has_costs`]).
    version: AtomicI64,
}

impl Index {
    /// Opens the index at `path`; read-write, creates it when missing, and with
    /// [`Schema::Migrate`] brings an older schema forward.
    ///
    /// A reader of a WAL-mode database needs its `-shm` file, which it cannot create in a
    /// directory it may not write (SQLite then reports "attempt to write a readonly database").
    /// Such an index is opened again as immutable: read without locks, which is right for a
    /// cache nobody can write and at worst a miss for one its owner writes meanwhile, since
    /// every value is hash-checked.
    pub fn open(
        path: &Path,
        access: Access,
        schema: Schema,
        write_timeout: Duration,
    ) -> Result<Index> {
        let open_path = checked_open_path(path)?;
        let mut index = Index {
            path: path.to_path_buf(),
            open_path,
            access,
            write_timeout,
            file_id: Mutex::new(None),
            immutable: false,
            close_wal: access == Access::ReadOnly && !wal_path(path).exists(),
            pool: Mutex::new(Vec::new()),
            lookups: AtomicU32::new(0),
            held: OnceLock::new(),
            own_commit: AtomicU64::new(0),
            wal: OnceLock::new(),
            version: AtomicI64::new(SCHEMA_VERSION),
        };
        let conn = match index.first_connection(schema) {
            Err(Error::Index { source, .. } | Error::ReadOnly { source, .. })
                if access == Access::ReadOnly
                    && matches!(
                        source.sqlite_error_code(),
                        Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen)
                    ) =>
            {
                index.immutable = true;
                index.close_wal = false;
                index.first_connection(schema)?
            }
            other => other?,
        };
        *index.file_id.lock().expect("file id lock") = file_id(&index.open_path);
        index.pool.lock().expect("pool lock").push(conn);
        Ok(index)
    }

    /// True when the index file this handle opened is no longer at its path: deleted, or
    /// replaced by another file. One `lstat`.
    pub fn is_gone(&self) -> bool {
        let opened = *self.file_id.lock().expect("file id lock");
        opened.is_some() && file_id(&self.open_path) != opened
    }

    /// Drops every connection and opens the index at its path again, setting up a new one
    /// (its schema) when the file is new.
    pub fn reconnect(&self) -> Result<()> {
        self.close();
        let conn = self.first_connection(Schema::Migrate)?;
        *self.file_id.lock().expect("file id lock") = file_id(&self.open_path);
        self.pool.lock().expect("pool lock").push(conn);
        Ok(())
    }

    /// The first connection, its schema checked (and brought forward). While the index is still
    /// being set up by another process (not yet in WAL mode, where a writer's commit locks
    /// readers out), a busy answer is waited out up to [`MIGRATE_TIMEOUT`], as when several
    /// processes create one cache at once; an index in use answers within [`READ_TIMEOUT`].
    fn first_connection(&self, schema: Schema) -> Result<Connection> {
        let started = Instant::now();
        loop {
            let attempt = self
                .connect()
                .and_then(|conn| self.check_schema(&conn, schema).map(|()| conn));
            if let Ok(conn) = &attempt {
                let version = conn
                    .query_row("PRAGMA user_version", [], |r| r.get(0))
                    .map_err(|e| self.err(e))?;
                self.version.store(version, Ordering::Relaxed);
            }
            match attempt {
                Err(Error::Busy { .. })
                    if started.elapsed() < MIGRATE_TIMEOUT && !in_wal_mode(&self.open_path) =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => return other,
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the index has the columns of schema version 3: each entry's compute time,
    /// eviction priority, argument record and encoding. An older index that this handle may not
    /// migrate is read and written without them: they read as zero (or none), new entries are
    /// stored uncompressed, and eviction is least recently used.
    pub fn has_costs(&self) -> bool {
        self.version.load(Ordering::Relaxed) >= 3
    }

    pub fn access(&self) -> Access {
        self.access
    }

    fn err(&self, source: rusqlite::Error) -> Error {
        index_error(&self.path, source)
    }

    /// The error of a write that waited `waited` and found the database still busy.
    fn busy_or(&self, source: rusqlite::Error, waited: Duration) -> Error {
        if is_busy(&source) {
            Error::Busy {
                path: self.path.clone(),
                waited,
            }
        } else {
            self.err(source)
        }
    }

    fn check_schema(&self, conn: &Connection, schema: Schema) -> Result<()> {
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if version > SCHEMA_VERSION {
            return Err(Error::NewerSchema {
                path: self.path.clone(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        if schema == Schema::Migrate && self.access == Access::ReadWrite {
            return self.migrate(conn);
        }
        if version >= SAME_TABLES_SINCE {
            // The migrations since changed no table: read and write it as it is.
            return Ok(());
        }
        // Read nothing rather than misread: an open of an existing cache changes nothing, and a
        // read-only one cannot.
        Err(self.older_schema(version))
    }

    /// The error for an index at an older schema `version` that this open may not migrate.
    fn older_schema(&self, version: i64) -> Error {
        let (found, next) = match version {
            0 => (
                "schema version 0 (an empty index, or one whose creation did not finish)".into(),
                "sets it up",
            ),
            _ => (format!("schema version {version}"), "migrates it"),
        };
        let message = format!(
            "{found} is older than this memo-cache's {SCHEMA_VERSION}; left as it is, as this \
             open only uses an existing cache. Opening the cache with Cache::open, as a program \
             using it does, {next}"
        );
        Error::Index {
            path: self.path.clone(),
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                Some(message),
            ),
        }
    }

    fn migrate(&self, conn: &Connection) -> Result<()> {
        // Only a new, empty file takes this (before its first table; an existing index ignores
        // it): freed pages can then go back to the file system a few at a time (`shrink`).
        retry_busy(MIGRATE_TIMEOUT, || {
            conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")
        })
        .map_err(|e| self.err(e))?;
        // Another process may be migrating at the same moment: decide inside the write lock.
        // Switching a new file to WAL needs an exclusive lock that SQLite's busy handler does not
        // wait for when several processes create the same cache at once: retry it ourselves.
        retry_busy(MIGRATE_TIMEOUT, || {
            conn.execute_batch("PRAGMA journal_mode = WAL")
        })
        .map_err(|e| self.err(e))?;
        retry_busy(MIGRATE_TIMEOUT, || {
            let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
            let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version > SCHEMA_VERSION {
                return Ok(Some(version));
            }
            for migration in &MIGRATIONS[version as usize..] {
                tx.execute_batch(migration)?;
            }
            if version < 2 {
                tx.pragma_update(None, "application_id", random_epoch())?;
            }
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            tx.commit()?;
            Ok(None)
        })
        .map_err(|e| self.err(e))?
        .map_or(Ok(()), |found| {
            Err(Error::NewerSchema {
                path: self.path.clone(),
                found,
                supported: SCHEMA_VERSION,
            })
        })
    }

    fn take(&self) -> Result<Connection> {
        if let Some(conn) = self.pool.lock().expect("pool lock").pop() {
            return Ok(conn);
        }
        self.connect()
    }

    fn connect(&self) -> Result<Connection> {
        connect(&self.open_path, self.access, self.immutable).map_err(|e| self.err(e))
    }

    fn give_back(&self, conn: Connection) {
        let mut pool = self.pool.lock().expect("pool lock");
        if pool.len() < 8 {
            pool.push(conn);
        }
    }

    /// The row of `key`: from the held read snapshot once this handle is busy, else in
    /// autocommit. A miss is always the answer of a fresh snapshot.
    pub fn lookup(&self, key: &Key) -> Result<Option<Row>> {
        if let Some(held) = self.held_snapshot()
            && let Ok(mut state) = held.state.try_lock()
        {
            match state.lookup(self, &held.wake, key) {
                Ok(Some(row)) => return Ok(Some(row)),
                Ok(None) => {}
                // A busy database or a broken connection: the snapshot is gone; answer in
                // autocommit, which waits out a busy database and reports anything else.
                Err(e) => {
                    tracing::debug!(target: crate::diagnostics::STORE, "memo-cache: held snapshot dropped: {e}")
                }
            }
        }
        // In autocommit, on a pooled connection: after a write by this process, that is the
        // connection that wrote, whose page cache is still valid (the snapshot's is not).
        self.read(|c| lookup(c, key))
    }

    /// Ends the held snapshot before a write, unless another thread is reading from it.
    fn end_snapshot(&self) {
        if let Some(Some(held)) = self.held.get()
            && let Ok(mut state) = held.state.try_lock()
        {
            state.end();
        }
    }

    /// Notes the WAL-index header's counters right after a commit of this handle on `conn`:
    /// while they stand, the last commit was its own, and its next lookup may hold a snapshot
    /// at once (see "The held read snapshot" above). A commit by another process between ours
    /// and this reading is taken for ours: that only lets a snapshot begin sooner, which is
    /// as correct (it still ends at the next commit).
    fn note_own_commit(&self, conn: &Connection) {
        if !*self.wal.get_or_init(|| WalHeader::of(conn).is_some()) {
            return;
        }
        if let Some(header) = WalHeader::mapped(conn) {
            self.own_commit.store(header.counters(), Ordering::Relaxed);
        }
    }

    fn held_snapshot(&self) -> Option<&Arc<Held>> {
        if let Some(held) = self.held.get() {
            return held.as_ref();
        }
        if self.lookups.fetch_add(1, Ordering::Relaxed) < SNAPSHOT_AFTER {
            return None;
        }
        self.held.get_or_init(Held::start).as_ref()
    }

    /// Runs `f` with a pooled connection (reads).
    pub fn read<T>(&self, mut f: impl FnMut(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.take()?;
        let started = Instant::now();
        let out = retry_busy(READ_TIMEOUT, || f(&conn));
        self.give_back(conn);
        out.map_err(|e| self.busy_or(e, started.elapsed()))
    }

    /// Runs `f` inside a `BEGIN IMMEDIATE` transaction, committed when `f` returns `Ok`;
    /// retried from the start while the database is busy. `f` may run more than once.
    pub fn write<T>(&self, mut f: impl FnMut(&Transaction) -> rusqlite::Result<T>) -> Result<T> {
        self.transaction(|tx| f(tx), TransactionBehavior::Immediate, true)
    }

    /// Like [`Index::write`], waiting at most `timeout` for the write lock (zero: not at all).
    /// An [`Error::Busy`] when another process holds it that long.
    pub fn write_within<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&Transaction) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.transaction_within(timeout, |tx| f(tx), TransactionBehavior::Immediate, true)
    }

    /// Runs `f` inside one read transaction: everything it reads is from the same snapshot.
    pub fn read_snapshot<T>(
        &self,
        mut f: impl FnMut(&Transaction) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.transaction(|tx| f(tx), TransactionBehavior::Deferred, true)
    }

    /// Runs `f` holding the write lock, so that no other process changes a row while `f`
    /// looks: a `BEGIN IMMEDIATE` transaction like [`Index::write`], which writes only what `f`
    /// writes. A read-only handle cannot take the lock; it runs `f` in one read transaction.
    pub fn under_write_lock<T>(
        &self,
        f: impl FnMut(&Transaction) -> rusqlite::Result<T>,
    ) -> Result<T> {
        match self.access {
            Access::ReadWrite => self.write(f),
            Access::ReadOnly => self.read_snapshot(f),
        }
    }

    /// Like [`Index::write`] but rolls back at the end: a dry run.
    pub fn write_rollback<T>(
        &self,
        mut f: impl FnMut(&Transaction) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.transaction(|tx| f(tx), TransactionBehavior::Immediate, false)
    }

    fn transaction<T>(
        &self,
        f: impl FnMut(&Transaction) -> rusqlite::Result<T>,
        behavior: TransactionBehavior,
        commit: bool,
    ) -> Result<T> {
        let timeout = match behavior {
            TransactionBehavior::Deferred => READ_TIMEOUT,
            _ => self.write_timeout,
        };
        self.transaction_within(timeout, f, behavior, commit)
    }

    fn transaction_within<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&Transaction) -> rusqlite::Result<T>,
        behavior: TransactionBehavior,
        commit: bool,
    ) -> Result<T> {
        self.end_snapshot();
        let conn = self.take()?;
        // Connections wait READ_TIMEOUT by default; a write waits its own time.
        let other_timeout = timeout != READ_TIMEOUT;
        if other_timeout {
            conn.busy_timeout(timeout).map_err(|e| self.err(e))?;
        }
        let started = Instant::now();
        let out = retry_busy(timeout, || {
            forget_epoch_moves();
            let tx = Transaction::new_unchecked(&conn, behavior)?;
            let value = f(&tx)?;
            if commit {
                log_epoch_moves();
                tx.commit()?;
                self.note_own_commit(&conn);
            } else {
                // A dry run writes nothing, the removal log included.
                forget_epoch_moves();
                tx.rollback()?
            }
            Ok(value)
        });
        if other_timeout && conn.busy_timeout(READ_TIMEOUT).is_err() {
            return out.map_err(|e| self.busy_or(e, started.elapsed()));
        }
        self.give_back(conn);
        out.map_err(|e| self.busy_or(e, started.elapsed()))
    }
}

impl Index {
    /// SQLite removes the `-wal` and `-shm` files when the last connection to the index closes,
    /// but only if that connection may write: a read-only one leaves them behind. So a read-only
    /// handle that started them closes last through a read-write connection that only reads,
    /// which removes them unless another connection still has the index open (then they are its
    /// to remove). Its close copies back nothing unless another process left frames in the WAL,
    /// as any last close would.
    fn close_wal(&self) {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).clear();
        if !wal_path(&self.path).exists() {
            return; // Not a WAL-mode index.
        }
        // No SQLITE_OPEN_CREATE: an index moved away meanwhile is not made again.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        if let Ok(conn) = Connection::open_with_flags(&self.open_path, flags) {
            // The first read opens the WAL, which the close then removes.
            let _ = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0));
        }
    }
}

impl Index {
    /// Copies the WAL back into the index file and cuts it to zero bytes: what frees the WAL's
    /// space on a full disk. Best effort: it waits at most a second for other processes'
    /// readers (they hold frames the WAL cannot lose), and any failure leaves the WAL as it is.
    /// True when the WAL was emptied.
    pub fn checkpoint_truncate(&self) -> bool {
        self.with_writer(truncate_wal).unwrap_or(false)
    }

    /// Gives the index file's free pages back to the file system: SQLite keeps a deleted row's
    /// pages in the file for later rows, so the file never shrinks by itself. Best effort;
    /// true when the file shrank.
    ///
    /// An index created with `auto_vacuum = INCREMENTAL` (every index this version creates)
    /// moves its last pages into the free ones and cuts the file, a few pages per transaction
    /// with the WAL emptied in between, so this works on a full disk too. An older index needs
    /// a `VACUUM`, which rewrites all that remains through the WAL: done only when at least
    /// half its pages are free (after a large prune or a clear), so it costs at most what was
    /// just removed; its copy is made in memory, since the disk may be full.
    pub fn shrink(&self) -> bool {
        self.with_writer(|conn| {
            let pragma = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0));
            let (total, free) = (
                pragma("PRAGMA page_count")?,
                pragma("PRAGMA freelist_count")?,
            );
            if free == 0 {
                return Ok(false);
            }
            if pragma("PRAGMA auto_vacuum")? == 2 {
                let (mut step, mut left) = (64, free);
                while left > 0 {
                    match incremental_vacuum(conn, Some(step)) {
                        Ok(()) => {
                            truncate_wal(conn)?;
                            let now = pragma("PRAGMA freelist_count")?;
                            if now >= left {
                                break;
                            }
                            left = now;
                        }
                        Err(e)
                            if e.sqlite_error_code() == Some(ErrorCode::DiskFull) && step > 1 =>
                        {
                            step /= 2;
                        }
                        Err(e) => return Err(e),
                    }
                }
                return Ok(true);
            }
            if total < SHRINK_FROM_PAGES || free * 2 < total {
                return Ok(false);
            }
            let done = conn.execute_batch("PRAGMA temp_store = MEMORY; VACUUM;");
            let _ = conn.execute_batch("PRAGMA temp_store = DEFAULT");
            done?;
            truncate_wal(conn)
        })
        .unwrap_or(false)
    }

    /// After a removal on a disk with room: gives an `auto_vacuum` index's free pages back to
    /// the file system and copies the WAL back as far as readers allow, waiting for none of
    /// them. ([`Index::shrink`] and [`Index::checkpoint_truncate`], for a full disk, wait for
    /// every reader to finish, which beside busy readers took a second at each step.)
    pub fn give_back_pages(&self) {
        self.with_writer(|conn| {
            let pragma = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0));
            if pragma("PRAGMA auto_vacuum")? == 2 && pragma("PRAGMA freelist_count")? > 0 {
                incremental_vacuum(conn, None)?;
            }
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        });
    }

    /// Runs `f` on a pooled connection of a handle that may write, after ending the held
    /// snapshot, waiting at most a second for other processes' locks.
    fn with_writer<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Option<T> {
        if self.access == Access::ReadOnly || self.immutable {
            return None;
        }
        self.end_snapshot();
        let conn = self.take().ok()?;
        let _ = conn.busy_timeout(Duration::from_secs(1).min(self.write_timeout));
        let out = f(&conn);
        let _ = conn.busy_timeout(READ_TIMEOUT);
        self.give_back(conn);
        out.map_err(|e| tracing::debug!(target: crate::diagnostics::STORE, "memo-cache: {}: {e}", self.path.display()))
            .ok()
    }
}

/// `PRAGMA incremental_vacuum`, of at most `pages` pages (all free pages: `None`), run to its
/// end. It returns a row per page it frees and frees the next only when stepped again, so one
/// step (all `execute_batch` takes) gives back a single page.
fn incremental_vacuum(conn: &Connection, pages: Option<i64>) -> rusqlite::Result<()> {
    let sql = match pages {
        Some(n) => format!("PRAGMA incremental_vacuum({n})"),
        None => "PRAGMA incremental_vacuum".to_owned(),
    };
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

/// `wal_checkpoint(TRUNCATE)` on `conn`: true when the WAL is now empty (not kept from it by a
/// reader).
fn truncate_wal(conn: &Connection) -> rusqlite::Result<bool> {
    // (busy, frames in the WAL, frames copied back)
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|busy| busy == 0)
}

/// An index file smaller than this many pages is not worth a `VACUUM` ([`Index::shrink`]).
const SHRINK_FROM_PAGES: i64 = 16;

/// True when SQLite or the file system reported the disk full, or a file past `RLIMIT_FSIZE`:
/// SQLite reports that (EFBIG) as a failed write, a "disk I/O error", which is taken for a full
/// disk only in a process whose file sizes are limited.
pub(crate) fn is_full(e: &Error) -> bool {
    match e {
        Error::Index {
            source: rusqlite::Error::SqliteFailure(failure, _),
            ..
        } => {
            failure.code == ErrorCode::DiskFull
                || (failure.extended_code == rusqlite::ffi::SQLITE_IOERR_WRITE
                    && crate::space::file_size_limit().is_some())
        }
        Error::Io { source, .. } => matches!(
            source.kind(),
            std::io::ErrorKind::StorageFull
                | std::io::ErrorKind::FileTooLarge
                | std::io::ErrorKind::QuotaExceeded
        ),
        _ => false,
    }
}

/// The part of the index file the size limit does not count: an empty index takes 36 KiB
/// (9 pages: the header and schema, and the root of each table and index; one more, the
/// pointer map, when created with `auto_vacuum`), which no eviction can give back, and the
/// pages a few entries half fill. Below it, a limit is on stored bytes alone, as small limits
/// expect; past it, every page counts.
pub(crate) const UNCOUNTED_INDEX_BYTES: u64 = 64 * 1024;

/// What entries add to the index beyond their stored bytes, counted against the size limit:
/// the index file's pages in use (free pages are reused before it grows) past
/// [`UNCOUNTED_INDEX_BYTES`], less the inline values' bytes (stored bytes already).
pub(crate) fn overhead(conn: &Connection) -> rusqlite::Result<u64> {
    let pragma = |sql: &str| {
        conn.prepare_cached(sql)?
            .query_row([], |r| r.get::<_, i64>(0))
            .map(|v| v.max(0) as u64)
    };
    let page_size = pragma("PRAGMA page_size")?;
    let used = pragma("PRAGMA page_count")?.saturating_sub(pragma("PRAGMA freelist_count")?);
    let inline: i64 = conn
        .prepare_cached("SELECT coalesce(sum(bytes - blob_bytes), 0) FROM functions")?
        .query_row([], |r| r.get(0))?;
    // The WAL is not counted: it is bounded by itself (checkpointed and cut back), and grows only
    // while readers hold checkpoints back; evicting for it would only write more of it.
    Ok(used
        .saturating_mul(page_size)
        .saturating_sub(UNCOUNTED_INDEX_BYTES)
        .saturating_sub(inline.max(0) as u64))
}

impl Index {
    /// Closes every connection, pooled and held: the last close of the index, in any process,
    /// copies the WAL back and removes it. The index stays usable; its next statement opens a
    /// connection again.
    pub fn close(&self) {
        if let Some(Some(held)) = self.held.get() {
            let mut state = held.state.lock().unwrap_or_else(|p| p.into_inner());
            state.end();
            state.conn = None;
        }
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        if let Some(Some(held)) = self.held.get() {
            let mut state = held.state.lock().unwrap_or_else(|p| p.into_inner());
            state.closed = true;
            state.end();
            state.conn = None;
            held.wake.notify_all();
        }
        if self.close_wal {
            self.close_wal();
        }
    }
}

/// A read transaction held open across lookups, and the thread that ends it when it is old.
#[derive(Debug)]
struct Held {
    state: Mutex<HeldState>,
    /// Wakes the thread when a snapshot begins or the index is dropped.
    wake: Condvar,
}

#[derive(Debug)]
struct HeldState {
    /// Taken from the pool at the first lookup; `None` after a failed `ROLLBACK`, until the
    /// next lookup.
    conn: Option<HeldConn>,
    /// When the open snapshot began; `None` when there is none.
    since: Option<Instant>,
    /// The header's counters at the previous lookup.
    seen: u64,
    /// Since when they have not moved.
    quiet_since: Instant,
    /// When this handle last ran a checkpoint.
    checkpointed: Option<Instant>,
    /// The index was dropped: the thread exits.
    closed: bool,
    /// Rows found in a snapshot taken while the header's counters were `seen`: while they still
    /// are, nobody has committed since, so each row is what SQLite would return (see "The held
    /// read snapshot"). Emptied when the counters move or the connection changes.
    rows: Rows,
}

/// [`HeldState::rows`]: inline values of at most [`ROWS_BYTES`] in all.
#[derive(Debug, Default)]
struct Rows {
    map: HashMap<Key, Row, BuildHasherDefault<KeyHasher>>,
    bytes: usize,
}

/// What [`Rows`] may hold of values: a working set of small results, not a second cache.
const ROWS_BYTES: usize = 4 << 20;

impl Rows {
    fn get(&self, key: &Key) -> Option<Row> {
        self.map.get(key).cloned()
    }

    fn keep(&mut self, key: &Key, row: &Row) {
        let cost = row.value.as_ref().map_or(0, Vec::len) + 64;
        if self.bytes + cost > ROWS_BYTES {
            self.clear();
        }
        if self.map.insert(*key, row.clone()).is_none() {
            self.bytes += cost;
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }
}

/// The snapshot's connection, its lookup statement prepared once (one from rusqlite's
/// statement cache costs hashing and checking its SQL text twice per call, a tenth of a hit),
/// and its WAL-index header.
struct HeldConn {
    // Fields drop in order: the statement and the header go before the connection they use.
    lookup: rusqlite::Statement<'static>,
    /// `None` for a connection that has no `-shm` mapping (immutable): it never holds.
    header: Option<WalHeader>,
    conn: Box<Connection>,
}

// SAFETY: `Connection` is `Send`; the statement refers only to the boxed connection beside
// it, and the two always move together and are used by one thread at a time (under the
// `Held` mutex).
unsafe impl Send for HeldConn {}

impl std::fmt::Debug for HeldConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldConn")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl HeldConn {
    fn find(&mut self, key: &Key) -> rusqlite::Result<Option<Row>> {
        lookup_with(&mut self.lookup, key)
    }

    fn new(conn: Connection, immutable: bool) -> rusqlite::Result<HeldConn> {
        let conn = Box::new(conn);
        let lookup = conn.prepare(LOOKUP)?;
        // SAFETY: the statement borrows the boxed connection, whose address stays put when
        // the box moves, and which outlives it (see the field order). The `'static` never
        // leaves this struct.
        let lookup = unsafe {
            std::mem::transmute::<rusqlite::Statement<'_>, rusqlite::Statement<'static>>(lookup)
        };
        // Map the `-shm` file (a first read does) and find the header in it.
        conn.query_row("SELECT 1 FROM functions LIMIT 1", [], |_| Ok(()))
            .optional()?;
        let header = if immutable {
            None
        } else {
            WalHeader::of(&conn)
        };
        Ok(HeldConn {
            lookup,
            header,
            conn,
        })
    }
}

impl Held {
    fn start() -> Option<Arc<Held>> {
        let held = Arc::new(Held {
            state: Mutex::new(HeldState {
                conn: None,
                since: None,
                seen: 0,
                quiet_since: Instant::now(),
                checkpointed: None,
                closed: false,
                rows: Rows::default(),
            }),
            wake: Condvar::new(),
        });
        let for_thread = Arc::clone(&held);
        match std::thread::Builder::new()
            .name("memo-cache-snapshot".into())
            .spawn(move || for_thread.end_when_old())
        {
            Ok(_) => Some(held),
            Err(e) => {
                tracing::debug!(target: crate::diagnostics::STORE, "memo-cache: no held read snapshot (no thread: {e})");
                None
            }
        }
    }

    /// The thread's loop: ends each snapshot [`SNAPSHOT_AGE`] after it began.
    fn end_when_old(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while !state.closed {
            let left = state
                .since
                .map(|since| SNAPSHOT_AGE.saturating_sub(since.elapsed()));
            state = match left {
                None => self.wake.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(left) if left.is_zero() => {
                    state.end();
                    state
                }
                Some(left) => {
                    let (state, _) = self
                        .wake
                        .wait_timeout(state, left)
                        .unwrap_or_else(|p| p.into_inner());
                    state
                }
            };
        }
    }
}

impl HeldState {
    /// The row from the held snapshot, or `None` when the lookup must be made in autocommit:
    /// the database changed since the last lookup, no snapshot may be held yet, or the key is
    /// not in the snapshot (a miss is always confirmed outside it).
    fn lookup(&mut self, index: &Index, wake: &Condvar, key: &Key) -> Result<Option<Row>> {
        if self.conn.is_none() {
            let conn = index.take()?;
            self.conn = Some(HeldConn::new(conn, index.immutable).map_err(|e| index.err(e))?);
            self.rows.clear();
        }
        let found = self.lookup_in(index, wake, key);
        found.map_err(|e| {
            self.end();
            index.err(e)
        })
    }

    fn lookup_in(
        &mut self,
        index: &Index,
        wake: &Condvar,
        key: &Key,
    ) -> rusqlite::Result<Option<Row>> {
        let held = self.conn.as_mut().expect("a connection was just set");
        let Some(header) = &held.header else {
            // Immutable: nothing changes under it, and it takes no locks anyway.
            return held.find(key);
        };
        let now = header.counters();
        let own = index.own_commit.load(Ordering::Relaxed) == now;
        if now != self.seen {
            // Someone committed: end the snapshot, and read in autocommit for a while, unless
            // the commit was this handle's own.
            self.seen = now;
            self.quiet_since = Instant::now();
            self.rows.clear();
            self.end();
            if !own {
                return Ok(None);
            }
        } else if let Some(row) = self.rows.get(key) {
            // Found since the last commit of anyone: no snapshot, statement or lock needed.
            return Ok(Some(row));
        }
        let Some(held) = self.conn.as_mut() else {
            return Ok(None); // The snapshot could not be ended, and its connection was closed.
        };
        let header = held.header.as_ref().expect("checked above");
        if self.since.is_none() && !own {
            if self.quiet_since.elapsed() < QUIET {
                return Ok(None);
            }
            if !header.backfilled() {
                let may_checkpoint = index.access == Access::ReadWrite
                    && self
                        .checkpointed
                        .is_none_or(|at| at.elapsed() >= CHECKPOINT_EVERY);
                if !may_checkpoint {
                    return Ok(None);
                }
                self.checkpointed = Some(Instant::now());
                held.conn
                    .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
                if !header.backfilled() || header.counters() != self.seen {
                    return Ok(None);
                }
            }
        }
        if self.since.is_none() {
            // Prepared once per connection: a miss begins and ends a snapshot, and parsing the
            // two statements each time cost it 3k instructions.
            held.conn.prepare_cached("BEGIN")?.execute([])?;
            self.since = Some(Instant::now());
            wake.notify_one();
        }
        let found = held.find(key)?;
        match &found {
            // Taken while the counters were still `seen` (a commit since then has moved them,
            // and the next lookup empties the rows).
            Some(row) => self.rows.keep(key, row),
            None => self.end(),
        }
        Ok(found)
    }

    /// Ends the open snapshot, if any; a connection that cannot end it is closed.
    fn end(&mut self) {
        self.since = None;
        if let Some(held) = &self.conn
            && !held.conn.is_autocommit()
            && held
                .conn
                .prepare_cached("ROLLBACK")
                .and_then(|mut rollback| rollback.execute([]))
                .is_err()
        {
            self.conn = None;
        }
    }
}

/// SQLite's WAL-index header, read where the connection that owns it mapped it: the first
/// bytes of the `-shm` file, laid out as [the WAL-index format](https://sqlite.org/walformat.html)
/// documents (`iChange` at byte 8, incremented by every commit; `mxFrame` at byte 16).
#[derive(Debug)]
struct WalHeader(NonNull<u32>);

// SAFETY: the pointer is only read with atomic loads, from whichever thread holds the
// `HeldState` it lives in, and the mapping it points into lives as long as that state's
// connection (see `WalHeader::of`).
unsafe impl Send for WalHeader {}

impl WalHeader {
    /// The header of `conn`'s database, if it is in WAL mode and has mapped its `-shm` file.
    /// Valid while `conn` is open.
    fn of(conn: &Connection) -> Option<WalHeader> {
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .ok()?;
        if !mode.eq_ignore_ascii_case("wal") {
            return None;
        }
        WalHeader::mapped(conn)
    }

    /// The header of `conn`'s database, which must be in WAL mode (else this would make its
    /// `-shm` file), if `conn` has mapped its `-shm` file. Valid while `conn` is open.
    fn mapped(conn: &Connection) -> Option<WalHeader> {
        use rusqlite::ffi;
        let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
        // SAFETY: `handle` is the live connection's; FILE_POINTER writes one `sqlite3_file*`.
        let rc = unsafe {
            ffi::sqlite3_file_control(
                conn.handle(),
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_FILE_POINTER,
                (&raw mut file).cast(),
            )
        };
        if rc != ffi::SQLITE_OK || file.is_null() {
            return None;
        }
        // SAFETY: a file SQLite returned is open and its methods table is static.
        let methods = unsafe { (*file).pMethods.as_ref() }?;
        if methods.iVersion < 2 {
            return None;
        }
        let map = methods.xShmMap?;
        let mut region: *mut std::ffi::c_void = std::ptr::null_mut();
        // SAFETY: with `bExtend` 0, xShmMap only returns region 0 when this connection has it
        // mapped already (it does, having read in WAL mode), without creating anything. The
        // region stays mapped until the connection closes.
        let rc = unsafe { map(file, 0, 32 * 1024, 0, &mut region) };
        if rc != ffi::SQLITE_OK {
            return None;
        }
        NonNull::new(region.cast::<u32>()).map(WalHeader)
    }

    /// True when every frame of the WAL has been copied back into the database file
    /// (`nBackfill`, the first word of the checkpoint information at byte 96, equals `mxFrame`).
    fn backfilled(&self) -> bool {
        let words = self.0.as_ptr();
        // SAFETY: as in `counters`; the checkpoint information follows the two header copies
        // in the same mapped region.
        let (frame, backfill) = unsafe {
            (
                AtomicU32::from_ptr(words.add(4)).load(Ordering::Acquire),
                AtomicU32::from_ptr(words.add(24)).load(Ordering::Acquire),
            )
        };
        frame == backfill
    }

    /// `iChange` and `mxFrame`: different after any commit.
    fn counters(&self) -> u64 {
        let words = self.0.as_ptr();
        // SAFETY: both words lie in the mapped, 4-aligned header (see `of`); SQLite writes them
        // from other processes, so they are read with atomic loads.
        let (change, frame) = unsafe {
            (
                AtomicU32::from_ptr(words.add(2)).load(Ordering::Acquire),
                AtomicU32::from_ptr(words.add(4)).load(Ordering::Acquire),
            )
        };
        (u64::from(change) << 32) | u64::from(frame)
    }
}

pub(crate) fn index_error(path: &Path, source: rusqlite::Error) -> Error {
    let extended = match &source {
        rusqlite::Error::SqliteFailure(e, _) => e.extended_code,
        _ => 0,
    };
    if extended == rusqlite::ffi::SQLITE_CANTOPEN_SYMLINK {
        return Error::Symlink {
            path: path.to_path_buf(),
        };
    }
    if is_busy(&source) {
        // A connection's busy handler waits READ_TIMEOUT; writes say how long they waited.
        return Error::Busy {
            path: path.to_path_buf(),
            waited: READ_TIMEOUT,
        };
    }
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => Error::NotAnIndex {
            path: path.to_path_buf(),
        },
        Some(ErrorCode::ReadOnly) => Error::ReadOnly {
            path: path.to_path_buf(),
            source,
        },
        Some(ErrorCode::DatabaseCorrupt) => Error::CorruptIndex {
            path: path.to_path_buf(),
            source,
        },
        _ => Error::Index {
            path: path.to_path_buf(),
            source,
        },
    }
}

fn connect(path: &Path, access: Access, immutable: bool) -> rusqlite::Result<Connection> {
    let flags = match access {
        Access::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        Access::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let conn = if immutable {
        Connection::open_with_flags(immutable_uri(path), flags | OpenFlags::SQLITE_OPEN_URI)
    } else {
        Connection::open_with_flags(path, flags)
    }?;
    conn.busy_timeout(READ_TIMEOUT)?;
    // NORMAL is durable at checkpoints; a commit lost to a power cut is a miss, not a wrong value.
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -8192;")?;
    conn.execute_batch(&crate::space::size_pragmas(path))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// The path to open the index at `path` by: under its directory's resolved path, since SQLite
/// opening with `SQLITE_OPEN_NOFOLLOW` refuses a symlink anywhere in the path, and a cache
/// directory may well be reached through one. Refuses, with an error that says what to do, a
/// symlink or a non-file in place of the index or its companion files, and a path too long.
fn checked_open_path(path: &Path) -> Result<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(path.to_path_buf());
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let open_path = std::fs::canonicalize(dir)
        .map_err(|e| Error::io("resolving cache directory", dir, e))?
        .join(name);
    let len = open_path.as_os_str().len();
    // The longest companion name, `-journal`, must fit too.
    if len + "-journal".len() >= MAX_PATH {
        return Err(Error::PathTooLong {
            path: open_path,
            len,
            max: MAX_PATH - "-journal".len() - 1,
        });
    }
    for file in [
        open_path.clone(),
        with_suffix(&open_path, "-wal"),
        with_suffix(&open_path, "-shm"),
        with_suffix(&open_path, "-journal"),
    ] {
        let meta = match std::fs::symlink_metadata(&file) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("inspecting", file, e)),
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            return Err(Error::Symlink { path: file });
        }
        if !kind.is_file() {
            return Err(Error::NotAFile {
                found: file_kind(&kind),
                path: file,
            });
        }
        if hard_links(&meta) > 1 {
            return Err(Error::NotAFile {
                found: "a file with other hard links (another program's file, or a hard-link \
                        backup's?)",
                path: file,
            });
        }
    }
    Ok(open_path)
}

/// How many names the file has: memo-cache's own files have one, so writing one with more
/// would write another program's file.
pub(crate) fn hard_links(meta: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        std::os::unix::fs::MetadataExt::nlink(meta)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        1
    }
}

/// True when the database header at `path` says WAL mode (file format versions 2 and 2).
fn in_wal_mode(path: &Path) -> bool {
    let mut header = [0u8; 20];
    blobs::open_no_follow(path)
        .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut header))
        .is_ok_and(|()| header[18] == 2 && header[19] == 2)
}

#[cfg(unix)]
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(_path: &Path) -> Option<(u64, u64)> {
    None
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// "a FIFO", "a directory", ...: what stands at a path, for messages.
fn file_kind(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_block_device() || kind.is_char_device() {
            return "a device";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// A `file:` URI opening `path` read-only and immutable, with the characters URIs reserve escaped.
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'%' | b'?' | b'#' | 0..=0x20 | 0x7f.. => uri.push_str(&format!("%{b:02X}")),
            _ => uri.push(b as char),
        }
    }
    uri.push_str("?mode=ro&immutable=1");
    uri
}

/// Runs `f` again while SQLite reports the database busy or locked, up to `timeout`.
fn retry_busy<T>(
    timeout: Duration,
    mut f: impl FnMut() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match f() {
            Err(e) if is_busy(&e) && start.elapsed() + pause < timeout => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

// ---- Rows -------------------------------------------------------------------------------------

use rusqlite::{OptionalExtension, params};

use crate::key::{Digest, Function, Key, KeyHasher};

/// An entry's row as the read path needs it.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub size: u64,
    pub hash: Digest,
    pub value: Option<Vec<u8>>,
    /// When the value was stored (Unix ms); `None` when the column holds no number.
    pub created: Option<i64>,
    pub expires: Option<i64>,
}

/// What was removed with a row: enough to remove its blob file afterwards.
#[derive(Debug, Clone)]
pub(crate) struct Removed {
    pub key: Key,
    pub hash: Digest,
    pub size: u64,
    pub in_blob: bool,
    /// The row's function version (`functions.id`), to name it in a debug event; 0 when the
    /// row did not say.
    pub function_id: i64,
}

/// The key or hash in column `i`, or `None` when it is not a 32-byte blob (a hand-edited or
/// hostile index may hold anything there, even text, which `get::<Vec<u8>>` refuses).
pub(crate) fn digest_at(r: &rusqlite::Row<'_>, i: usize) -> Option<Digest> {
    match r.get_ref(i) {
        Ok(rusqlite::types::ValueRef::Blob(b)) => Digest::from_slice(b),
        _ => None,
    }
}

/// A removed row, from `key, hash, size, value IS NULL, function_id`. A malformed row (a key or hash that is
/// not 32 bytes, a size that is not a number: a hand-edited or hostile index) must not stop a
/// prune or clear from removing it, so it reads as an inline row with no file to remove.
fn removed(r: &rusqlite::Row<'_>) -> rusqlite::Result<Removed> {
    removed_at(r, 0)
}

/// Like [`removed`], from the columns starting at `at`.
pub(crate) fn removed_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Removed> {
    let digest_at = |i| digest_at(r, at + i);
    let size = r.get::<_, i64>(at + 2).unwrap_or(0).max(0) as u64;
    let function_id = r.get::<_, i64>(at + 4).unwrap_or(0);
    Ok(match (digest_at(0), digest_at(1)) {
        (Some(key), Some(hash)) => Removed {
            key,
            hash,
            size,
            in_blob: r.get(at + 3)?,
            function_id,
        },
        _ => Removed {
            key: Digest([0; 32]),
            hash: Digest([0; 32]),
            size,
            in_blob: false,
            function_id,
        },
    })
}

/// An entry's row as `verify` reads it: no column trusted, since a hand-edited or hostile index
/// may hold anything. `None` in a field: not of the form memo-cache writes.
#[derive(Debug)]
pub(crate) struct RawRow {
    pub rowid: i64,
    pub function: Option<String>,
    pub key: Option<Key>,
    pub hash: Option<Digest>,
    pub size: Option<i64>,
    /// `Some(None)` for a value in a blob file, `Some(Some(bytes))` for an inline one.
    pub value: Option<Option<Vec<u8>>>,
}

const RAW_ROWS: &str = "SELECT e.rowid, f.name, e.key, e.hash, e.size, e.value FROM entries e
     LEFT JOIN functions f ON f.id = e.function_id";

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    let value = match r.get_ref(5)? {
        rusqlite::types::ValueRef::Null => Some(None),
        rusqlite::types::ValueRef::Blob(bytes) => Some(Some(bytes.to_vec())),
        _ => None,
    };
    Ok(RawRow {
        rowid: r.get(0)?,
        function: r.get(1).ok().flatten(),
        key: digest_at(r, 2),
        hash: digest_at(r, 3),
        size: r.get(4).ok(),
        value,
    })
}

/// Calls `each` with every entry's row, all read in one statement (one read snapshot).
pub(crate) fn each_raw_row(
    conn: &Connection,
    mut each: impl FnMut(RawRow),
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(RAW_ROWS)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        each(raw_row(row)?);
    }
    Ok(())
}

/// The row of `key`, as [`each_raw_row`] reads it.
pub(crate) fn raw_row_of_key(conn: &Connection, key: &Key) -> rusqlite::Result<Option<RawRow>> {
    conn.prepare_cached(&format!("{RAW_ROWS} WHERE e.key = ?1"))?
        .query_row([&key.0[..]], raw_row)
        .optional()
}

/// The row at `rowid`, as [`each_raw_row`] reads it: for malformed rows, which have no usable key.
pub(crate) fn raw_row_at(conn: &Connection, rowid: i64) -> rusqlite::Result<Option<RawRow>> {
    conn.prepare_cached(&format!("{RAW_ROWS} WHERE e.rowid = ?1"))?
        .query_row([rowid], raw_row)
        .optional()
}

/// The row of a key: at its home row id ([`home_rowid`]) when it is there (one b-tree descent),
/// else through the key's index. One statement, so a miss costs one read transaction.
const LOOKUP: &str =
    "SELECT size, hash, value, expires, created FROM entries WHERE rowid = ?1 AND key = ?2
     UNION ALL SELECT size, hash, value, expires, created FROM entries WHERE key = ?2
     LIMIT 1";

pub(crate) fn lookup(conn: &Connection, key: &Key) -> rusqlite::Result<Option<Row>> {
    let mut stmt = conn.prepare_cached(LOOKUP)?;
    lookup_with(&mut stmt, key)
}

fn lookup_with(stmt: &mut rusqlite::Statement<'_>, key: &Key) -> rusqlite::Result<Option<Row>> {
    stmt.query_row(params![home_rowid(key), &key.0[..]], row)
        .optional()
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        size: r.get::<_, i64>(0)?.max(0) as u64,
        // Read in place: a hit allocates for the value, not for its hash.
        hash: digest_at(r, 1).ok_or_else(|| {
            rusqlite::Error::InvalidColumnType(1, "hash".into(), rusqlite::types::Type::Blob)
        })?,
        value: r.get(2)?,
        expires: r.get(3)?,
        created: r.get(4).ok(),
    })
}

/// The row id of `func`, created when new; also makes it its name's current version, so the
/// entries of older fingerprints become stale.
pub(crate) fn ensure_function(tx: &Transaction, func: &Function) -> rusqlite::Result<i64> {
    let identity = func.identity();
    let found: Option<(i64, bool)> = tx
        .prepare_cached("SELECT id, current FROM functions WHERE identity = ?1")?
        .query_row([&identity.0[..]], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let id = match found {
        Some((id, true)) => return Ok(id),
        Some((id, false)) => {
            tx.prepare_cached("UPDATE functions SET current = 1 WHERE id = ?1")?.execute([id])?;
            id
        }
        None => tx
            .prepare_cached(
                "INSERT INTO functions (identity, name, fingerprint, return_type) VALUES (?1, ?2, ?3, ?4) RETURNING id",
            )?
            .query_row(params![&identity.0[..], func.name(), func.fingerprint(), func.return_type()], |r| r.get(0))?,
    };
    tx.prepare_cached(
        "UPDATE functions SET current = 0 WHERE name = ?1 AND id != ?2 AND current = 1",
    )?
    .execute(params![func.name(), id])?;
    Ok(id)
}

/// A version of a function, as `other_versions` lists them.
#[derive(Debug)]
pub(crate) struct Version {
    pub fingerprint: String,
    pub return_type: String,
    pub entries: u64,
}

/// The versions of the function named `name`, other than `identity`, that still hold entries:
/// why a call missed, for its debug event.
pub(crate) fn other_versions(
    conn: &Connection,
    name: &str,
    identity: &Digest,
) -> rusqlite::Result<Vec<Version>> {
    let mut stmt = conn.prepare_cached(
        "SELECT fingerprint, return_type, entries FROM functions
         WHERE name = ?1 AND identity != ?2 AND entries > 0 ORDER BY id",
    )?;
    stmt.query_map(params![name, &identity.0[..]], |r| {
        Ok(Version {
            fingerprint: r.get(0)?,
            return_type: r.get(1)?,
            entries: r.get::<_, i64>(2)?.max(0) as u64,
        })
    })?
    .collect()
}

/// A new row, replacing any row of the same key (returned so its blob can go).
#[derive(Debug)]
pub(crate) struct NewEntry<'a> {
    pub key: &'a Key,
    pub function_id: i64,
    pub size: u64,
    pub hash: &'a Digest,
    pub inline: Option<&'a [u8]>,
    /// When the value was computed: now, or earlier for a value fetched from the Redis tier.
    pub created: i64,
    pub now: i64,
    pub expires: Option<i64>,
    /// What the index records beside the value (schema version 3; see [`Index::has_costs`]).
    pub record: Option<&'a Record<'a>>,
}

impl<'a> Record<'a> {
    /// The record of a value computed in `took`, from the arguments `args`.
    pub fn computed(took: Duration, args: &'a crate::args_record::Args) -> Record<'a> {
        Record {
            compute_us: u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1),
            args: args.bytes.as_deref(),
            args_size: args.size,
            encoding: 0,
        }
    }
}

/// What an entry records beside its value, for people and for eviction.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Record<'a> {
    /// Wall time the computation took, microseconds; 0 when unknown.
    pub compute_us: u64,
    /// The canonical argument bytes, when small enough to keep.
    pub args: Option<&'a [u8]>,
    /// Their length, when known.
    pub args_size: Option<u64>,
    /// How the value is stored: 0 as encoded, 1 zstd-compressed (see [`crate::compress`]).
    pub encoding: u8,
}

/// The SQL of an entry's GreedyDual-Size-Frequency priority (see [`crate::evict`]): the clock
/// plus its frequency (`1 + hits`) times its cost per byte, the size counted with 256 bytes for
/// its row and index entries (so that tiny values do not get unbounded priorities). Each
/// argument is SQL for the entry's hits, compute time (µs) and size (bytes).
macro_rules! gdsf_priority {
    ($hits:literal, $compute_us:literal, $size:literal) => {
        concat!(
            "(coalesce((SELECT value FROM policy WHERE name = 'clock'), 0.0) + (1 + ",
            $hits,
            ") * ",
            $compute_us,
            " / (",
            $size,
            " + 256.0))"
        )
    };
}
pub(crate) use gdsf_priority;

pub(crate) fn insert_entry(
    tx: &Transaction,
    e: &NewEntry<'_>,
) -> rusqlite::Result<Option<Removed>> {
    let old = delete_entry(tx, e.key)?;
    const INSERT: &str = "INSERT INTO entries
         (key, function_id, size, hash, value, created, last_used, expires, rowid)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
    const INSERT_RECORDED: &str = concat!(
        "INSERT INTO entries
         (key, function_id, size, hash, value, created, last_used, expires, rowid,
          compute_us, args, args_size, encoding, priority)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ",
        gdsf_priority!("0", "?10", "?3"),
        ")"
    );
    let insert = |rowid: Option<i64>| {
        let (size, compute_us) = (
            e.size as i64,
            e.record.map(|r| r.compute_us.min(i64::MAX as u64) as i64),
        );
        let args_size = e
            .record
            .and_then(|r| r.args_size)
            .map(|n| n.min(i64::MAX as u64) as i64);
        let (key, hash) = (&e.key.0[..], &e.hash.0[..]);
        let mut values: Vec<&dyn rusqlite::ToSql> = vec![
            &key,
            &e.function_id,
            &size,
            &hash,
            &e.inline,
            &e.created,
            &e.now,
            &e.expires,
            &rowid,
        ];
        let sql = match &e.record {
            None => INSERT,
            Some(record) => {
                values.extend([
                    &compute_us as &dyn rusqlite::ToSql,
                    &record.args,
                    &args_size,
                    &record.encoding,
                ]);
                INSERT_RECORDED
            }
        };
        tx.prepare_cached(sql)?.execute(&values[..])
    };
    match insert(Some(home_rowid(e.key))) {
        // Another key with the same first eight bytes lives there: any free row id will do
        // (a NULL row id picks one); lookups fall back to the key index.
        Err(rusqlite::Error::SqliteFailure(f, _))
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_ROWID =>
        {
            insert(None)?;
        }
        other => {
            other?;
        }
    }
    Ok(old)
}

/// The row id an entry is stored at when it is free: the key's first eight bytes. A lookup then
/// finds the row in one descent of the table's b-tree instead of two (the key's index, then
/// the table), a sixth of a hit. Rows stored elsewhere (a rare clash of first bytes, a row
/// written before this was done) are found through the key's index.
fn home_rowid(key: &Key) -> i64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&key.0[..8]);
    i64::from_le_bytes(first)
}

pub(crate) fn delete_entry(tx: &Transaction, key: &Key) -> rusqlite::Result<Option<Removed>> {
    // A select, then a delete by row id only when there is a row: a store of a new key (the
    // usual case) skips the `DELETE ... RETURNING`, which costs a fifth of a store even when
    // it finds nothing.
    let Some((rowid, removed)) = find_entry(tx, key)? else {
        return Ok(None);
    };
    tx.prepare_cached("DELETE FROM entries WHERE rowid = ?1")?
        .execute([rowid])?;
    bump_epoch(tx, &[key].into_iter().collect())?;
    Ok(Some(removed))
}

/// The removal epoch: moved on by every transaction that removes a row. A first-hit file
/// records the epoch its row was read at, and is valid only while it has not moved, or while
/// the moves since spared its key (see [`crate::hints`]).
pub(crate) fn epoch(conn: &Connection) -> rusqlite::Result<i32> {
    conn.query_row("PRAGMA application_id", [], |r| r.get(0))
}

/// A random non-zero epoch to start from.
fn random_epoch() -> i32 {
    use std::hash::{BuildHasher, Hasher};
    // Every `RandomState` has keys of its own, seeded from the OS's randomness.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (random as i32 & i32::MAX).max(1)
}

/// Moves the removal epoch on to a new random value (it lives in the database header, so it
/// commits with the removal), and records in the removal log which keys' buckets the move
/// touched ([`hints::log_move`]), before the commit and under the write lock.
///
/// Random, not counted up: a record whose transaction rolled back (a retry, a dry run, a
/// crash before the commit) leads to a value the header never shows, so it vouches for no
/// first-hit file.
fn bump_epoch(tx: &Transaction, touched: &Buckets) -> rusqlite::Result<()> {
    let from = epoch(tx)?;
    let mut to = random_epoch();
    while to == from {
        to = random_epoch();
    }
    if let Some(index) = tx.path().filter(|p| !p.is_empty()) {
        let hints = Path::new(index).with_file_name(HINTS_DIR);
        // At a process's exit (a `static` handle closing) this thread's storage may be gone:
        // then the move goes unrecorded, which voids older first-hit files, as is safe.
        let _ = EPOCH_MOVES.try_with(|moves| moves.borrow_mut().push((hints, from, to, *touched)));
    }
    tx.pragma_update(None, "application_id", to)
}

thread_local! {
    /// The moves of the removal epoch made by the transaction this thread is in, logged just
    /// before it commits ([`log_epoch_moves`]) and dropped when it rolls back: a dry run leaves
    /// no record. (A move whose record is lost, or a record whose commit then fails, is safe:
    /// see [`crate::hints`].)
    static EPOCH_MOVES: std::cell::RefCell<Vec<(PathBuf, i32, i32, Buckets)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes the removal log's records of this thread's transaction, which is about to commit
/// (still under the write lock).
fn log_epoch_moves() {
    let moves = EPOCH_MOVES
        .try_with(|moves| moves.take())
        .unwrap_or_default();
    for (hints, from, to, touched) in moves {
        hints::log_move(&hints, from, to, &touched);
    }
}

/// Drops the records of a transaction that will not commit (or of one before it that failed).
fn forget_epoch_moves() {
    let _ = EPOCH_MOVES.try_with(|moves| moves.borrow_mut().clear());
}

/// When `key`'s row was created and when it expires (Unix ms): `None` without a row.
pub(crate) fn times(
    conn: &Connection,
    key: &Key,
) -> rusqlite::Result<Option<(Option<i64>, Option<i64>)>> {
    conn.prepare_cached("SELECT created, expires FROM entries WHERE key = ?1")?
        .query_row([&key.0[..]], |r| Ok((r.get(0).ok(), r.get(1)?)))
        .optional()
}

/// True when one of the `probe` least recently used rows of the function `function_id` is not
/// bound by a ttl of `ttl_ms` (see [`crate::ttl`]): one short walk of the function's index.
pub(crate) fn disagrees_with_ttl(
    conn: &Connection,
    function_id: i64,
    ttl_ms: i64,
    probe: i64,
) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM (SELECT created, expires FROM entries
             WHERE function_id = ?1 ORDER BY last_used LIMIT ?3)
         WHERE expires IS NULL OR expires > created + ?2)",
    )?
    .query_row(params![function_id, ttl_ms, probe], |r| r.get(0))
}

/// Brings the rows of the function with `identity` to a ttl of `ttl_ms`: `expires` becomes
/// `created + ttl_ms` where it was later or unset (see [`crate::ttl`]). Moves the removal epoch
/// when a row changed, so that first-hit files with the old expiry are no longer believed.
/// Returns how many rows changed.
pub(crate) fn bring_to_ttl(
    tx: &Transaction,
    identity: &Digest,
    ttl_ms: i64,
) -> rusqlite::Result<usize> {
    // `created <= ?3` keeps the sum an integer (a hostile row could hold anything).
    let mut stmt = tx.prepare_cached(
        "UPDATE entries SET expires = created + ?2
             WHERE function_id = (SELECT id FROM functions WHERE identity = ?1)
               AND typeof(created) = 'integer' AND created <= ?3
               AND (expires IS NULL OR expires > created + ?2)
             RETURNING key",
    )?;
    let mut changed = 0;
    let mut touched = Buckets::default();
    {
        let mut rows = stmt.query(params![&identity.0[..], ttl_ms, i64::MAX - ttl_ms.max(0)])?;
        while let Some(row) = rows.next()? {
            changed += 1;
            match digest_at(row, 0) {
                Some(key) => touched.add(&key),
                None => touched = Buckets::ALL,
            }
        }
    }
    if changed > 0 {
        bump_epoch(tx, &touched)?;
    }
    Ok(changed)
}

/// The row id of `key`'s row, and what removing it would remove.
pub(crate) fn find_entry(conn: &Connection, key: &Key) -> rusqlite::Result<Option<(i64, Removed)>> {
    conn.prepare_cached(
        "SELECT rowid, key, hash, size, value IS NULL, function_id FROM entries WHERE key = ?1",
    )?
    .query_row([&key.0[..]], |r| {
        Ok((r.get::<_, i64>(0)?, removed_at(r, 1)?))
    })
    .optional()
}

/// True when the row of `key` holds the value hashing to `hash` in a blob file.
pub(crate) fn holds_blob(conn: &Connection, key: &Key, hash: &Digest) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM entries WHERE key = ?1 AND hash = ?2 AND value IS NULL")?
        .exists([&key.0[..], &hash.0[..]])
}

/// Deletes the rows a walk of this transaction chose, by rowid (in rowid order, so the table's
/// pages are visited once each), and moves the removal epoch once for all of them. `tick` is
/// told how many are done. Returns the rows that were there. `costs`: the index has schema
/// version 3's columns ([`Index::has_costs`]).
///
/// A removal of at least half as many rows as it leaves (a prune to half, say) takes the
/// secondary indexes of `entries` and its delete trigger away, deletes, and puts them back from
/// their own `CREATE` statements, then counts the functions' aggregates again: building an index
/// over the rows left is a sort, where deleting from it is a b-tree descent per row and index
/// (a million-entry prune to half: 11 s of CPU in SQLite alone with them in place, 5.5 s without
/// them, then 3 s to build them). All of it is one transaction: a crash leaves the index as it
/// was, and readers see the old rows until the commit.
pub(crate) fn delete_rows(
    tx: &Transaction,
    mut rows: Vec<(i64, Removed)>,
    costs: bool,
    mut tick: impl FnMut(u64),
) -> rusqlite::Result<Vec<Removed>> {
    rows.sort_unstable_by_key(|(rowid, _)| *rowid);
    // The rows there now, as the triggers count them.
    let left = tx
        .query_row("SELECT coalesce(sum(entries), 0) FROM functions", [], |r| {
            r.get::<_, i64>(0)
        })?
        .max(0) as usize;
    let bulk = rows.len() >= BULK_DELETE_MIN && rows.len() * 2 >= left.saturating_sub(rows.len());
    let set_aside = if bulk {
        set_aside_for_bulk_delete(tx)?
    } else {
        Vec::new()
    };
    let mut gone = Vec::with_capacity(rows.len());
    {
        let mut delete = tx.prepare_cached("DELETE FROM entries WHERE rowid = ?1")?;
        for (done, (rowid, removed)) in rows.into_iter().enumerate() {
            tick(done as u64);
            if delete.execute([rowid])? > 0 {
                gone.push(removed);
            }
        }
    }
    if bulk {
        for sql in &set_aside {
            tx.execute_batch(sql)?;
        }
        recount_functions(tx, costs)?;
    }
    if gone.iter().any(|r| r.key.0 == [0; 32]) {
        // A row whose hash was malformed reads with a zero key: its own key is not known here.
        bump_epoch(tx, &Buckets::ALL)?;
    } else if !gone.is_empty() {
        bump_epoch(tx, &gone.iter().map(|r| &r.key).collect())?;
    }
    Ok(gone)
}

/// The fewest rows [`delete_rows`] removes with the indexes set aside.
const BULK_DELETE_MIN: usize = 10_000;

/// Drops the secondary indexes of `entries` and its delete trigger, returning the statements
/// that create them again (as the schema holds them: whatever version made them).
fn set_aside_for_bulk_delete(tx: &Transaction) -> rusqlite::Result<Vec<String>> {
    let found: Vec<(String, String, String)> = tx
        .prepare(
            "SELECT type, name, sql FROM sqlite_master
             WHERE tbl_name = 'entries' AND sql IS NOT NULL
               AND (type = 'index' OR (type = 'trigger' AND name = 'entries_delete'))",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (kind, name, _) in &found {
        let kind = if kind == "index" { "INDEX" } else { "TRIGGER" };
        tx.execute_batch(&format!("DROP {kind} \"{}\"", name.replace('"', "\"\"")))?;
    }
    Ok(found.into_iter().map(|(_, _, sql)| sql).collect())
}

/// Sets every function's aggregates (those the insert and delete triggers keep) from its rows,
/// in one scan of `entries`. `last_used` is left: no removal lowers it.
fn recount_functions(tx: &Transaction, costs: bool) -> rusqlite::Result<()> {
    let sql = if costs {
        "UPDATE functions SET entries = 0, bytes = 0, blob_bytes = 0, compute_us = 0, hits = 0, saved_us = 0;
         UPDATE functions SET entries = s.n, bytes = s.bytes, blob_bytes = s.blob_bytes,
             compute_us = s.compute_us, hits = s.hits, saved_us = s.saved_us
         FROM (SELECT function_id, count(*) AS n, sum(size) AS bytes,
                      sum(CASE WHEN value IS NULL THEN size ELSE 0 END) AS blob_bytes,
                      sum(compute_us) AS compute_us, sum(hits) AS hits,
                      sum(hits * compute_us) AS saved_us
               FROM entries GROUP BY function_id) AS s
         WHERE functions.id = s.function_id;"
    } else {
        "UPDATE functions SET entries = 0, bytes = 0, blob_bytes = 0;
         UPDATE functions SET entries = s.n, bytes = s.bytes, blob_bytes = s.blob_bytes
         FROM (SELECT function_id, count(*) AS n, sum(size) AS bytes,
                      sum(CASE WHEN value IS NULL THEN size ELSE 0 END) AS blob_bytes
               FROM entries GROUP BY function_id) AS s
         WHERE functions.id = s.function_id;"
    };
    tx.execute_batch(sql)
}

/// Deletes a row by its rowid: for malformed rows, which have no usable key.
pub(crate) fn delete_rowid(tx: &Transaction, rowid: i64) -> rusqlite::Result<usize> {
    let n = tx.execute("DELETE FROM entries WHERE rowid = ?1", [rowid])?;
    if n > 0 {
        // A malformed row's key says nothing: every first-hit file may be its copy.
        bump_epoch(tx, &Buckets::ALL)?;
    }
    Ok(n)
}

/// Deletes the row only if it still holds the value hashing to `hash`: a reader that found a
/// bad value must not delete a good one stored since.
pub(crate) fn delete_entry_if(
    tx: &Transaction,
    key: &Key,
    hash: &Digest,
) -> rusqlite::Result<Option<Removed>> {
    let gone = tx
        .prepare_cached(
            "DELETE FROM entries WHERE key = ?1 AND hash = ?2 RETURNING key, hash, size, value IS NULL, function_id",
        )?
        .query_row([&key.0[..], &hash.0[..]], removed)
        .optional()?;
    if gone.is_some() {
        bump_epoch(tx, &[key].into_iter().collect())?;
    }
    Ok(gone)
}

/// Deletes every row selected by `where_sql` (over `entries e` joined with `functions f`).
pub(crate) fn delete_where(
    tx: &Transaction,
    where_sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<Vec<Removed>> {
    let sql = format!(
        "DELETE FROM entries WHERE key IN (SELECT e.key FROM entries e JOIN functions f ON f.id = e.function_id WHERE {where_sql})
         RETURNING key, hash, size, value IS NULL, function_id"
    );
    let mut stmt = tx.prepare(&sql)?;
    let rows: Vec<Removed> = stmt
        .query_map(args, removed)?
        .collect::<rusqlite::Result<_>>()?;
    if !rows.is_empty() {
        // A malformed key reads as all zeros (`removed_at`): no first-hit file is its copy.
        bump_epoch(tx, &rows.iter().map(|r| &r.key).collect())?;
    }
    Ok(rows)
}

/// How many entries `DELETE ... WHERE {where_sql}` would remove (for a progress count).
pub(crate) fn count_where(
    conn: &Connection,
    where_sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<u64> {
    let sql = format!(
        "SELECT count(*) FROM entries e JOIN functions f ON f.id = e.function_id WHERE {where_sql}"
    );
    let n: i64 = conn.prepare(&sql)?.query_row(args, |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

/// Rows deleted per statement by [`delete_where_batched`].
const DELETE_BATCH: usize = 1024;

/// Like [`delete_where`], [`DELETE_BATCH`] rows per statement (in the caller's transaction),
/// handing each batch's rows to `batch` as it is done: a prune can say how far it has come.
pub(crate) fn delete_where_batched(
    tx: &Transaction,
    where_sql: &str,
    args: &[&dyn rusqlite::ToSql],
    mut batch: impl FnMut(Vec<Removed>),
) -> rusqlite::Result<()> {
    let sql = format!(
        "DELETE FROM entries WHERE key IN (SELECT e.key FROM entries e JOIN functions f ON f.id = e.function_id WHERE {where_sql} LIMIT {DELETE_BATCH})
         RETURNING key, hash, size, value IS NULL, function_id"
    );
    let mut stmt = tx.prepare(&sql)?;
    loop {
        let rows: Vec<Removed> = stmt
            .query_map(args, removed)?
            .collect::<rusqlite::Result<_>>()?;
        if rows.is_empty() {
            return Ok(());
        }
        bump_epoch(tx, &rows.iter().map(|r| &r.key).collect())?;
        let last = rows.len() < DELETE_BATCH;
        batch(rows);
        if last {
            return Ok(());
        }
    }
}

pub(crate) fn select_where(
    conn: &Connection,
    where_sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<Vec<Removed>> {
    let sql = format!(
        "SELECT e.key, e.hash, e.size, e.value IS NULL, e.function_id FROM entries e JOIN functions f ON f.id = e.function_id WHERE {where_sql}"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(args, removed)?;
    rows.collect()
}

/// Adds hits and moves last-use times forward, in one transaction; with `costs` (schema
/// version 3) each entry's priority is brought up to the clock plus its frequency times its
/// cost per byte.
pub(crate) fn touch(
    tx: &Transaction,
    updates: &[(Key, u64, i64)],
    costs: bool,
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(if costs {
        concat!(
            "UPDATE entries SET hits = hits + ?2, last_used = max(last_used, ?3), priority = ",
            gdsf_priority!("hits + ?2", "compute_us", "size"),
            " WHERE key = ?1"
        )
    } else {
        "UPDATE entries SET hits = hits + ?2, last_used = max(last_used, ?3) WHERE key = ?1"
    })?;
    for (key, hits, last_used) in updates {
        stmt.execute(params![&key.0[..], *hits as i64, last_used])?;
    }
    Ok(())
}

/// Total (entries, bytes) over all functions.
pub(crate) fn totals(conn: &Connection) -> rusqlite::Result<(u64, u64)> {
    conn.prepare_cached("SELECT coalesce(sum(entries), 0), coalesce(sum(bytes), 0) FROM functions")?
        .query_row([], |r| {
            Ok((
                r.get::<_, i64>(0)?.max(0) as u64,
                r.get::<_, i64>(1)?.max(0) as u64,
            ))
        })
}

/// The stable name of each function version, by `functions.id`.
pub(crate) fn function_names(conn: &Connection) -> rusqlite::Result<HashMap<i64, String>> {
    let mut stmt = conn.prepare_cached("SELECT id, name FROM functions")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// Removes function versions that are not current and have no entries left.
pub(crate) fn forget_empty_versions(tx: &Transaction) -> rusqlite::Result<usize> {
    tx.execute(
        "DELETE FROM functions WHERE current = 0 AND entries <= 0",
        [],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cache, Function};

    static F: Function = Function::new("index::tests::f", "v1", "u64");

    /// The handle's snapshot is open now.
    fn holds(cache: &Cache) -> bool {
        let index = cache.index().unwrap();
        index
            .held
            .get()
            .and_then(Option::as_ref)
            .is_some_and(|held| held.state.lock().unwrap().since.is_some())
    }

    fn get(cache: &Cache, n: u64) -> Option<u64> {
        cache.get(&F, &(n,)).unwrap()
    }

    /// Its own store, then a hit: held at that hit (before, the hits after a handle's own
    /// store read in autocommit for a quiet spell and then waited for a checkpoint). Another
    /// handle's store is someone else's commit: that hit reads in autocommit. The snapshot
    /// thread may end a snapshot at any moment, so each is tried a few times.
    #[test]
    fn a_handle_holds_its_snapshot_at_once_after_its_own_commit_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let other = Cache::open(dir.path()).unwrap();
        for n in 0..4 {
            cache.put(&F, &(n,), &n).unwrap();
        }
        for _ in 0..2 * SNAPSHOT_AFTER {
            assert_eq!(get(&cache, 0), Some(0));
        }
        let own = (0..5).any(|round| {
            cache.put(&F, &(100 + round,), &round).unwrap();
            get(&cache, 1) == Some(1) && holds(&cache)
        });
        assert!(
            own,
            "no snapshot at the first hit after the handle's own store"
        );
        for round in 0..5 {
            other.put(&F, &(200 + round,), &round).unwrap();
            assert_eq!(
                get(&cache, 200 + round),
                Some(round),
                "another handle's store"
            );
            assert!(
                !holds(&cache),
                "a snapshot at once after another handle's store"
            );
        }
    }
}
