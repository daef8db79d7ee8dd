//! Issue 12, item 5: `verify` and `verify --fix` beside writer processes that store, replace
//! and remove blob-sized values. The cache stays sound throughout, so every problem reported is
//! a false report, and every repair a wrong one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Args;
use memo_cache::{Cache, Verify};

use crate::figures::Figures;
use crate::procs::{Worker, describe};
use crate::worker::parse;
use crate::workload::Tally;
use crate::{Run, RunArgs};

/// Options of `verify-churn`.
#[derive(Debug, Clone, Args)]
pub struct VerifyChurnArgs {
    /// How long the writers run, with verify beside them.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Writer processes.
    #[arg(long, default_value_t = 4)]
    pub writers: u32,
    #[command(flatten)]
    pub run: RunArgs,
}

/// What the verifier saw.
#[derive(Debug, Default)]
struct Verifies {
    runs: u64,
    fix_runs: u64,
    /// Runs that reported anything.
    reporting: u64,
    /// Problems reported, by kind.
    kinds: BTreeMap<&'static str, u64>,
    /// Repairs `--fix` made.
    fixed: u64,
    samples: Vec<String>,
}

pub fn run(args: &VerifyChurnArgs) -> anyhow::Result<Figures> {
    let Run {
        seed,
        mut rng,
        cache: dir,
        logs,
        temp: _temp,
    } = args.run.prepare()?;
    let mut fig = Figures::new(
        "verify-churn",
        format!(
            "memo-cache-torture verify-churn --seconds {} --writers {} --keys {} --seed {seed}",
            args.seconds, args.writers, args.run.keys
        ),
    );
    let cache = Cache::open(&dir)?;
    let mut workers = Vec::new();
    for i in 0..args.writers {
        let argv: Vec<String> = vec![
            "worker".into(),
            "--mode".into(),
            "churn".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--seed".into(),
            rng.next_u64().to_string(),
            "--keys".into(),
            args.run.keys.to_string(),
            "--seconds".into(),
            args.seconds.to_string(),
        ];
        workers.push(Worker::spawn(&argv, &logs, &format!("churn-{i}"))?);
    }

    // Verify, and verify --fix every other run, for as long as any writer runs.
    let give_up = Instant::now() + Duration::from_secs_f64(args.seconds) + Duration::from_secs(120);
    let mut seen = Verifies::default();
    let mut errors = Vec::new();
    while workers
        .iter_mut()
        .any(|w| matches!(w.child.try_wait(), Ok(None)))
        && Instant::now() < give_up
    {
        let fix = seen.runs % 2 == 1;
        match cache.verify(&Verify::new().fix(fix)) {
            Ok(report) => {
                seen.runs += 1;
                seen.fix_runs += u64::from(fix);
                seen.reporting += u64::from(!report.problems.is_empty());
                for p in &report.problems {
                    *seen.kinds.entry(p.kind.as_str()).or_default() += 1;
                    seen.fixed += u64::from(p.fixed);
                    if seen.samples.len() < 3 {
                        seen.samples.push(p.to_string());
                    }
                }
            }
            Err(e) => errors.push(format!("verify failed beside the writers: {e}")),
        }
    }

    let mut tally = Tally::default();
    for worker in &mut workers {
        let status = match worker.child.try_wait()? {
            Some(status) => status,
            None => {
                fig.failures
                    .push("a writer did not finish within two minutes of its deadline".into());
                worker.kill()?
            }
        };
        fig.require(status.success(), || {
            format!(
                "a writer failed ({}): {}",
                describe(status),
                worker.errors()
            )
        });
        let report = parse(&worker.output());
        tally.merge(&report.tally);
        for p in &report.tally.first_problems {
            fig.failures.push(format!("writer saw: {p}"));
        }
    }
    let reported: u64 = seen.kinds.values().sum();
    fig.put(
        "writers x seconds",
        format!("{} x {}", args.writers, args.seconds),
    );
    fig.put("writer operations", tally.calls);
    fig.put(
        "verify runs",
        format!("{} ({} with --fix)", seen.runs, seen.fix_runs),
    );
    fig.put(
        "false reports",
        if reported == 0 {
            "0".to_owned()
        } else {
            let kinds: Vec<String> = seen.kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
            format!(
                "{reported} ({}) in {} runs",
                kinds.join(", "),
                seen.reporting
            )
        },
    );
    fig.put("repairs by --fix", seen.fixed);
    for s in &seen.samples {
        fig.notes.push(format!("reported: {s}"));
    }
    fig.require(seen.runs > 0, || {
        "verify never ran beside the writers".into()
    });
    fig.require(reported == 0, || {
        format!(
            "verify reported {reported} problems in {} of {} runs beside writers of a sound cache",
            seen.reporting, seen.runs
        )
    });
    fig.require(seen.fixed == 0, || {
        format!(
            "verify --fix repaired {} things that were sound",
            seen.fixed
        )
    });
    fig.failures.extend(errors.into_iter().take(5));
    drop(cache);

    // With the writers gone: every value right, the cache sound.
    let audit = crate::audit::run(&dir, args.run.keys, &mut fig)?;
    let wrong = tally.wrong + audit.wrong;
    let errors = tally.errors + audit.errors;
    fig.put("wrong values", wrong);
    fig.put("errors", errors);
    fig.require(wrong == 0, || format!("{wrong} wrong values"));
    fig.require(errors == 0, || {
        format!("{errors} errors from the cache API")
    });
    Ok(fig)
}
