//! The check after a crash or soak run, when no writer is left: is every value right, and does
//! `verify --fix` repair everything `verify` reports?

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use memo_cache::{Cache, Verify, VerifyReport};

use crate::figures::Figures;
use crate::procs::copy_tree;
use crate::workload::{self, Op, Tally};

/// What the audit saw.
#[derive(Debug, Default)]
pub struct Audit {
    /// Entries read and compared before any repair, and after.
    pub checked_before: u64,
    pub checked_after: u64,
    pub wrong: u64,
    pub errors: u64,
}

fn kinds(report: &VerifyReport) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &report.problems {
        *counts.entry(p.kind.as_str()).or_default() += 1;
    }
    if counts.is_empty() {
        return "nothing".into();
    }
    counts
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn record(fig: &mut Figures, audit: &mut Audit, what: &str, tally: &Tally) {
    audit.wrong += tally.wrong;
    audit.errors += tally.errors;
    for p in &tally.first_problems {
        fig.failures.push(format!("{what}: {p}"));
    }
}

/// Audits the cache in `dir` (no process may be using it), whose entries were made by the
/// workload with `keys` arguments per function.
pub fn run(dir: &Path, keys: u64, fig: &mut Figures) -> anyhow::Result<Audit> {
    let mut audit = Audit::default();
    let now = || Verify::new().file_grace(Duration::ZERO);

    // What a caller would have been handed, read from a copy before anything is repaired.
    let copy = dir.with_extension("before-fix");
    let _ = std::fs::remove_dir_all(&copy);
    copy_tree(dir, &copy)?;
    {
        let before = Cache::open(&copy)?;
        let got = workload::check_all(&before, keys, Op::Get);
        audit.checked_before = got.hits;
        record(fig, &mut audit, "get before repair", &got);
        let called = workload::check_all(&before, keys, Op::Call);
        record(fig, &mut audit, "get_or_compute before repair", &called);
    }
    std::fs::remove_dir_all(&copy)?;

    let cache = Cache::open(dir)?;
    let found = cache.verify(&now())?;
    fig.put(
        "verify found",
        format!("{} (in {} entries)", kinds(&found), found.entries_checked),
    );
    let fixed = cache.verify(&now().fix(true))?;
    let unfixed: Vec<String> = fixed
        .problems
        .iter()
        .filter(|p| !p.fixed)
        .map(|p| p.to_string())
        .collect();
    fig.require(unfixed.is_empty(), || {
        format!("verify --fix left {} problems: {unfixed:?}", unfixed.len())
    });
    fig.require(fixed.problems.len() == found.problems.len(), || {
        format!(
            "verify reported {} problems but verify --fix saw {}",
            found.problems.len(),
            fixed.problems.len()
        )
    });
    let after = cache.verify(&now())?;
    fig.put(
        "verify after --fix",
        format!("{} (in {} entries)", kinds(&after), after.entries_checked),
    );
    fig.require(after.problems.is_empty(), || {
        format!(
            "after verify --fix, verify still reports: {}",
            kinds(&after)
        )
    });

    let got = workload::check_all(&cache, keys, Op::Get);
    audit.checked_after = got.hits;
    record(fig, &mut audit, "get after repair", &got);
    fig.require(got.hits == after.entries_checked, || {
        format!(
            "{} entries are sound but only {} could be read back",
            after.entries_checked, got.hits
        )
    });
    let called = workload::check_all(&cache, keys, Op::Call);
    record(fig, &mut audit, "get_or_compute after repair", &called);
    let last = cache.verify(&now())?;
    fig.require(last.problems.is_empty(), || {
        format!(
            "after recomputing everything, verify reports: {}",
            kinds(&last)
        )
    });
    Ok(audit)
}
