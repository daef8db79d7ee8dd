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

/// A stored value as the pieces it is made of, in order: its stored bytes whole, or a large
/// array's own memory and then its format byte, which a store hashes and writes one after the
/// other instead of first copying them together (a 300 MiB `Vec<u8>` store peaked at twice
/// its size for that copy).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pieces<'a> {
    pub body: &'a [u8],
    pub tail: &'a [u8],
}

impl<'a> Pieces<'a> {
    /// Stored bytes that are one piece already.
    pub(crate) fn whole(bytes: &'a [u8]) -> Self {
        Pieces {
            body: bytes,
            tail: &[],
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.body.len() + self.tail.len()
    }

    /// The last stored byte: the value's format.
    pub(crate) fn last(&self) -> Option<u8> {
        self.tail.last().or(self.body.last()).copied()
    }

    /// The hash of the stored bytes, as [`digest`] of them joined.
    pub(crate) fn digest(&self) -> Digest {
        if self.tail.is_empty() {
            return digest(self.body);
        }
        let mut hasher = blake3::Hasher::new();
        if self.body.len() < PARALLEL_FROM {
            hasher.update(self.body);
        } else {
            crate::canonical::update_parallel(&mut hasher, self.body);
        }
        hasher.update(self.tail);
        Digest(*hasher.finalize().as_bytes())
    }

    /// The stored bytes in one slice, copied only when they are in two.
    pub(crate) fn joined(&self) -> std::borrow::Cow<'a, [u8]> {
        if self.tail.is_empty() {
            std::borrow::Cow::Borrowed(self.body)
        } else {
            std::borrow::Cow::Owned([self.body, self.tail].concat())
        }
    }
}

/// Writes `bytes` as the file at `dest` (`blobs/ab/...` or `hints/ab/...`), through a temp file
/// in the cache's `tmp/`.
pub(crate) fn write(layout: &Layout, dest: &Path, bytes: &[u8]) -> Result<()> {
    write_pieces(layout, dest, Pieces::whole(bytes))
}

/// [`write`] of a value's [`Pieces`], one after the other.
pub(crate) fn write_pieces(layout: &Layout, dest: &Path, pieces: Pieces<'_>) -> Result<()> {
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
    for piece in [pieces.body, pieces.tail] {
        tmp.write_all(piece)
            .map_err(|e| Error::io("writing", tmp.path(), e))?;
    }
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
            tracing::warn!(target: crate::diagnostics::STORE,
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

/// Values from this size on are hashed on every core when stored; a blob larger than one
/// [`PIECE`] is read and hashed by two threads, each taking the next piece of the file in turn.
///
/// On the 2-core VM of BENCHMARKS.md ("Large values") blake3 on one core (~1.5 GB/s) is slower
/// than the read itself, so a reader with a hasher one chunk behind it (the previous design)
/// cost about the hash alone; two threads that each read a piece and hash it while it is still
/// in cache share both the reading and the hashing. Below this size the thread costs more than
/// it saves.
const PARALLEL_FROM: usize = 4 << 20;
/// What one thread reads and hashes at a time: a whole BLAKE3 subtree (a power of two of
/// 1 KiB chunks, at an offset that is a multiple of it), so the pieces' chaining values merge
/// into the hash of the whole file.
const PIECE: usize = 4 << 20;
/// Within a piece, how much is read before it is hashed: small enough to still be in the
/// core's cache when the hasher reaches it.
const STEP: usize = 256 << 10;

/// Plain numbers a blob can be read into directly: every bit pattern is a valid value.
///
/// # Safety
///
/// Implementors must be plain integers or floats (no padding, no invalid bit patterns).
pub(crate) unsafe trait Plain: Copy + Send + Sync + 'static {}
// SAFETY: plain integers and floats.
unsafe impl Plain for u8 {}
// SAFETY: as above.
unsafe impl Plain for f64 {}
// SAFETY: as above.
unsafe impl Plain for f32 {}
// SAFETY: as above.
unsafe impl Plain for i64 {}
// SAFETY: as above.
unsafe impl Plain for u64 {}
// SAFETY: as above.
unsafe impl Plain for i32 {}
// SAFETY: as above.
unsafe impl Plain for u32 {}

/// Stored bytes in an allocation made for `N`s, so that a value of `Vec<N>` can be handed out as
/// the very buffer the file was read into: `len` bytes are initialised at its start, and its
/// capacity is at least `len` bytes.
pub(crate) struct Aligned<N: Plain> {
    buf: Vec<N>,
    len: usize,
}

impl<N: Plain> Aligned<N> {
    /// An uninitialised allocation with room for `len` bytes; large ones are advised onto huge
    /// pages, so filling them takes a page fault per 2 MiB instead of per 4 KiB.
    fn with_room(len: usize) -> Aligned<N> {
        let buf: Vec<N> = Vec::with_capacity(len.div_ceil(size_of::<N>()));
        advise_huge_pages(buf.as_ptr().cast(), buf.capacity() * size_of::<N>());
        Aligned { buf, len: 0 }
    }

    /// [`with_room`](Self::with_room), or `None` when the memory cannot be had (an address-space
    /// limit, an overcommit policy): a store's copy that does not fit is not worth the process.
    fn try_with_room(len: usize) -> Option<Aligned<N>> {
        let mut buf: Vec<N> = Vec::new();
        buf.try_reserve_exact(len.div_ceil(size_of::<N>())).ok()?;
        advise_huge_pages(buf.as_ptr().cast(), buf.capacity() * size_of::<N>());
        Some(Aligned { buf, len: 0 })
    }

    /// A copy of `bytes` (the bytes themselves when `N` is `u8`).
    pub fn from_bytes(bytes: Vec<u8>) -> Aligned<N> {
        let any: Box<dyn std::any::Any> = Box::new(bytes);
        match any.downcast::<Vec<u8>>() {
            Ok(bytes) if size_of::<N>() == 1 => {
                let len = bytes.len();
                let any: Box<dyn std::any::Any> = bytes;
                let buf = *any.downcast::<Vec<N>>().expect("N is u8");
                Aligned { buf, len }
            }
            Ok(bytes) => {
                let mut out = Aligned::<N>::with_room(bytes.len());
                // SAFETY: the allocation has room for `bytes.len()` bytes and is distinct.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        bytes.as_ptr(),
                        out.buf.as_mut_ptr().cast::<u8>(),
                        bytes.len(),
                    );
                }
                out.len = bytes.len();
                out
            }
            Err(_) => unreachable!("a Vec<u8> was boxed"),
        }
    }

    /// An allocation with room for `len` bytes, of which `fill` initialises the first as many
    /// as it returns (decompression writes straight into it).
    ///
    /// # Safety
    ///
    /// `fill` must have initialised the first `n` bytes of the slice it is given when it
    /// returns `Ok(n)`.
    pub unsafe fn filled<E>(
        len: usize,
        fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> std::result::Result<usize, E>,
    ) -> std::result::Result<Aligned<N>, E> {
        let mut out = Aligned::<N>::with_room(len);
        let n = fill(&mut out.spare()[..len])?;
        assert!(n <= len, "filled past the room asked for");
        out.len = n;
        Ok(out)
    }

    /// The stored bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the first `len` bytes of the allocation are initialised.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>(), self.len) }
    }

    /// The stored bytes' length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The first `n` elements as a vector, in place (the allocation may have room for more).
    pub fn into_vec(mut self, n: usize) -> Vec<N> {
        assert!(n * size_of::<N>() <= self.len, "only initialised elements");
        // SAFETY: the first `n` elements are initialised bytes, and any bytes are a valid `N`.
        unsafe { self.buf.set_len(n) };
        self.buf
    }

    /// All of the allocation's bytes, initialised or not.
    fn spare(&mut self) -> &mut [MaybeUninit<u8>] {
        let bytes = self.buf.capacity() * size_of::<N>();
        // SAFETY: the allocation holds `bytes` bytes; `MaybeUninit` asks nothing of them.
        unsafe {
            std::slice::from_raw_parts_mut(self.buf.as_mut_ptr().cast::<MaybeUninit<u8>>(), bytes)
        }
    }
}

impl Aligned<u8> {
    /// The stored bytes as a vector, in place.
    pub fn into_bytes(self) -> Vec<u8> {
        let len = self.len;
        self.into_vec(len)
    }
}

/// An empty byte vector with room for `len` bytes, advised onto huge pages when large (see
/// [`advise_huge_pages`]), or `None` when the memory cannot be had.
pub(crate) fn try_byte_buffer(len: usize) -> Option<Vec<u8>> {
    Aligned::<u8>::try_with_room(len).map(Aligned::into_bytes)
}

/// Asks Linux to back `len` bytes at `ptr` with transparent huge pages (ignored when they are
/// off; the same advice numpy gives its large arrays). A 100 MB read into a fresh allocation
/// otherwise takes ~25,000 page faults, each zeroing a 4 KiB page before `read` overwrites it.
#[cfg(target_os = "linux")]
fn advise_huge_pages(ptr: *const u8, len: usize) {
    const HUGE: usize = 2 << 20;
    if len < 2 * HUGE {
        return;
    }
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + len) / HUGE * HUGE;
    if end > start {
        // SAFETY: advice only, on whole pages inside an allocation we own; it never changes
        // what the memory holds.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_ptr: *const u8, _len: usize) {}

/// The digest of `bytes` to be stored, on every core when they are large.
pub(crate) fn digest(bytes: &[u8]) -> Digest {
    if bytes.len() < PARALLEL_FROM {
        return Digest::of(bytes);
    }
    let mut hasher = blake3::Hasher::new();
    crate::canonical::update_parallel(&mut hasher, bytes);
    Digest(*hasher.finalize().as_bytes())
}

/// Like [`read_hashed_as`], into a byte vector.
pub(crate) fn read_hashed(
    path: &Path,
    size: u64,
) -> std::result::Result<(Vec<u8>, Digest), ReadFailure> {
    read_hashed_as::<u8>(path, size).map(|(bytes, digest)| (bytes.into_bytes(), digest))
}

/// The file at `path`, which the index says holds `size` bytes, read into an allocation made
/// for `N`s, and the blake3 digest of its bytes, computed on the way.
///
/// The buffer is allocated at its exact size and filled by `read(2)` without zeroing it first;
/// past one [`PIECE`], two threads read and hash pieces of it.
pub(crate) fn read_hashed_as<N: Plain>(
    path: &Path,
    size: u64,
) -> std::result::Result<(Aligned<N>, Digest), ReadFailure> {
    let file = open_checked(path, size)?;
    let len = usize::try_from(size).map_err(|_| ReadFailure::WrongSize { found: size })?;
    let mut out = Aligned::<N>::with_room(len);
    let spare = &mut out.spare()[..len];
    let (filled, digest) = if len > PIECE {
        read_in_pieces(&file, spare, PIECE).map_err(ReadFailure::Io)?
    } else {
        let filled = read_into(&mut &file, spare).map_err(ReadFailure::Io)?;
        (filled, None)
    };
    out.len = filled;
    if filled != len {
        return Err(ReadFailure::WrongSize {
            found: filled as u64,
        });
    }
    let digest = digest.unwrap_or_else(|| Digest::of(out.bytes()));
    Ok((out, digest))
}

/// Fills `buf` from `file` on two threads, each taking the next `piece` bytes, reading them in
/// steps and hashing each step just read; the pieces' chaining values are then merged into the
/// file's hash (`buf` must be longer than one piece). Returns the bytes read and the digest, or
/// `None` for the digest when the file ended early (the caller then reports the wrong size).
fn read_in_pieces(
    file: &File,
    buf: &mut [MaybeUninit<u8>],
    piece: usize,
) -> io::Result<(usize, Option<Digest>)> {
    debug_assert!(piece.is_power_of_two() && piece >= blake3::CHUNK_LEN);
    let total = buf.len();
    let count = total.div_ceil(piece);
    assert!(count >= 2, "one piece is hashed as the root, not merged");
    let work = std::sync::Mutex::new(buf.chunks_mut(piece).enumerate());
    type Done = (usize, usize, Option<blake3::hazmat::ChainingValue>);
    let worker = || -> io::Result<Vec<Done>> {
        use blake3::hazmat::HasherExt;
        let mut done = Vec::new();
        loop {
            let next = work.lock().expect("no worker panics holding it").next();
            let Some((index, dest)) = next else {
                return Ok(done);
            };
            let offset = index * piece;
            let mut hasher = blake3::Hasher::new();
            hasher.set_input_offset(offset as u64);
            let mut filled = 0;
            for step in dest.chunks_mut(STEP) {
                let n = read_at_into(file, step, (offset + filled) as u64)?;
                // SAFETY: `read_at_into` initialised the first `n` bytes of `step`.
                let read = unsafe { std::slice::from_raw_parts(step.as_ptr().cast::<u8>(), n) };
                hasher.update(read);
                filled += n;
                if n < step.len() {
                    break;
                }
            }
            // A short piece means the file ended early: no digest is wanted then, and an empty
            // subtree has no chaining value.
            let cv = (filled == dest.len()).then(|| hasher.finalize_non_root());
            done.push((index, filled, cv));
        }
    };
    let (mine, theirs) = std::thread::scope(|scope| {
        // Without a second thread (a process's thread or memory limit), this one reads every
        // piece: slower, never a failed hit.
        let helper = std::thread::Builder::new()
            .name("memo-cache-read".into())
            .spawn_scoped(scope, worker)
            .ok();
        let mine = worker();
        let theirs = match helper {
            Some(helper) => helper
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the reading thread panicked"))),
            None => Ok(Vec::new()),
        };
        (mine, theirs)
    });
    let mut pieces = mine?;
    pieces.extend(theirs?);
    pieces.sort_unstable_by_key(|(index, _, _)| *index);
    debug_assert_eq!(pieces.len(), count);
    // Bytes are counted up to the first short piece: past it the file ended.
    let mut filled = 0;
    let mut cvs = Vec::with_capacity(count);
    for (_, n, cv) in pieces {
        filled += n;
        match cv {
            Some(cv) => cvs.push(cv),
            None => return Ok((filled, None)),
        }
    }
    Ok((filled, Some(merge_root(&cvs))))
}

/// The hash of a file from the chaining values of its equal pieces (the last may be shorter),
/// at least two: BLAKE3's tree puts the largest power of two of pieces short of all of them on
/// the left.
fn merge_root(cvs: &[blake3::hazmat::ChainingValue]) -> Digest {
    use blake3::hazmat::{Mode, merge_subtrees_root};
    let left = left_count(cvs.len());
    let hash = merge_subtrees_root(&merge(&cvs[..left]), &merge(&cvs[left..]), Mode::Hash);
    Digest(*hash.as_bytes())
}

fn merge(cvs: &[blake3::hazmat::ChainingValue]) -> blake3::hazmat::ChainingValue {
    use blake3::hazmat::{Mode, merge_subtrees_non_root};
    if cvs.len() == 1 {
        return cvs[0];
    }
    let left = left_count(cvs.len());
    merge_subtrees_non_root(&merge(&cvs[..left]), &merge(&cvs[left..]), Mode::Hash)
}

/// The largest power of two below `n` (at least 2).
fn left_count(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// Reads at `offset` until `buf` is full or the file ends; returns the number of bytes read.
fn read_at_into(file: &File, buf: &mut [MaybeUninit<u8>], offset: u64) -> io::Result<usize> {
    fill(buf, |rest, filled| {
        read_some_at(file, rest, offset + filled as u64)
    })
}

/// Calls `read` on what is left of `buf` (and how much is filled) until `buf` is full or a read
/// returns 0, retrying interrupted reads; returns the number of bytes read.
fn fill(
    buf: &mut [MaybeUninit<u8>],
    mut read: impl FnMut(&mut [MaybeUninit<u8>], usize) -> io::Result<usize>,
) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match read(&mut buf[filled..], filled) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(unix)]
fn read_some_at(file: &File, buf: &mut [MaybeUninit<u8>], offset: u64) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let want = buf.len().min(1 << 30);
    let offset = libc::off_t::try_from(offset).map_err(io::Error::other)?;
    // SAFETY: the kernel writes at most `want` bytes into memory we own mutably.
    let n = unsafe { libc::pread(file.as_raw_fd(), buf.as_mut_ptr().cast(), want, offset) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(not(unix))]
fn read_some_at(file: &File, buf: &mut [MaybeUninit<u8>], offset: u64) -> io::Result<usize> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    read_some(&mut file, buf)
}

/// Reads until `buf` is full or the file ends; returns the number of bytes read, all of which
/// are initialised.
fn read_into(file: &mut &File, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    fill(buf, |rest, _| read_some(file, rest))
}

#[cfg(unix)]
fn read_some(file: &mut &File, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
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
fn read_some(file: &mut &File, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
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
        for len in [0, 1, 20_000, PIECE, PIECE + 1, 3 * PIECE + 7] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
            let path = dir.path().join(format!("blob-{len}"));
            fs::write(&path, &bytes).unwrap();
            let (read, digest) = read_hashed(&path, len as u64).unwrap();
            assert!(read == bytes, "length {len}");
            assert_eq!(digest, Digest::of(&bytes), "length {len}");
        }
    }

    #[test]
    fn pieces_merge_into_the_hash_of_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = blake3::CHUNK_LEN;
        // Pieces of 2 chunks: every shape of tree from 2 to 9 pieces, with a last piece that is
        // whole, one byte, a chunk and a byte, or one byte short.
        let piece = 2 * chunk;
        let mut lens = vec![piece + 1, 2 * piece];
        for pieces in 2..=9 {
            for tail in [1, chunk, chunk + 1, piece - 1, piece] {
                lens.push((pieces - 1) * piece + tail);
            }
        }
        for len in lens {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 + i / 1000) as u8).collect();
            let path = dir.path().join("blob");
            fs::write(&path, &bytes).unwrap();
            let file = File::open(&path).unwrap();
            let mut buf = vec![MaybeUninit::<u8>::uninit(); len];
            let (filled, digest) = read_in_pieces(&file, &mut buf, piece).unwrap();
            assert_eq!(filled, len);
            assert_eq!(digest, Some(Digest::of(&bytes)), "length {len}");
            // SAFETY: all `len` bytes were read.
            let read = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
            assert!(read == bytes, "length {len}");
        }
    }

    #[test]
    fn a_file_shorter_than_its_pieces_has_no_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        fs::write(&path, vec![3u8; 5000]).unwrap();
        let file = File::open(&path).unwrap();
        let mut buf = vec![MaybeUninit::<u8>::uninit(); 9000];
        assert_eq!(read_in_pieces(&file, &mut buf, 2048).unwrap(), (5000, None));
    }

    #[test]
    fn a_blob_read_as_numbers_keeps_its_bytes_and_alignment() {
        let dir = tempfile::tempdir().unwrap();
        for len in [1usize, 9, 8 * 1000 + 1, PIECE, 2 * PIECE + 8 * 3 + 1] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
            let path = dir.path().join(format!("blob-{len}"));
            fs::write(&path, &bytes).unwrap();
            let (read, digest) = read_hashed_as::<f64>(&path, len as u64).unwrap();
            assert_eq!(digest, Digest::of(&bytes));
            assert!(read.bytes() == bytes);
            let n = (len - 1) / 8;
            let floats = read.into_vec(n);
            assert_eq!(floats.as_ptr() as usize % align_of::<f64>(), 0);
            let expected: Vec<u64> = bytes[..n * 8]
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            let got: Vec<u64> = floats.iter().map(|x| x.to_bits()).collect();
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn read_hashed_refuses_a_file_of_the_wrong_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        fs::write(&path, vec![1u8; PARALLEL_FROM + 10]).unwrap();
        assert!(matches!(
            read_hashed(&path, PARALLEL_FROM as u64 + 11),
            Err(ReadFailure::WrongSize { .. })
        ));
        assert!(matches!(
            read_hashed(&dir.path().join("none"), 1),
            Err(ReadFailure::Missing)
        ));
    }
}
