//! Blob files: values too large to sit inline in the index.
//!
//! A blob is written to `tmp/` and renamed into place, so a reader sees either no file or a whole
//! one. The writer does not fsync: a blob torn by a power loss fails the hash check on its next
//! read and is recomputed, which costs far less than an fsync on every store.

use std::fs::{self, File};
use std::io::{self, ErrorKind, Read, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::layout::Layout;

/// Writes `bytes` as the blob at `dest`, through a temp file in the cache's `tmp/`.
pub(crate) fn write(layout: &Layout, dest: &Path, bytes: &[u8]) -> Result<()> {
    let shard = dest.parent().expect("blob paths have a shard directory");
    // A symlink planted in place of one of our directories would send the write elsewhere.
    for dir in [&layout.tmp, &layout.blobs] {
        replace_if_not_a_directory(dir)?;
    }
    let mut tmp = tempfile::Builder::new()
        .prefix("blob-")
        .tempfile_in(&layout.tmp)
        .or_else(|e| {
            // Someone may have removed tmp/ (a hand clean-up); recreate it once.
            if e.kind() == ErrorKind::NotFound {
                fs::create_dir_all(&layout.tmp).map_err(|e| Error::io("creating", &layout.tmp, e))?;
                tempfile::Builder::new().prefix("blob-").tempfile_in(&layout.tmp)
                    .map_err(|e| Error::io("creating a temp file in", &layout.tmp, e))
            } else {
                Err(Error::io("creating a temp file in", &layout.tmp, e))
            }
        })?;
    tmp.write_all(bytes).map_err(|e| Error::io("writing", tmp.path(), e))?;
    replace_if_not_a_directory(shard)?;
    fs::create_dir_all(shard).map_err(|e| Error::io("creating", shard, e))?;
    tmp.persist(dest).map_err(|e| Error::io("renaming a temp file to", dest, e.error))?;
    Ok(())
}

/// Removes whatever stands at `dir` if it is not a real directory (a symlink, a file); the
/// directory itself is then created by the caller. Removing a symlink never touches its target.
fn replace_if_not_a_directory(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => {
            tracing::warn!("memo-cache: {} is not a directory; replacing it with one", dir.display());
            fs::remove_file(dir).map_err(|e| Error::io("removing", dir, e))
        }
        Err(_) => Ok(()),
    }
}

/// True when the directories holding the blob at `path` (its shard and `blobs/`) are real
/// directories, so that nothing is read, written or removed through a planted symlink.
fn in_real_directories(path: &Path) -> bool {
    path.ancestors().skip(1).take(2).all(|dir| fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()))
}

/// Why a blob could not be read.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    /// No file at the path.
    Missing,
    /// The path is not a regular file (a directory, a symlink, a device).
    NotAFile,
    /// The file's length is not the size the index records.
    WrongSize { found: u64 },
    /// Any other I/O error.
    Io(io::Error),
}

impl std::fmt::Display for ReadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadFailure::Missing => f.write_str("blob file is missing"),
            ReadFailure::NotAFile => f.write_str("blob path is not a regular file"),
            ReadFailure::WrongSize { found } => write!(f, "blob file has {found} bytes, not the size the index records"),
            ReadFailure::Io(e) => write!(f, "blob file unreadable: {e}"),
        }
    }
}

/// Reads the blob at `path`, which the index says holds `size` bytes. Symlinks are not
/// followed and the buffer is sized from the file, never from the index alone.
pub(crate) fn read(path: &Path, size: u64) -> std::result::Result<Vec<u8>, ReadFailure> {
    if !in_real_directories(path) {
        return Err(ReadFailure::NotAFile);
    }
    let mut file = open_no_follow(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => ReadFailure::Missing,
        // ELOOP: the path is a symlink.
        #[cfg(unix)]
        _ if e.raw_os_error() == Some(libc::ELOOP) => ReadFailure::NotAFile,
        _ => ReadFailure::Io(e),
    })?;
    let meta = file.metadata().map_err(ReadFailure::Io)?;
    if !meta.is_file() {
        return Err(ReadFailure::NotAFile);
    }
    if meta.len() != size {
        return Err(ReadFailure::WrongSize { found: meta.len() });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.read_to_end(&mut bytes).map_err(ReadFailure::Io)?;
    if bytes.len() as u64 != size {
        return Err(ReadFailure::WrongSize { found: bytes.len() as u64 });
    }
    Ok(bytes)
}

fn open_no_follow(path: &Path) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NOFOLLOW, and O_NONBLOCK so a FIFO planted in the cache cannot hang a reader.
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    options.open(path)
}

/// True when `path` is a regular file (not following a symlink).
pub(crate) fn is_file(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

/// Removes a file; one that is already gone counts as removed. Returns the bytes freed.
pub(crate) fn remove(path: &Path) -> Result<u64> {
    if !in_real_directories(path) {
        // Only the planted symlink is ours to remove: sweeps remove it as a stray shard.
        return Ok(0);
    }
    let len = fs::symlink_metadata(path).map(|m| m.len()).unwrap_or(0);
    match fs::remove_file(path) {
        Ok(()) => Ok(len),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
        // A directory planted where a blob belongs.
        Err(_) if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) => {
            fs::remove_dir_all(path).map_err(|e| Error::io("removing", path, e))?;
            Ok(0)
        }
        Err(e) => Err(Error::io("removing", path, e)),
    }
}
