//! Where things live inside a cache directory. Every on-disk name is decided here.
//!
//! ```text
//! <dir>/CACHEDIR.TAG          so backup tools skip the cache
//! <dir>/.gitignore            `*`, so a cache inside a repository is never committed
//! <dir>/index.sqlite3         SQLite in WAL mode: one row per entry
//! <dir>/blobs/ab/<key>-<hash> values above the inline threshold, one file each
//! <dir>/tmp/                  blob writes in progress
//! <dir>/locks/compute         compute leases: one lock byte and record per key slot
//! <dir>/hints/ab/<key>        first-hit files: a copy of an entry's row, read by a process
//!                             that has not opened the index yet (see `crate::hints`)
//! <dir>/reserve               64 KiB of zeros, deleted first when a removal finds the disk
//!                             full, and made again after (see `crate::space`)
//! ```
//!
//! A blob's file name is derived from the entry's key and value hash, both fixed-size binary
//! columns rendered as hex here: no path is ever read from the index, so no row can point outside
//! the cache directory.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::key::{Digest, Key};

/// The index file's name.
pub const INDEX_FILE: &str = "index.sqlite3";
/// The folder holding blob files.
pub const BLOBS_DIR: &str = "blobs";
/// The folder holding writes in progress.
pub const TMP_DIR: &str = "tmp";
/// The folder holding per-key compute locks.
pub const LOCKS_DIR: &str = "locks";
/// The folder holding first-hit files.
pub const HINTS_DIR: &str = "hints";
/// The file of space kept for removals on a full disk.
pub(crate) const RESERVE_FILE: &str = "reserve";
/// The environment variable that overrides the default cache directory.
pub const DIR_ENV: &str = "MEMO_CACHE_DIR";

const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by memo-cache.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

/// The cache directory used when none is given: `MEMO_CACHE_DIR` when set and not empty, else
/// the platform cache directory (`~/.cache/memo-cache` on Linux).
///
/// ```
/// // SAFETY: this doctest is single-threaded.
/// unsafe { std::env::set_var("MEMO_CACHE_DIR", "/tmp/my-cache") };
/// assert_eq!(memo_cache::default_dir().unwrap(), std::path::PathBuf::from("/tmp/my-cache"));
/// ```
pub fn default_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    directories::ProjectDirs::from("", "", "memo-cache")
        .map(|dirs| dirs.cache_dir().to_path_buf())
        .ok_or(Error::NoDefaultDir)
}

/// The paths of one cache directory.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub root: PathBuf,
    pub index: PathBuf,
    pub blobs: PathBuf,
    pub tmp: PathBuf,
    pub locks: PathBuf,
    pub hints: PathBuf,
    /// The index's write-ahead log: while it exists with content, the index file alone is
    /// not the whole index.
    pub wal: PathBuf,
    /// Space kept for removals on a full disk.
    pub reserve: PathBuf,
}

impl Layout {
    pub fn new(root: PathBuf) -> Self {
        Layout {
            index: root.join(INDEX_FILE),
            blobs: root.join(BLOBS_DIR),
            tmp: root.join(TMP_DIR),
            locks: root.join(LOCKS_DIR),
            hints: root.join(HINTS_DIR),
            wal: wal_path(&root.join(INDEX_FILE)),
            reserve: root.join(RESERVE_FILE),
            root,
        }
    }

    /// Creates the directory and its marker files when missing. Mode 0700 on Unix: cached
    /// results can be as private as the data they were computed from.
    ///
    /// Nothing inside the directory is reached through a symlink: one planted in place of a
    /// folder or marker file is refused with [`Error::Symlink`], naming it.
    pub fn create(&self) -> Result<()> {
        create_private_dir(&self.root)?;
        for dir in [&self.blobs, &self.tmp, &self.locks] {
            refuse_symlink(dir)?;
            create_private_dir(dir)?;
        }
        write_if_missing(&self.root.join("CACHEDIR.TAG"), CACHEDIR_TAG)?;
        write_if_missing(&self.root.join(".gitignore"), "*\n")?;
        crate::space::ensure_reserve(self);
        Ok(())
    }

    /// True when something stands at the index path: the index, or a symlink, FIFO or directory
    /// that opening the index will refuse with a clear error.
    pub fn has_index(&self) -> bool {
        fs::symlink_metadata(&self.index).is_ok()
    }

    /// The file holding the value of `key` whose bytes hash to `hash`.
    pub fn blob_path(&self, key: &Key, hash: &Digest) -> PathBuf {
        let key_hex = key.to_hex();
        let mut name = String::with_capacity(64 + 1 + 16);
        name.push_str(&key_hex);
        name.push('-');
        name.push_str(&hash.to_hex()[..16]);
        self.blobs.join(&key_hex[..2]).join(name)
    }

    /// The first-hit file of `key`.
    pub fn hint_path(&self, key: &Key) -> PathBuf {
        let key_hex = key.to_hex();
        self.hints.join(&key_hex[..2]).join(key_hex)
    }
}

/// The write-ahead log SQLite keeps beside the index file at `index`.
pub(crate) fn wal_path(index: &Path) -> PathBuf {
    let mut wal = index.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| Error::io("creating cache directory", dir, e))
}

/// An [`Error::Symlink`] when `path` is a symbolic link.
pub(crate) fn refuse_symlink(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(Error::Symlink {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Creates the file at `path` with `contents` unless something is there already. `O_EXCL`
/// neither follows nor writes through a symlink; one standing there is refused.
fn write_if_missing(path: &Path, contents: &str) -> Result<()> {
    refuse_symlink(path)?;
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(mut file) => std::io::Write::write_all(&mut file, contents.as_bytes())
            .map_err(|e| Error::io("writing", path, e)),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io("creating", path, e)),
    }
}
