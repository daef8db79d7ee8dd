//! Items 2 and 3: a disk that fills up, and a directory that cannot be written.
//!
//! The scenario runs in a child process (the hidden `disk-worker` subcommand) so that a resource
//! limit or a mount changes nothing in the parent. The child prints its figures as
//! `FIGURE name<TAB>value`, `NOTE text` and `FAIL text` lines.

use std::fs;
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use clap::{Args, ValueEnum};
use memo_cache::{Cache, Verify};

use crate::figures::Figures;
use crate::mount::Tmpfs;
use crate::procs::{describe, myself};
use crate::warnings::Warnings;
use crate::workload::{self, KINDS, Op, Outcome};

/// How the disk is made full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiskMode {
    /// A small tmpfs, or `RLIMIT_FSIZE` where mounting is not permitted.
    Auto,
    /// A 16 MiB tmpfs filled with a filler file: writes fail with ENOSPC.
    Tmpfs,
    /// `RLIMIT_FSIZE` of 4 KiB with SIGXFSZ ignored: writes past it fail with EFBIG.
    Rlimit,
}

/// Options of `full-disk`.
#[derive(Debug, Clone, Args)]
pub struct FullDiskArgs {
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: DiskMode,
    /// New arguments per function called while the disk is full.
    #[arg(long, default_value_t = 12)]
    pub keys: u64,
    /// Work in this directory (kept) instead of a temporary one.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Options of `read-only`.
#[derive(Debug, Clone, Args)]
pub struct ReadOnlyArgs {
    /// Arguments per function stored before the directory becomes read-only (and as many new).
    #[arg(long, default_value_t = 12)]
    pub keys: u64,
    /// Work in this directory (kept) instead of a temporary one.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// The hidden child subcommand.
#[derive(Debug, Clone, Args)]
pub struct DiskWorkerArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    #[arg(long)]
    pub keys: u64,
}

/// What the child does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Fill the tmpfs holding the cache with a filler file, then delete it.
    FillTmpfs,
    /// Lower RLIMIT_FSIZE, then raise it again.
    Rlimit,
    /// The directory is already read-only.
    ReadOnly,
}

pub fn full_disk(args: &FullDiskArgs) -> anyhow::Result<Figures> {
    let (work, _temp) = crate::work_dir(args.dir.as_deref())?;
    let mut notes = Vec::new();
    let mnt = work.join("mnt");
    fs::create_dir_all(&mnt)?;
    let mut mount = None;
    let scenario = match args.mode {
        DiskMode::Rlimit => Scenario::Rlimit,
        DiskMode::Tmpfs => {
            mount = Some(Tmpfs::mount(&mnt, "16m")?);
            Scenario::FillTmpfs
        }
        DiskMode::Auto => match Tmpfs::mount(&mnt, "16m") {
            Ok(m) => {
                mount = Some(m);
                Scenario::FillTmpfs
            }
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                notes.push(format!(
                    "cannot mount a tmpfs here ({e}); using RLIMIT_FSIZE instead"
                ));
                Scenario::Rlimit
            }
            Err(e) => return Err(e.into()),
        },
    };
    let how = match scenario {
        Scenario::FillTmpfs => "tmpfs",
        _ => "rlimit",
    };
    let mut fig = Figures::new(
        "full-disk",
        format!(
            "memo-cache-torture full-disk --mode {how} --keys {}",
            args.keys
        ),
    );
    fig.notes = notes;
    fig.put(
        "how the disk is full",
        match scenario {
            Scenario::FillTmpfs => "16 MiB tmpfs filled by a filler file (ENOSPC)",
            _ => "RLIMIT_FSIZE 4 KiB, SIGXFSZ ignored (EFBIG)",
        },
    );
    let dir = mnt.join("cache");
    run_child(&dir, scenario, args.keys, &mut fig)?;
    drop(mount);
    Ok(fig)
}

pub fn read_only(args: &ReadOnlyArgs) -> anyhow::Result<Figures> {
    let mut fig = Figures::new(
        "read-only",
        format!("memo-cache-torture read-only --keys {}", args.keys),
    );
    let (work, _temp) = crate::work_dir(args.dir.as_deref())?;
    let mnt = work.join("mnt");
    fs::create_dir_all(&mnt)?;
    let mount = Tmpfs::mount(&mnt, "64m").map_err(|e| {
        anyhow::anyhow!("read-only needs to mount a tmpfs (run as root, or in CI's container): {e}")
    })?;
    let dir = mount.path().join("cache");
    {
        let cache = Cache::open(&dir)?;
        for kind in KINDS {
            for arg in 0..args.keys {
                workload::exercise(&cache, kind, arg, Op::Call);
            }
        }
    }
    mount.remount_read_only()?;
    fig.put(
        "directory",
        "tmpfs remounted read-only (root cannot write it either)",
    );
    run_child(&dir, Scenario::ReadOnly, args.keys, &mut fig)?;
    drop(mount);
    Ok(fig)
}

fn run_child(dir: &Path, scenario: Scenario, keys: u64, fig: &mut Figures) -> anyhow::Result<()> {
    let scenario_name = scenario
        .to_possible_value()
        .expect("named")
        .get_name()
        .to_owned();
    let argv = [
        "disk-worker",
        "--dir",
        &dir.display().to_string(),
        "--scenario",
        &scenario_name,
        "--keys",
        &keys.to_string(),
    ]
    .map(String::from);
    let mut command = myself(&argv)?;
    command.stdin(Stdio::null());
    // SAFETY: signal(2) is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            // Past RLIMIT_FSIZE a write fails with EFBIG only while SIGXFSZ is ignored; its
            // default action kills the process.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let output = command.output()?;
    read_child(&output, fig);
    Ok(())
}

/// Takes a worker child's `FIGURE`, `FAIL` and `NOTE` lines and its exit status into `fig`.
pub(crate) fn read_child(output: &std::process::Output, fig: &mut Figures) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("FIGURE ") {
            let (name, value) = rest.split_once('\t').unwrap_or((rest, ""));
            fig.put(name, value);
        } else if let Some(rest) = line.strip_prefix("FAIL ") {
            fig.failures.push(rest.to_owned());
        } else if let Some(rest) = line.strip_prefix("NOTE ") {
            fig.notes.push(rest.to_owned());
        }
    }
    fig.require(output.status.success(), || {
        let stderr = String::from_utf8_lossy(&output.stderr);
        format!(
            "the child failed ({}): {}",
            describe(output.status),
            &stderr[stderr.len().saturating_sub(2000)..]
        )
    });
}

/// Child-side figures, printed for the parent.
pub(crate) struct Out {
    pub(crate) failed: bool,
}

impl Out {
    pub(crate) fn figure(&mut self, name: &str, value: impl std::fmt::Display) {
        println!("FIGURE {name}\t{value}");
    }
    pub(crate) fn require(&mut self, ok: bool, failure: impl FnOnce() -> String) {
        if !ok {
            self.failed = true;
            println!("FAIL {}", failure());
        }
    }
    pub(crate) fn note(&mut self, note: impl std::fmt::Display) {
        println!("NOTE {note}");
    }
}

fn call_all(
    cache: &Cache,
    args: std::ops::Range<u64>,
    op: Op,
    out: &mut Out,
    phase: &str,
) -> workload::Tally {
    let mut tally = workload::Tally::default();
    for kind in KINDS {
        for arg in args.clone() {
            let outcome = workload::exercise(cache, kind, arg, op);
            if let Outcome::Wrong(w) = &outcome {
                out.require(false, || format!("{phase}: wrong value: {w}"));
            }
            tally.add(outcome);
        }
    }
    tally
}

pub fn worker(args: &DiskWorkerArgs) -> anyhow::Result<()> {
    let warnings = Warnings::install();
    let mut out = Out { failed: false };
    match args.scenario {
        Scenario::ReadOnly => read_only_child(args, &warnings, &mut out)?,
        _ => full_disk_child(args, &warnings, &mut out)?,
    }
    io::stdout().flush()?;
    if out.failed {
        std::process::exit(1);
    }
    Ok(())
}

fn full_disk_child(
    args: &DiskWorkerArgs,
    warnings: &Warnings,
    out: &mut Out,
) -> anyhow::Result<()> {
    let n = args.keys;
    let cache = Cache::open(&args.dir)?;
    let stored = call_all(&cache, 0..n, Op::Call, out, "before the disk filled");
    out.require(stored.misses == 5 * n, || {
        format!(
            "expected {} fresh computations, got {}",
            5 * n,
            stored.misses
        )
    });

    let filler = args.dir.with_file_name("filler");
    match args.scenario {
        Scenario::FillTmpfs => {
            let bytes = fill(&filler)?;
            out.figure("filler written", format!("{bytes} bytes, then ENOSPC"));
        }
        _ => set_fsize_limit(4096)?,
    }

    // Full: every call must still return the right value; hits must still be served.
    let hits = call_all(&cache, 0..n, Op::Call, out, "hits while full");
    out.require(hits.hits == 5 * n, || {
        format!(
            "only {} of {} stored values were served while full",
            hits.hits,
            5 * n
        )
    });
    let before = warnings.count();
    let full = call_all(&cache, n..3 * n, Op::Call, out, "misses while full");
    let logged = warnings.count() - before;
    let mut put_errors = Vec::new();
    for arg in 3 * n..3 * n + 3 {
        if let Outcome::Error(e) = workload::exercise(&cache, workload::Kind::Bytes, arg, Op::Put) {
            put_errors.push(e);
        }
    }
    let stored_while_full =
        call_all(&cache, n..3 * n, Op::Get, out, "reading back while full").hits;
    out.figure(
        "calls while full",
        format!(
            "{} ({} hits served, {} computed)",
            hits.calls + full.calls,
            hits.hits,
            full.misses
        ),
    );
    out.figure("values stored anyway while full", stored_while_full);
    out.figure("warnings logged while full", logged);
    out.figure("explicit put errors", format!("{} of 3", put_errors.len()));
    if let Some(e) = put_errors.first() {
        out.note(format!("put error: {e}"));
    }
    for w in warnings.messages().iter().skip(before).take(3) {
        out.note(format!("warning: {w}"));
    }
    out.require(full.misses > stored_while_full, || {
        "no write failed: the disk was not full".into()
    });
    out.require(logged >= 1, || "the write failures were not logged".into());
    out.require(logged <= 3, || {
        format!(
            "{logged} warnings for {} failing calls: not logged once",
            full.misses
        )
    });
    out.require(put_errors.len() == 3, || {
        format!("put of a blob value succeeded on a full disk: {put_errors:?}")
    });

    // Nothing partial: no row without its bytes, no temp file, every row reads back.
    let report = cache.verify(&Verify::new().file_grace(std::time::Duration::ZERO))?;
    let problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    out.figure(
        "verify while full",
        format!(
            "{} entries, {} problems",
            report.entries_checked,
            problems.len()
        ),
    );
    out.require(problems.is_empty(), || {
        format!("partial state left by failed writes: {problems:?}")
    });
    out.require(report.entries_checked == 5 * n + stored_while_full, || {
        format!(
            "{} rows, but {} readable values",
            report.entries_checked,
            5 * n + stored_while_full
        )
    });

    // Space back: the same handle stores again.
    match args.scenario {
        Scenario::FillTmpfs => fs::remove_file(&filler)?,
        _ => set_fsize_limit(libc::RLIM_INFINITY)?,
    }
    let warned = warnings.count();
    let again = call_all(&cache, n..3 * n, Op::Call, out, "after space came back");
    let readable = call_all(
        &cache,
        0..3 * n,
        Op::Get,
        out,
        "reading back after space came back",
    );
    out.figure(
        "after space came back",
        format!(
            "{} calls, {} of {} values stored",
            again.calls,
            readable.hits,
            15 * n
        ),
    );
    out.require(readable.hits == 15 * n, || {
        format!(
            "only {} of {} values stored once space was back",
            readable.hits,
            15 * n
        )
    });
    out.require(warnings.count() == warned, || {
        "warnings after space came back".into()
    });
    let report = cache.verify(&Verify::new().file_grace(std::time::Duration::ZERO))?;
    out.require(report.problems.is_empty(), || {
        format!("verify after recovery: {:?}", report.problems)
    });
    out.figure("wrong values", 0);
    Ok(())
}

/// Fills the file system holding `path` with a file there; returns its size.
fn fill(path: &Path) -> io::Result<u64> {
    let mut file = fs::File::create(path)?;
    let chunk = vec![0x55u8; 4096];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

pub(crate) fn set_fsize_limit(soft: libc::rlim_t) -> io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        limit.rlim_cur = soft.min(limit.rlim_max);
        if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn read_only_child(
    args: &DiskWorkerArgs,
    warnings: &Warnings,
    out: &mut Out,
) -> anyhow::Result<()> {
    let n = args.keys;
    // The directory really is unwritable, for root too.
    let probe = fs::File::create(args.dir.join("probe"));
    out.require(probe.is_err(), || {
        "the directory is writable: the test would prove nothing".into()
    });
    let cache = Cache::open(&args.dir)?;
    out.figure("opened read-only", cache.is_read_only());
    let hits = call_all(&cache, 0..n, Op::Call, out, "hits");
    let misses = call_all(&cache, n..2 * n, Op::Call, out, "misses");
    let put = workload::exercise(&cache, workload::Kind::Small, 0, Op::Put);
    out.figure("hits served", format!("{} of {}", hits.hits, hits.calls));
    out.figure(
        "misses computed and returned",
        format!("{} of {}", misses.misses, misses.calls),
    );
    out.figure(
        "explicit put",
        match &put {
            Outcome::Error(e) => format!("error: {e}"),
            other => format!("{other:?}"),
        },
    );
    out.figure("warnings", warnings.count());
    out.require(hits.hits == hits.calls, || {
        format!(
            "only {} of {} stored values were served",
            hits.hits, hits.calls
        )
    });
    out.require(misses.misses == misses.calls, || {
        "a miss was not computed".into()
    });
    out.require(matches!(put, Outcome::Error(_)), || {
        format!("put on a read-only cache: {put:?}")
    });
    out.figure("wrong values", hits.wrong + misses.wrong);
    Ok(())
}
