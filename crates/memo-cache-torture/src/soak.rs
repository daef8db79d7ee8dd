//! Item 4: many processes on one directory, mixing calls with prunes, clears and verifies.

use std::time::{Duration, Instant};

use clap::Args;

use crate::figures::Figures;
use crate::procs::{Worker, describe};
use crate::worker::parse;
use crate::workload::Tally;
use crate::{Run, RunArgs};

/// Options of `soak`.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// How long the workers run.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Worker processes.
    #[arg(long, default_value_t = 8)]
    pub procs: u32,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(args: &SoakArgs) -> anyhow::Result<Figures> {
    let Run {
        seed,
        mut rng,
        cache: dir,
        logs,
        temp: _temp,
    } = args.run.prepare()?;
    let mut fig = Figures::new(
        "soak",
        format!(
            "memo-cache-torture soak --seconds {} --procs {} --keys {} --seed {seed}",
            args.seconds, args.procs, args.run.keys
        ),
    );
    let mut workers = Vec::new();
    for i in 0..args.procs {
        let mut argv = vec![
            "worker".into(),
            "--mode".into(),
            "soak".into(),
            "--dir".into(),
            dir.display().to_string(),
        ];
        argv.extend([
            "--seed".into(),
            rng.next_u64().to_string(),
            "--keys".into(),
            args.run.keys.to_string(),
        ]);
        argv.extend(["--seconds".into(), args.seconds.to_string()]);
        if i % 3 == 2 {
            argv.extend(["--size-limit".into(), (2 * 1024 * 1024).to_string()]);
        }
        workers.push(Worker::spawn(&argv, &logs, &format!("soak-{i}"))?);
    }
    let give_up = Instant::now() + Duration::from_secs_f64(args.seconds) + Duration::from_secs(120);
    let mut seen = Tally::default();
    let (mut admin, mut warnings) = (0, 0);
    let mut samples = Vec::new();
    for worker in &mut workers {
        let status = loop {
            if let Some(status) = worker.child.try_wait()? {
                break status;
            }
            if Instant::now() > give_up {
                fig.failures
                    .push("a worker did not finish within two minutes of its deadline".into());
                break worker.kill()?;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        fig.require(status.success(), || {
            format!(
                "a worker failed ({}): {}",
                describe(status),
                worker.errors()
            )
        });
        let report = parse(&worker.output());
        seen.merge(&report.tally);
        admin += report.admin;
        warnings += report.warnings;
        samples.extend(report.warning_samples);
        for p in &report.tally.first_problems {
            fig.failures.push(format!("worker saw: {p}"));
        }
    }
    fig.put(
        "processes x seconds",
        format!("{} x {}", args.procs, args.seconds),
    );
    fig.put(
        "calls",
        format!(
            "{} ({} hits, {} computed)",
            seen.calls, seen.hits, seen.misses
        ),
    );
    fig.put("prunes, clears, verifies", admin);
    fig.put("library warnings", warnings);
    for s in samples.iter().take(3) {
        fig.notes.push(format!("warning: {s}"));
    }
    let audit = crate::audit::run(&dir, args.run.keys, &mut fig)?;
    let wrong = seen.wrong + audit.wrong;
    let errors = seen.errors + audit.errors;
    fig.put(
        "entries checked after",
        format!(
            "{} before repair, {} after",
            audit.checked_before, audit.checked_after
        ),
    );
    fig.put("wrong values", wrong);
    fig.put("errors surfaced to callers", errors);
    fig.require(wrong == 0, || format!("{wrong} wrong values"));
    fig.require(errors == 0, || {
        format!("{errors} errors surfaced to callers")
    });
    Ok(fig)
}
