//! Item 1: writers killed with SIGKILL at random moments, then every value checked.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use clap::Args;

use crate::figures::Figures;
use crate::procs::{Worker, describe};
use crate::worker::parse;
use crate::workload::{Rng, Tally};
use crate::{Run, RunArgs};

/// Options of `crash`.
#[derive(Debug, Clone, Args)]
pub struct CrashArgs {
    /// How many SIGKILLs to deliver in all.
    #[arg(long, default_value_t = 200)]
    pub kills: u32,
    /// Writer processes running at once.
    #[arg(long, default_value_t = 4)]
    pub writers: u32,
    /// Shortest and longest pause between kills, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub min_ms: u64,
    #[arg(long, default_value_t = 150)]
    pub max_ms: u64,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(args: &CrashArgs) -> anyhow::Result<Figures> {
    let Run {
        seed,
        mut rng,
        cache: dir,
        logs,
        temp: _temp,
    } = args.run.prepare()?;
    let mut fig = Figures::new(
        "crash",
        format!(
            "memo-cache-torture crash --kills {} --writers {} --keys {} --seed {seed}",
            args.kills, args.writers, args.run.keys
        ),
    );
    let mut spawned = 0u64;
    let mut spawn = |rng: &mut Rng| -> anyhow::Result<Worker> {
        spawned += 1;
        // Every other writer evicts under a size limit, so deletions are killed too.
        let mut argv = vec![
            "worker".into(),
            "--mode".into(),
            "crash".into(),
            "--dir".into(),
            dir.display().to_string(),
        ];
        argv.extend([
            "--seed".into(),
            rng.next_u64().to_string(),
            "--keys".into(),
            args.run.keys.to_string(),
        ]);
        if spawned.is_multiple_of(2) {
            argv.extend(["--size-limit".into(), (3 * 1024 * 1024).to_string()]);
        }
        Ok(Worker::spawn(&argv, &logs, &format!("writer-{spawned}"))?)
    };
    let mut workers: Vec<Worker> = Vec::new();
    for _ in 0..args.writers {
        workers.push(spawn(&mut rng)?);
    }
    let mut seen = Tally::default();
    let mut kills = 0u32;
    let collect = |worker: &Worker, seen: &mut Tally, fig: &mut Figures| {
        let report = parse(&worker.output());
        seen.merge(&report.tally);
        for p in &report.tally.first_problems {
            fig.failures.push(format!("writer saw: {p}"));
        }
    };
    while kills < args.kills {
        std::thread::sleep(Duration::from_millis(rng.between(args.min_ms, args.max_ms)));
        let i = rng.below(workers.len() as u64) as usize;
        let worker = &mut workers[i];
        if let Some(status) = worker.child.try_wait()? {
            fig.failures.push(format!(
                "a writer ended by itself ({}): {}",
                describe(status),
                worker.errors()
            ));
        } else {
            let status = worker.kill()?;
            kills += 1;
            if status.signal() != Some(libc::SIGKILL) {
                fig.failures.push(format!(
                    "a writer ended with {} before SIGKILL: {}",
                    describe(status),
                    worker.errors()
                ));
            }
        }
        collect(worker, &mut seen, &mut fig);
        workers[i] = spawn(&mut rng)?;
    }
    // The last writers are killed too (not counted: they may have only just started).
    for worker in &mut workers {
        if let Some(status) = worker.child.try_wait()? {
            fig.failures.push(format!(
                "a writer ended by itself ({}): {}",
                describe(status),
                worker.errors()
            ));
        } else {
            worker.kill()?;
        }
        collect(worker, &mut seen, &mut fig);
    }
    fig.put("kills (SIGKILL)", kills);
    fig.put("writer processes", spawned);
    fig.put("calls by writers (reported before death)", seen.calls);
    let audit = crate::audit::run(&dir, args.run.keys, &mut fig)?;
    let wrong = seen.wrong + audit.wrong;
    fig.put(
        "entries checked",
        format!(
            "{} before repair, {} after",
            audit.checked_before, audit.checked_after
        ),
    );
    fig.put("wrong values", wrong);
    fig.put("errors", seen.errors + audit.errors);
    fig.require(wrong == 0, || format!("{wrong} wrong values"));
    fig.require(seen.errors + audit.errors == 0, || {
        format!("{} errors from the cache API", seen.errors + audit.errors)
    });
    fig.require(kills >= args.kills, || format!("only {kills} kills"));
    Ok(fig)
}
