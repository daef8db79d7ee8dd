//! Compute leases: when several threads or processes miss on one key, one computes.
//!
//! # Locking
//!
//! One file, `locks/compute`, serves every key. A key maps to one of [`SLOTS`] slots (the first
//! five bytes of its hash); the slot's lock is an exclusive `fcntl` lock on one byte of that
//! file, past its end (locks there take no disk space), an
//! open-file-description (OFD) lock on Linux, so that two handles of one process exclude each
//! other as two processes do. The kernel releases it when its holder exits, however it exits, so
//! a waiter whose holder was killed takes the lock over at once. Taking and dropping a lock
//! costs two `fcntl` calls and one `pwrite`, and creates no file: a miss costs a store, not a
//! directory entry. Two keys share a slot once in 2^40: never in practice, which matters, since a
//! computation that waited for another key sharing its slot could wait for itself.
//!
//! A slot's record sits beside the lock bytes' range, at the start of the file; see [`RECORDS`].
//!
//! # Leases
//!
//! A holder that is alive but stopped (SIGSTOP, a debugger, a hung network mount) keeps its
//! `fcntl` lock forever. So a held lock is a lease: beside the lock byte, the slot's record in
//! the file carries the holder's pid and a beat that a thread of the holder's process rewrites
//! every [`RENEW_EVERY`] while it computes. A waiter watches the record; one that has seen it
//! unchanged for the lease time (default [`DEFAULT_LEASE`]) takes over: it warns once, naming the
//! key and the holder, and computes. The waiter measures the silence on its own clock, so clocks
//! that differ between processes, or a record left behind by an earlier holder, cannot make it
//! take over early. A long computation in a live process keeps its lease however long it runs.
//!
//! Of several waiters, the first to take over holds a second byte of the slot and beats in the
//! record for the frozen holder, so the others go on waiting for its value instead of all
//! computing. Waiters look for the value in the cache from time to time, since the lock they
//! wait on may never be released.
//!
//! # Within one process
//!
//! Threads of one handle wait for each other in a table of claimed slots, before the file lock.
//! A claim records its owner (a thread, or a tokio task for `async fn`): a call whose own call
//! stack holds the slot (a function calling itself with the same key, as a retry does) is told
//! so and computes without waiting, instead of waiting for itself.
//!
//! A call made inside another cached computation waits at most its lease for a live holder, then
//! computes without the lock: two such chains could otherwise wait for each other forever (keys
//! sharing slots, taken in crossing order), each holder alive and renewing.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use crate::key::Key;

/// How long a waiter waits for a holder that has stopped renewing its lease before taking over.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The shortest lease accepted: a few renewals must fit in it, even on a loaded machine.
pub const MIN_LEASE: Duration = Duration::from_secs(2);

/// How often a holder's process renews the leases it holds.
const RENEW_EVERY: Duration = Duration::from_millis(400);

/// The number of slots keys are spread over.
const SLOTS: u64 = 1 << 40;

/// The number of records. Lock bytes take no disk space (they lie past the end of the file);
/// records do, so slots share them: `RECORDS * RECORD` bytes, 16 KiB, at most four pages of a
/// small disk. Holders of two slots that share a record both beat in it; a waiter then takes
/// over a frozen holder only once the other, live one has finished.
const RECORDS: u64 = 1024;

/// Bytes of a slot's record: the holder's pid (0: no record), its beat, the first 8 bytes of the
/// key it computes.
const RECORD: usize = 16;

/// Lock bytes live far past the records, so that a lock never covers a record's bytes.
const LOCK_BASE: i64 = 1 << 42;

/// A waiter sleeps at most this long between two looks at the lock.
const MAX_PAUSE: Duration = Duration::from_millis(25);

/// A waiter looks for the value in the cache at most this often.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// The name of the lock file inside `locks/`.
pub(crate) const COMPUTE_FILE: &str = "compute";

/// Who holds a claim within this process: a call stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A synchronous call, on this thread.
    Thread(ThreadId),
    /// An `async fn` call, in this tokio task (its id's hash).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    Task(u64),
}

impl Owner {
    /// The current thread.
    pub fn thread() -> Owner {
        Owner::Thread(std::thread::current().id())
    }
}

/// The compute leases of one handle.
#[derive(Debug)]
pub(crate) struct ComputeLocks {
    path: PathBuf,
    lease: Duration,
    /// The lock file, opened at first need; forgotten when the cache directory is made again.
    file: Mutex<Option<Arc<File>>>,
    /// Shared by every handle of this process on the same directory.
    table: Arc<ClaimTable>,
}

/// The slots claimed within this process in one cache directory, by whom.
#[derive(Debug, Default)]
struct ClaimTable {
    claims: Mutex<HashMap<u64, Owner>>,
    released: Condvar,
}

/// `dir` with symlinks and `..` resolved, as far as it exists: two spellings of one cache
/// directory must share one claim table.
fn canonical(dir: &Path) -> PathBuf {
    if let Ok(resolved) = fs::canonicalize(dir) {
        return resolved;
    }
    match (dir.parent(), dir.file_name()) {
        (Some(parent), Some(name)) => canonical(parent).join(name),
        _ => dir.to_path_buf(),
    }
}

impl ClaimTable {
    /// The table of the lock file at `path`, shared by every handle of this process on it: a
    /// call that holds a key through one handle and asks for it through another is told so
    /// instead of waiting for itself.
    fn of(path: &Path) -> Arc<ClaimTable> {
        static TABLES: Mutex<Vec<(PathBuf, Arc<ClaimTable>)>> = Mutex::new(Vec::new());
        let mut tables = TABLES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, table)) = tables.iter().find(|(at, _)| at == path) {
            return Arc::clone(table);
        }
        let table = Arc::new(ClaimTable::default());
        tables.push((path.to_path_buf(), Arc::clone(&table)));
        table
    }
}

/// What [`ComputeLocks::acquire`] found.
#[derive(Debug)]
pub(crate) enum Acquired {
    /// The lease is ours: compute, store, then drop it.
    Held(Lease),
    /// Whoever held it stopped renewing; computing is ours now (the lease keeps other threads and
    /// processes waiting for our value).
    TookOver(Lease),
    /// This call stack already holds the slot: compute without waiting.
    Reentrant,
    /// The value turned up in the cache while we waited.
    Done,
}

/// A held lease; released on drop.
#[derive(Debug)]
pub(crate) struct Lease {
    table: Arc<ClaimTable>,
    slot: u64,
    /// The lock file and the byte we hold in it; `None` when the file could not be used.
    byte: Option<(Arc<File>, i64)>,
    renewal: Option<u64>,
}

impl ComputeLocks {
    pub fn new(locks_dir: &Path, lease: Duration) -> ComputeLocks {
        ComputeLocks {
            path: locks_dir.join(COMPUTE_FILE),
            lease: lease.max(MIN_LEASE),
            file: Mutex::new(None),
            table: ClaimTable::of(&canonical(locks_dir).join(COMPUTE_FILE)),
        }
    }

    /// The lease of calls that do not set their own.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Forgets the open lock file: the next lock opens (and if need be creates) it again.
    pub fn forget_file(&self) {
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Takes the lease of `key` for `owner`, waiting while a live holder has it, and taking over
    /// from one that has not renewed for `lease`. `done` is asked now and then while waiting
    /// whether the value is in the cache. An error says the lock file cannot be used: the
    /// caller computes without a lease (threads of this handle still wait for one another).
    /// `function` names the key's function in the events about waiting.
    pub fn acquire_within(
        self: &Arc<Self>,
        function: &str,
        key: &Key,
        owner: Owner,
        lease: Duration,
        mut done: impl FnMut() -> bool,
    ) -> (Acquired, Option<io::Error>) {
        let slot = slot_of(key);
        let lease = lease.max(MIN_LEASE);
        let Some((claim, nested)) = self.claim(slot, owner, lease, &mut done) else {
            return (Acquired::Done, None);
        };
        let Some(claim) = claim else {
            return (Acquired::Reentrant, None);
        };
        let file = match self.open() {
            Ok(file) => file,
            Err(e) => return (Acquired::Held(claim), Some(e)),
        };
        self.lock_file(claim, file, (function, key), lease, nested, done)
    }

    /// Claims `slot` within this process: `None` when the value turned up while waiting,
    /// `Some((None, _))` when `owner` holds it already, or when `owner`, inside a computation
    /// of its own, has waited `lease` for it (see "Nested calls" below). The `bool` says
    /// whether `owner` holds other slots.
    ///
    /// # Nested calls
    ///
    /// A call inside another cached computation holds that one's lease while it waits. Two
    /// such chains can wait for each other (keys that share slots, in crossing order), and both
    /// holders are alive and renewing, so no lease runs out: a nested call waits at most its
    /// lease, then computes without the lock.
    fn claim(
        self: &Arc<Self>,
        slot: u64,
        owner: Owner,
        lease: Duration,
        done: &mut impl FnMut() -> bool,
    ) -> Option<(Option<Lease>, bool)> {
        let started = Instant::now();
        let mut last_look = Instant::now();
        let table = &self.table;
        let mut claims = table.claims.lock().unwrap_or_else(|p| p.into_inner());
        let nested = claims.values().any(|held| *held == owner);
        loop {
            match claims.get(&slot) {
                None => {
                    claims.insert(slot, owner);
                    let lease = Lease {
                        table: Arc::clone(table),
                        slot,
                        byte: None,
                        renewal: None,
                    };
                    return Some((Some(lease), nested));
                }
                Some(held) if *held == owner => return Some((None, nested)),
                Some(_) if nested && started.elapsed() >= lease => return Some((None, nested)),
                Some(_) => {}
            }
            if last_look.elapsed() >= LOOK_EVERY {
                drop(claims);
                if done() {
                    return None;
                }
                last_look = Instant::now();
                claims = table.claims.lock().unwrap_or_else(|p| p.into_inner());
                continue;
            }
            claims = table
                .released
                .wait_timeout(claims, LOOK_EVERY)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Takes the slot's byte in the lock file, waiting while a live holder has it.
    fn lock_file(
        &self,
        mut lease: Lease,
        file: Arc<File>,
        (function, key): (&str, &Key),
        lease_time: Duration,
        nested: bool,
        mut done: impl FnMut() -> bool,
    ) -> (Acquired, Option<io::Error>) {
        let started = Instant::now();
        let primary = LOCK_BASE + 2 * lease.slot as i64;
        let record_at = (lease.slot % RECORDS) * RECORD as u64;
        let mut pause = Duration::from_millis(1);
        let mut seen = read_record(&file, record_at);
        let mut silent_since = Instant::now();
        let mut last_look = Instant::now();
        let mut first = true;
        let mut acting_holder_seen = false;
        loop {
            match try_lock(&file, primary) {
                Ok(true) => {
                    lease.hold(file, primary, record_at, key);
                    return (Acquired::Held(lease), None);
                }
                Ok(false) if first => {
                    tracing::debug!(target: crate::diagnostics::LOCK,
                        function,
                        key = %crate::diagnostics::Short(key),
                        path = %self.path.display(),
                        "memo-cache: waiting for another process computing {key}"
                    );
                    first = false;
                }
                Ok(false) => {}
                Err(e) => return (Acquired::Held(lease), Some(e)),
            }
            let now = read_record(&file, record_at);
            if now != seen {
                seen = now;
                silent_since = Instant::now();
            } else if silent_since.elapsed() >= lease_time {
                let holder = Holder::of(&seen, key);
                match try_lock(&file, primary + 1) {
                    Ok(true) => {
                        tracing::warn!(target: crate::diagnostics::LOCK,
                            function,
                            key = %crate::diagnostics::Short(key),
                            path = %self.path.display(),
                            "memo-cache: {holder} has not renewed its lease on key {key} for \
                             {lease_time:?} (stopped or frozen?); computing it here"
                        );
                        lease.hold(file, primary + 1, record_at, key);
                        return (Acquired::TookOver(lease), None);
                    }
                    // Another waiter has just taken over: watch it as the holder now.
                    Ok(false) if !acting_holder_seen => {
                        acting_holder_seen = true;
                        silent_since = Instant::now();
                    }
                    // The waiter that took over has stopped beating too: give up waiting.
                    Ok(false) => {
                        tracing::warn!(target: crate::diagnostics::LOCK,
                            function,
                            key = %crate::diagnostics::Short(key),
                            path = %self.path.display(),
                            "memo-cache: {holder}, which took key {key} over from a stopped \
                             holder, has stopped renewing its lease too; computing it here"
                        );
                        return (Acquired::TookOver(lease), None);
                    }
                    Err(e) => return (Acquired::Held(lease), Some(e)),
                }
            }
            if last_look.elapsed() >= LOOK_EVERY {
                if done() {
                    return (Acquired::Done, None);
                }
                last_look = Instant::now();
            }
            if nested && started.elapsed() >= lease_time {
                tracing::debug!(target: crate::diagnostics::LOCK,
                    function,
                    key = %crate::diagnostics::Short(key),
                    path = %self.path.display(),
                    "memo-cache: a nested call has waited {lease_time:?} for key {key}; \
                     computing it without the lock"
                );
                return (Acquired::Held(lease), None);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// The lock file, opened (and created, sized) at first need. Never through a symlink.
    fn open(&self) -> io::Result<Arc<File>> {
        let mut slot = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(file) = slot.as_ref() {
            return Ok(Arc::clone(file));
        }
        let file = Arc::new(open_lock_file(&self.path)?);
        *slot = Some(Arc::clone(&file));
        Ok(file)
    }
}

impl Lease {
    /// Holds `byte` of `file`, writes our record and starts renewing it.
    fn hold(&mut self, file: Arc<File>, byte: i64, record_at: u64, key: &Key) {
        let mut record = [0u8; RECORD];
        record[..4].copy_from_slice(&std::process::id().to_le_bytes());
        record[4..8].copy_from_slice(&next_beat().to_le_bytes());
        record[8..].copy_from_slice(&key.0[..8]);
        // A record we cannot write (a full disk) only means waiters may take over early.
        let _ = write_at(&file, &record, record_at);
        self.renewal = Some(renewer().add(Arc::clone(&file), record_at + 4));
        self.byte = Some((file, byte));
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(id) = self.renewal.take() {
            renewer().remove(id);
        }
        if let Some((file, byte)) = self.byte.take() {
            let _ = unlock(&file, byte);
        }
        let mut claims = self.table.claims.lock().unwrap_or_else(|p| p.into_inner());
        claims.remove(&self.slot);
        drop(claims);
        self.table.released.notify_all();
    }
}

/// Who a record says holds a slot, for the takeover warning.
struct Holder {
    pid: Option<u32>,
    same_key: bool,
}

impl Holder {
    fn of(record: &[u8; RECORD], key: &Key) -> Holder {
        let pid = u32::from_le_bytes(record[..4].try_into().expect("4 bytes"));
        Holder {
            pid: (pid != 0).then_some(pid),
            same_key: record[8..] == key.0[..8],
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) if self.same_key => write!(f, "process {pid}"),
            Some(pid) => write!(
                f,
                "process {pid} (computing another key that shares its lock slot)"
            ),
            None => f.write_str("the process holding the compute lock"),
        }
    }
}

fn slot_of(key: &Key) -> u64 {
    u64::from_le_bytes(key.0[..8].try_into().expect("8 bytes")) % SLOTS
}

/// A value that differs from this process's earlier beats (for four billion of them); the pid
/// beside it in the record tells processes apart.
fn next_beat() -> u32 {
    static BEAT: AtomicU32 = AtomicU32::new(0);
    BEAT.fetch_add(1, Ordering::Relaxed)
}

fn read_record(file: &File, at: u64) -> [u8; RECORD] {
    let mut record = [0u8; RECORD];
    // A short or failed read leaves zeros: an unknown holder, still watched for changes.
    let _ = read_at(file, &mut record, at);
    record
}

fn open_lock_file(path: &Path) -> io::Result<File> {
    let dir = path.parent().expect("the lock file is in locks/");
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(io::Error::other(format!(
                "{} is not a directory (a symlink or a file stands in its place); move it \
                 aside and memo-cache makes it again",
                dir.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            crate::layout::create_private_dir(dir).map_err(io::Error::other)?;
        }
        Err(e) => return Err(e),
    }
    let mut options = fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Not through a symlink planted in place of the lock file, and never blocked by a FIFO.
        options
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .mode(0o600);
    }
    let file = options.open(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("opening the compute lock file {}: {e}", path.display()),
        )
    })?;
    let meta = file.metadata()?;
    if crate::index::hard_links(&meta) > 1 {
        return Err(io::Error::other(format!(
            "{} has other hard links (another program's file?); move it aside and memo-cache \
             makes its own",
            path.display()
        )));
    }
    if !meta.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file; move it aside and memo-cache makes it again",
            path.display()
        )));
    }
    if meta.len() < RECORDS * RECORD as u64 {
        // Sparse: only the pages of records ever used take disk space.
        file.set_len(RECORDS * RECORD as u64)?;
    }
    Ok(file)
}

// ---- The renewing thread ----------------------------------------------------------------------

/// Renews the records of every lease this process holds, every [`RENEW_EVERY`].
struct Renewer {
    leases: Mutex<Renewals>,
    wake: Condvar,
}

/// The last id given out, and the leases being renewed: id, lock file, where the beat goes.
#[derive(Default)]
struct Renewals {
    last_id: u64,
    leases: Vec<(u64, Arc<File>, u64)>,
    /// The thread waits without a timeout: it has had nothing to renew for [`PARK_AFTER`].
    parked: bool,
}

/// The renewing thread stops waking up after this long with nothing to renew. Until then it
/// wakes every [`RENEW_EVERY`] anyway, so that a process missing one key after another does not
/// wake it at every miss.
const PARK_AFTER: Duration = Duration::from_secs(10);

fn renewer() -> &'static Renewer {
    static RENEWER: OnceLock<&'static Renewer> = OnceLock::new();
    RENEWER.get_or_init(|| {
        let renewer: &'static Renewer = Box::leak(Box::new(Renewer {
            leases: Mutex::new(Renewals::default()),
            wake: Condvar::new(),
        }));
        let spawned = std::thread::Builder::new()
            .name("memo-cache-lease".into())
            .spawn(move || renewer.run());
        if let Err(e) = spawned {
            tracing::warn!(target: crate::diagnostics::LOCK, "memo-cache: cannot start the lease renewal thread: {e}");
        }
        renewer
    })
}

impl Renewer {
    fn add(&self, file: Arc<File>, beat_at: u64) -> u64 {
        let mut renewals = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        renewals.last_id += 1;
        let id = renewals.last_id;
        renewals.leases.push((id, file, beat_at));
        if renewals.parked {
            self.wake.notify_one();
        }
        id
    }

    fn remove(&self, id: u64) {
        let mut renewals = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        renewals.leases.retain(|(at, ..)| *at != id);
    }

    fn run(&self) {
        let mut renewals = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let mut idle_since = Instant::now();
        loop {
            if !renewals.leases.is_empty() {
                idle_since = Instant::now();
            }
            renewals = if idle_since.elapsed() >= PARK_AFTER {
                renewals.parked = true;
                let mut woken = self.wake.wait(renewals).unwrap_or_else(|p| p.into_inner());
                woken.parked = false;
                idle_since = Instant::now();
                woken
            } else {
                self.wake
                    .wait_timeout(renewals, RENEW_EVERY)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            };
            for (_, file, beat_at) in &renewals.leases {
                let _ = write_at(file, &next_beat().to_le_bytes(), *beat_at);
            }
        }
    }
}

// ---- fcntl ------------------------------------------------------------------------------------

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, at)
}

#[cfg(unix)]
fn write_at(file: &File, buf: &[u8], at: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, at)
}

/// OFD locks belong to the open file description, not to the process: two handles of one
/// process exclude each other, and closing some other descriptor of the file drops nothing.
#[cfg(target_os = "linux")]
const SET_LOCK: libc::c_int = libc::F_OFD_SETLK;
#[cfg(all(unix, not(target_os = "linux")))]
const SET_LOCK: libc::c_int = libc::F_SETLK;

#[cfg(unix)]
fn fcntl_lock(file: &File, byte: i64, kind: libc::c_int) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero `flock` is a valid value of this plain C struct.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = byte as libc::off_t;
    lock.l_len = 1;
    // SAFETY: the descriptor is open for the life of `file`, and `lock` is a valid `flock`.
    let done = unsafe { libc::fcntl(file.as_raw_fd(), SET_LOCK, &lock) };
    if done == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN | libc::EACCES) => Ok(false),
        Some(libc::EINTR) => fcntl_lock(file, byte, kind),
        _ => Err(e),
    }
}

#[cfg(unix)]
fn try_lock(file: &File, byte: i64) -> io::Result<bool> {
    fcntl_lock(file, byte, libc::F_WRLCK)
}

#[cfg(unix)]
fn unlock(file: &File, byte: i64) -> io::Result<bool> {
    fcntl_lock(file, byte, libc::F_UNLCK)
}

// Elsewhere only the threads of one handle wait for each other.
#[cfg(not(unix))]
fn read_at(_file: &File, _buf: &mut [u8], _at: u64) -> io::Result<()> {
    Ok(())
}
#[cfg(not(unix))]
fn write_at(_file: &File, _buf: &[u8], _at: u64) -> io::Result<()> {
    Ok(())
}
#[cfg(not(unix))]
fn try_lock(_file: &File, _byte: i64) -> io::Result<bool> {
    Ok(true)
}
#[cfg(not(unix))]
fn unlock(_file: &File, _byte: i64) -> io::Result<bool> {
    Ok(true)
}

/// Opens an old per-key lock file (`locks/<key>.lock`, as memo-cache made before the compute
/// file) and takes its `flock` without waiting: `None` when it is gone or held.
fn take_legacy_lock(path: &Path) -> io::Result<Option<File>> {
    let mut options = fs::OpenOptions::new();
    options.read(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        libc::O_NOFOLLOW | libc::O_NONBLOCK,
    );
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

/// True when nobody holds the old per-key lock file at `path` (taken and let go at once).
pub(crate) fn legacy_lock_is_free(path: &Path) -> io::Result<bool> {
    Ok(take_legacy_lock(path)?.is_some())
}

/// Removes the old per-key lock file at `path` unless a process holds it (then `Ok(false)`).
/// It is unlinked while locked, as its holders did, so an older memo-cache waiting on it starts
/// again.
pub(crate) fn remove_legacy_lock(path: &Path) -> io::Result<bool> {
    let Some(file) = take_legacy_lock(path)? else {
        return Ok(false);
    };
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    drop(file);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        crate::key::Digest([b; 32])
    }

    #[test]
    fn a_second_owner_waits_and_the_same_owner_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let locks = Arc::new(ComputeLocks::new(dir.path(), DEFAULT_LEASE));
        let (first, e) =
            locks.acquire_within("f", &key(1), Owner::thread(), DEFAULT_LEASE, || false);
        assert!(e.is_none());
        assert!(matches!(first, Acquired::Held(_)));
        let (again, _) =
            locks.acquire_within("f", &key(1), Owner::thread(), DEFAULT_LEASE, || false);
        assert!(matches!(again, Acquired::Reentrant));
        let other = Arc::clone(&locks);
        let waiter = std::thread::spawn(move || {
            let started = Instant::now();
            let (got, _) =
                other.acquire_within("f", &key(1), Owner::thread(), DEFAULT_LEASE, || false);
            (matches!(got, Acquired::Held(_)), started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(200));
        drop(first);
        let (held, waited) = waiter.join().unwrap();
        assert!(held);
        assert!(waited >= Duration::from_millis(150), "waited {waited:?}");
    }

    #[test]
    fn nested_calls_waiting_for_each_other_go_on_after_their_lease() {
        let dir = tempfile::tempdir().unwrap();
        let locks = Arc::new(ComputeLocks::new(dir.path(), DEFAULT_LEASE));
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let crossing = |first: u8, second: u8| {
            let (locks, barrier) = (Arc::clone(&locks), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let (outer, _) =
                    locks.acquire_within("f", &key(first), Owner::thread(), MIN_LEASE, || false);
                assert!(matches!(outer, Acquired::Held(_)));
                barrier.wait();
                // Each now waits for the key the other holds, inside its own computation.
                let (inner, _) =
                    locks.acquire_within("f", &key(second), Owner::thread(), MIN_LEASE, || false);
                matches!(inner, Acquired::Reentrant | Acquired::Held(_))
            })
        };
        let a = crossing(3, 4);
        let b = crossing(4, 3);
        assert!(a.join().unwrap());
        assert!(b.join().unwrap());
    }

    #[test]
    fn two_handles_of_one_process_exclude_each_other_and_know_their_own_claims() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("x")).unwrap();
        let a = Arc::new(ComputeLocks::new(dir.path(), DEFAULT_LEASE));
        // The same directory, spelled another way.
        let b = Arc::new(ComputeLocks::new(&dir.path().join("x/.."), DEFAULT_LEASE));
        let (held, _) = a.acquire_within("f", &key(2), Owner::thread(), DEFAULT_LEASE, || false);
        assert!(matches!(held, Acquired::Held(_)));
        // The same call stack, through the other handle: never waits for itself.
        let (again, _) = b.acquire_within("f", &key(2), Owner::thread(), DEFAULT_LEASE, || false);
        assert!(matches!(again, Acquired::Reentrant));
        // Another thread waits; its `done` says the value is there after the first look.
        let other = Arc::clone(&b);
        let waited = std::thread::spawn(move || {
            let (got, _) =
                other.acquire_within("f", &key(2), Owner::thread(), DEFAULT_LEASE, || true);
            matches!(got, Acquired::Done)
        });
        assert!(waited.join().unwrap());
        drop(held);
        let (got, _) = b.acquire_within("f", &key(2), Owner::thread(), DEFAULT_LEASE, || true);
        assert!(matches!(got, Acquired::Held(_)));
    }
}
