//! A cache that filled its disk itself frees its own space (issue 12, item 6).
//!
//! The disk is a 512 KiB tmpfs when this process may mount one (root, as in CI); elsewhere,
//! `RLIMIT_FSIZE` (with SIGXFSZ ignored) makes every file of the cache stop growing at 256 KiB,
//! which the `memo-cache` children inherit. Either way the cache fills it itself, through
//! `Cache::put`, and the real binary's `prune` and `clear` must then succeed and give the space
//! back. The tests run one at a time: a resource limit holds for the whole process.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use memo_cache::{Cache, Function};

#[allow(dead_code)] // the line readers and file waits serve the end-to-end tests
#[path = "../../../tests/src/children.rs"]
mod children;

const BIN: &str = env!("CARGO_BIN_EXE_memo-cache");

static SMALL: Function = Function::new("full::small", "v1", "String");
static BIG: Function = Function::new("full::big", "v1", "Vec<u8>");

/// One test at a time: `RLIMIT_FSIZE` is the whole process's.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Larger than the inline threshold: a blob file.
const BLOB_BYTES: usize = 20_000;

/// The file size limit of the fallback.
const FSIZE_LIMIT: u64 = 256 * 1024;

/// The full disk under a test: a mounted tmpfs (unmounted on drop), or a file size limit
/// (lifted on drop).
enum Disk {
    Tmpfs { target: CString },
    Rlimit,
}

impl Disk {
    /// A 512 KiB tmpfs on `mnt`, else `RLIMIT_FSIZE` (also when `MEMO_CACHE_TEST_DISK=rlimit`,
    /// to run the fallback where mounting is allowed).
    fn new(mnt: &Path) -> Disk {
        if std::env::var_os("MEMO_CACHE_TEST_DISK").is_some_and(|v| v == "rlimit") {
            set_fsize_limit(FSIZE_LIMIT);
            return Disk::Rlimit;
        }
        let target = CString::new(mnt.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                c"size=512k,mode=0755".as_ptr().cast(),
            )
        };
        if rc == 0 {
            return Disk::Tmpfs { target };
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "mounting a tmpfs: {e}");
        eprintln!("cannot mount a tmpfs ({e}); using RLIMIT_FSIZE of {FSIZE_LIMIT} bytes");
        set_fsize_limit(FSIZE_LIMIT);
        Disk::Rlimit
    }

    /// Space left: free bytes on the tmpfs; under the file size limit, what the largest file of
    /// the cache may still grow by.
    fn free(&self, dir: &Path) -> u64 {
        match self {
            Disk::Tmpfs { .. } => statvfs_free(dir),
            Disk::Rlimit => FSIZE_LIMIT.saturating_sub(largest_file(dir)),
        }
    }

    /// What the cache's files take: the tmpfs's used space, or the files' total size.
    fn used(&self, dir: &Path) -> u64 {
        match self {
            Disk::Tmpfs { .. } => 512 * 1024 - statvfs_free(dir),
            Disk::Rlimit => files(dir).iter().map(|(_, len)| len).sum(),
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        match self {
            // SAFETY: a valid NUL-terminated string.
            Disk::Tmpfs { target } => unsafe {
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            },
            Disk::Rlimit => set_fsize_limit(libc::RLIM_INFINITY),
        }
    }
}

fn set_fsize_limit(soft: libc::rlim_t) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: signal(2) with SIG_IGN; getrlimit/setrlimit with a valid pointer.
    unsafe {
        // Past the limit a write fails with EFBIG only while SIGXFSZ is ignored.
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit), 0);
        limit.rlim_cur = soft.min(limit.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
}

fn statvfs_free(path: &Path) -> u64 {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid path and a zeroed struct for statvfs to fill.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0);
    s.f_bavail * s.f_frsize
}

/// Every regular file under `dir`, with its size.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            out.extend(files(&entry.path()));
        } else {
            out.push((entry.path(), meta.len()));
        }
    }
    out
}

fn largest_file(dir: &Path) -> u64 {
    files(dir).iter().map(|(_, len)| *len).max().unwrap_or(0)
}

/// A small value, different for every key.
fn small(i: u64) -> String {
    format!("value number {i}")
}

/// What filling the disk stored.
#[derive(Debug)]
struct Filled {
    small: u64,
    blobs: u64,
    first_error: String,
}

/// Stores small entries until a store fails, then tries a few blob-sized ones.
/// Bytes that do not compress (values are stored zstd-compressed when that saves space, and
/// these must take their size on the disk).
fn noise(seed: u8, len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn fill(cache: &Cache) -> Filled {
    let mut filled = Filled {
        small: 0,
        blobs: 0,
        first_error: String::new(),
    };
    for i in 0..200_000u64 {
        let stored = if i % 2 == 0 {
            cache.put(&SMALL, &(i,), &small(i))
        } else {
            // The attribute's way: a miss computes, then stores (quietly: check it did).
            let value = cache.get_or_compute(&SMALL, &(i,), || small(i));
            assert_eq!(value, small(i));
            if cache.contains(&SMALL, &(i,)).unwrap() {
                Ok(())
            } else {
                cache.put(&SMALL, &(i,), &small(i))
            }
        };
        match stored {
            Ok(()) => filled.small += 1,
            Err(e) => {
                filled.first_error = e.to_string();
                break;
            }
        }
    }
    for i in 0..4u8 {
        if cache.put(&BIG, &(i,), &noise(i, BLOB_BYTES)).is_ok() {
            filled.blobs += 1;
        }
    }
    filled
}

fn cli(dir: &Path, args: &[&str]) -> String {
    let out = children::run_bounded(Command::new(BIN).arg("--dir").arg(dir).args(args));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "memo-cache {args:?} on a full disk failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn stats_json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&cli(dir, &["stats", "--json"])).unwrap()
}

#[test]
fn prune_and_clear_free_the_space_of_a_cache_that_filled_its_disk() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let temp = tempfile::tempdir().unwrap();
    let mnt = temp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let disk = Disk::new(&mnt);
    let dir = mnt.join("cache");

    // The program that filled the disk keeps its handle open throughout, as a running one
    // would: nothing is left to the last close's checkpoint.
    let cache = Cache::open(&dir).unwrap();
    let filled = fill(&cache);
    eprintln!("{filled:?}");
    assert!(
        filled.first_error.contains("full") || filled.first_error.contains("too large"),
        "the stores did not fail for space: {filled:?}"
    );
    // An unbounded WAL took the disk after 21 entries; bounded, about 900 fit beside the index,
    // the 64 KiB reserve and the compute-lock records.
    if let Disk::Tmpfs { .. } = disk {
        assert!(
            filled.small >= 600,
            "only {} small entries fit on 512 KiB: the WAL took the disk",
            filled.small
        );
    }
    let before = disk.free(&dir);
    let used_before = disk.used(&dir);
    assert!(
        before < 8 * 1024,
        "the disk is not full: {before} bytes free"
    );

    let stats = stats_json(&dir);
    let (index, wal) = (stats["index_bytes"].as_u64(), stats["wal_bytes"].as_u64());
    assert!(wal.unwrap() <= index.unwrap(), "{stats}");
    assert!(stats["disk_bytes"].as_u64() >= index, "{stats}");

    let pruned = cli(&dir, &["prune", "--max-size", "1KiB"]);
    assert!(pruned.starts_with("Removed "), "{pruned}");
    let stats = stats_json(&dir);
    assert!(stats["bytes"].as_u64().unwrap() <= 1024, "{stats}");
    cli(&dir, &["clear", "--yes"]);
    assert_eq!(stats_json(&dir)["entries"], 0);

    let after = disk.free(&dir);
    let used_after = disk.used(&dir);
    eprintln!("free {before} -> {after} bytes; used {used_before} -> {used_after}");
    assert!(
        after >= before + 128 * 1024 && used_after * 2 <= used_before,
        "the space did not come back: free {before} -> {after}, used {used_before} -> {used_after}"
    );

    // The handle that filled the disk stores again, and so does a new one.
    cache.put(&SMALL, &(1u64,), &"again".to_string()).unwrap();
    cache.put(&BIG, &(9u8,), &vec![9u8; BLOB_BYTES]).unwrap();
    assert_eq!(
        cache.get::<_, String>(&SMALL, &(1u64,)).unwrap().as_deref(),
        Some("again")
    );
    let other = Cache::open(&dir).unwrap();
    assert_eq!(
        other.get::<_, Vec<u8>>(&BIG, &(9u8,)).unwrap(),
        Some(vec![9u8; BLOB_BYTES])
    );
    let computed = other.get_or_compute(&SMALL, &(2u64,), || "computed".to_string());
    assert_eq!(computed, "computed");
    assert!(other.contains(&SMALL, &(2u64,)).unwrap());
    drop((cache, other));
    drop(disk);
}

#[test]
fn a_size_limited_cache_that_fills_its_disk_evicts_and_keeps_storing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let temp = tempfile::tempdir().unwrap();
    let mnt = temp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let disk = Disk::new(&mnt);
    let dir = mnt.join("cache");

    // A limit far above what the disk holds: the disk is the tighter limit.
    let cache = Cache::builder(&dir)
        .size_limit(64 * 1024 * 1024)
        .open()
        .unwrap();
    let n = 4000u64;
    let mut failed = Vec::new();
    for i in 0..n {
        if let Err(e) = cache.put(&SMALL, &(i,), &small(i)) {
            failed.push((i, e.to_string()));
        }
    }
    for i in 0..4u8 {
        if let Err(e) = cache.put(&BIG, &(i,), &vec![i; BLOB_BYTES]) {
            failed.push((u64::from(i), e.to_string()));
        }
    }
    let stats = cache.stats().unwrap();
    eprintln!(
        "{} entries kept of {n}; {} bytes free",
        stats.entries,
        disk.free(&dir)
    );
    assert!(
        failed.is_empty(),
        "stores failed on the full disk: {failed:?}"
    );
    if let Disk::Tmpfs { .. } = disk {
        assert!(
            stats.entries < n,
            "nothing was evicted: the disk never filled ({} entries)",
            stats.entries
        );
    }
    // The latest stores are served, blobs included.
    for i in n - 50..n {
        assert_eq!(
            cache.get::<_, String>(&SMALL, &(i,)).unwrap(),
            Some(small(i))
        );
    }
    for i in 0..4u8 {
        assert_eq!(
            cache.get::<_, Vec<u8>>(&BIG, &(i,)).unwrap(),
            Some(vec![i; BLOB_BYTES])
        );
    }
    drop(cache);
    drop(disk);
}

#[test]
fn the_index_counts_toward_the_size_limit() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let temp = tempfile::tempdir().unwrap();
    let limit = 256 * 1024;
    let cache = Cache::builder(temp.path())
        .size_limit(limit)
        .open()
        .unwrap();
    for i in 0..5000u64 {
        cache.put(&SMALL, &(i,), &small(i)).unwrap();
    }
    let stats = cache.stats().unwrap();
    // 5000 values of about 20 bytes are far below the limit; the index holding them is not.
    assert!(stats.bytes < limit / 2, "{stats:?}");
    assert!(stats.entries < 5000, "nothing was evicted: {stats:?}");
    // The floor: the index's first 64 KiB, the WAL within its bound and the `-shm` file; and
    // the few pages a store adds before its eviction frees as many.
    let floor = 64 * 1024 + stats.wal_bytes + 32 * 1024 + 16 * 4096;
    assert!(
        stats.disk_bytes <= limit + floor,
        "{} bytes on disk for a limit of {limit}: {stats:?}",
        stats.disk_bytes
    );
}
