//! How far a long [`Cache::prune`](crate::Cache::prune) or [`Cache::verify`](crate::Cache::verify)
//! has come, for a progress bar: [`Prune::progress`](crate::Prune::progress) and
//! [`Verify::progress`](crate::Verify::progress) take a function that is called with a
//! [`Progress`] at the start of each counted step, every [`EVERY`] items, and at its end.
//!
//! Only steps whose total is known before they start are reported; sweeping stray files (a walk
//! of the blob directories) is not.

use std::fmt;
use std::sync::Arc;

/// How often, in items, a step reports.
pub const EVERY: u64 = 1024;

/// One counted step of a prune or verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Reading every entry and checking its bytes against its hash (verify).
    CheckingEntries,
    /// Removing the selected entries from the index (prune, clear).
    RemovingEntries,
    /// Removing the blob files of the removed entries (prune, clear).
    RemovingFiles,
}

impl Step {
    /// What the step does, for people: `checking entries`, `removing entries`, `removing files`.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::CheckingEntries => "checking entries",
            Step::RemovingEntries => "removing entries",
            Step::RemovingFiles => "removing files",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `done` of `total` items of `step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// The step.
    pub step: Step,
    /// Items done so far.
    pub done: u64,
    /// Items the step has in all. A step may end before `done` reaches it (an entry another
    /// process removed first), and a removal made of several statements may raise it as each
    /// statement counts its rows.
    pub total: u64,
}

/// The function a prune or verify reports to, if any.
#[derive(Clone, Default)]
pub(crate) struct Reporter(Option<Arc<dyn Fn(Progress) + Send + Sync>>);

impl Reporter {
    pub fn new(f: impl Fn(Progress) + Send + Sync + 'static) -> Reporter {
        Reporter(Some(Arc::new(f)))
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Reports `done` of `total` of `step`.
    pub fn report(&self, step: Step, done: u64, total: u64) {
        if let Some(f) = &self.0 {
            f(Progress { step, done, total });
        }
    }

    /// Reports when `done` is a multiple of [`EVERY`] (the start included).
    pub fn tick(&self, step: Step, done: u64, total: u64) {
        if done.is_multiple_of(EVERY) {
            self.report(step, done, total);
        }
    }
}

impl fmt::Debug for Reporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_on() {
            "Reporter(on)"
        } else {
            "Reporter(off)"
        })
    }
}
