//! `memo-cache-torture`: the long reliability runs of memo-cache.
//!
//! ```text
//! memo-cache-torture crash --kills 200     writers SIGKILLed at random, then every value checked
//! memo-cache-torture soak --seconds 30 --procs 8
//! memo-cache-torture full-disk             ENOSPC on a small tmpfs (EFBIG via RLIMIT_FSIZE without mount rights)
//! memo-cache-torture read-only             a tmpfs remounted read-only
//! memo-cache-torture faults                a frozen lock holder, a frozen SQLite writer, a deleted directory
//! memo-cache-torture verify-churn --seconds 30
//!                                          verify and verify --fix beside 4 churning writers
//! memo-cache-torture self-filled-disk      a 512 KiB tmpfs the cache fills itself, then prune and clear
//! memo-cache-torture all                   all of them, figures written to RELIABILITY.md
//! ```
//!
//! Each prints its figures and exits non-zero on any wrong value, error or failed check. The
//! processes it kills and watches are this same binary in hidden worker modes.

mod audit;
mod crash;
mod disk;
mod faults;
mod figures;
mod mount;
mod procs;
mod self_filled;
mod soak;
mod verify_churn;
mod warnings;
mod worker;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::figures::Figures;

/// Reliability suites for memo-cache: crashes, full disks, read-only directories, contention.
#[derive(Debug, Parser)]
#[command(name = "memo-cache-torture", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Kill writer processes with SIGKILL at random moments, then check every stored value and
    /// that `verify --fix` repairs all that `verify` reports.
    Crash(crash::CrashArgs),
    /// Run many processes of mixed calls, prunes, clears and verifies on one directory.
    Soak(soak::SoakArgs),
    /// Fill the disk under a cache: values stay right, the failure is logged once, nothing
    /// partial is left, and the cache works again once space is back.
    FullDisk(disk::FullDiskArgs),
    /// Serve a cache from a directory nobody can write.
    ReadOnly(disk::ReadOnlyArgs),
    /// Freeze a compute-lock holder and a process holding SQLite's write lock (SIGSTOP), and
    /// delete the cache directory under running writers.
    Faults(faults::FaultsArgs),
    /// Run verify and verify --fix beside writer processes that store, replace and remove
    /// blob-sized values: any problem reported is a false report.
    VerifyChurn(verify_churn::VerifyChurnArgs),
    /// Let a cache fill its disk itself: prune and clear still free the space, stores work
    /// again, and a size-limited cache keeps storing by evicting.
    SelfFilledDisk(self_filled::SelfFilledArgs),
    /// Every suite with its long parameters; writes RELIABILITY.md.
    All(AllArgs),
    #[command(hide = true)]
    Worker(worker::WorkerArgs),
    #[command(hide = true)]
    DiskWorker(disk::DiskWorkerArgs),
    #[command(hide = true)]
    FaultWorker(faults::FaultWorkerArgs),
    #[command(hide = true)]
    SelfFilledWorker(self_filled::SelfFilledWorkerArgs),
}

#[derive(Debug, Args)]
struct AllArgs {
    #[arg(long, default_value_t = 200)]
    kills: u32,
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    #[arg(long, default_value_t = 8)]
    procs: u32,
    /// Where to write the figures (default: RELIABILITY.md at the workspace root).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Do not write the report.
    #[arg(long)]
    no_report: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Worker(args) => return done(worker::run(&args)),
        Command::DiskWorker(args) => return done(disk::worker(&args)),
        Command::FaultWorker(args) => return done(faults::worker(&args)),
        Command::SelfFilledWorker(args) => return done(self_filled::worker(&args)),
        Command::Crash(args) => crash::run(&args).map(|f| vec![f]),
        Command::Soak(args) => soak::run(&args).map(|f| vec![f]),
        Command::FullDisk(args) => disk::full_disk(&args).map(|f| vec![f]),
        Command::ReadOnly(args) => disk::read_only(&args).map(|f| vec![f]),
        Command::Faults(args) => faults::run(&args),
        Command::VerifyChurn(args) => verify_churn::run(&args).map(|f| vec![f]),
        Command::SelfFilledDisk(args) => self_filled::run(&args).map(|f| vec![f]),
        Command::All(args) => all(&args),
    };
    match result {
        Ok(figures) => {
            for f in &figures {
                println!("{f}");
            }
            if figures.iter().all(Figures::passed) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("memo-cache-torture: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn done(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memo-cache-torture worker: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn all(args: &AllArgs) -> anyhow::Result<Vec<Figures>> {
    let started = std::time::Instant::now();
    let mut figures = Vec::new();
    let crash = crash::CrashArgs {
        kills: args.kills,
        writers: 4,
        min_ms: 5,
        max_ms: 150,
        run: RunArgs::defaults(),
    };
    figures.push(crash::run(&crash)?);
    println!("{}", figures[0]);
    let soak = soak::SoakArgs {
        seconds: args.seconds,
        procs: args.procs,
        run: RunArgs::defaults(),
    };
    figures.push(soak::run(&soak)?);
    println!("{}", figures[1]);
    figures.push(disk::full_disk(&disk::FullDiskArgs {
        mode: disk::DiskMode::Auto,
        keys: 12,
        dir: None,
    })?);
    figures.push(disk::read_only(&disk::ReadOnlyArgs {
        keys: 12,
        dir: None,
    })?);
    figures.push(self_filled::run(&self_filled::SelfFilledArgs {
        mode: disk::DiskMode::Auto,
        stores: 4000,
        dir: None,
        cli: None,
    })?);
    figures.push(verify_churn::run(&verify_churn::VerifyChurnArgs {
        seconds: args.seconds,
        writers: 4,
        run: RunArgs::defaults(),
    })?);
    figures.extend(faults::run(&faults::FaultsArgs {
        rounds: 3,
        waiters: 3,
        lease: 30,
        seconds: 5.0,
        writers: 4,
        dir: None,
    })?);
    if !args.no_report {
        let path = args
            .report
            .clone()
            .unwrap_or_else(|| workspace_root().join("RELIABILITY.md"));
        let head = reliability_head(&path);
        std::fs::write(&path, reliability_md(&head, &figures, started.elapsed()))?;
        eprintln!("memo-cache-torture: figures written to {}", path.display());
    }
    Ok(figures)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

/// What the report keeps of the file it replaces: everything before its `## Last run`, which
/// people write (an included copy of that text went stale and a run wiped three sections of
/// RELIABILITY.md that had been added since). A file without the heading is kept whole.
fn reliability_head(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => match text.find(LAST_RUN) {
            Some(at) => text[..at].to_owned(),
            None => format!("{}\n", text.trim_end()),
        },
        Err(_) => "# Reliability\n".to_owned(),
    }
}

const LAST_RUN: &str = "\n## Last run\n";

fn reliability_md(head: &str, figures: &[Figures], took: std::time::Duration) -> String {
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let verdict = if figures.iter().all(Figures::passed) {
        "all passed"
    } else {
        "FAILED"
    };
    let mut md = String::new();
    md.push_str(head);
    md.push_str(LAST_RUN);
    md.push_str(&format!(
        "\n- Date: {date}\n- Machine: {cpus}-core VM, Linux {kernel}\n- Took: {:.0} s\n- Result: {verdict}\n",
        took.as_secs_f64()
    ));
    for f in figures {
        md.push_str(&format!(
            "\n### {} ({})\n\n`{}`\n\n",
            f.suite,
            if f.passed() { "pass" } else { "FAIL" },
            f.command
        ));
        md.push_str("| figure | value |\n|---|---|\n");
        for (name, value) in &f.lines {
            md.push_str(&format!("| {name} | {} |\n", value.replace('|', "\\|")));
        }
        for note in &f.notes {
            md.push_str(&format!("\nNote: {note}\n"));
        }
        for failure in &f.failures {
            md.push_str(&format!("\nFAILURE: {failure}\n"));
        }
    }
    md
}

/// A seed from the clock, for runs that do not give one.
pub(crate) fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// Options the process suites (crash, soak) share.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Distinct arguments per cached function.
    #[arg(long, default_value_t = 48)]
    pub keys: u64,
    /// Random seed (default: from the clock); printed so a run can be repeated.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Work in this directory (kept) instead of a temporary one.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// One run's seed, random source and directories; a temporary work directory goes when this
/// drops.
pub(crate) struct Run {
    pub seed: u64,
    pub rng: workload::Rng,
    /// The cache directory under test.
    pub cache: PathBuf,
    /// Where worker processes write their logs.
    pub logs: PathBuf,
    /// The temporary work directory, removed on drop: keep it bound for the whole run.
    #[allow(
        dead_code,
        reason = "held, never read: dropping it removes the directory"
    )]
    pub temp: Option<tempfile::TempDir>,
}

impl RunArgs {
    /// The suites' defaults, for `all`.
    fn defaults() -> Self {
        RunArgs {
            keys: 48,
            seed: None,
            dir: None,
        }
    }

    /// Picks the seed and makes the work, cache and log directories.
    pub(crate) fn prepare(&self) -> std::io::Result<Run> {
        let seed = self.seed.unwrap_or_else(clock_seed);
        let (work, temp) = work_dir(self.dir.as_deref())?;
        let logs = work.join("logs");
        std::fs::create_dir_all(&logs)?;
        Ok(Run {
            seed,
            rng: workload::Rng::new(seed),
            cache: work.join("cache"),
            logs,
            temp,
        })
    }
}

/// The directory to work in: the one given (created, kept), or a temporary one (removed when
/// the returned guard drops).
pub(crate) fn work_dir(
    given: Option<&Path>,
) -> std::io::Result<(PathBuf, Option<tempfile::TempDir>)> {
    match given {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            Ok((dir.to_path_buf(), None))
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("memo-cache-torture-")
                .tempdir()?;
            Ok((temp.path().to_path_buf(), Some(temp)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_keeps_what_people_wrote_before_the_last_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("RELIABILITY.md");
        let written =
            "# Reliability\n\nA paragraph added by hand.\n\n### An attack\n\nIts limits.\n";
        std::fs::write(&path, format!("{written}{LAST_RUN}\n- Date: then\n")).unwrap();
        let report = reliability_md(
            &reliability_head(&path),
            &[],
            std::time::Duration::from_secs(3),
        );
        assert!(report.starts_with(written), "{report}");
        assert_eq!(report.matches("## Last run").count(), 1, "{report}");
        assert!(!report.contains("Date: then"), "{report}");

        std::fs::write(&path, "# Notes without a run\n").unwrap();
        let report = reliability_md(
            &reliability_head(&path),
            &[],
            std::time::Duration::from_secs(3),
        );
        assert!(
            report.starts_with("# Notes without a run\n\n## Last run\n"),
            "{report}"
        );
    }
}
