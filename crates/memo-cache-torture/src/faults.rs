//! Faults from the field: a compute-lock holder frozen with SIGSTOP, a process frozen while it
//! holds SQLite's write lock, and the cache directory deleted under running writers.
//!
//! The processes are this binary in the hidden `fault-worker` mode; each prints `key value`
//! lines the parent reads. Times are figures, measured here, never asserted by the tests; a
//! suite fails on a wrong value, a value that never comes back, or a store that is lost.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use memo_cache::{Cache, Function};

use crate::figures::Figures;
use crate::procs::Worker;

/// Options of `faults`.
#[derive(Debug, Clone, Args)]
pub struct FaultsArgs {
    /// Rounds of the frozen-holder attack.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Waiters per frozen holder.
    #[arg(long, default_value_t = 3)]
    pub waiters: u32,
    /// The waiters' compute lease, in seconds.
    #[arg(long, default_value_t = 30)]
    pub lease: u64,
    /// Seconds of hits beside a frozen writer.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Writer processes whose directory is deleted under them.
    #[arg(long, default_value_t = 4)]
    pub writers: u32,
    /// Work in this directory (kept) instead of a temporary one.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// The hidden worker subcommand.
#[derive(Debug, Clone, Args)]
pub struct FaultWorkerArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, value_enum)]
    pub role: Role,
    #[arg(long, default_value_t = 0)]
    pub key: u64,
    #[arg(long, default_value_t = 30)]
    pub lease: u64,
    #[arg(long, default_value_t = 0.0)]
    pub seconds: f64,
}

/// What a worker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Computes `key` for an hour (it is frozen before it finishes).
    Hold,
    /// Asks for `key`: prints `value <v> computed <bool>`.
    Wait,
    /// Holds SQLite's write lock on the index until killed.
    HoldWrite,
    /// Hits key 0 for `seconds`, then misses keys 1 and 2: prints the slowest hit and the misses.
    Hits,
    /// Stores keys `key*1000 + i` until the parent says the directory is gone (a `deleted` file
    /// beside it) and 20 more after; prints `after <k>` for each of those.
    Write,
    /// Prints `found <n>` for the keys listed on stdin that are stored.
    Check,
}

static SLOW: Function = Function::new("torture::faults::slow", "v1", "u64");
static SMALL: Function = Function::new("torture::faults::small", "v1", "String");

fn slow_value(k: u64) -> u64 {
    k * 1000 + 7
}

fn small_value(k: u64) -> String {
    format!("value {k}")
}

pub fn worker(args: &FaultWorkerArgs) -> anyhow::Result<()> {
    let warnings = crate::warnings::Warnings::install();
    let result = act(args);
    for message in warnings.messages() {
        eprintln!("warning: {message}");
    }
    result
}

fn act(args: &FaultWorkerArgs) -> anyhow::Result<()> {
    let cache = Cache::builder(&args.dir)
        .lock_lease(Duration::from_secs(args.lease))
        .no_remote()
        .open()?;
    match args.role {
        Role::Hold => {
            cache.get_or_compute(&SLOW, &(args.key,), || {
                println!("computing");
                std::thread::sleep(Duration::from_secs(3600));
                slow_value(args.key)
            });
        }
        Role::Wait => {
            let mut computed = false;
            let value = cache.get_or_compute(&SLOW, &(args.key,), || {
                computed = true;
                slow_value(args.key)
            });
            println!("value {value} computed {computed}");
        }
        Role::HoldWrite => {
            let conn = rusqlite::Connection::open(args.dir.join(memo_cache::INDEX_FILE))?;
            conn.execute_batch("BEGIN IMMEDIATE")?;
            println!("holding");
            std::thread::sleep(Duration::from_secs(3600));
        }
        Role::Hits => {
            let until = Instant::now() + Duration::from_secs_f64(args.seconds);
            let (mut hits, mut slowest, mut wrong) = (0u64, Duration::ZERO, 0u64);
            while Instant::now() < until {
                let started = Instant::now();
                let value = cache.get_or_compute(&SMALL, &(0u64,), || small_value(0));
                slowest = slowest.max(started.elapsed());
                hits += 1;
                wrong += u64::from(value != small_value(0));
            }
            println!("hits {hits} slowest_ms {:.3} wrong {wrong}", ms(slowest));
            for k in [1u64, 2] {
                let started = Instant::now();
                let value = cache.get_or_compute(&SMALL, &(k,), || small_value(k));
                println!(
                    "miss_ms {:.1} right {}",
                    ms(started.elapsed()),
                    value == small_value(k)
                );
            }
        }
        Role::Write => {
            let marker = deleted_marker(&args.dir);
            let mut gone_at: Option<u64> = None;
            for i in 0..100_000 {
                let k = args.key * 1000 + i;
                cache.get_or_compute(&SMALL, &(k,), || small_value(k));
                if gone_at.is_some() {
                    println!("after {k}");
                }
                if gone_at.is_none() && marker.exists() {
                    gone_at = Some(i);
                }
                if gone_at.is_some_and(|at| i >= at + 20) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Role::Check => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
            let found = text
                .split_whitespace()
                .filter_map(|k| k.parse::<u64>().ok())
                .filter(|&k| {
                    cache
                        .get::<_, String>(&SMALL, &(k,))
                        .ok()
                        .flatten()
                        .is_some_and(|v| v == small_value(k))
                })
                .count();
            println!("found {found}");
        }
    }
    Ok(())
}

/// The file the parent makes once it has deleted the cache directory `dir`.
fn deleted_marker(dir: &Path) -> PathBuf {
    dir.with_extension("deleted")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn worker_args(dir: &Path, role: &str, key: u64, lease: u64, seconds: f64) -> Vec<String> {
    [
        "fault-worker",
        "--dir",
        &dir.display().to_string(),
        "--role",
        role,
        "--key",
        &key.to_string(),
        "--lease",
        &lease.to_string(),
        "--seconds",
        &seconds.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// Waits until `worker` has printed a line containing `needle` (at most `limit`).
fn wait_for_line(worker: &Worker, needle: &str, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while !worker.output().contains(needle) {
        anyhow::ensure!(
            started.elapsed() < limit,
            "worker never printed {needle:?}: {}",
            worker.errors()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Waits for `worker` to exit (at most `limit`, then kills it); false when it had to be killed.
fn finish(worker: &mut Worker, limit: Duration) -> anyhow::Result<bool> {
    let started = Instant::now();
    loop {
        if worker.child.try_wait()?.is_some() {
            return Ok(true);
        }
        if started.elapsed() > limit {
            worker.kill()?;
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn stop(worker: &Worker) {
    // SAFETY: kill(2) on our own child, not reaped yet.
    unsafe { libc::kill(worker.child.id() as libc::pid_t, libc::SIGSTOP) };
}

pub fn run(args: &FaultsArgs) -> anyhow::Result<Vec<Figures>> {
    let (work, _temp) = crate::work_dir(args.dir.as_deref())?;
    let logs = work.join("logs");
    fs::create_dir_all(&logs)?;
    Ok(vec![
        frozen_holder(args, &work.join("frozen"), &logs)?,
        stalled_writer(args, &work.join("stalled"), &logs)?,
        deleted_directory(args, &work.join("deleted"), &logs)?,
    ])
}

fn frozen_holder(args: &FaultsArgs, dir: &Path, logs: &Path) -> anyhow::Result<Figures> {
    let mut f = Figures::new(
        "frozen-holder",
        format!(
            "memo-cache-torture faults --rounds {} --waiters {} --lease {}",
            args.rounds, args.waiters, args.lease
        ),
    );
    // A value must come back within the lease plus this much, or the round fails.
    let limit = Duration::from_secs(args.lease + 60);
    let (mut slowest, mut computed, mut wrong, mut missing, mut warned) =
        (Duration::ZERO, 0u32, 0u32, 0u32, 0u32);
    for round in 0..u64::from(args.rounds) {
        let mut holder = Worker::spawn(
            &worker_args(dir, "hold", round, args.lease, 0.0),
            logs,
            &format!("holder-{round}"),
        )?;
        wait_for_line(&holder, "computing", Duration::from_secs(60))?;
        stop(&holder);
        let frozen_at = Instant::now();
        let mut waiters = (0..args.waiters)
            .map(|w| {
                Worker::spawn(
                    &worker_args(dir, "wait", round, args.lease, 0.0),
                    logs,
                    &format!("waiter-{round}-{w}"),
                )
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        for waiter in &mut waiters {
            if !finish(waiter, limit.saturating_sub(frozen_at.elapsed()))? {
                missing += 1;
                continue;
            }
            slowest = slowest.max(frozen_at.elapsed());
            let out = waiter.output();
            wrong += u32::from(!out.contains(&format!("value {} ", slow_value(round))));
            computed += u32::from(out.contains("computed true"));
            warned += u32::from(waiter.errors().contains("has not renewed"));
        }
        holder.kill()?;
    }
    f.put(
        "rounds x waiters",
        format!("{} x {}", args.rounds, args.waiters),
    );
    f.put("lease", format!("{} s", args.lease));
    f.put(
        "slowest value after the freeze",
        format!("{:.1} s (goal: under 60 s)", slowest.as_secs_f64()),
    );
    f.put("waiters that computed", computed);
    f.put("takeover warnings", warned);
    f.put("waiters that never returned", missing);
    f.put("wrong values", wrong);
    f.require(missing == 0, || format!("{missing} waiters never returned"));
    f.require(wrong == 0, || format!("{wrong} wrong values"));
    f.require(computed >= args.rounds, || {
        "a round's value was never computed by a waiter".into()
    });
    Ok(f)
}

fn stalled_writer(args: &FaultsArgs, dir: &Path, logs: &Path) -> anyhow::Result<Figures> {
    let mut f = Figures::new(
        "stalled-writer",
        format!("memo-cache-torture faults --seconds {}", args.seconds),
    );
    {
        let cache = Cache::builder(dir).no_remote().open()?;
        cache.put(&SMALL, &(0u64,), &small_value(0))?;
    }
    let mut writer = Worker::spawn(
        &worker_args(dir, "hold-write", 0, 30, 0.0),
        logs,
        "stalled-writer",
    )?;
    wait_for_line(&writer, "holding", Duration::from_secs(60))?;
    stop(&writer);
    let mut hitter = Worker::spawn(
        &worker_args(dir, "hits", 0, 30, args.seconds),
        logs,
        "stalled-hitter",
    )?;
    let limit = Duration::from_secs_f64(args.seconds) + Duration::from_secs(60);
    let finished = finish(&mut hitter, limit)?;
    writer.kill()?;
    let out = hitter.output();
    let field = |line: &str, name: &str| -> Option<f64> {
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            if w == name {
                return words.next()?.parse().ok();
            }
        }
        None
    };
    let hits_line = out.lines().find(|l| l.starts_with("hits ")).unwrap_or("");
    let slowest = field(hits_line, "slowest_ms");
    let misses: Vec<f64> = out
        .lines()
        .filter(|l| l.starts_with("miss_ms"))
        .filter_map(|l| field(l, "miss_ms"))
        .collect();
    let right_misses = out.lines().filter(|l| l.ends_with("right true")).count();
    f.put(
        "how the writer stalls",
        "BEGIN IMMEDIATE held, then SIGSTOP",
    );
    f.put("hits", field(hits_line, "hits").unwrap_or(0.0));
    f.put(
        "slowest hit",
        slowest.map_or("none".into(), |ms| {
            format!("{ms:.2} ms (goal: under 200 ms)")
        }),
    );
    f.put(
        "misses (default 5 s write timeout)",
        misses
            .iter()
            .map(|ms| format!("{:.2} s", ms / 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
            + " (goal: under 10 s)",
    );
    f.put("misses returned right", right_misses);
    f.put(
        "warnings",
        hitter
            .errors()
            .lines()
            .filter(|l| l.contains("held it locked"))
            .count(),
    );
    f.require(finished, || "the hitting process never finished".into());
    f.require(field(hits_line, "wrong") == Some(0.0), || {
        format!("wrong hits: {hits_line}")
    });
    f.require(right_misses == 2, || format!("misses: {out}"));
    Ok(f)
}

fn deleted_directory(args: &FaultsArgs, dir: &Path, logs: &Path) -> anyhow::Result<Figures> {
    let mut f = Figures::new(
        "deleted-directory",
        format!("memo-cache-torture faults --writers {}", args.writers),
    );
    let cache_dir = dir.join("cache");
    let mut writers = (0..u64::from(args.writers))
        .map(|w| {
            Worker::spawn(
                &worker_args(&cache_dir, "write", w + 1, 30, 0.0),
                logs,
                &format!("deleted-writer-{w}"),
            )
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    std::thread::sleep(Duration::from_millis(300));
    // As `rm -rf` does, again while writers add files to what is being removed.
    let mut tries = 0;
    while let Err(e) = fs::remove_dir_all(&cache_dir) {
        tries += 1;
        anyhow::ensure!(tries < 100, "cannot remove {}: {e}", cache_dir.display());
    }
    fs::write(deleted_marker(&cache_dir), b"")?;
    let mut after = Vec::new();
    let mut unfinished = 0;
    for writer in &mut writers {
        unfinished += u32::from(!finish(writer, Duration::from_secs(120))?);
        after.extend(
            writer
                .output()
                .lines()
                .filter_map(|l| l.strip_prefix("after ").map(str::to_owned)),
        );
    }
    let mut check = crate::procs::myself(&worker_args(&cache_dir, "check", 0, 30, 0.0))?
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    std::io::Write::write_all(
        check.stdin.as_mut().expect("piped"),
        after.join(" ").as_bytes(),
    )?;
    drop(check.stdin.take());
    let out = check.wait_with_output()?;
    let found: usize = String::from_utf8_lossy(&out.stdout)
        .trim()
        .strip_prefix("found ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    f.put("writers", args.writers);
    f.put("values stored after the deletion", after.len());
    f.put("found by a new process", found);
    f.require(unfinished == 0, || format!("{unfinished} writers hung"));
    f.require(!after.is_empty(), || {
        "no value was stored after the deletion".into()
    });
    f.require(found == after.len(), || {
        format!(
            "{} of {} stores after the deletion were lost",
            after.len() - found,
            after.len()
        )
    });
    Ok(f)
}
