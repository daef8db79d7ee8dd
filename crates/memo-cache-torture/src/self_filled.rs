//! Issue 12, item 6: a cache that filled its disk itself, and must free its own space.
//!
//! A 512 KiB tmpfs (or, where mounting is not permitted, `RLIMIT_FSIZE` of 256 KiB with SIGXFSZ
//! ignored) is filled by the cache: small entries through `put` and `get_or_compute` until a store
//! fails, then a few blob-sized ones. With the filling handle still open, `prune --max-size 1KiB`
//! and `clear --yes` run (through the library, or with `--cli` the real `memo-cache` binary; the
//! CLI's own tests run it too), must succeed and give the space back; then stores work again.
//! A second cache, with a size limit above what the disk holds, must keep storing on the full
//! disk by evicting. The scenario runs in a child (the hidden `self-filled-worker` subcommand),
//! so that the resource limit changes nothing in the parent.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::{Args, ValueEnum};
use memo_cache::{Cache, Function, Prune};

use crate::disk::{DiskMode, Out, read_child, set_fsize_limit};
use crate::figures::Figures;
use crate::mount::Tmpfs;
use crate::procs::myself;

static SMALL: Function = Function::new("torture::full_small", "v1", "String");
static BIG: Function = Function::new("torture::full_big", "v1", "Vec<u8>");

/// Above the inline threshold: a blob file.
const BLOB_BYTES: usize = 20_000;

/// The blob-sized value of `i`: bytes that do not compress, so that it stays a blob file.
fn blob(i: u8) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15 ^ u64::from(i);
    (0..BLOB_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
/// The tmpfs's size.
const TMPFS_BYTES: u64 = 512 * 1024;
/// The file size limit of the fallback.
const FSIZE_LIMIT: u64 = 256 * 1024;

/// Options of `self-filled-disk`.
#[derive(Debug, Clone, Args)]
pub struct SelfFilledArgs {
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: DiskMode,
    /// Stores made by the size-limited cache (more than the disk holds).
    #[arg(long, default_value_t = 4000)]
    pub stores: u64,
    /// Work in this directory (kept) instead of a temporary one.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Prune and clear with this `memo-cache` binary (e.g. target/debug/memo-cache) instead of
    /// through the library.
    #[arg(long)]
    pub cli: Option<PathBuf>,
}

/// The hidden child subcommand.
#[derive(Debug, Clone, Args)]
pub struct SelfFilledWorkerArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, value_enum)]
    pub full: Full,
    #[arg(long)]
    pub stores: u64,
    #[arg(long)]
    pub cli: Option<PathBuf>,
}

/// How the child's disk fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Full {
    /// The tmpfs the parent mounted.
    Tmpfs,
    /// The child lowers `RLIMIT_FSIZE`.
    Rlimit,
}

pub fn run(args: &SelfFilledArgs) -> anyhow::Result<Figures> {
    let (work, _temp) = crate::work_dir(args.dir.as_deref())?;
    let mnt = work.join("mnt");
    std::fs::create_dir_all(&mnt)?;
    let mut notes = Vec::new();
    let (full, mount) = match args.mode {
        DiskMode::Rlimit => (Full::Rlimit, None),
        DiskMode::Tmpfs => (Full::Tmpfs, Some(Tmpfs::mount(&mnt, "512k")?)),
        DiskMode::Auto => match Tmpfs::mount(&mnt, "512k") {
            Ok(m) => (Full::Tmpfs, Some(m)),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                notes.push(format!(
                    "cannot mount a tmpfs here ({e}); using RLIMIT_FSIZE instead"
                ));
                (Full::Rlimit, None)
            }
            Err(e) => return Err(e.into()),
        },
    };
    let name = full
        .to_possible_value()
        .expect("named")
        .get_name()
        .to_owned();
    let mut fig = Figures::new(
        "self-filled-disk",
        format!(
            "memo-cache-torture self-filled-disk --mode {name} --stores {}",
            args.stores
        ),
    );
    fig.notes = notes;
    fig.put(
        "how the disk is full",
        match full {
            Full::Tmpfs => "512 KiB tmpfs filled by the cache itself (ENOSPC)",
            Full::Rlimit => "RLIMIT_FSIZE 256 KiB, SIGXFSZ ignored (EFBIG)",
        },
    );
    let mut argv = [
        "self-filled-worker",
        "--dir",
        &mnt.display().to_string(),
        "--full",
        &name,
        "--stores",
        &args.stores.to_string(),
    ]
    .map(String::from)
    .to_vec();
    if let Some(cli) = &args.cli {
        fig.command.push_str(" --cli memo-cache");
        argv.extend(["--cli".into(), cli.display().to_string()]);
    }
    let output = myself(&argv)?.stdin(Stdio::null()).output()?;
    read_child(&output, &mut fig);
    drop(mount);
    Ok(fig)
}

/// The disk as the child sees it.
struct Disk {
    full: Full,
    mnt: PathBuf,
}

impl Disk {
    /// Free bytes on the tmpfs; under the file size limit, what the largest file of `dir` may
    /// still grow by.
    fn free(&self, dir: &Path) -> u64 {
        match self.full {
            Full::Tmpfs => statvfs_free(&self.mnt),
            Full::Rlimit => FSIZE_LIMIT.saturating_sub(files(dir).into_iter().max().unwrap_or(0)),
        }
    }

    /// What the cache in `dir` takes: the tmpfs's used space, or its files' total size.
    fn used(&self, dir: &Path) -> u64 {
        match self.full {
            Full::Tmpfs => TMPFS_BYTES.saturating_sub(statvfs_free(&self.mnt)),
            Full::Rlimit => files(dir).iter().sum(),
        }
    }
}

fn statvfs_free(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return 0;
    };
    let mut s = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a valid NUL-terminated path and a struct for statvfs to fill.
    if unsafe { libc::statvfs(c.as_ptr(), s.as_mut_ptr()) } != 0 {
        return 0;
    }
    // SAFETY: statvfs returned 0: the struct is filled.
    let s = unsafe { s.assume_init() };
    s.f_bavail * s.f_frsize
}

/// The sizes of the regular files under `dir`.
fn files(dir: &Path) -> Vec<u64> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match entry.metadata() {
            Ok(m) if m.is_dir() => out.extend(files(&entry.path())),
            Ok(m) => out.push(m.len()),
            Err(_) => {}
        }
    }
    out
}

fn small(i: u64) -> String {
    format!("value number {i}")
}

pub fn worker(args: &SelfFilledWorkerArgs) -> anyhow::Result<()> {
    let mut out = Out { failed: false };
    if args.full == Full::Rlimit {
        // SAFETY: signal(2) with SIG_IGN: past the limit a write then fails with EFBIG.
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        set_fsize_limit(FSIZE_LIMIT)?;
    }
    let disk = Disk {
        full: args.full,
        mnt: args.dir.clone(),
    };
    let mut wrong = 0;
    let cli = args.cli.as_deref();
    removals_on_a_full_disk(&disk, &args.dir.join("cache"), cli, &mut out, &mut wrong)?;
    eviction_on_a_full_disk(
        &disk,
        &args.dir.join("limited"),
        args.stores,
        &mut out,
        &mut wrong,
    )?;
    out.figure("wrong values", wrong);
    std::io::Write::flush(&mut std::io::stdout())?;
    if out.failed {
        std::process::exit(1);
    }
    Ok(())
}

/// Small entries until a store fails, then a few blob-sized ones: (small stored, first error,
/// blobs stored). Every value returned is checked.
fn fill(cache: &Cache, out: &mut Out, wrong: &mut u64) -> (u64, String, u64) {
    let mut stored = 0;
    let mut first_error = String::new();
    for i in 0..200_000u64 {
        let result = if i % 2 == 0 {
            cache.put(&SMALL, &(i,), &small(i))
        } else {
            let value = cache.get_or_compute(&SMALL, &(i,), || small(i));
            if value != small(i) {
                *wrong += 1;
                out.require(false, || format!("wrong value for {i}: {value}"));
            }
            // `get_or_compute` stores quietly: an explicit put says whether it could.
            match cache.contains(&SMALL, &(i,)) {
                Ok(true) => Ok(()),
                _ => cache.put(&SMALL, &(i,), &small(i)),
            }
        };
        match result {
            Ok(()) => stored += 1,
            Err(e) => {
                first_error = e.to_string();
                break;
            }
        }
    }
    let blobs = (0..4u8)
        .filter(|&i| cache.put(&BIG, &(i,), &blob(i)).is_ok())
        .count() as u64;
    (stored, first_error, blobs)
}

/// Runs `<cli> --dir <dir> <args>`, or without a binary the same removal through the library.
fn remove(
    cache: &Cache,
    cli: Option<&Path>,
    dir: &Path,
    args: &[&str],
    prune: &Prune,
) -> Result<String, String> {
    let Some(bin) = cli else {
        return cache
            .prune(prune)
            .map(|removal| format!("{removal} (library)"))
            .map_err(|e| e.to_string());
    };
    let output = Command::new(bin)
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() {
        Ok(format!("{stdout} (memo-cache {})", args.join(" ")))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

fn removals_on_a_full_disk(
    disk: &Disk,
    dir: &Path,
    cli: Option<&Path>,
    out: &mut Out,
    wrong: &mut u64,
) -> anyhow::Result<()> {
    // The filling handle stays open, as a running program's would.
    let cache = Cache::open(dir)?;
    let (stored, first_error, blobs) = fill(&cache, out, wrong);
    out.figure(
        "filled by the cache",
        format!("{stored} small entries, then {blobs} of 4 blob-sized ones; first failure: {first_error}"),
    );
    let stats = cache.stats()?;
    out.figure(
        "index and WAL when full",
        format!("{} bytes (WAL {})", stats.index_bytes, stats.wal_bytes),
    );
    let (free_full, used_full) = (disk.free(dir), disk.used(dir));
    out.require(free_full < 8 * 1024, || {
        format!("the disk is not full: {free_full} bytes free")
    });
    if disk.full == Full::Tmpfs {
        // An unbounded WAL took the disk after 21 entries; bounded, about 900 fit.
        out.require(stored >= 600, || {
            format!("only {stored} small entries fit on 512 KiB: the WAL took the disk")
        });
    }
    for (args, prune) in [
        (
            &["prune", "--max-size", "1KiB"][..],
            Prune::new().max_size(1024),
        ),
        (&["clear", "--yes"][..], Prune::all()),
    ] {
        match remove(&cache, cli, dir, args, &prune) {
            Ok(report) => out.figure(args[0], report),
            Err(e) => out.require(false, || format!("{} on the full disk: {e}", args[0])),
        }
    }
    let (free, used) = (disk.free(dir), disk.used(dir));
    out.figure(
        "space",
        format!("free {free_full} -> {free} bytes, used {used_full} -> {used} bytes"),
    );
    // At least a third of what the cache used comes back. (Half did before schema 3; its
    // priority index and columns leave an emptied index more pages of its own, a larger share
    // of a 256 KiB disk.)
    out.require(free >= free_full + 128 * 1024 && used * 3 <= used_full * 2, || {
        format!("the space did not come back: free {free_full} -> {free}, used {used_full} -> {used}")
    });
    let again = cache
        .put(&SMALL, &(1u64,), &"again".to_string())
        .and_then(|()| cache.put(&BIG, &(9u8,), &blob(9)));
    let served = cache.get::<_, String>(&SMALL, &(1u64,)).ok().flatten();
    let fetched = cache.get::<_, Vec<u8>>(&BIG, &(9u8,)).ok().flatten();
    let ok = again.is_ok() && served.as_deref() == Some("again") && fetched == Some(blob(9));
    out.figure(
        "later store",
        if ok { "stored and served" } else { "FAILED" },
    );
    out.require(ok, || {
        format!("a later store: {again:?}, served {served:?}")
    });
    Ok(())
}

fn eviction_on_a_full_disk(
    disk: &Disk,
    dir: &Path,
    stores: u64,
    out: &mut Out,
    wrong: &mut u64,
) -> anyhow::Result<()> {
    // The first cache's files stay: this one fills what is left, and the disk is its limit.
    let cache = Cache::builder(dir).size_limit(64 * 1024 * 1024).open()?;
    let mut failed = Vec::new();
    for i in 0..stores {
        if let Err(e) = cache.put(&SMALL, &(i,), &small(i)) {
            failed.push(format!("{i}: {e}"));
        }
    }
    for i in 0..4u8 {
        if let Err(e) = cache.put(&BIG, &(i,), &blob(i)) {
            failed.push(format!("blob {i}: {e}"));
        }
    }
    let kept = cache.stats()?.entries;
    let mut served = |found: bool, right: bool| {
        *wrong += u64::from(found && !right);
        found && right
    };
    let latest_served = (stores.saturating_sub(50)..stores)
        .filter(|&i| {
            let found = cache.get::<_, String>(&SMALL, &(i,)).ok().flatten();
            served(found.is_some(), found == Some(small(i)))
        })
        .count();
    let blobs_served = (0..4u8)
        .filter(|&i| {
            let found = cache.get::<_, Vec<u8>>(&BIG, &(i,)).ok().flatten();
            served(found.is_some(), found == Some(blob(i)))
        })
        .count();
    out.figure(
        "size-limited cache on the full disk",
        format!(
            "{} of {} stores failed; {kept} entries kept; latest 50 served: {latest_served}, blobs served: {blobs_served} of 4; {} bytes free",
            failed.len(),
            stores + 4,
            disk.free(dir)
        ),
    );
    out.require(failed.is_empty(), || {
        format!(
            "stores failed on the full disk: {:?}",
            &failed[..failed.len().min(3)]
        )
    });
    out.require(latest_served == 50 && blobs_served == 4, || {
        "the latest stores were not served".into()
    });
    if disk.full == Full::Tmpfs {
        out.require(kept < stores, || {
            "nothing was evicted: the disk never filled".into()
        });
    }
    Ok(())
}
