//! Removing through a [`Cache`] what `crate::evict` selects: [`Cache::prune`] (and so
//! `Cache::clear` and `Cache::clear_function`), stray files found and confirmed (which `verify`
//! shares), and the space given back afterwards. What to remove, and in what order, is decided
//! in `crate::evict`, which knows no `Cache`; this module acts on its choice.
//!
//! Rows are deleted in one transaction (`DELETE ... RETURNING`), committed, and only then are
//! their blob files removed: a crash in between leaves orphan files, which the next prune or
//! `verify --fix` sweeps, never a row without its bytes.
//!
//! # Sweeping stray files
//!
//! Files are listed without any lock, while other processes store and remove: what a listing
//! finds is only a suspect. [`confirm_strays`] looks at each again before it counts: an orphan
//! blob under the index's write lock, where no row may come to refer to it (a writer checks its
//! file under that lock before inserting its row, as [`Cache::remove_blobs`] relies on), and is
//! removed there; a temp or lock file must still be the same file, and a lock still unheld.
//!
//! # A full disk
//!
//! A removal needs space itself (its WAL frames). On a full disk one that fails for it is done
//! again by [`crate::space`]: files that need no transaction go first (the blob files of the
//! rows being removed among them: a row without its blob is a miss, never a wrong value), the
//! WAL is emptied, and the rows go in batches. After every prune and clear the WAL is emptied
//! and the index's free pages go back to the file system (`Index::shrink`), so the space
//! really comes back.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::Transaction;

use crate::blobs::{self, Stamp};
use crate::cache::Cache;
use crate::diagnostics::FunctionNames;
use crate::error::{Error, Result};
use crate::evict::{self, NORMAL_CACHE_SIZE, Prune, Removal};
use crate::hints;
use crate::index::{self, Removed};
use crate::key::hex_value;
use crate::lock::{self, legacy_lock_is_free};
use crate::space;

impl Cache {
    /// Removes what `prune` selects; see [`Prune`].
    ///
    /// On a full disk, where the removal's own writes do not fit, it frees what needs no
    /// transaction first (first-hit files, stray files, the blob files of the entries it
    /// removes), empties the WAL, and removes the entries a few at a time. Afterwards the WAL is
    /// emptied and the index's free pages go back to the file system.
    pub fn prune(&self, prune: &Prune) -> Result<Removal> {
        prune_entries(self, prune)
    }
}

fn prune_entries(cache: &Cache, prune: &Prune) -> Result<Removal> {
    if let Err(e) = cache.flush() {
        // Pending hit counts are only statistics: a full disk must not stop a prune.
        if !index::is_full(&e) {
            return Err(e);
        }
    }
    let now = cache.now_ms();
    let mut full = false;
    let mut names = FunctionNames::default();
    let gone = match remove_rows(cache, prune, now, &mut names) {
        Err(e) if index::is_full(&e) && !prune.dry_run => {
            full = true;
            space::remove_on_full_disk(cache, prune.file_grace, |dry_run| {
                remove_rows(
                    cache,
                    &Prune {
                        dry_run,
                        ..prune.clone()
                    },
                    now,
                    &mut names,
                )
            })?
        }
        other => other?,
    };
    if !prune.dry_run {
        crate::diagnostics::removed(
            &gone,
            &names,
            format_args!("removed by a prune or clear"),
            cache.dir(),
        );
        cache.remove_blobs_reporting(&gone, &prune.progress);
    }
    let mut removal = Removal {
        entries: gone.len() as u64,
        bytes: gone.iter().map(|r| r.size).sum(),
        dry_run: prune.dry_run,
        ..Removal::default()
    };
    let strays = stray_files(cache, prune.file_grace)?;
    for swept in confirm_strays(cache, strays, !prune.dry_run)? {
        if let Some(Err(e)) = swept.removed {
            return Err(e);
        }
        if swept.stray.kind == StrayKind::Hint {
            removal.first_hit_files += 1;
            continue;
        }
        removal.files += 1;
        removal.file_bytes += swept.stray.bytes;
    }
    if !prune.dry_run {
        // The space comes back: the WAL the removal wrote, and the pages it freed. A prune that
        // removed no row wrote nothing to give back (and a checkpoint syncs the disk).
        let index = cache.index()?;
        if full {
            // Step by step, the WAL emptied in between, waiting for readers: the disk has no
            // room for more.
            index.checkpoint_truncate();
            index.shrink();
        } else if removal.entries > 0 {
            index.give_back_pages();
        }
        space::ensure_reserve(cache.layout());
    }
    Ok(removal)
}

/// Removes (or, in a dry run, selects) the rows `prune` selects, in one transaction. `names`
/// gets the names of their functions when removal events are logged.
fn remove_rows(
    cache: &Cache,
    prune: &Prune,
    now: i64,
    names: &mut FunctionNames,
) -> Result<Vec<Removed>> {
    let costs = cache.index()?.has_costs();
    let select = |tx: &Transaction| evict::remove_in(tx, prune, now, costs, names);
    let gone = if prune.dry_run {
        cache.index()?.write_rollback(select)
    } else {
        cache.index()?.write(select)
    };
    // Back to the usual page cache (on the pooled connection that just ran the transaction).
    let _ = cache.index()?.read(|c| c.execute_batch(NORMAL_CACHE_SIZE));
    gone
}

/// A file in the cache directory that no entry accounts for.
#[derive(Debug, Clone)]
pub(crate) struct StrayFile {
    pub path: PathBuf,
    pub bytes: u64,
    pub kind: StrayKind,
    /// The file as listed; a file found again must be this one.
    pub stamp: Option<Stamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrayKind {
    /// A blob whose row is gone (or holds another value).
    Orphan,
    /// A temp file left by a write that never finished.
    Temp,
    /// A lock file whose holder is gone.
    Lock,
    /// A first-hit file that can no longer be believed: its row is gone, or a removal since it
    /// was written voided it (see [`crate::hints`]). Useless, but not a problem and not stray:
    /// `verify` does not report it, and a prune counts it apart.
    Hint,
}

impl StrayFile {
    /// Removes the file; `Ok(false)` for a lock file someone holds again, which stays.
    fn remove(&self) -> Result<bool> {
        match self.kind {
            // Only remove a lock file we can lock: its holder is gone. Dropping it unlinks it.
            StrayKind::Lock => lock::remove_legacy_lock(&self.path)
                .map_err(|e| Error::io("removing the lock file", &self.path, e)),
            _ => blobs::remove(&self.path).map(|_| true),
        }
    }

    /// The same file still stands at the path (so it is still as old as when listed).
    fn unchanged(&self) -> bool {
        self.stamp.is_some() && Stamp::at(&self.path) == self.stamp
    }
}

/// A stray file found again, and what removing it did (`None`: not asked to).
#[derive(Debug)]
pub(crate) struct Swept {
    pub stray: StrayFile,
    pub removed: Option<Result<()>>,
}

/// Orphans confirmed under one write transaction: enough that a sweep of many takes the lock
/// a few times, few enough that writers waiting for it hardly notice.
const CONFIRM_BATCH: usize = 64;

/// The strays of [`stray_files`] that are still stray when looked at again, each removed when
/// `remove` (see "Sweeping stray files" above). First-hit files are not looked at again: a good
/// one removed costs a lookup in the index, nothing more.
pub(crate) fn confirm_strays(
    cache: &Cache,
    strays: Vec<StrayFile>,
    remove: bool,
) -> Result<Vec<Swept>> {
    let (orphans, others): (Vec<StrayFile>, Vec<StrayFile>) = strays
        .into_iter()
        .partition(|s| s.kind == StrayKind::Orphan);
    let mut out = Vec::new();
    for stray in others {
        let still = stray.kind == StrayKind::Hint
            || (stray.unchanged()
                && (stray.kind != StrayKind::Lock
                    || matches!(legacy_lock_is_free(&stray.path), Ok(true))));
        if !still {
            continue;
        }
        let removed = if remove {
            match stray.remove() {
                // Locked again meanwhile: in use, not stray.
                Ok(false) => continue,
                Ok(true) => Some(Ok(())),
                Err(e) => Some(Err(e)),
            }
        } else {
            None
        };
        out.push(Swept { stray, removed });
    }
    for batch in orphans.chunks(CONFIRM_BATCH) {
        let layout = cache.layout();
        let confirmed = cache.index()?.under_write_lock(|tx| {
            let mut confirmed = Vec::new();
            for stray in batch {
                if !stray.unchanged() || blob_is_referenced_in(tx, layout, &stray.path)? {
                    continue;
                }
                let removed = remove.then(|| blobs::remove(&stray.path).map(|_| ()));
                confirmed.push(Swept {
                    stray: stray.clone(),
                    removed,
                });
            }
            Ok(confirmed)
        })?;
        out.extend(confirmed);
    }
    Ok(out)
}

/// Orphan blobs, old temp files and abandoned lock files older than `grace`.
pub(crate) fn stray_files(cache: &Cache, grace: Duration) -> Result<Vec<StrayFile>> {
    let layout = cache.layout();
    let cutoff = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let old_enough = |path: &Path| -> Option<(u64, Stamp)> {
        let meta = fs::symlink_metadata(path).ok()?;
        let modified = meta.modified().ok()?;
        (modified <= cutoff).then(|| {
            let bytes = if meta.is_file() { meta.len() } else { 0 };
            (bytes, Stamp::of(&meta))
        })
    };
    let mut out = Vec::new();
    for path in list(&layout.tmp)? {
        if let Some((bytes, stamp)) = old_enough(&path) {
            out.push(StrayFile {
                path,
                bytes,
                kind: StrayKind::Temp,
                stamp: Some(stamp),
            });
        }
    }
    for path in list(&layout.locks)? {
        // The compute file is in use as long as the cache is; only per-key lock files, which
        // memo-cache made before it, can be left behind.
        if path.file_name() == Some(std::ffi::OsStr::new(lock::COMPUTE_FILE)) {
            continue;
        }
        if let Some((_, stamp)) = old_enough(&path)
            && matches!(legacy_lock_is_free(&path), Ok(true))
        {
            out.push(StrayFile {
                path,
                bytes: 0,
                kind: StrayKind::Lock,
                stamp: Some(stamp),
            });
        }
    }
    out.extend(dead_hints(cache)?);
    for shard in list(&layout.blobs)? {
        if !fs::symlink_metadata(&shard).is_ok_and(|m| m.is_dir()) {
            if let Some((bytes, stamp)) = old_enough(&shard) {
                out.push(StrayFile {
                    path: shard,
                    bytes,
                    kind: StrayKind::Orphan,
                    stamp: Some(stamp),
                });
            }
            continue;
        }
        for path in list(&shard)? {
            let Some((bytes, stamp)) = old_enough(&path) else {
                continue;
            };
            if !blob_is_referenced(cache, &path)? {
                out.push(StrayFile {
                    path,
                    bytes,
                    kind: StrayKind::Orphan,
                    stamp: Some(stamp),
                });
            }
        }
    }
    Ok(out)
}

/// First-hit files that no longer copy a current row (and anything else in `hints/` but the
/// removal log). No grace period: a file written now for a row that exists records the current
/// epoch.
fn dead_hints(cache: &Cache) -> Result<Vec<StrayFile>> {
    let removals = cache.layout().hints.join(hints::REMOVALS_FILE);
    let shards: Vec<PathBuf> = list(&cache.layout().hints)?
        .into_iter()
        .filter(|path| *path != removals)
        .collect();
    if shards.is_empty() {
        return Ok(Vec::new());
    }
    let index = cache.index()?;
    let epoch = index.read(index::epoch)?;
    let log = hints::RemovalLog::read(&cache.layout().hints);
    let mut out = Vec::new();
    let mut dead = |path: PathBuf| {
        let bytes = fs::symlink_metadata(&path).map_or(0, |m| m.len());
        out.push(StrayFile {
            path,
            bytes,
            kind: StrayKind::Hint,
            stamp: None,
        });
    };
    for shard in shards {
        if !fs::symlink_metadata(&shard).is_ok_and(|m| m.is_dir()) {
            dead(shard);
            continue;
        }
        for path in list(&shard)? {
            let key = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| crate::key::parse_key(n).ok())
                .filter(|key| cache.layout().hint_path(key) == path);
            let alive = match key {
                Some(key) => hints::read(cache.layout(), &key).is_some_and(|hint| {
                    log.spares(&key, hint.epoch, epoch)
                        && index
                            .read(|c| index::lookup(c, &key))
                            .is_ok_and(|row| row.is_some_and(|row| row.hash == hint.hash))
                }),
                None => false,
            };
            if !alive {
                dead(path);
            }
        }
    }
    Ok(out)
}

fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries.filter_map(|e| e.ok().map(|e| e.path())).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io("listing", dir, e)),
    }
}

/// True when `path` is the blob file of a live row: its name is `<key>-<hash prefix>` and the
/// row with that key holds that hash in a blob.
fn blob_is_referenced(cache: &Cache, path: &Path) -> Result<bool> {
    let layout = cache.layout();
    cache
        .index()?
        .read(|c| blob_is_referenced_in(c, layout, path))
}

/// [`blob_is_referenced`], read through `conn` (inside a transaction that holds the write lock,
/// to confirm an orphan).
fn blob_is_referenced_in(
    conn: &rusqlite::Connection,
    layout: &crate::layout::Layout,
    path: &Path,
) -> rusqlite::Result<bool> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(false);
    };
    let Some((key_hex, _)) = name.split_once('-') else {
        return Ok(false);
    };
    let Ok(key) = crate::key::parse_key(key_hex) else {
        return Ok(false);
    };
    if !key_hex.bytes().all(|b| hex_value(b).is_some()) {
        return Ok(false);
    }
    // A row whose hash column is malformed refers to no file (and must not fail the sweep).
    let row = index::raw_row_of_key(conn, &key)?;
    Ok(row.is_some_and(|row| {
        matches!(row.value, Some(None))
            && row
                .hash
                .is_some_and(|hash| layout.blob_path(&key, &hash) == path)
    }))
}
