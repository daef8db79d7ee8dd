//! What a suite measured, printed for people and kept in RELIABILITY.md.

use std::fmt;

/// The figures of one suite, and whatever made it fail.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    /// The suite's name, e.g. `crash`.
    pub suite: String,
    /// The command line that reproduces it.
    pub command: String,
    /// Named figures, in the order they were taken.
    pub lines: Vec<(String, String)>,
    /// Why the suite failed; empty when it passed.
    pub failures: Vec<String>,
    /// Notes that are not failures (e.g. what `verify` found and fixed).
    pub notes: Vec<String>,
}

impl Figures {
    /// Empty figures for `suite`.
    pub fn new(suite: &str, command: String) -> Figures {
        Figures {
            suite: suite.into(),
            command,
            ..Figures::default()
        }
    }

    /// Records a figure.
    pub fn put(&mut self, name: &str, value: impl fmt::Display) {
        self.lines.push((name.into(), value.to_string()));
    }

    /// Records a failure when `ok` is false.
    pub fn require(&mut self, ok: bool, failure: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(failure());
        }
    }

    /// True when nothing failed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "== {} ({})",
            self.suite,
            if self.passed() { "PASS" } else { "FAIL" }
        )?;
        writeln!(f, "   command: {}", self.command)?;
        let width = self.lines.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        for (name, value) in &self.lines {
            writeln!(f, "   {name:width$}  {value}")?;
        }
        for note in &self.notes {
            writeln!(f, "   note: {note}")?;
        }
        for failure in &self.failures {
            writeln!(f, "   FAILURE: {failure}")?;
        }
        Ok(())
    }
}
