//! The child side of the crash and soak suites: a loop of mixed calls on one cache directory.
//!
//! A worker prints one line per problem (`WRONG ...`, `ERROR ...`) as it happens, and a running
//! total (`TOTAL calls hits misses wrong errors`) every few calls, so that a parent that kills it
//! with SIGKILL still learns what it saw. A panic ends the worker with exit status 101, which the
//! parent reports as a failure.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use memo_cache::{Cache, Prune, Verify};

use crate::warnings::Warnings;
use crate::workload::{self, KINDS, Op, Outcome, Rng, Tally};

/// What a worker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Calls, stores and removals, forever, until killed.
    Crash,
    /// Calls, stores, removals, prunes, clears and verifies until `--seconds` have passed.
    Soak,
    /// Stores, replaces and removes blob-sized values only, until `--seconds` have passed: the
    /// writers `verify` runs beside in the verify-churn suite.
    Churn,
}

/// Options of the hidden `worker` subcommand.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, value_enum)]
    pub mode: Mode,
    #[arg(long)]
    pub seed: u64,
    #[arg(long)]
    pub keys: u64,
    /// Open the cache with this size limit (bytes), so stores evict.
    #[arg(long)]
    pub size_limit: Option<u64>,
    /// Soak: stop after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
}

pub fn run(args: &WorkerArgs) -> anyhow::Result<()> {
    let warnings = Warnings::install();
    let mut builder = Cache::builder(&args.dir);
    if let Some(limit) = args.size_limit {
        builder = builder.size_limit(limit);
    }
    let cache = builder.open()?;
    let mut rng = Rng::new(args.seed);
    let mut tally = Tally::default();
    let mut out = std::io::stdout().lock();
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let mut admin = 0u64;
    loop {
        if args.mode != Mode::Crash && Instant::now() >= deadline {
            break;
        }
        let outcome = match args.mode {
            Mode::Crash => crash_step(&cache, &mut rng, args.keys),
            Mode::Soak => soak_step(&cache, &mut rng, args.keys, &mut admin),
            Mode::Churn => churn_step(&cache, &mut rng, args.keys),
        };
        if let Outcome::Wrong(what) | Outcome::Error(what) = &outcome {
            let tag = if matches!(outcome, Outcome::Wrong(_)) {
                "WRONG"
            } else {
                "ERROR"
            };
            writeln!(out, "{tag} {what}")?;
        }
        tally.add(outcome);
        if tally.calls.is_multiple_of(16) {
            total(&mut out, &tally, admin, &warnings)?;
        }
    }
    total(&mut out, &tally, admin, &warnings)?;
    for message in warnings.messages().iter().take(5) {
        writeln!(out, "WARNING {message}")?;
    }
    Ok(())
}

fn total(out: &mut impl Write, t: &Tally, admin: u64, warnings: &Warnings) -> std::io::Result<()> {
    writeln!(
        out,
        "TOTAL {} {} {} {} {} {} {}",
        t.calls,
        t.hits,
        t.misses,
        t.wrong,
        t.errors,
        admin,
        warnings.count()
    )?;
    out.flush()
}

fn crash_step(cache: &Cache, rng: &mut Rng, keys: u64) -> Outcome {
    let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
    let arg = rng.below(keys);
    let op = match rng.below(100) {
        0..70 => Op::Call,
        70..80 => Op::Get,
        80..92 => Op::Put,
        _ => Op::Remove,
    };
    workload::exercise(cache, kind, arg, op)
}

/// A store (a new row, or the same value again over its own file), a removal (the row, then its
/// file) or a read, of a value in a blob file.
fn churn_step(cache: &Cache, rng: &mut Rng, keys: u64) -> Outcome {
    let (kind, arg) = workload::blob_sized(rng, keys);
    let op = match rng.below(100) {
        0..45 => Op::Put,
        45..80 => Op::Remove,
        _ => Op::Get,
    };
    workload::exercise(cache, kind, arg, op)
}

fn soak_step(cache: &Cache, rng: &mut Rng, keys: u64, admin: &mut u64) -> Outcome {
    let roll = rng.below(1000);
    if roll < 40 {
        *admin += 1;
        return admin_step(cache, rng, roll);
    }
    let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
    let arg = rng.below(keys);
    let op = match roll {
        40..800 => Op::Call,
        800..880 => Op::Get,
        880..950 => Op::Put,
        _ => Op::Remove,
    };
    workload::exercise(cache, kind, arg, op)
}

/// Prunes, clears and verifies: the operations a person or a cron job runs beside the workers.
fn admin_step(cache: &Cache, rng: &mut Rng, roll: u64) -> Outcome {
    let result = match roll {
        0..20 => {
            let prune = match rng.below(5) {
                0 => Prune::new().max_entries(rng.between(10, 150)),
                1 => Prune::new().max_size(rng.between(256 * 1024, 4 * 1024 * 1024)),
                2 => Prune::new().older_than(Duration::from_millis(rng.between(0, 3000))),
                3 => Prune::new().expired().stale(),
                _ => Prune::new()
                    .function(workload::BYTES.name())
                    .max_entries(rng.between(0, 20)),
            };
            cache.prune(&prune).map(|_| ())
        }
        20..25 => cache.clear().map(|_| ()),
        25..33 => cache.clear_function(workload::TEXT.name()).map(|_| ()),
        33..36 => cache.verify(&Verify::new()).map(|_| ()),
        _ => cache.flush(),
    };
    match result {
        Ok(()) => Outcome::Done,
        Err(e) => Outcome::Error(format!("admin operation {roll}: {e}")),
    }
}

/// The last running total a worker printed, plus its problem lines.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub tally: Tally,
    pub admin: u64,
    pub warnings: u64,
    pub warning_samples: Vec<String>,
}

/// Reads a worker's output.
pub fn parse(output: &str) -> Report {
    let mut report = Report::default();
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("TOTAL ") {
            let n: Vec<u64> = rest.split(' ').filter_map(|x| x.parse().ok()).collect();
            if let [calls, hits, misses, wrong, errors, admin, warnings] = n[..] {
                report.tally.calls = calls;
                report.tally.hits = hits;
                report.tally.misses = misses;
                report.tally.wrong = wrong;
                report.tally.errors = errors;
                report.admin = admin;
                report.warnings = warnings;
            }
        } else if line.starts_with("WRONG ") || line.starts_with("ERROR ") {
            if report.tally.first_problems.len() < 10 {
                report.tally.first_problems.push(line.to_string());
            }
        } else if let Some(w) = line.strip_prefix("WARNING ") {
            report.warning_samples.push(w.to_string());
        }
    }
    // A line cut short by SIGKILL after the last total still counts.
    let wrong = output.lines().filter(|l| l.starts_with("WRONG ")).count() as u64;
    let errors = output.lines().filter(|l| l.starts_with("ERROR ")).count() as u64;
    report.tally.wrong = report.tally.wrong.max(wrong);
    report.tally.errors = report.tally.errors.max(errors);
    report
}
