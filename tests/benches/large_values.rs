//! What a hit and a store of a large RESULT cost through `#[disk_cache]`: a 100 MB `Vec<u8>`,
//! 10^6 and 10^8 `f64` (`Vec<f64>`, 8 MB and 800 MB), beside the floor (a plain read of the same
//! number of bytes) and beside `joblib.Memory` caching numpy arrays of the same bytes, in one run.
//!
//! ```text
//! cargo bench -p memo-cache-e2e --bench large_values              # 3 rounds (a few minutes)
//! cargo bench -p memo-cache-e2e --bench large_values -- --quick   # 1 round
//! cargo bench -p memo-cache-e2e --bench large_values -- --no-python
//! cargo bench -p memo-cache-e2e --bench large_values -- --only f64-1m,bytes-100mb
//! ```
//!
//! Both sides cache a function of one small integer that hands back a value made beforehand, so
//! a miss costs the store alone and a hit the lookup, the read, the hash check (ours) and the
//! decode. Beside them: the floors (`std::fs::read` of the file; a read into a new `Vec<f64>`)
//! and blake3 over the same bytes on one core and on all (`update_rayon`): a hash-checked hit
//! cannot beat the larger of the read and the hash on every core. Every store is of a new argument (a new entry); every hit is of the first one. The
//! returned value is dropped outside the timed region on both sides.
//!
//! joblib and numpy come from PyPI into a virtual environment that `scripts/python-peers.sh`
//! makes (see `large_args.rs`); `MEMO_BENCH_PYTHON=/path/to/python` uses another interpreter.
//! Rounds alternate the two sides so drift in the machine's speed hits both alike; every figure
//! is a median. Figures go in BENCHMARKS.md ("Large values").

use std::hint::black_box;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use memo_cache::disk_cache;
use memo_cache_bench::{median_secs, noise, python_peers};

/// The value the next miss hands back (taken, so the "computation" costs nothing).
static NEXT_BYTES: Mutex<Option<Vec<u8>>> = Mutex::new(None);
static NEXT_FLOATS: Mutex<Option<Vec<f64>>> = Mutex::new(None);

#[disk_cache(name = "bench::large_value_bytes")]
fn bytes_value(_seed: u64) -> Vec<u8> {
    NEXT_BYTES.lock().unwrap().take().expect("a prepared value")
}

#[disk_cache(name = "bench::large_value_floats")]
fn floats_value(_len: usize, _seed: u64) -> Vec<f64> {
    NEXT_FLOATS
        .lock()
        .unwrap()
        .take()
        .expect("a prepared value")
}

fn floats(len: usize) -> Vec<f64> {
    (0..len).map(|i| (i as f64).sqrt() * 0.001 - 7.0).collect()
}

/// Seconds taken by `f`; what it returns is dropped after the clock stops.
fn timed<R>(f: impl FnOnce() -> R) -> f64 {
    let start = Instant::now();
    let out = black_box(f());
    let secs = start.elapsed().as_secs_f64();
    drop(out);
    secs
}

/// One round of joblib: `stores` misses of new arguments, then `hits` hits of the first, on an
/// array read from the file the Rust side wrote. Prints `store SECONDS` and `hit SECONDS` lines.
const JOBLIB: &str = r#"
import sys, time
import numpy as np, joblib
path, dtype, location, first, stores, hits = sys.argv[1:7]
first, stores, hits = int(first), int(stores), int(hits)
value = np.fromfile(path, dtype=dtype)
def make(seed):
    return value
cached = joblib.Memory(location, verbose=0).cache(make)
for seed in range(first, first + stores):
    start = time.perf_counter()
    cached(seed)
    print("store", time.perf_counter() - start, flush=True)
for _ in range(hits):
    start = time.perf_counter()
    out = cached(first)
    took = time.perf_counter() - start
    assert out.nbytes == value.nbytes
    del out
    print("hit", took, flush=True)
"#;

struct Case {
    name: &'static str,
    what: &'static str,
    bytes: usize,
    /// Timed calls per round and side.
    stores: usize,
    hits: usize,
}

const CASES: [Case; 3] = [
    Case {
        name: "bytes-100mb",
        what: "100 MB Vec<u8>",
        bytes: 100_000_000,
        stores: 3,
        hits: 5,
    },
    Case {
        name: "f64-1m",
        what: "10^6 f64 (8 MB)",
        bytes: 8_000_000,
        stores: 5,
        hits: 15,
    },
    Case {
        name: "f64-100m",
        what: "10^8 f64 (800 MB)",
        bytes: 800_000_000,
        stores: 2,
        hits: 3,
    },
];

#[derive(Default)]
struct Samples {
    store: Vec<f64>,
    hit: Vec<f64>,
    joblib_store: Vec<f64>,
    joblib_hit: Vec<f64>,
    read: Vec<f64>,
    read_f64: Vec<f64>,
    hash_one: Vec<f64>,
    hash_all: Vec<f64>,
}

/// `std::fs::read` of the file: a fresh allocation, filled.
fn plain_read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// The file read into a `Vec<f64>` made for it (allocated, not zeroed, filled by `read`).
fn read_into_f64(path: &Path, bytes: usize) -> Vec<f64> {
    let mut file = std::fs::File::open(path).unwrap();
    let n = bytes / 8;
    let mut out: Vec<f64> = Vec::with_capacity(n);
    // SAFETY: every bit pattern is an f64; the slice covers the allocation exactly, and
    // `read_exact` fills all of it before the length is set.
    unsafe {
        let raw = std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), n * 8);
        file.read_exact(raw).unwrap();
        out.set_len(n);
    }
    out
}

fn run_case(case: &Case, rounds: usize, python: Option<&Path>, dir: &Path) -> Samples {
    let floats_case = case.name.starts_with("f64");
    let len = case.bytes / 8;
    let (bytes, floats) = if floats_case {
        (Vec::new(), floats(len))
    } else {
        (noise(case.bytes), Vec::new())
    };
    let file = dir.join(format!("{}.bin", case.name));
    let file_bytes: Vec<u8> = if floats_case {
        floats.iter().flat_map(|x| x.to_le_bytes()).collect()
    } else {
        bytes.clone()
    };
    std::fs::write(&file, &file_bytes).unwrap();
    let dtype = if floats_case { "<f8" } else { "u1" };
    let mut s = Samples::default();
    let mut seed = 1_000u64;
    for round in 0..rounds {
        for _ in 0..case.stores {
            seed += 1;
            s.store.push(if floats_case {
                *NEXT_FLOATS.lock().unwrap() = Some(floats.clone());
                timed(|| floats_value(len, seed))
            } else {
                *NEXT_BYTES.lock().unwrap() = Some(bytes.clone());
                timed(|| bytes_value(seed))
            });
        }
        let first = 1_001;
        for _ in 0..case.hits {
            s.hit.push(if floats_case {
                timed(|| {
                    let out = floats_value(len, first);
                    assert_eq!(out.len(), len);
                    out
                })
            } else {
                timed(|| {
                    let out = bytes_value(first);
                    assert_eq!(out.len(), case.bytes);
                    out
                })
            });
            s.read.push(timed(|| plain_read(&file)));
            s.read_f64.push(timed(|| read_into_f64(&file, case.bytes)));
            s.hash_one.push(timed(|| blake3::hash(&file_bytes)));
            s.hash_all.push(timed(|| {
                blake3::Hasher::new().update_rayon(&file_bytes).finalize()
            }));
        }
        if let Some(python) = python {
            let location = dir.join("joblib");
            let out = Command::new(python)
                .args(["-c", JOBLIB])
                .arg(&file)
                .arg(dtype)
                .arg(&location)
                .arg((round * 100).to_string())
                .arg(case.stores.to_string())
                .arg(case.hits.to_string())
                .output()
                .expect("run python");
            assert!(
                out.status.success(),
                "joblib round failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let (kind, secs) = line.split_once(' ').expect("kind seconds");
                let secs: f64 = secs.parse().expect("seconds");
                match kind {
                    "store" => s.joblib_store.push(secs),
                    _ => s.joblib_hit.push(secs),
                }
            }
            // The stored values of this round are not needed again.
            let _ = std::fs::remove_dir_all(&location);
        }
    }
    let _ = std::fs::remove_file(&file);
    s
}

fn print_case(case: &Case, s: Samples) {
    let mb = case.bytes as f64 / 1e6;
    let line = |what: &str, samples: &[f64]| -> Option<f64> {
        if samples.is_empty() {
            return None;
        }
        let secs = median_secs(samples.to_vec());
        let (lo, hi) = samples
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        println!(
            "  {what:<40} {:>9.2} ms {:>7.0} MB/s   (median of {}, {:.2}-{:.2} ms)",
            secs * 1e3,
            mb / secs,
            samples.len(),
            lo * 1e3,
            hi * 1e3
        );
        Some(secs)
    };
    println!("\n{}", case.what);
    let hit = line("#[disk_cache] hit", &s.hit);
    let joblib_hit = line("joblib.Memory hit", &s.joblib_hit);
    let read = line("floor: std::fs::read", &s.read);
    let read_f64 = line("floor: read into a new Vec<f64>", &s.read_f64);
    line("blake3 of the bytes, one core", &s.hash_one);
    let hash_all = line("blake3 of the bytes, update_rayon", &s.hash_all);
    let store = line("#[disk_cache] store (a miss)", &s.store);
    let joblib_store = line("joblib.Memory store (a miss)", &s.joblib_store);
    let ratio = |name: &str, a: Option<f64>, b: Option<f64>| {
        if let (Some(a), Some(b)) = (a, b) {
            println!("  {name:<40} {:>9.2}x", a / b);
        }
    };
    ratio("hit: joblib / ours (above 1: faster)", joblib_hit, hit);
    ratio("hit: ours / fs::read floor", hit, read);
    ratio("hit: ours / Vec<f64> read floor", hit, read_f64);
    let checked_floor = match (read, hash_all) {
        (Some(r), Some(h)) => Some(r.max(h)),
        _ => None,
    };
    ratio(
        "hit: ours / max(read, blake3 all cores)",
        hit,
        checked_floor,
    );
    ratio("store: joblib / ours", joblib_store, store);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick =
        args.iter().any(|a| a == "--quick") || std::env::var_os("MEMO_BENCH_QUICK").is_some();
    let with_python = !args.iter().any(|a| a == "--no-python");
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').map(str::to_owned).collect());
    let rounds = if quick { 1 } else { 3 };

    let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    // SAFETY: single-threaded; set before any cached function runs.
    unsafe { std::env::set_var("MEMO_CACHE_DIR", dir.path().join("cache")) };
    let python = if with_python {
        python_peers()
            .map_err(|why| println!("joblib not measured: {why}"))
            .ok()
    } else {
        None
    };
    println!(
        "large values, {} cores, {} round(s)",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        rounds
    );
    for case in &CASES {
        if only
            .as_ref()
            .is_some_and(|only| !only.iter().any(|n| n == case.name))
        {
            continue;
        }
        let samples = run_case(case, rounds, python.as_deref(), dir.path());
        print_case(case, samples);
    }
}
