//! Shared helpers for memo-cache's end-to-end tests: child programs live in `src/bin/`, tests in
//! `tests/`.
//!
//! The helpers deal in real things: real SQLite files opened with rusqlite, real child processes
//! with bounded waits (so a broken lock fails a test after a while rather than hanging it forever;
//! see `src/children.rs`, which the tests of other packages include too), and a tracing
//! subscriber that writes into a buffer so tests can assert on the library's warnings.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

// ---- Deterministic values ---------------------------------------------------------------------

/// The small (inline) value stored for argument `i`.
pub fn small_value(i: u64) -> String {
    format!("value-{i}-{}", i.wrapping_mul(2_654_435_761))
}

/// The large (blob, > 16 KiB) value stored for argument `i`: bytes that do not compress, so
/// that it stays a blob file.
pub fn large_value(i: u64) -> Vec<u8> {
    let len = 20_000 + (i as usize % 7) * 1_000;
    let mut state = 0x9e37_79b9_7f4a_7c15 ^ i.wrapping_mul(131);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A structured value, for the MessagePack path of the codec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The argument it was made from.
    pub id: u64,
    /// A name derived from it.
    pub name: String,
    /// Some numbers derived from it.
    pub samples: Vec<u32>,
}

/// The structured value stored for argument `i`.
pub fn record_value(i: u64) -> Record {
    Record {
        id: i,
        name: small_value(i),
        samples: (0..(i % 50) as u32).map(|j| j * 3 + i as u32).collect(),
    }
}

// ---- Warnings ---------------------------------------------------------------------------------

/// A buffer that collects formatted tracing output on the current thread.
#[derive(Clone, Default, Debug)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The lines logged at WARN level.
    pub fn warnings(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains("WARN"))
            .map(str::to_owned)
            .collect()
    }

    /// Forgets what was logged so far.
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Captures tracing output (WARN and above) of the current thread until the guard is dropped.
/// Thread-local, so tests running in parallel threads do not see each other's warnings.
///
/// One global subscriber, installed by the first call, writes each event into the buffer of the
/// thread that logged it. A subscriber per thread (`set_default`) lost events: test threads
/// setting and dropping theirs at once let tracing's global level hint fall to OFF while this
/// one was still set (1 run in 5 of `planted` missed its warning; none with one test thread).
/// Events of threads that capture nothing are dropped.
pub fn capture_warnings() -> (Captured, CaptureGuard) {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| ThreadSink)
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global tracing subscriber in the end-to-end tests");
    });
    let captured = Captured::default();
    SINK.with(|sink| *sink.borrow_mut() = Some(captured.clone()));
    (captured, CaptureGuard(()))
}

thread_local! {
    static SINK: std::cell::RefCell<Option<Captured>> = const { std::cell::RefCell::new(None) };
}

/// Ends the current thread's capture when dropped.
#[derive(Debug)]
pub struct CaptureGuard(());

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        SINK.with(|sink| sink.borrow_mut().take());
    }
}

/// Where the global subscriber writes: the current thread's [`Captured`], if it has one.
struct ThreadSink;

impl Write for ThreadSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        SINK.with(|sink| match sink.borrow_mut().as_mut() {
            Some(captured) => captured.write(buf),
            None => Ok(buf.len()),
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// ---- Files ------------------------------------------------------------------------------------

/// Every regular file under `dir`, recursively, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(_) => out.push(path),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

/// The blob files of a cache directory.
pub fn blob_files(dir: &Path) -> Vec<PathBuf> {
    files_under(&dir.join(memo_cache::BLOBS_DIR))
}

/// The blob file holding the value of `key` (its name starts with the key's hex).
pub fn blob_of(dir: &Path, key: &memo_cache::Key) -> PathBuf {
    let hex = key.to_hex();
    let found: Vec<PathBuf> = blob_files(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&hex))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one blob file for key {hex}, found {found:?}"
    );
    found.into_iter().next().unwrap()
}

/// Inverts every bit of the byte at `offset` in the file at `path`.
pub fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 0xff;
    fs::write(path, bytes).unwrap();
}

/// A snapshot of a directory: every file's path, bytes and modification time.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    files_under(dir)
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            let mtime = fs::metadata(&p).unwrap().modified().unwrap();
            (p, (bytes, mtime))
        })
        .collect()
}

/// Sets a file's modification time `age` into the past.
pub fn backdate(path: &Path, age: Duration) {
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_modified(std::time::SystemTime::now() - age)
        .unwrap();
}

/// A direct connection to a cache's index, for editing rows behind the library's back.
pub fn raw_index(dir: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.join(memo_cache::INDEX_FILE)).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

// ---- Child processes --------------------------------------------------------------------------

mod children;
pub use children::*;

// ---- Logs written by several processes --------------------------------------------------------

/// Appends one line to `path` with `O_APPEND`, so lines from several processes never interleave.
pub fn append_line(path: &Path, line: &str) {
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(format!("{line}\n").as_bytes()).unwrap();
}

/// The lines of a log written with [`append_line`]; none when it does not exist.
pub fn read_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

// ---- Function identities shared by the tests and their child programs -------------------------

/// Identities that tests and child programs must agree on.
pub mod functions {
    use memo_cache::Function;

    /// `n -> n * n`, used across restarts and by the read-only child.
    pub static SQUARE: Function = Function::new("e2e::square", "v1", "u64");
    /// Takes maps built in different orders.
    pub static MAPS: Function = Function::new("e2e::maps", "v1", "u64");
    /// The small values of the mixed workload.
    pub static SMALL: Function = Function::new("e2e::small", "v1", "String");
    /// The large values of the mixed workload, stored as they are encoded (never compressed):
    /// each stays a blob file that a test can damage, whatever its bytes.
    pub static LARGE: Function = Function::new("e2e::large", "v1", "Vec<u8>").with_compression(0);
    /// The structured values of the mixed workload.
    pub static RECORD: Function = Function::new("e2e::record", "v1", "e2e::Record");
    /// The one slow key all stampede children miss on.
    pub static STAMPEDE: Function = Function::new("e2e::stampede", "v1", "Vec<u8>");
    /// The key whose first computer is killed.
    pub static TAKEOVER: Function = Function::new("e2e::takeover", "v1", "String");
    /// The keys one process hits while another changes them (`src/bin/snapshot_child.rs`).
    pub static HELD: Function = Function::new("e2e::held", "v1", "String");
    /// The many small entries stored beside a hitting process.
    pub static FILL: Function = Function::new("e2e::fill", "v1", "String");
}

/// The value [`functions::STAMPEDE`] and [`functions::TAKEOVER`] compute.
pub fn slow_value() -> Vec<u8> {
    large_value(4242)
}

/// A short description of an optional byte vector (length and hash), so that an assertion on a
/// 20 KiB value prints one line rather than the whole value when it fails.
pub fn summary(bytes: Option<Vec<u8>>) -> Option<String> {
    bytes.map(|b| {
        format!(
            "{} bytes, blake3 {}",
            b.len(),
            &memo_cache::Digest::of(&b).to_hex()[..16]
        )
    })
}

/// The address space this process has reserved now, in bytes (`VmSize` in
/// `/proc/self/status`): the base of an `RLIMIT_AS` a test sets.
pub fn vm_size() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb << 10
}
