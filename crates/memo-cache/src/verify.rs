//! Verification: is every entry's value present and intact, and is every file accounted for?
//!
//! # Locking
//!
//! `verify` runs beside processes that store and remove, and a problem it reports must be
//! there: a person or a script acts on it, and `--fix` deletes what it reports. So it works in
//! two steps.
//!
//! 1. **Scan**, taking no lock: every row, read in one read snapshot, and its bytes checked;
//!    then the files in `blobs/`, `tmp/` and `locks/`. What this finds is only a suspect: a
//!    removal may have deleted a row and then its file since the snapshot was taken, a store may
//!    have replaced a row, a write may have finished.
//! 2. **Confirm** each suspect, in batches of [`CONFIRM_BATCH`], under the index's write lock
//!    (see [`Index::under_write_lock`](crate::index::Index)): the row must still be there with
//!    the same hash, size and place (inline or a blob), and still bad. Only then is it reported,
//!    and with fix it is deleted in that same transaction. A sound cache takes no write lock.
//!
//! A blob's bytes are hashed again *before* the lock is taken, not under it (hashing a large
//! file there would stall every writer). What could change between that read and the lock is
//! the file at the path: a writer storing the same value again renames a good file over a bad
//! one. A [`Stamp`] of the file (device, inode, length, times) taken before and after the read,
//! and again under the lock, must agree: then the file under the lock holds the bytes read. A
//! row, in turn, cannot lose its file while the lock is held: removers decide under it
//! ([`Cache::remove_blobs`]), and a writer checks its file under it before inserting its row.
//!
//! Stray files are confirmed by [`confirm_strays`]: an orphan blob under the same write lock
//! (no row refers to it), a temp or lock file by being the same file still (and a lock still
//! unheld).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Transaction;

use crate::blobs::{self, ReadFailure, Stamp};
use crate::cache::Cache;
use crate::error::Result;
use crate::evict::DEFAULT_FILE_GRACE;
use crate::index::{self, RawRow, Removed};
use crate::key::{Digest, Key};
use crate::layout::Layout;
use crate::progress::{Progress, Reporter, Step};
use crate::prune::{StrayKind, confirm_strays, stray_files};

/// Suspects confirmed under one write transaction.
const CONFIRM_BATCH: usize = 64;

/// One thing `verify` found wrong.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Problem {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The entry concerned, for entry problems.
    pub key: Option<Key>,
    /// The entry's function, for entry problems.
    pub function: Option<String>,
    /// The file concerned, for file problems and blob entries.
    pub path: Option<PathBuf>,
    /// A sentence for people.
    pub detail: String,
    /// True once `verify` with fix has repaired it.
    pub fixed: bool,
    /// The hash of the bad value, so a fix never removes a good value stored since.
    hash: Option<Digest>,
    /// The row of a malformed entry, which has no usable key to address it by.
    rowid: Option<i64>,
}

/// The kinds of problem `verify` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// SQLite's own check of the index failed. Not repaired automatically.
    IndexCorrupt,
    /// A value's bytes do not match the hash stored with them.
    HashMismatch,
    /// A row whose blob file is missing.
    MissingBlob,
    /// A blob path that is not a regular file, or has the wrong length.
    BadBlob,
    /// A blob file no row refers to.
    OrphanFile,
    /// A temp file left by a write that never finished.
    StaleTempFile,
    /// A lock file left by a process that is gone.
    StaleLock,
    /// An index row memo-cache did not write: its key or hash is not a 32-byte digest, or its
    /// size or value has the wrong type. Never served; removed by fix.
    MalformedRow,
    /// Stored bytes that match their hash but can never be read back (a compressed value that
    /// does not expand to what it declares). Never served; removed by fix.
    BadValue,
}

impl ProblemKind {
    /// A short stable name, used in JSON output.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::IndexCorrupt => "index-corrupt",
            ProblemKind::HashMismatch => "hash-mismatch",
            ProblemKind::MissingBlob => "missing-blob",
            ProblemKind::BadBlob => "bad-blob",
            ProblemKind::OrphanFile => "orphan-file",
            ProblemKind::StaleTempFile => "stale-temp-file",
            ProblemKind::StaleLock => "stale-lock",
            ProblemKind::MalformedRow => "malformed-row",
            ProblemKind::BadValue => "bad-value",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)?;
        if self.fixed {
            f.write_str(" (fixed)")?;
        }
        Ok(())
    }
}

/// The result of [`Cache::verify`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Entries whose bytes were read and checked.
    pub entries_checked: u64,
    /// Files in `blobs/`, `tmp/` and `locks/` looked at.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when nothing is wrong, or everything wrong was fixed.
    #[must_use]
    pub fn is_sound(&self) -> bool {
        self.problems.iter().all(|p| p.fixed)
    }
}

/// Options for [`Cache::verify`].
#[derive(Debug, Clone)]
pub struct Verify {
    fix: bool,
    file_grace: Duration,
    progress: Reporter,
}

impl Default for Verify {
    fn default() -> Self {
        Verify {
            fix: false,
            file_grace: DEFAULT_FILE_GRACE,
            progress: Reporter::default(),
        }
    }
}

impl Verify {
    /// Report only.
    #[must_use]
    pub fn new() -> Self {
        Verify::default()
    }

    /// Repair what can be repaired: drop entries whose bytes are bad, remove stray files.
    #[must_use]
    pub fn fix(mut self, fix: bool) -> Self {
        self.fix = fix;
        self
    }

    /// Files younger than this are not reported as stray (they may be writes in progress).
    #[must_use]
    pub fn file_grace(mut self, grace: Duration) -> Self {
        self.file_grace = grace;
        self
    }

    /// Calls `f` as the entries are checked: how many of how many (see [`crate::progress`]).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use memo_cache::{Cache, Function, Progress, Verify};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let cache = Cache::open(dir.path()).unwrap();
    /// cache.put(&Function::new("docs::f", "v1", "u8"), &(1,), &7u8).unwrap();
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = Arc::clone(&seen);
    /// cache.verify(&Verify::new().progress(move |p: Progress| log.lock().unwrap().push((p.done, p.total)))).unwrap();
    /// assert_eq!(seen.lock().unwrap().last(), Some(&(1, 1)));
    /// ```
    pub fn progress(mut self, f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.progress = Reporter::new(f);
        self
    }
}

impl Cache {
    /// Checks every entry's bytes against its hash and looks for stray files; with
    /// [`Verify::fix`], repairs what it finds.
    ///
    /// Beside processes that store and remove, every problem reported (and every repair) is
    /// confirmed under the index's write lock first: see the module's "Locking" section.
    ///
    /// ```
    /// use memo_cache::{Cache, Function, Verify};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let cache = Cache::open(dir.path()).unwrap();
    /// cache.put(&Function::new("docs::f", "v1", "u8"), &(1,), &7u8).unwrap();
    /// let report = cache.verify(&Verify::new()).unwrap();
    /// assert!(report.is_sound());
    /// assert_eq!(report.entries_checked, 1);
    /// ```
    pub fn verify(&self, options: &Verify) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let check: String = self
            .index()?
            .read(|c| c.query_row("PRAGMA quick_check", [], |r| r.get(0)))?;
        if check != "ok" {
            report.problems.push(Problem {
                kind: ProblemKind::IndexCorrupt,
                key: None,
                function: None,
                path: Some(self.index()?.path().to_path_buf()),
                hash: None,
                rowid: None,
                detail: format!(
                    "SQLite reports the index damaged ({check}); run `memo-cache clear` or delete the directory"
                ),
                fixed: false,
            });
        }
        let (checked, suspects) = self.scan_entries(&options.progress)?;
        report.entries_checked = checked;
        for batch in suspects.chunks(CONFIRM_BATCH) {
            let confirmed = self.confirm_entries(batch, options.fix)?;
            report.problems.extend(confirmed);
        }
        let strays = stray_files(self, options.file_grace)?;
        for swept in confirm_strays(self, strays, options.fix)? {
            let stray = swept.stray;
            let (kind, what) = match stray.kind {
                StrayKind::Orphan => (ProblemKind::OrphanFile, "blob file that no entry refers to"),
                StrayKind::Temp => (
                    ProblemKind::StaleTempFile,
                    "temp file of an unfinished write",
                ),
                StrayKind::Lock => (ProblemKind::StaleLock, "lock file whose holder is gone"),
                // Useless, not a problem: removed with fix, never reported.
                StrayKind::Hint => continue,
            };
            report.problems.push(Problem {
                kind,
                key: None,
                function: None,
                detail: format!("{}: {what}", stray.path.display()),
                path: Some(stray.path),
                hash: None,
                rowid: None,
                fixed: matches!(swept.removed, Some(Ok(()))),
            });
        }
        Ok(report)
    }

    /// Step 1: every row, in one read snapshot, with its bytes checked. Returns how many rows
    /// were read and the suspects.
    fn scan_entries(&self, progress: &Reporter) -> Result<(u64, Vec<Suspect>)> {
        let layout = self.layout();
        let step = Step::CheckingEntries;
        self.index()?.read(|conn| {
            let (mut checked, mut suspects) = (0u64, Vec::new());
            let total = if progress.is_on() {
                index::totals(conn)?.0
            } else {
                0
            };
            progress.report(step, 0, total);
            index::each_raw_row(conn, |row| {
                checked += 1;
                suspects.extend(Suspect::of_row(layout, row));
                progress.tick(step, checked, total.max(checked));
            })?;
            progress.report(step, checked, total.max(checked));
            Ok((checked, suspects))
        })
    }

    /// Step 2: the suspects that are still there and still bad under the write lock, as
    /// problems; with `fix`, deleted in the same transaction (their files removed after it).
    fn confirm_entries(&self, batch: &[Suspect], fix: bool) -> Result<Vec<Problem>> {
        // Blobs are read and hashed again now, before the lock is taken.
        let looked: Vec<Suspect> = batch.iter().filter_map(Suspect::look_again).collect();
        if looked.is_empty() {
            return Ok(Vec::new());
        }
        let layout = self.layout();
        let (problems, removed) = self.index()?.under_write_lock(|tx| {
            let (mut problems, mut removed) = (Vec::new(), Vec::new());
            for suspect in &looked {
                if !suspect.still_bad(tx, layout)? {
                    continue;
                }
                let mut problem = suspect.problem.clone();
                if fix {
                    problem.fixed = suspect.delete(tx, &mut removed)?;
                }
                problems.push(problem);
            }
            Ok((problems, removed))
        })?;
        // The file may be a directory or symlink planted there: `blobs::remove` handles those.
        self.remove_blobs(&removed);
        Ok(problems)
    }
}

/// An entry the scan found bad, not yet confirmed.
#[derive(Debug, Clone)]
struct Suspect {
    problem: Problem,
    /// What the row held when scanned: the confirmation wants the same.
    size: u64,
    place: Place,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// A malformed row: found again by its row id, and must still be malformed.
    Malformed,
    /// An inline value: re-hashed under the lock (it is at most the inline threshold).
    Inline,
    /// A blob file, as it stood when its bytes were last read: `None` when missing.
    Blob(Option<Stamp>),
}

/// A row's fields when they are all of the form memo-cache writes: key, hash, size, and the
/// value (`None` when it is in a blob file).
fn well_formed(row: &RawRow) -> Option<(Key, Digest, u64, Option<&[u8]>)> {
    match (row.key, row.hash, row.size, &row.value) {
        (Some(key), Some(hash), Some(size), Some(value)) => {
            Some((key, hash, size.max(0) as u64, value.as_deref()))
        }
        _ => None,
    }
}

/// What is wrong with an entry's bytes, and a sentence saying so; `None` when nothing is.
type Verdict = Option<(ProblemKind, String)>;

/// What is wrong with bytes read for a row of `size` and `hash`.
fn judge(
    read: std::result::Result<(Vec<u8>, Digest), ReadFailure>,
    size: u64,
    hash: &Digest,
) -> Verdict {
    match read {
        Ok((bytes, digest)) if digest == *hash && bytes.len() as u64 == size => {
            // Bytes as stored, but a compressed value no reader can expand is never served.
            let frame = bytes
                .split_last()
                .filter(|(f, _)| **f == crate::codec::FORMAT_ZSTD);
            let (_, frame) = frame?;
            let why = crate::compress::check_frame(frame).err()?;
            Some((ProblemKind::BadValue, format!("cannot be read back: {why}")))
        }
        Ok(_) => Some((
            ProblemKind::HashMismatch,
            "stored bytes do not match their hash".to_owned(),
        )),
        Err(ReadFailure::Missing) => {
            Some((ProblemKind::MissingBlob, "blob file is missing".into()))
        }
        Err(other) => Some((ProblemKind::BadBlob, other.to_string())),
    }
}

/// Reads and hashes the blob at `path` with a stamp of the file taken before and after: `None`
/// when the file changed during the read (a writer replacing it: nothing to say about it).
fn read_stamped(path: &Path, size: u64, hash: &Digest) -> Option<(Verdict, Option<Stamp>)> {
    let before = Stamp::at(path);
    let verdict = judge(blobs::read_hashed(path, size), size, hash);
    let after = Stamp::at(path);
    (before == after).then_some((verdict, after))
}

impl Suspect {
    /// The suspect a scanned row makes, if its bytes are bad.
    fn of_row(layout: &Layout, row: RawRow) -> Option<Suspect> {
        let name = row.function.clone().unwrap_or_else(|| "?".into());
        let Some((key, hash, size, inline)) = well_formed(&row) else {
            let rowid = row.rowid;
            return Some(Suspect {
                problem: Problem {
                    kind: ProblemKind::MalformedRow,
                    key: None,
                    detail: format!(
                        "index row {rowid} of {name}: its key, hash, size or value is not of the form memo-cache writes"
                    ),
                    function: row.function,
                    path: None,
                    hash: None,
                    rowid: Some(rowid),
                    fixed: false,
                },
                size: 0,
                place: Place::Malformed,
            });
        };
        let (path, place, (kind, detail)) = match inline {
            Some(bytes) => {
                let verdict = judge(Ok((bytes.to_vec(), Digest::of(bytes))), size, &hash)?;
                (None, Place::Inline, verdict)
            }
            None => {
                let path = layout.blob_path(&key, &hash);
                let verdict = judge(blobs::read_hashed(&path, size), size, &hash)?;
                // The stamp is taken again, with the bytes, just before the lock.
                (Some(path), Place::Blob(None), verdict)
            }
        };
        Some(Suspect {
            problem: Problem {
                kind,
                key: Some(key),
                detail: format!("entry {key} of {name}: {detail}"),
                function: row.function,
                path,
                hash: Some(hash),
                rowid: None,
                fixed: false,
            },
            size,
            place,
        })
    }

    /// A blob suspect read and hashed again, with the stamp of the file read; `None` when its
    /// bytes are good now, or the file changed while being read. Others as they are.
    fn look_again(&self) -> Option<Suspect> {
        let (Place::Blob(_), Some(path), Some(hash)) =
            (&self.place, &self.problem.path, &self.problem.hash)
        else {
            return Some(self.clone());
        };
        let (verdict, stamp) = read_stamped(path, self.size, hash)?;
        let (kind, detail) = verdict?;
        let mut again = self.clone();
        again.problem.kind = kind;
        let name = self.problem.function.as_deref().unwrap_or("?");
        again.problem.detail = format!("entry {} of {name}: {detail}", self.key());
        again.place = Place::Blob(stamp);
        Some(again)
    }

    fn key(&self) -> Key {
        self.problem.key.unwrap_or(Digest([0; 32]))
    }

    /// Under the write lock: the row is still the one scanned, and still bad.
    fn still_bad(&self, tx: &Transaction, layout: &Layout) -> rusqlite::Result<bool> {
        if self.place == Place::Malformed {
            let rowid = self.problem.rowid.unwrap_or_default();
            return Ok(index::raw_row_at(tx, rowid)?.is_some_and(|row| well_formed(&row).is_none()));
        }
        let Some(hash) = self.problem.hash else {
            return Ok(false);
        };
        let key = self.key();
        let Some(row) = index::raw_row_of_key(tx, &key)? else {
            return Ok(false); // Removed since: nothing left to be wrong.
        };
        let Some((_, now_hash, size, value)) = well_formed(&row) else {
            return Ok(false); // Malformed now: that is another problem, for the next run.
        };
        if now_hash != hash || size != self.size {
            return Ok(false); // Stored again since.
        }
        Ok(match (&self.place, value) {
            (Place::Inline, Some(bytes)) => {
                judge(Ok((bytes.to_vec(), Digest::of(bytes))), size, &hash).is_some()
            }
            // The same file as read just before the lock (or still none).
            (Place::Blob(stamp), None) => Stamp::at(&layout.blob_path(&key, &hash)) == *stamp,
            // The value moved between inline and a blob: stored again, by a handle with
            // another inline threshold.
            _ => false,
        })
    }

    /// Under the write lock, once confirmed: deletes the row; true if it went.
    fn delete(&self, tx: &Transaction, removed: &mut Vec<Removed>) -> rusqlite::Result<bool> {
        if self.place == Place::Malformed {
            let rowid = self.problem.rowid.unwrap_or_default();
            return Ok(index::delete_rowid(tx, rowid)? > 0);
        }
        let (key, Some(hash)) = (self.key(), self.problem.hash) else {
            return Ok(false);
        };
        let gone = index::delete_entry_if(tx, &key, &hash)?;
        let deleted = gone.is_some();
        removed.extend(gone);
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    //! The confirmation step, with the other process's change made between the scan and the
    //! confirmation by a second handle (what a concurrent writer or remover does).

    use super::*;
    use crate::key::Function;

    static BIG: Function = Function::new("verify::big", "v1", "Vec<u8>");

    /// A value that does not compress, so it stays a blob file.
    fn big(tag: u8) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15 ^ u64::from(tag);
        (0..40_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    fn blob(cache: &Cache, i: u64) -> PathBuf {
        let key = BIG.key(&(i,)).unwrap();
        let row = cache.index().unwrap().lookup(&key).unwrap().unwrap();
        cache.layout().blob_path(&key, &row.hash)
    }

    /// A cache with one blob entry whose file is gone, scanned: the suspect, and a second
    /// handle standing for another process.
    fn missing_blob() -> (tempfile::TempDir, Cache, Cache, Suspect) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        cache.put(&BIG, &(1,), &big(1)).unwrap();
        std::fs::remove_file(blob(&cache, 1)).unwrap();
        let (checked, mut suspects) = cache.scan_entries(&Reporter::default()).unwrap();
        assert_eq!((checked, suspects.len()), (1, 1));
        let other = Cache::open(dir.path()).unwrap();
        (dir, cache, other, suspects.remove(0))
    }

    #[test]
    fn a_real_missing_blob_is_confirmed_and_fixed() {
        let (_dir, cache, _other, suspect) = missing_blob();
        let problems = cache.confirm_entries(&[suspect], true).unwrap();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].kind, ProblemKind::MissingBlob);
        assert!(problems[0].fixed);
        assert_eq!(cache.stats().unwrap().entries, 0);
    }

    #[test]
    fn a_row_removed_since_the_scan_is_not_reported() {
        let (_dir, cache, other, suspect) = missing_blob();
        assert!(other.remove(&BIG, &(1u64,)).unwrap());
        assert!(cache.confirm_entries(&[suspect], true).unwrap().is_empty());
    }

    #[test]
    fn a_row_stored_again_since_the_scan_is_neither_reported_nor_deleted() {
        for same_value in [true, false] {
            let (_dir, cache, other, suspect) = missing_blob();
            let tag = if same_value { 1 } else { 2 };
            other.put(&BIG, &(1u64,), &big(tag)).unwrap();
            assert!(
                cache.confirm_entries(&[suspect], true).unwrap().is_empty(),
                "same value: {same_value}"
            );
            assert_eq!(
                other.get::<_, Vec<u8>>(&BIG, &(1u64,)).unwrap(),
                Some(big(tag)),
                "same value: {same_value}"
            );
        }
    }

    #[test]
    fn a_bad_blob_replaced_by_a_good_file_after_its_last_read_is_not_reported() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        cache.put(&BIG, &(1,), &big(1)).unwrap();
        let path = blob(&cache, 1);
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        bad[100] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let (_, suspects) = cache.scan_entries(&Reporter::default()).unwrap();
        let looked = suspects[0].look_again().expect("still bad when read again");
        assert_eq!(looked.problem.kind, ProblemKind::HashMismatch);
        // A writer storing the same value renames a whole good file over the bad one.
        let fresh = path.with_extension("new");
        std::fs::write(&fresh, &good).unwrap();
        std::fs::rename(&fresh, &path).unwrap();
        let still = cache
            .index()
            .unwrap()
            .under_write_lock(|tx| looked.still_bad(tx, cache.layout()))
            .unwrap();
        assert!(!still, "the file under the lock is not the one read");
        // Left bad, it is confirmed.
        std::fs::write(&path, &bad).unwrap();
        let problems = cache.confirm_entries(&suspects, false).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(!problems[0].fixed);
    }

    #[test]
    fn an_orphan_that_a_row_refers_to_again_is_not_reported_nor_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        cache.put(&BIG, &(1,), &big(1)).unwrap();
        let path = blob(&cache, 1);
        let kept = path.with_extension("kept");
        std::fs::copy(&path, &kept).unwrap();
        cache.remove(&BIG, &(1u64,)).unwrap();
        // The file is back with no row: an orphan, as a crash between delete and unlink leaves.
        std::fs::rename(&kept, &path).unwrap();
        let strays = stray_files(&cache, Duration::ZERO).unwrap();
        assert_eq!(strays.len(), 1);
        // Another process stores the same value again: the file is its row's now.
        Cache::open(dir.path())
            .unwrap()
            .put(&BIG, &(1,), &big(1))
            .unwrap();
        let strays = strays
            .into_iter()
            .map(|mut s| {
                s.stamp = Stamp::at(&s.path);
                s
            })
            .collect();
        assert!(confirm_strays(&cache, strays, true).unwrap().is_empty());
        assert_eq!(
            cache.get::<_, Vec<u8>>(&BIG, &(1u64,)).unwrap(),
            Some(big(1))
        );
    }
}
