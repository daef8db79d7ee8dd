//! Running `#[disk_cache]` child programs against one cache directory and reading what they did.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use memo_cache_e2e::run_bounded;

/// What one run of a child printed.
pub struct Run {
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The `computed ..` lines: one per execution of a cached function's body.
    pub fn computed(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("computed "))
            .collect()
    }

    /// How many times a body ran whose line starts with `computed <what>`.
    pub fn count(&self, what: &str) -> usize {
        let prefix = format!("computed {what}");
        self.computed()
            .iter()
            .filter(|l| l.starts_with(&prefix))
            .count()
    }

    /// The `result ..` lines, without the prefix.
    pub fn results(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("result "))
            .collect()
    }

    /// Every line that starts with `prefix`, without it.
    pub fn lines(&self, prefix: &str) -> Vec<&str> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .collect()
    }
}

/// Runs `program` with `args`, caching in `dir`, and checks it succeeded (waiting a bounded
/// time for it).
pub fn run(program: &str, dir: &Path, args: &[&str]) -> Run {
    finish(program, run_bounded(&mut command(program, dir, args)))
}

pub fn command(program: &str, dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(program);
    command
        .args(args)
        .env("MEMO_CACHE_DIR", dir)
        .env_remove("RUST_LOG");
    command
}

pub fn finish(program: &str, output: Output) -> Run {
    let run = Run {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        output.status.success(),
        "{program} failed: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        run.stdout,
        run.stderr
    );
    run
}
