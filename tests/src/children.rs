//! Child processes with bounded waits: a broken lock or a hung child fails its test after
//! [`CHILD_TIMEOUT`] instead of hanging it forever.
//!
//! Only `std` is used here, so the tests of other packages include this file with `#[path]`
//! (as they do `crates/memo-cache/tests/support/redis_server.rs`) rather than keep copies.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The longest any child is allowed to run before the test gives up and kills it. A bound against
/// hangs only, generous for a loaded machine: no assertion is made about how long anything takes.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

/// Waits for `child` to exit, killing it (and failing the test) after [`CHILD_TIMEOUT`].
pub fn wait_bounded(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > CHILD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "child {} did not finish within {CHILD_TIMEOUT:?}; killed",
                child.id()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `cmd` to completion (bounded) and returns its output; stdout and stderr are captured.
pub fn run_bounded(cmd: &mut Command) -> Output {
    let mut child = KillOnDrop(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    output_bounded(&mut child)
}

/// [`Child::wait_with_output`], bounded: waits for `child` to exit (killing it and failing the
/// test after [`CHILD_TIMEOUT`]) and returns what it wrote to the pipes not taken from it yet.
pub fn output_bounded(child: &mut Child) -> Output {
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let status = wait_bounded(child);
    let collect = |drained: Option<std::thread::JoinHandle<Vec<u8>>>| {
        drained.map(|d| d.join().unwrap()).unwrap_or_default()
    };
    Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    }
}

/// Runs `cmd` and returns its stdout, failing the test (with stderr shown) unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run_bounded(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    stdout
}

fn drain(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = from.read_to_end(&mut buf);
        buf
    })
}

/// Streams a child's output line by line so a test can wait for a particular line.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    /// Starts reading `from` on a thread.
    pub fn new(from: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a line containing `needle`; panics with everything seen if none comes.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + CHILD_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no line containing {needle:?} ({e}); saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Every line until the stream ends (bounded).
    pub fn rest(mut self) -> Vec<String> {
        let deadline = Instant::now() + CHILD_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return self.seen,
                Err(e) => panic!("output did not end ({e}); saw:\n{}", self.seen.join("\n")),
            }
        }
    }
}

/// Waits (bounded) until `path` exists.
pub fn wait_for_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < CHILD_TIMEOUT,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A child process that is killed when the test lets go of it, so a failing assertion never
/// leaves a child behind (a lock holder sleeping for minutes, a waiter blocked on its lock).
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
