//! What a hit costs with one large argument: a 256 MiB `&[u8]` and a 256 MiB `&[f64]` (32 Mi
//! elements) through `#[disk_cache]`, against `joblib.hash` of numpy arrays holding the same data
//! (uint8 and float64), measured in the same run, and against blake3 itself.
//!
//! ```text
//! cargo bench -p memo-cache-e2e --bench large_args              # 3 rounds of 3 (about a minute)
//! cargo bench -p memo-cache-e2e --bench large_args -- --quick   # 1 round of 3
//! cargo bench -p memo-cache-e2e --bench large_args -- --no-python
//! cargo bench -p memo-cache-e2e --bench large_args -- --rayon-threshold   # update vs update_rayon
//! ```
//!
//! joblib and numpy come from PyPI into a virtual environment that `scripts/python-peers.sh`
//! makes (under `$CARGO_TARGET_DIR/python-peers`, else `target/python-peers`) the first time;
//! `MEMO_BENCH_PYTHON=/path/to/python` uses another interpreter that has them. The Python side
//! reads the very bytes the Rust side hashes, from files this bench writes.
//!
//! Rounds alternate the two sides (ours, then joblib in one Python process) so drift in the
//! machine's speed hits both alike; every figure is the median of its samples. Figures go in
//! BENCHMARKS.md ("Large arguments").

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use memo_cache::disk_cache;
use memo_cache_bench::{median_secs, noise, python_peers};

const LEN: usize = 256 << 20;
const REPS: usize = 3;

static COMPUTED: AtomicUsize = AtomicUsize::new(0);

#[disk_cache(name = "bench::large_bytes")]
fn byte_sum(data: &[u8]) -> u64 {
    COMPUTED.fetch_add(1, Ordering::SeqCst);
    data.iter().map(|&b| u64::from(b)).sum()
}

#[disk_cache(name = "bench::large_floats")]
fn float_sum(data: &[f64]) -> f64 {
    COMPUTED.fetch_add(1, Ordering::SeqCst);
    data.iter().sum()
}

fn floats(len: usize) -> Vec<f64> {
    (0..len).map(|i| (i as f64).sqrt() * 0.001 - 7.0).collect()
}

fn seconds(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64()
}

const JOBLIB: &str = r#"
import sys, time
import numpy as np, joblib
b = np.fromfile(sys.argv[1], dtype=np.uint8)
f = np.fromfile(sys.argv[2], dtype="<f8")
reps = int(sys.argv[3])
joblib.hash(b[:4096]); joblib.hash(f[:512])
for name, array in (("bytes", b), ("floats", f)):
    for _ in range(reps):
        start = time.perf_counter()
        joblib.hash(array)
        print(name, time.perf_counter() - start, flush=True)
"#;

/// `joblib.hash` of each file's data, `REPS` times: (bytes seconds, floats seconds).
fn joblib_round(python: &Path, bytes: &Path, floats: &Path) -> (Vec<f64>, Vec<f64>) {
    let out = Command::new(python)
        .args(["-c", JOBLIB])
        .arg(bytes)
        .arg(floats)
        .arg(REPS.to_string())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "joblib round failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut b, mut f) = (Vec::new(), Vec::new());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (name, secs) = line.split_once(' ').expect("name seconds");
        let secs: f64 = secs.parse().expect("seconds");
        if name == "bytes" {
            b.push(secs)
        } else {
            f.push(secs)
        }
    }
    (b, f)
}

fn row(what: &str, samples: Vec<f64>) -> f64 {
    let n = samples.len();
    let secs = median_secs(samples);
    println!(
        "{what:<44} {:>9.1} ms {:>9.0} MB/s   (median of {n})",
        secs * 1e3,
        LEN as f64 / secs / 1e6
    );
    secs
}

/// One core against every core on writes of the sizes around the key sink's `PARALLEL`
/// threshold (64 KiB; blake3 suggests 128 KiB): per-write microseconds, medians of 15 batches of 64 MiB.
fn rayon_threshold(bytes: &[u8]) {
    println!("\nblake3 update against update_rayon, per write");
    for size in [
        32usize << 10,
        64 << 10,
        128 << 10,
        256 << 10,
        1 << 20,
        8 << 20,
    ] {
        let writes = (64 << 20) / size;
        let time = |parallel: bool| {
            let mut samples = Vec::new();
            for _ in 0..15 {
                samples.push(
                    seconds(|| {
                        for chunk in bytes[..writes * size].chunks(size) {
                            let mut hasher = blake3::Hasher::new();
                            if parallel {
                                hasher.update_rayon(black_box(chunk));
                            } else {
                                hasher.update(black_box(chunk));
                            }
                            black_box(hasher.finalize());
                        }
                    }) / writes as f64,
                );
            }
            median_secs(samples) * 1e6
        };
        let (one, every) = (time(false), time(true));
        println!(
            "{:>6} KiB   update {one:>8.1} us   update_rayon {every:>8.1} us   ({:.2}x)",
            size >> 10,
            one / every
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick =
        args.iter().any(|a| a == "--quick") || std::env::var_os("MEMO_BENCH_QUICK").is_some();
    let with_python = !args.iter().any(|a| a == "--no-python");
    if args.iter().any(|a| a == "--rayon-threshold") {
        rayon_threshold(&noise(64 << 20));
        return;
    }
    let rounds = if quick { 1 } else { 3 };

    let dir = tempfile::tempdir().unwrap();
    // SAFETY: single-threaded; set before any cached function runs.
    unsafe { std::env::set_var("MEMO_CACHE_DIR", dir.path().join("cache")) };

    let bytes = noise(LEN);
    let floats = floats(LEN / 8);
    let bytes_file = dir.path().join("bytes.bin");
    let floats_file = dir.path().join("floats.bin");
    let python = if with_python {
        std::fs::write(&bytes_file, &bytes).unwrap();
        let le: Vec<u8> = floats.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(&floats_file, le).unwrap();
        match python_peers() {
            Ok(python) => Some(python),
            Err(why) => {
                println!("joblib not measured: {why}");
                None
            }
        }
    } else {
        None
    };

    // The misses that store the entries; everything after is a hit.
    let (sum, total) = (byte_sum(&bytes), float_sum(&floats));
    assert_eq!(COMPUTED.load(Ordering::SeqCst), 2);

    let (mut ours_b, mut ours_f, mut theirs_b, mut theirs_f) = (vec![], vec![], vec![], vec![]);
    let (mut one_core, mut all_cores) = (vec![], vec![]);
    for _ in 0..rounds {
        for _ in 0..REPS {
            ours_b.push(seconds(|| assert_eq!(byte_sum(black_box(&bytes)), sum)));
            ours_f.push(seconds(|| assert_eq!(float_sum(black_box(&floats)), total)));
            one_core.push(seconds(|| {
                black_box(blake3::hash(black_box(&bytes)));
            }));
            all_cores.push(seconds(|| {
                black_box(
                    blake3::Hasher::new()
                        .update_rayon(black_box(&bytes))
                        .finalize(),
                );
            }));
        }
        if let Some(python) = &python {
            let (b, f) = joblib_round(python, &bytes_file, &floats_file);
            theirs_b.extend(b);
            theirs_f.extend(f);
        }
    }
    assert_eq!(
        COMPUTED.load(Ordering::SeqCst),
        2,
        "every timed call was a hit"
    );

    println!(
        "\nlarge arguments, 256 MiB each, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let ours_b = row("#[disk_cache] hit, &[u8] (256 MiB)", ours_b);
    let ours_f = row("#[disk_cache] hit, &[f64] (32 Mi elements)", ours_f);
    row("blake3::hash, one core", one_core);
    row("blake3 update_rayon, every core", all_cores);
    if python.is_some() {
        let theirs_b = row("joblib.hash, numpy uint8", theirs_b);
        let theirs_f = row("joblib.hash, numpy float64", theirs_f);
        println!(
            "\njoblib / ours: bytes {:.1}x, floats {:.1}x",
            theirs_b / ours_b,
            theirs_f / ours_f
        );
    }
}
