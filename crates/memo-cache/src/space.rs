//! Disk space: keeping the index's files in proportion to the disk, and freeing space when the
//! disk is full.
//!
//! # Why a full disk needs care
//!
//! Removing an entry is a write transaction, and a write transaction appends frames to the WAL:
//! on a full disk, the removal meant to free space is the write that fails ("database or disk is
//! full"). Three things made that happen to a cache that filled its own disk:
//!
//! - **The WAL was as large as the disk.** SQLite copies the WAL back into the index file (a
//!   checkpoint) once it holds 1000 pages, 4 MiB. On a 512 KiB file system that point is never
//!   reached: the WAL took 468 KiB of it, the disk was full after 21 small entries, and every
//!   later write needed a WAL that could not grow. So each connection checkpoints at, and cuts
//!   the WAL back to (`journal_size_limit`), a sixteenth of the space free when it opens and a
//!   quarter of the largest file the process may write (`RLIMIT_FSIZE`), between
//!   [`WAL_LIMIT_MIN`] and [`WAL_LIMIT_MAX`] ([`size_pragmas`]). On a disk with more than
//!   64 MiB free, nothing changes. Measured on a 512 KiB tmpfs: about 1,050 small entries
//!   before the disk is full instead of 21, the WAL then at 92 KiB.
//! - **A removal rewrites most of the index.** Keys are hashes, so the rows a prune removes are
//!   spread over every page of the table and its indexes, and even a small prune writes nearly
//!   every page to the WAL again: more than the space left (116 KiB free beside a 388 KiB index
//!   for a `clear` of 1,298 entries failed).
//! - **A checkpoint needs space too.** It copies pages new since the last one to the end of the
//!   index file, which must grow. With no byte free, the WAL cannot be emptied. So the cache
//!   keeps a reserve file ([`RESERVE_BYTES`], `<dir>/reserve`), the first thing a removal on a
//!   full disk deletes, made again after. Under `RLIMIT_FSIZE` the index is kept to the pages
//!   a file may hold (`max_page_count`): a commit of pages past the limit would sit in the WAL
//!   for good, since no checkpoint could ever copy it back.
//!
//! # Removing on a full disk
//!
//! A removal that fails with `SQLITE_FULL` ([`remove_on_full_disk`]):
//!
//! 1. selects what it would remove, in a transaction that writes nothing;
//! 2. frees what needs no transaction ([`free_without_transaction`]): the reserve file, every
//!    first-hit file (a copy of a row, read instead of the index; without it the index is read),
//!    temp files and orphan blobs past the grace period, and the blob files of the rows it is
//!    about to remove. A row whose blob file is missing is only ever a miss, never a wrong value:
//!    a read finds the file missing, confirms the row still names it, drops the row with a
//!    warning and reports a miss (`Cache::read_checked`);
//! 3. copies the WAL back and cuts it to zero bytes (`wal_checkpoint(TRUNCATE)`);
//! 4. tries the whole removal again, and if the disk is still too full for it, removes the
//!    same rows in batches, each its own transaction followed by a checkpoint, so the WAL never
//!    holds more than one batch. A batch that does not fit is halved; a single row that does
//!    not fit is an error. A prune removed in batches is not atomic, which a removal need not
//!    be: a row that goes is a miss.
//!
//! Every prune and clear then empties the WAL and gives the index's free pages back to the file
//! system (`Index::shrink`: an incremental vacuum, a few pages per transaction, for an index
//! created by this version; a `VACUUM` for an older one, when half of it is free), then makes
//! the reserve whole again. A store in a cache with a size limit that finds the disk full evicts
//! through the same path ([`make_room`]).
//!
//! # Cost
//!
//! `auto_vacuum = INCREMENTAL` keeps a pointer map: `cargo bench -p memo-cache-rs --bench inline`
//! (2-core VM, loaded) measured inline stores of up to 1 KiB unchanged (50 and 66 µs) and of
//! 4-32 KiB about 5-10 % slower (74 against 69 µs at 4 KiB, 146 against 133 µs at 32 KiB);
//! hits unchanged. A prune or clear ends with two checkpoints.

use std::path::Path;
use std::time::Duration;

use crate::blobs;
use crate::cache::Cache;
use crate::error::Result;
use crate::evict::Prune;
use crate::index::{self, Removed};
use crate::layout::Layout;
use crate::prune::{StrayKind, confirm_strays, stray_files};

/// The most the WAL grows before a checkpoint copies it back, and what it is cut back to
/// afterwards: SQLite's default checkpoint point (1000 pages of 4 KiB).
pub(crate) const WAL_LIMIT_MAX: u64 = 4 * 1024 * 1024;

/// The least: a few stores' worth of frames.
pub(crate) const WAL_LIMIT_MIN: u64 = 64 * 1024;

/// The reserve file's size: room for a checkpoint and one batch of a removal when the disk is
/// full (see the module docs).
pub(crate) const RESERVE_BYTES: u64 = 64 * 1024;

/// Rows per transaction when a removal is done in batches; halved while a batch does not fit.
const FIRST_BATCH: usize = 64;

/// Bytes available to unprivileged writers on the file system holding `path`.
pub(crate) fn available(path: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: a valid NUL-terminated path and a pointer to a statvfs to fill.
        if unsafe { libc::statvfs(c.as_ptr(), stat.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: statvfs returned 0, so it filled the struct.
        let stat = unsafe { stat.assume_init() };
        #[allow(
            clippy::unnecessary_cast,
            reason = "the field types differ between platforms"
        )]
        Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// The largest file this process may write (`RLIMIT_FSIZE`), when limited.
pub(crate) fn file_size_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = std::mem::MaybeUninit::<libc::rlimit>::uninit();
        // SAFETY: getrlimit fills the struct it is given a pointer to.
        if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, limit.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: getrlimit returned 0: the struct is filled.
        let soft = unsafe { limit.assume_init() }.rlim_cur;
        #[allow(clippy::unnecessary_cast, reason = "rlim_t differs between platforms")]
        (soft != libc::RLIM_INFINITY).then_some(soft as u64)
    }
    #[cfg(not(unix))]
    None
}

/// The WAL bound of a connection to the index at `index`: a sixteenth of the space free beside
/// it (and a quarter of the largest file this process may write), between [`WAL_LIMIT_MIN`] and
/// [`WAL_LIMIT_MAX`].
pub(crate) fn wal_limit(index: &Path) -> u64 {
    let dir = index.parent().unwrap_or(Path::new("."));
    let free = available(dir).map_or(WAL_LIMIT_MAX, |free| free / 16);
    let file = file_size_limit().map_or(WAL_LIMIT_MAX, |largest| largest / 4);
    free.min(file).clamp(WAL_LIMIT_MIN, WAL_LIMIT_MAX)
}

/// The pragmas that bound a connection's files: its WAL (see [`wal_limit`]) checkpointed at
/// that size and cut back to it once the checkpoint has let it start over; and, under
/// `RLIMIT_FSIZE`, the database to pages that fit in a file this process may write. Without
/// that bound, commits whose pages lie past the limit reach the WAL, and no checkpoint can ever
/// copy them back: the WAL could then never start over, and nothing could be removed.
pub(crate) fn size_pragmas(index: &Path) -> String {
    let limit = wal_limit(index);
    let mut sql = format!(
        "PRAGMA wal_autocheckpoint = {}; PRAGMA journal_size_limit = {limit};",
        limit / 4096
    );
    if let Some(largest) = file_size_limit() {
        // Pages of 4 KiB, the default; an index with smaller pages is bounded more tightly.
        sql.push_str(&format!(
            " PRAGMA max_page_count = {};",
            (largest / 4096).max(16)
        ));
    }
    sql
}

/// A removal that failed with the disk full, done again as described in the module docs.
/// `remove(dry_run)` runs the removal in one transaction (with `true`, selects only).
pub(crate) fn remove_on_full_disk(
    cache: &Cache,
    grace: Duration,
    mut remove: impl FnMut(bool) -> Result<Vec<Removed>>,
) -> Result<Vec<Removed>> {
    let chosen = remove(true)?;
    let freed = free_without_transaction(cache, &chosen, grace);
    let index = cache.index()?;
    let emptied = index.checkpoint_truncate();
    tracing::debug!(target: crate::diagnostics::STORE,
        "memo-cache: disk full while removing {} entries from {}: freed {freed} bytes of files, WAL emptied: {emptied}",
        chosen.len(),
        cache.dir().display()
    );
    match remove(false) {
        Err(e) if index::is_full(&e) => remove_in_batches(cache, &chosen),
        other => other,
    }
}

/// Evicts for a store that found the disk full, in a cache with a size limit: an eighth of the
/// entries (at least one), least recently used first (stale and expired ones before, as every
/// eviction), so that the next stores reuse the space freed rather than find the disk full
/// again at once. The prune then empties the WAL and gives the freed pages back. Returns the
/// entries evicted.
pub(crate) fn make_room(cache: &Cache) -> Result<u64> {
    let (entries, _) = cache.index()?.read(index::totals)?;
    let keep = entries.saturating_sub((entries / 8).max(1));
    let removal = cache.prune(&Prune::new().max_entries(keep))?;
    tracing::debug!(target: crate::diagnostics::STORE,
        "memo-cache: disk full under {}: evicted {removal}",
        cache.dir().display()
    );
    Ok(removal.entries)
}

/// Makes the reserve file whole again, when it is missing or short (a removal on a full disk
/// deleted it; a cache made before it existed). Best effort: as much of it as fits.
pub(crate) fn ensure_reserve(layout: &Layout) {
    let path = &layout.reserve;
    let have = match std::fs::symlink_metadata(path) {
        // Another name for the file would be another program's file: not ours to write.
        Ok(meta) if meta.is_file() && crate::index::hard_links(&meta) == 1 => meta.len(),
        Ok(_) => return, // Not ours to replace.
        Err(_) => 0,
    };
    if have >= RESERVE_BYTES {
        return;
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    let written = options.open(path).and_then(|mut file| {
        // Zeros written, not a hole: the space must really be taken.
        let zeros = vec![0u8; (RESERVE_BYTES - have) as usize];
        std::io::Write::write_all(&mut file, &zeros)
    });
    if let Err(e) = written {
        tracing::debug!(target: crate::diagnostics::STORE, "memo-cache: reserve file {}: {e}", path.display());
    }
}

/// Frees the space that needs no transaction (see the module docs); returns the bytes freed.
fn free_without_transaction(cache: &Cache, chosen: &[Removed], grace: Duration) -> u64 {
    let layout = cache.layout();
    let mut freed = 0;
    // Unlinking never follows a symlink: a planted one is what goes.
    let reserve = std::fs::symlink_metadata(&layout.reserve).map_or(0, |m| m.len());
    if std::fs::remove_file(&layout.reserve).is_ok() {
        freed += reserve;
    }
    let mut remove = |path: &Path| {
        freed += blobs::remove(path).unwrap_or(0);
    };
    for shard in list(&layout.hints) {
        if std::fs::symlink_metadata(&shard).is_ok_and(|m| m.is_dir()) {
            list(&shard).iter().for_each(|file| remove(file));
        }
    }
    for r in chosen.iter().filter(|r| r.in_blob) {
        remove(&layout.blob_path(&r.key, &r.hash));
    }
    let strays = stray_files(cache, grace)
        .unwrap_or_default()
        .into_iter()
        .filter(|stray| matches!(stray.kind, StrayKind::Temp | StrayKind::Orphan))
        .collect();
    // Confirmed as elsewhere: an orphan under the write lock, which takes no disk space.
    for swept in confirm_strays(cache, strays, true).unwrap_or_default() {
        if matches!(swept.removed, Some(Ok(()))) {
            freed += swept.stray.bytes;
        }
    }
    freed
}

/// Removes `chosen` (those rows still holding the same values) in batches, each followed by a
/// checkpoint that empties the WAL.
fn remove_in_batches(cache: &Cache, chosen: &[Removed]) -> Result<Vec<Removed>> {
    let index = cache.index()?;
    let mut gone = Vec::with_capacity(chosen.len());
    let mut batch = FIRST_BATCH;
    let mut rest = chosen;
    while !rest.is_empty() {
        let n = batch.min(rest.len());
        let removed = index.write(|tx| {
            let mut out = Vec::with_capacity(n);
            for r in &rest[..n] {
                out.extend(index::delete_entry_if(tx, &r.key, &r.hash)?);
            }
            Ok(out)
        });
        match removed {
            Ok(removed) => {
                gone.extend(removed);
                rest = &rest[n..];
            }
            Err(e) if index::is_full(&e) && n > 1 => batch = n / 2,
            Err(e) => {
                // What went is gone: its blob files go too, and the caller reports the error.
                cache.remove_blobs(&gone);
                return Err(e);
            }
        }
        index.checkpoint_truncate();
    }
    let _ = index.write(index::forget_empty_versions);
    Ok(gone)
}

fn list(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}
