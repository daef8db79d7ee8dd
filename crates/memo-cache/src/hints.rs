//! First-hit files: a hit in a process that has not opened the index yet.
//!
//! Opening SQLite and running a first statement costs about 0.3 ms in a fresh process (the
//! schema parse, the `-wal` and `-shm` set-up, first use of SQLite's code), several times what
//! reading two small files costs. So when a handle closes, it copies the rows it stored or
//! found into one small file per key, `hints/ab/<key>`, and the next process answers its hits
//! from those files until its first miss or write opens the index.
//!
//! # When a first-hit file may be believed
//!
//! A first-hit file is a copy, and a copy must never outlive what it copies. The rules:
//!
//! - **Every removal moves the epoch.** A transaction that removes or replaces a row also moves
//!   the removal epoch on ([`crate::index::epoch`], SQLite's `application_id` in the database
//!   header), in the same commit, to a new random value.
//! - **A file records the epoch of its row.** The closing handle reads the epoch and the rows
//!   in one read transaction, so the row it copies was current at that epoch. A file is
//!   believed while the epoch is the one it records, or while every move since is in the
//!   removal log and touched other keys (next rule).
//! - **A removal says which keys it touched.** Before it commits, under the write lock, a
//!   removal appends a record to the removal log (`hints/removals`, [`RemovalLog`]): the epoch
//!   it moves from, the one it moves to, and the buckets (a key's first byte) of the keys it
//!   removes or changes. A file of a key in a bucket no move since its epoch touched is still a
//!   copy of a current row, so removing one entry voids about 1/256 of the first-hit files, not
//!   all of them. Anything missing or in doubt voids: a move with no record (made by an older
//!   memo-cache, or a record lost to a crash or a power cut before its commit reached the disk),
//!   a torn or damaged record, a log cut back when it grew past [`LOG_LIMIT`]. Records are written
//!   only by transactions about to commit (a dry run writes none); one whose commit then
//!   failed leads from the epoch it read to a random one that never becomes the header's, so
//!   it vouches for nothing.
//! - **The header is read only when it is the whole truth.** The epoch is read from the index
//!   file's header without SQLite. In WAL mode a commit reaches the index file only at a
//!   checkpoint; the last connection to close checkpoints everything and deletes the `-wal`
//!   file. So the header is believed only while there is no `-wal` file, or an empty one (a
//!   connection that has not written). While another process has the cache open and has
//!   written, every lookup goes to SQLite.
//! - **Only durable rows.** Commits are synced only at checkpoints (`synchronous = NORMAL`), so
//!   the closing handle syncs the WAL before it writes any file: a power cut cannot leave a file
//!   copying a row the index lost.
//! - **A new index, a new epoch.** The epoch starts at a random value, so files left beside an
//!   index made again from scratch do not match it.
//! - **Only the current schema.** The header's schema version must be this build's: an older
//!   memo-cache, which removes rows without moving the epoch, refuses to open such an index.
//! - **Everything is checked.** The file carries a checksum over its fields and the key it is
//!   for; the value is checked against its blake3 hash like every hit; an expired entry is a
//!   miss (the file keeps the creation time, so the reader's ttl applies, see [`crate::ttl`];
//!   a change of a row's expiry moves the epoch like a removal). Any doubt (a torn file, a
//!   missing blob, a moved epoch) sends the lookup to SQLite, which answers as if no first-hit
//!   file existed.
//!
//! A lookup that reads the header and then the file races only with removals that begin after
//! the lookup did: those may or may not be seen, as with any read that overlaps a write.

use std::fs;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::blobs;
use crate::error::Result;
use crate::index::SCHEMA_VERSION;
use crate::key::{Digest, Key};
use crate::layout::Layout;

/// A first-hit file: a row of the index as it stood at `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hint {
    pub epoch: i32,
    pub hash: Digest,
    pub size: u64,
    /// When the value was stored, so that a reader applies its own ttl ([`crate::ttl`]).
    pub created: i64,
    pub expires: Option<i64>,
    /// The value when the row holds it inline; `None` for a value in a blob file.
    pub value: Option<Vec<u8>>,
}

/// Version 2 added the creation time; files of version 1 are read as no file.
const MAGIC: &[u8; 4] = b"MCH2";
/// Magic, epoch, key, hash, size, creation time, expiry, inline flag.
const FIELDS: usize = 4 + 4 + 32 + 32 + 8 + 8 + 8 + 1;
/// The fields and their checksum (the first 16 bytes of their blake3 hash).
const HEADER: usize = FIELDS + 16;
/// Rows with a larger inline value get no first-hit file (they cannot exist with the default
/// inline threshold; the bound keeps a hostile file from making a reader allocate much).
const MAX_INLINE: u64 = 1 << 20;

impl Hint {
    fn encode(&self, key: &Key) -> Vec<u8> {
        let inline = self.value.as_deref();
        let mut out = Vec::with_capacity(HEADER + inline.map_or(0, <[u8]>::len));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&key.0);
        out.extend_from_slice(&self.hash.0);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.created.to_le_bytes());
        out.extend_from_slice(&self.expires.unwrap_or(i64::MIN).to_le_bytes());
        out.push(u8::from(inline.is_some()));
        let sum = blake3::hash(&out);
        out.extend_from_slice(&sum.as_bytes()[..16]);
        if let Some(value) = inline {
            out.extend_from_slice(value);
        }
        out
    }

    /// The hint in `bytes` if it is whole and for `key`; its value is not checked here.
    fn decode(bytes: &[u8], key: &Key) -> Option<Hint> {
        let (fields, rest) = bytes.split_at_checked(FIELDS)?;
        let (sum, value) = rest.split_at_checked(16)?;
        if &fields[..4] != MAGIC || blake3::hash(fields).as_bytes()[..16] != *sum {
            return None;
        }
        if fields[8..40] != key.0 {
            return None;
        }
        let word = |at: usize| -> [u8; 8] { fields[at..at + 8].try_into().expect("8 bytes") };
        let size = u64::from_le_bytes(word(72));
        let created = i64::from_le_bytes(word(80));
        let expires = i64::from_le_bytes(word(88));
        let inline = fields[96] == 1;
        let whole = if inline {
            value.len() as u64 == size
        } else {
            value.is_empty()
        };
        if !whole {
            return None;
        }
        Some(Hint {
            epoch: i32::from_le_bytes(fields[4..8].try_into().expect("4 bytes")),
            hash: Digest(fields[40..72].try_into().expect("32 bytes")),
            size,
            created,
            expires: (expires != i64::MIN).then_some(expires),
            value: inline.then(|| value.to_vec()),
        })
    }
}

/// The first-hit file of `key`, if there is a whole one.
pub(crate) fn read(layout: &Layout, key: &Key) -> Option<Hint> {
    let path = layout.hint_path(key);
    let mut file = blobs::open_file(&path).ok()?;
    let len = file.metadata().ok().filter(|m| m.is_file())?.len();
    if len > HEADER as u64 + MAX_INLINE {
        return None;
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.read_to_end(&mut bytes).ok()?;
    Hint::decode(&bytes, key)
}

/// Writes the first-hit file of `key` (through `tmp/`, renamed into place), unless the same one
/// is there already.
pub(crate) fn write(layout: &Layout, key: &Key, hint: &Hint) -> Result<()> {
    if hint
        .value
        .as_ref()
        .is_some_and(|v| v.len() as u64 > MAX_INLINE)
    {
        return Ok(());
    }
    if read(layout, key).is_some_and(|old| old == *hint) {
        return Ok(());
    }
    blobs::write(layout, &layout.hint_path(key), &hint.encode(key))
}

/// Removes the first-hit file of `key`; one that is not there counts as removed.
pub(crate) fn remove(layout: &Layout, key: &Key) {
    if let Err(e) = blobs::remove(&layout.hint_path(key)) {
        tracing::debug!(target: crate::diagnostics::STORE, "memo-cache: {e}");
    }
}

/// Removes the first-hit files of `keys`. Past [`LIST_FROM`] keys, the files there are listed
/// and those of `keys` removed: a prune of half a million entries otherwise looks for half a
/// million files that are almost never there (a first-hit file exists only for a key some
/// handle stored or found before it closed).
pub(crate) fn remove_many<'a>(layout: &Layout, keys: impl ExactSizeIterator<Item = &'a Key>) {
    if keys.len() <= LIST_FROM {
        keys.for_each(|key| remove(layout, key));
        return;
    }
    let keys: std::collections::HashSet<&Key> = keys.collect();
    let Ok(shards) = fs::read_dir(&layout.hints) else {
        return;
    };
    for shard in shards.flatten() {
        // Only the shard directories: `ab/` for keys starting with byte 0xab.
        let is_shard = shard.file_name().to_str().is_some_and(|n| {
            n.len() == 2
                && n.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        });
        if !is_shard || !shard.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(files) = fs::read_dir(shard.path()) else {
            continue;
        };
        for file in files.flatten() {
            let key = file
                .file_name()
                .to_str()
                .and_then(|n| crate::key::parse_key(n).ok());
            if let Some(key) = key.filter(|key| keys.contains(key)) {
                remove(layout, &key);
            }
        }
    }
}

/// How many keys [`remove_many`] removes one by one.
const LIST_FROM: usize = 256;

/// The removal log's file name, in `hints/`.
pub(crate) const REMOVALS_FILE: &str = "removals";
/// A record: magic, from, to, the buckets touched (one bit per first byte of a key), and a
/// checksum (the first 4 bytes of the blake3 hash of the rest).
const RECORD: usize = 4 + 4 + 4 + 32 + 4;
const RECORD_MAGIC: &[u8; 4] = b"MCR1";
/// The removal log is cut back to nothing when a removal finds it this long (about 1,300
/// moves): first-hit files older than that are voided, as every removal voided them before.
pub(crate) const LOG_LIMIT: u64 = 64 * 1024;

/// The keys a removal touched, by bucket: one bit per first byte of a key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Buckets([u8; 32]);

impl Buckets {
    /// Every bucket: for a removal whose keys are not known (a malformed row).
    pub const ALL: Buckets = Buckets([0xff; 32]);

    pub fn add(&mut self, key: &Key) {
        let b = key.0[0];
        self.0[usize::from(b / 8)] |= 1 << (b % 8);
    }

    fn has(&self, key: &Key) -> bool {
        let b = key.0[0];
        self.0[usize::from(b / 8)] & (1 << (b % 8)) != 0
    }
}

impl<'a> FromIterator<&'a Key> for Buckets {
    fn from_iter<I: IntoIterator<Item = &'a Key>>(keys: I) -> Buckets {
        let mut buckets = Buckets::default();
        keys.into_iter().for_each(|k| buckets.add(k));
        buckets
    }
}

/// One move of the removal epoch, as the removal log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Move {
    from: i32,
    to: i32,
    touched: Buckets,
}

impl Move {
    fn encode(&self) -> [u8; RECORD] {
        let mut out = [0u8; RECORD];
        out[..4].copy_from_slice(RECORD_MAGIC);
        out[4..8].copy_from_slice(&self.from.to_le_bytes());
        out[8..12].copy_from_slice(&self.to.to_le_bytes());
        out[12..44].copy_from_slice(&self.touched.0);
        let sum = blake3::hash(&out[..44]);
        out[44..].copy_from_slice(&sum.as_bytes()[..4]);
        out
    }

    fn decode(record: &[u8]) -> Option<Move> {
        let word = |at: usize| i32::from_le_bytes(record[at..at + 4].try_into().expect("4 bytes"));
        (record.len() == RECORD
            && &record[..4] == RECORD_MAGIC
            && blake3::hash(&record[..44]).as_bytes()[..4] == record[44..])
            .then(|| Move {
                from: word(4),
                to: word(8),
                touched: Buckets(record[12..44].try_into().expect("32 bytes")),
            })
    }
}

/// Appends to the removal log in `hints` the move of the epoch `from` -> `to`, which touched the
/// keys in `touched`. Called under the index's write lock, before the move commits. Best
/// effort: a move with no record voids older first-hit files, which is always safe; so is a log
/// that does not exist (no `hints/` yet: no first-hit file older than this move).
pub(crate) fn log_move(hints: &Path, from: i32, to: i32, touched: &Buckets) {
    if let Err(e) = append_move(
        hints,
        &Move {
            from,
            to,
            touched: *touched,
        },
    ) {
        tracing::debug!(target: crate::diagnostics::STORE, "memo-cache: removal log in {}: {e}", hints.display());
    }
}

fn append_move(hints: &Path, record: &Move) -> std::io::Result<()> {
    use std::io::Write;
    match fs::symlink_metadata(hints) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    let path = hints.join(REMOVALS_FILE);
    let mut options = fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Never wait: a FIFO planted here would block the open, under the write lock, until a
        // reader came. Non-blocking, the open fails at once (no reader) or returns the FIFO,
        // which the check below refuses.
        options
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .mode(0o600);
    }
    let mut file = match options.open(&path) {
        Ok(file) => file,
        Err(e) => {
            // Whatever is in the way (a FIFO without a reader) goes; this move is unrecorded.
            remove_planted(&path);
            return Err(e);
        }
    };
    let meta = file.metadata()?;
    if !is_own_file(&meta) {
        // A FIFO, a device, or a hard link to a file elsewhere: never written through.
        remove_planted(&path);
        return Err(std::io::Error::other(
            "not a plain file of its own; removed, this move is unrecorded",
        ));
    }
    let len = meta.len();
    // A torn record (a full disk) would shift every later one: start over, as when too long.
    if len >= LOG_LIMIT || len % RECORD as u64 != 0 {
        file.set_len(0)?;
    }
    file.write_all(&record.encode())
}

/// True for a regular file with no other names.
fn is_own_file(meta: &fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        meta.is_file() && meta.nlink() == 1
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

/// Unlinks what is at `path` when it is not a directory (a planted FIFO, device or hard link
/// goes; what a hard link points to is left as it is).
fn remove_planted(path: &Path) {
    if fs::symlink_metadata(path).is_ok_and(|m| !m.is_dir()) {
        let _ = fs::remove_file(path);
    }
}

/// The removal log as read at one time: which first-hit files outlived the moves of the epoch.
#[derive(Debug, Default)]
pub(crate) struct RemovalLog {
    moves: Vec<Move>,
}

impl RemovalLog {
    /// The log in `hints`; a missing or unreadable one has no moves.
    pub fn read(hints: &Path) -> RemovalLog {
        let path = hints.join(REMOVALS_FILE);
        let mut bytes = Vec::new();
        let read = blobs::open_file(&path).and_then(|mut f| {
            if f.metadata()?.len() > 2 * LOG_LIMIT {
                return Err(ErrorKind::InvalidData.into());
            }
            f.read_to_end(&mut bytes)
        });
        if read.is_err() {
            return RemovalLog::default();
        }
        RemovalLog {
            moves: bytes
                .chunks_exact(RECORD)
                .filter_map(Move::decode)
                .collect(),
        }
    }

    /// True when a first-hit file of `key` that recorded the epoch `then` copies a row still
    /// current at the epoch `now`: the same epoch, or a chain of recorded moves from `then` to
    /// `now` none of which touched `key`'s bucket.
    pub fn spares(&self, key: &Key, then: i32, now: i32) -> bool {
        if then == now {
            return true;
        }
        let mut seen = vec![then];
        let mut todo = vec![then];
        while let Some(at) = todo.pop() {
            for m in &self.moves {
                if m.from != at || m.touched.has(key) || seen.contains(&m.to) {
                    continue;
                }
                if m.to == now {
                    return true;
                }
                seen.push(m.to);
                todo.push(m.to);
            }
        }
        false
    }
}

/// Reads the removal epoch from the header of an index file.
///
/// The file is read through a descriptor that is never closed: on POSIX systems, closing any
/// descriptor of a file drops every `fcntl` lock this process holds on it, SQLite's included
/// (<https://sqlite.org/howtocorrupt.html>, 2.2), after which another process could take this
/// process's connections for gone and delete the WAL under them. So descriptors are kept in a
/// process-wide table, one per file (device and inode), for the life of the process.
#[derive(Debug)]
pub(crate) struct IndexHeader {
    path: PathBuf,
    /// The `hints/` directory beside the index file.
    hints: PathBuf,
    /// The removal log, read at first need and again when the epoch has moved since.
    log: Mutex<Option<(i32, std::sync::Arc<RemovalLog>)>>,
}

/// Where the header keeps what is read here (<https://sqlite.org/fileformat.html>).
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
const USER_VERSION_AT: usize = 60;
const APPLICATION_ID_AT: usize = 68;

impl IndexHeader {
    /// The header reader of the index file at `path`, when its header now shows an index of
    /// this build's schema. Only on Unix (elsewhere there are no first hits).
    pub fn open(path: &Path) -> Option<IndexHeader> {
        let header = IndexHeader {
            path: path.to_path_buf(),
            hints: path.with_file_name(crate::layout::HINTS_DIR),
            log: Mutex::new(None),
        };
        header.read().map(|_| header)
    }

    /// The epoch in the header, when the header can be believed: the schema is this build's
    /// and the write-ahead log at `wal` holds nothing the index file lacks.
    pub fn epoch(&self, wal: &Path) -> Option<i32> {
        match fs::symlink_metadata(wal) {
            Ok(meta) if meta.len() > 0 => return None,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(_) => return None,
        }
        self.read()
    }

    /// True when a first-hit file of `key` that recorded the epoch `then` may be believed while
    /// the header shows `now` (see [`RemovalLog::spares`]).
    pub fn believes(&self, key: &Key, then: i32, now: i32) -> bool {
        if then == now {
            return true;
        }
        let log = {
            let mut cached = self.log.lock().unwrap_or_else(|p| p.into_inner());
            match &*cached {
                Some((at, log)) if *at == now => std::sync::Arc::clone(log),
                _ => {
                    let log = std::sync::Arc::new(RemovalLog::read(&self.hints));
                    *cached = Some((now, std::sync::Arc::clone(&log)));
                    log
                }
            }
        };
        log.spares(key, then, now)
    }

    #[cfg(unix)]
    fn read(&self) -> Option<i32> {
        use std::os::unix::fs::{FileExt, MetadataExt};
        // The file at the path now: a cache whose index was replaced is read from the new one.
        let meta = fs::symlink_metadata(&self.path).ok()?;
        if !meta.is_file() {
            return None;
        }
        let file = descriptor(&self.path, (meta.dev(), meta.ino()))?;
        let mut header = [0u8; 100];
        file.read_exact_at(&mut header, 0).ok()?;
        let word = |at: usize| i32::from_be_bytes(header[at..at + 4].try_into().expect("4 bytes"));
        (header[..16] == *SQLITE_MAGIC && i64::from(word(USER_VERSION_AT)) == SCHEMA_VERSION)
            .then(|| word(APPLICATION_ID_AT))
    }

    #[cfg(not(unix))]
    fn read(&self) -> Option<i32> {
        None
    }
}

/// This process's descriptor of the file `id` (device, inode) at `path`, opened at first need
/// and never closed (see [`IndexHeader`]).
#[cfg(unix)]
fn descriptor(path: &Path, id: (u64, u64)) -> Option<&'static fs::File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    static OPEN: Mutex<Vec<((u64, u64), &'static fs::File)>> = Mutex::new(Vec::new());
    let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(&(_, file)) = open.iter().find(|(at, _)| *at == id) {
        return Some(file);
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    // Leaked on purpose, so it is never closed; it is the file `id` unless the path was
    // replaced in between, in which case it is kept under its own id.
    let file: &'static fs::File = Box::leak(Box::new(file));
    let own = file.metadata().ok().map(|m| (m.dev(), m.ino()))?;
    open.push((own, file));
    (own == id).then_some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_outlives_only_recorded_moves_that_spare_its_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let hints = dir.path();
        let (a, b) = (key(1), key(2));
        log_move(hints, 10, 20, &[&a].into_iter().collect());
        log_move(hints, 20, 30, &[&key(3)].into_iter().collect());
        // A record of a transaction that rolled back: it leads nowhere.
        log_move(hints, 30, 99, &Buckets::default());
        log_move(hints, 30, 40, &Buckets::default());
        let log = RemovalLog::read(hints);
        assert!(log.spares(&b, 10, 40), "no move touched b's bucket");
        assert!(!log.spares(&a, 10, 40), "a was removed at 10 -> 20");
        assert!(
            log.spares(&a, 20, 40),
            "a's file was written after its removal"
        );
        assert!(!log.spares(&b, 10, 50), "a move with no record voids");
        assert!(!log.spares(&b, 5, 40), "so does one from before the log");
        log_move(hints, 40, 41, &Buckets::ALL);
        assert!(
            !RemovalLog::read(hints).spares(&b, 10, 41),
            "a move of every bucket"
        );

        // A damaged record is no record: the chain through it is broken.
        let path = hints.join(REMOVALS_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[RECORD + 20] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(!RemovalLog::read(hints).spares(&b, 10, 40));
        // A torn tail makes the next removal start the log again.
        fs::write(&path, &bytes[..RECORD + 7]).unwrap();
        log_move(hints, 40, 41, &Buckets::default());
        assert_eq!(fs::metadata(&path).unwrap().len(), RECORD as u64);
        assert!(RemovalLog::read(hints).spares(&b, 40, 41));
        // No `hints/`, no log, and nothing made.
        log_move(&hints.join("missing"), 1, 2, &Buckets::ALL);
        assert!(!hints.join("missing").exists());
    }

    fn key(b: u8) -> Key {
        Digest([b; 32])
    }

    #[test]
    fn a_hint_reads_back_and_damage_is_refused() {
        let hint = Hint {
            epoch: 7,
            hash: Digest::of(b"value"),
            size: 5,
            created: 1_699_999_000_000,
            expires: Some(1_700_000_000_000),
            value: Some(b"value".to_vec()),
        };
        let bytes = hint.encode(&key(1));
        assert_eq!(Hint::decode(&bytes, &key(1)), Some(hint.clone()));
        assert_eq!(Hint::decode(&bytes, &key(2)), None, "another key's file");
        for cut in [0, 10, FIELDS, HEADER, bytes.len() - 1] {
            assert_eq!(Hint::decode(&bytes[..cut], &key(1)), None, "cut at {cut}");
        }
        for at in [4, 45, 75, 85, 93, 96, FIELDS + 3] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert_eq!(Hint::decode(&bad, &key(1)), None, "byte {at} flipped");
        }
        let blob = Hint {
            expires: None,
            value: None,
            ..hint
        };
        assert_eq!(Hint::decode(&blob.encode(&key(3)), &key(3)), Some(blob));
    }
}
