//! Blob files: values too large to sit inline in the index.
//!
//! A blob is written to `tmp/` and renamed into place, so a reader sees either no file or a whole
//! one. The writer does not fsync: a blob torn by a power loss fails the hash check on its next
//! read and is recomputed, which costs far less than an fsync on every store.

use std::fs::{self, File};
use std::io::{self, ErrorKind, Write};
use std::mem::MaybeUninit;
use std::path::Path;

use crate::error::{Error, Result};
use crate::key::Digest;
use crate::layout::Layout;

/// Writes `bytes` as the file at `dest` (`blobs/ab/...` or `hints/ab/...`), through a temp file
/// in the cache's `tmp/`.
pub(crate) fn write(layout: &Layout, dest: &Path, bytes: &[u8]) -> Result<()> {
    let shard = dest.parent().expect("blob paths have a shard directory");
    let top = shard.parent().expect("shards are in a folder of the cache");
    // A symlink planted in place of one of our directories would send the write elsewhere.
    for dir in [&layout.tmp, top] {
        replace_if_not_a_directory(dir)?;
    }
    if !top.is_dir() {
        // `hints/` is made when first needed (caches made before it existed lack it).
        crate::layout::create_private_dir(top)?;
    }
    let mut tmp = tempfile::Builder::new()
        .prefix("blob-")
        .tempfile_in(&layout.tmp)
        .or_else(|e| {
            // Someone may have removed tmp/ (a hand clean-up); recreate it once.
            if e.kind() == ErrorKind::NotFound {
                fs::create_dir_all(&layout.tmp)
                    .map_err(|e| Error::io("creating", &layout.tmp, e))?;
                tempfile::Builder::new()
                    .prefix("blob-")
                    .tempfile_in(&layout.tmp)
                    .map_err(|e| Error::io("creating a temp file in", &layout.tmp, e))
            } else {
                Err(Error::io("creating a temp file in", &layout.tmp, e))
            }
        })?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io("writing", tmp.path(), e))?;
    replace_if_not_a_directory(shard)?;
    fs::create_dir_all(shard).map_err(|e| Error::io("creating", shard, e))?;
    tmp.persist(dest)
        .map_err(|e| Error::io("renaming a temp file to", dest, e.error))?;
    Ok(())
}

/// Removes whatever stands at `dir` if it is not a real directory (a symlink, a file); the
/// directory itself is then created by the caller. Removing a symlink never touches its target.
fn replace_if_not_a_directory(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => {
            tracing::warn!(
                "memo-cache: {} is not a directory; replacing it with one",
                dir.display()
            );
            fs::remove_file(dir).map_err(|e| Error::io("removing", dir, e))
        }
        Err(_) => Ok(()),
    }
}

/// True when the directories holding the blob at `path` (its shard and `blobs/`) are real
/// directories, so that nothing is read, written or removed through a planted symlink.
fn in_real_directories(path: &Path) -> bool {
    path.ancestors()
        .skip(1)
        .take(2)
        .all(|dir| fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()))
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
            ReadFailure::WrongSize { found } => write!(
                f,
                "blob file has {found} bytes, not the size the index records"
            ),
            ReadFailure::Io(e) => write!(f, "blob file unreadable: {e}"),
        }
    }
}

/// Values from this size on are hashed on a second thread while they are read.
///
/// A hit on a 100 MB blob read the file (41 ms here) and then hashed it (17 ms); hashing each
/// chunk as soon as it is read overlaps the two, so the hit costs about the read alone. Below
/// this size the thread costs more than it saves.
const HASH_BEHIND_FROM: usize = 4 << 20;
/// What the reader hands the hasher at a time.
const HASH_CHUNK: usize = 1 << 20;

/// Like [`read`], and the blake3 digest of the bytes read, computed on the way.
///
/// The buffer is allocated at its exact size and filled by `read(2)` without zeroing it first;
/// large files are hashed on a second thread, one chunk behind the reader.
pub(crate) fn read_hashed(
    path: &Path,
    size: u64,
) -> std::result::Result<(Vec<u8>, Digest), ReadFailure> {
    let mut file = open_checked(path, size)?;
    let len = usize::try_from(size).map_err(|_| ReadFailure::WrongSize { found: size })?;
    let mut bytes: Vec<u8> = Vec::with_capacity(len);
    let spare = &mut bytes.spare_capacity_mut()[..len];
    let (filled, digest) = if len >= HASH_BEHIND_FROM {
        read_hashing_behind(&mut file, spare).map_err(ReadFailure::Io)?
    } else {
        (read_into(&mut file, spare).map_err(ReadFailure::Io)?, None)
    };
    // SAFETY: `read_into` initialised the first `filled` bytes.
    unsafe { bytes.set_len(filled) };
    if filled != len {
        return Err(ReadFailure::WrongSize {
            found: filled as u64,
        });
    }
    let digest = digest.unwrap_or_else(|| Digest::of(&bytes));
    Ok((bytes, digest))
}

/// Fills `buf` from `file` while a scoped thread hashes what has been read so far.
/// Returns how many bytes were read (fewer than `buf.len()` only at an early end of file).
fn read_hashing_behind(
    file: &mut File,
    buf: &mut [MaybeUninit<u8>],
) -> io::Result<(usize, Option<Digest>)> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<&[u8]>(buf.len() / HASH_CHUNK + 1);
        let hasher = scope.spawn(move || {
            let mut hasher = blake3::Hasher::new();
            for chunk in rx {
                hasher.update(chunk);
            }
            Digest(*hasher.finalize().as_bytes())
        });
        let mut filled = 0;
        let mut rest = buf;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at_mut(HASH_CHUNK.min(rest.len()));
            let n = match read_into(file, chunk) {
                Ok(n) => n,
                Err(e) => {
                    drop(tx);
                    let _ = hasher.join();
                    return Err(e);
                }
            };
            // SAFETY: `read_into` initialised the first `n` bytes of `chunk`, which the reader
            // never touches again (`rest` moves past it), so the hasher may read them.
            let done: &[u8] = unsafe { std::slice::from_raw_parts(chunk.as_ptr().cast::<u8>(), n) };
            filled += n;
            let _ = tx.send(done);
            if n < chunk.len() {
                break;
            }
            rest = tail;
        }
        drop(tx);
        Ok((
            filled,
            Some(hasher.join().expect("the hashing thread does not panic")),
        ))
    })
}

/// Reads until `buf` is full or the file ends; returns the number of bytes read, all of which
/// are initialised.
fn read_into(file: &mut File, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match read_some(file, &mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(unix)]
fn read_some(file: &mut File, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // At most 1 GiB per call, like std does, so the count always fits an isize.
    let want = buf.len().min(1 << 30);
    // SAFETY: the kernel writes at most `want` bytes into memory we own mutably.
    let n = unsafe { libc::read(file.as_raw_fd(), buf.as_mut_ptr().cast(), want) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(not(unix))]
fn read_some(file: &mut File, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    for b in buf.iter_mut() {
        b.write(0);
    }
    // SAFETY: every byte was just initialised.
    let buf = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), buf.len()) };
    file.read(buf)
}

/// Opens the file at `path` for reading, refusing symlinks, FIFOs and planted directories.
pub(crate) fn open_file(path: &Path) -> io::Result<File> {
    if !in_real_directories(path) {
        return Err(io::Error::other("not in the cache's own directories"));
    }
    open_no_follow(path)
}

fn open_checked(path: &Path, size: u64) -> std::result::Result<File, ReadFailure> {
    // O_NOFOLLOW guards only the last component: a shard or `blobs/` replaced by a symlink
    // would still lead outside the cache.
    if !in_real_directories(path) {
        return Err(ReadFailure::NotAFile);
    }
    let file = open_no_follow(path).map_err(|e| match e.kind() {
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
    Ok(file)
}

/// Opens `path` for reading, never through a symlink in its last component, nor blocking on a
/// FIFO.
pub(crate) fn open_no_follow(path: &Path) -> io::Result<File> {
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

/// Which file stood at a path when it was looked at, and its length and times.
///
/// Blobs are only ever replaced whole, by a rename, which puts another inode at the path; and
/// anything writing into a file in place moves its modification and change times. So two equal
/// stamps of a path mean the same bytes stood there at both moments: a stamp taken before and
/// after a read that agree tie what was read to the stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    device: u64,
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
    changed: (i64, i64),
}

impl Stamp {
    /// The stamp of whatever stands at `path` (a symlink itself, not its target); `None` when
    /// nothing does, or it cannot be looked at.
    pub fn at(path: &Path) -> Option<Stamp> {
        fs::symlink_metadata(path).ok().map(|meta| Stamp::of(&meta))
    }

    #[cfg(unix)]
    pub fn of(meta: &fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            device: meta.dev(),
            inode: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
            changed: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    #[cfg(not(unix))]
    pub fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            device: 0,
            inode: 0,
            len: meta.len(),
            modified: meta.modified().ok(),
            changed: (0, 0),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_hashed_matches_a_plain_read_and_hash_on_both_paths() {
        let dir = tempfile::tempdir().unwrap();
        for len in [
            0,
            1,
            20_000,
            HASH_BEHIND_FROM - 1,
            HASH_BEHIND_FROM,
            3 * HASH_CHUNK + HASH_BEHIND_FROM + 7,
        ] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
            let path = dir.path().join(format!("blob-{len}"));
            fs::write(&path, &bytes).unwrap();
            let (read, digest) = read_hashed(&path, len as u64).unwrap();
            assert!(read == bytes, "length {len}");
            assert_eq!(digest, Digest::of(&bytes), "length {len}");
        }
    }

    #[test]
    fn read_hashed_refuses_a_file_of_the_wrong_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        fs::write(&path, vec![1u8; HASH_BEHIND_FROM + 10]).unwrap();
        assert!(matches!(
            read_hashed(&path, HASH_BEHIND_FROM as u64 + 11),
            Err(ReadFailure::WrongSize { .. })
        ));
        assert!(matches!(
            read_hashed(&dir.path().join("none"), 1),
            Err(ReadFailure::Missing)
        ));
    }
}
