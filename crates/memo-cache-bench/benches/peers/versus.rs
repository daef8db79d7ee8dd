//! The table users read (issue 14): every memo-cache case through `#[disk_cache]` as well as
//! through `Cache`, beside `joblib.Memory` and diskcache's `memoize` (run by `python/peers.py`
//! in this same run, with the interpreter `scripts/python-peers.sh` makes) and cached's redb
//! store where it has the case.
//!
//! The `Cache` and redb figures are the main table's own rows; this module adds the attribute's
//! figures, the 10^8 `f64` case (800 MB: in full runs, or with `--huge`), and the Python run.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use memo_cache::{Cache, Function};
use memo_cache_bench::{median, python_peers, small};

use super::{PRELOADED, Plan, Row, SMALL_COMPUTED, child, fmt_time, own_small, time};

/// The value the next miss of the large functions hands back (taken, so the "computation"
/// costs nothing and a miss measures the store alone).
static NEXT_BYTES: Mutex<Option<Vec<u8>>> = Mutex::new(None);
static NEXT_FLOATS: Mutex<Option<Vec<f64>>> = Mutex::new(None);

#[memo_cache::disk_cache(name = "bench::attr_bytes")]
fn attr_bytes(_seed: u64) -> Vec<u8> {
    NEXT_BYTES.lock().unwrap().take().expect("a prepared value")
}

#[memo_cache::disk_cache(name = "bench::attr_floats")]
fn attr_floats(_len: usize, _seed: u64) -> Vec<f64> {
    NEXT_FLOATS
        .lock()
        .unwrap()
        .take()
        .expect("a prepared value")
}

static HUGE: Function = Function::new("bench::huge", "v1", "Vec<f64>");

/// 10^8 `f64`, 800 MB.
pub const HUGE_LEN: usize = 100_000_000;

/// The columns of the table, in order.
const COLUMNS: [&str; 5] = [
    "#[disk_cache]",
    "memo Cache",
    "joblib",
    "diskcache",
    "cached redb",
];

/// The rows: (label, key). The key names the case in the main table, here and in the JSON.
const ROWS: [(&str, &str); 10] = [
    ("small warm hit (1,000 keys)", "small hit"),
    ("small miss + store", "small miss + store"),
    (
        "fresh process: open + first hit (inside)",
        "fresh process: open + 1 hit (inside)",
    ),
    (
        "fresh process: spawn to exit",
        "fresh process: spawn to exit",
    ),
    ("100 MB bytes hit", "100 MB Vec<u8> hit"),
    ("100 MB bytes store", "100 MB Vec<u8> store"),
    ("10^6 f64 hit", "Vec<f64> 10^6 hit"),
    ("10^6 f64 store", "Vec<f64> 10^6 store"),
    ("10^8 f64 (800 MB) hit", "Vec<f64> 10^8 hit"),
    ("10^8 f64 (800 MB) store", "Vec<f64> 10^8 store"),
];

/// What this module measured: the attribute's figures, `Cache`'s for the 10^8 case, and the
/// Python peers' (or why they are missing).
#[derive(Default)]
pub struct Versus {
    attr: HashMap<&'static str, Duration>,
    cache: HashMap<&'static str, Duration>,
    python: Option<Result<serde_json::Value, String>>,
}

impl Versus {
    fn note(&mut self, case: &'static str, d: Duration) {
        println!("{:<50}   #[disk_cache]: {}", case, fmt_time(d));
        self.attr.insert(case, d);
    }

    /// Warm hits over [`PRELOADED`] keys, then misses of new keys, through `own_small`.
    pub fn small(&mut self, plan: Plan) {
        for i in 0..PRELOADED {
            black_box(own_small(i));
        }
        let mut n = 0u64;
        let warm = Instant::now();
        while warm.elapsed() < Duration::from_millis(20) {
            n = (n + 1) % PRELOADED;
            black_box(own_small(n));
        }
        let before = SMALL_COMPUTED.load(Ordering::Relaxed);
        let hit = time(plan.small_ops, |_| {
            n = (n + 1) % PRELOADED;
            black_box(own_small(black_box(n)));
        });
        assert_eq!(SMALL_COMPUTED.load(Ordering::Relaxed), before, "hits only");
        self.note("small hit", hit);
        let mut next = 1_000_000u64;
        let store = time(plan.small_ops, |_| {
            next += 1;
            black_box(own_small(black_box(next)));
        });
        self.note("small miss + store", store);
    }

    /// A new process per sample: the first call of `own_small` in it, a hit.
    pub fn fresh(&mut self, plan: Plan, dir: &Path) {
        let run = || {
            let start = Instant::now();
            let out = child(&["fresh-macro", dir.to_str().unwrap()])
                .output()
                .unwrap();
            let wall = start.elapsed();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let mut words = text.split_whitespace();
            let ns: u64 = words.next().unwrap().parse().unwrap();
            let computed: u64 = words.next().unwrap().parse().unwrap();
            (Duration::from_nanos(ns), wall, computed)
        };
        // The first process stores the value; the others hit it.
        run();
        let (mut inside, mut wall) = (Vec::new(), Vec::new());
        for _ in 0..plan.processes {
            let (i, w, computed) = run();
            assert_eq!(computed, 0, "a fresh process's first call was a hit");
            inside.push(i);
            wall.push(w);
        }
        self.note("fresh process: open + 1 hit (inside)", median(inside));
        self.note("fresh process: spawn to exit", median(wall));
    }

    /// Stores of new arguments and hits of the first, through the attribute. The value a hit
    /// returns is dropped after the clock stops, as the Python side does.
    pub fn large_bytes(&mut self, value: &[u8], reps: usize) {
        let (store, hit) = stores_and_hits(reps, |seed, prepare| {
            if prepare {
                *NEXT_BYTES.lock().unwrap() = Some(value.to_vec());
                return None;
            }
            let out = attr_bytes(seed);
            assert_eq!(out.len(), value.len());
            Some(out)
        });
        self.note("100 MB Vec<u8> store", store);
        self.note("100 MB Vec<u8> hit", hit);
    }

    pub fn large_floats(&mut self, value: &[f64], reps: usize) {
        let len = value.len();
        let (store, hit) = stores_and_hits(reps, |seed, prepare| {
            if prepare {
                *NEXT_FLOATS.lock().unwrap() = Some(value.to_vec());
                return None;
            }
            let out = attr_floats(len, seed);
            assert_eq!(out.len(), len);
            Some(out)
        });
        let (store_case, hit_case) = if len == HUGE_LEN {
            ("Vec<f64> 10^8 store", "Vec<f64> 10^8 hit")
        } else {
            ("Vec<f64> 10^6 store", "Vec<f64> 10^6 hit")
        };
        self.note(store_case, store);
        self.note(hit_case, hit);
    }

    /// The 10^8 case through `Cache` (the main table has no row for it) and the attribute.
    pub fn huge(&mut self, reps: usize, dir: &Path) {
        let value: Vec<f64> = (0..HUGE_LEN).map(|i| i as f64 * 0.001 - 7.0).collect();
        let cache = Cache::builder(dir).no_remote().open().unwrap();
        // Seed 0 is the one hit; the warm-up "store" of `stores_and_hits` is a hit of it here.
        cache.put(&HUGE, &(0u64,), &value).unwrap();
        let (store, hit) = stores_and_hits(reps, |seed, prepare| {
            if prepare {
                return None;
            }
            if seed == 0 {
                let out: Vec<f64> = cache.get(&HUGE, &(0u64,)).unwrap().unwrap();
                assert_eq!(out.len(), HUGE_LEN);
                Some(out)
            } else {
                cache.put(&HUGE, &(seed,), &value).unwrap();
                None
            }
        });
        println!(
            "{:<50}   memo Cache: store {}, hit {}",
            "Vec<f64> 10^8",
            fmt_time(store),
            fmt_time(hit)
        );
        self.cache.insert("Vec<f64> 10^8 store", store);
        self.cache.insert("Vec<f64> 10^8 hit", hit);
        drop(cache);
        let _ = std::fs::remove_dir_all(dir);
        self.large_floats(&value, reps);
    }

    /// Runs `python/peers.py` on the sections wanted and keeps what it prints.
    pub fn python(&mut self, plan: Plan, sections: &[&str], dir: &Path) {
        self.python = Some(run_python(plan, sections, dir));
        match &self.python {
            Some(Ok(json)) => println!("python peers: {}", json["versions"]),
            Some(Err(why)) => println!("python peers not measured: {why}"),
            None => {}
        }
    }

    fn py(&self, tool: &str, case: &str) -> Option<Duration> {
        let secs = self.python.as_ref()?.as_ref().ok()?[tool][case].as_f64()?;
        Some(Duration::from_secs_f64(secs))
    }

    /// The cells of one row: the attribute, `Cache` (the main table's memo-cache cell, or this
    /// module's), joblib, diskcache, and cached redb (the main table's, default durability).
    fn cells(&self, rows: &[Row], key: &str) -> [Option<Duration>; 5] {
        let main = rows.iter().find(|r| r.case == key);
        let main_cell = |i: usize| main.and_then(|r| r.cells.get(i)).and_then(|c| c.time());
        [
            self.attr.get(key).copied(),
            main_cell(0).or_else(|| self.cache.get(key).copied()),
            self.py("joblib", key),
            self.py("diskcache", key),
            main_cell(1),
        ]
    }

    /// Prints the table and the targets, each met or missed.
    pub fn report(&self, rows: &[Row]) {
        println!("\nthe users' table: medians, one run (n/a: not measured in this run)");
        print!("{:<42}", "case");
        for c in COLUMNS {
            print!(" | {c:>13}");
        }
        println!();
        println!("{}", "-".repeat(42 + 16 * COLUMNS.len()));
        for (label, key) in ROWS {
            let cells = self.cells(rows, key);
            if cells.iter().all(Option::is_none) {
                continue;
            }
            print!("{label:<42}");
            for c in cells {
                print!(" | {:>13}", c.map_or("n/a".into(), fmt_time));
            }
            println!();
        }
        self.targets(rows);
    }

    fn targets(&self, rows: &[Row]) {
        let secs = |key: &str, col: usize| self.cells(rows, key)[col].map(|d| d.as_secs_f64());
        println!("\ntargets of issue 14 (through #[disk_cache]; ratios within this run):");
        let report = |name: &str, value: Option<f64>, ok: fn(f64) -> bool| match value {
            Some(v) => println!(
                "  [{}] {name}: {v:.2}",
                if ok(v) { "met   " } else { "missed" }
            ),
            None => println!("  [n/a   ] {name}: not measured in this run"),
        };
        let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
        report(
            "100 MB bytes hit, joblib / ours (>= 1.5)",
            ratio(secs("100 MB Vec<u8> hit", 2), secs("100 MB Vec<u8> hit", 0)),
            |r| r >= 1.5,
        );
        report(
            "10^6 f64 hit, ours / joblib (<= 1.0)",
            ratio(secs("Vec<f64> 10^6 hit", 0), secs("Vec<f64> 10^6 hit", 2)),
            |r| r <= 1.0,
        );
        report(
            "10^8 f64 hit, ours / joblib (<= 1.0)",
            ratio(secs("Vec<f64> 10^8 hit", 0), secs("Vec<f64> 10^8 hit", 2)),
            |r| r <= 1.0,
        );
        report(
            "small miss + store, diskcache memoize / ours (>= 5)",
            ratio(secs("small miss + store", 3), secs("small miss + store", 0)),
            |r| r >= 5.0,
        );
        report(
            "small warm hit, ours / cached redb (<= 1.0)",
            ratio(secs("small hit", 0), secs("small hit", 4)),
            |r| r <= 1.0,
        );
        report(
            "100 MB bytes store, joblib / ours (>= 2)",
            ratio(
                secs("100 MB Vec<u8> store", 2),
                secs("100 MB Vec<u8> store", 0),
            ),
            |r| r >= 2.0,
        );
    }
}

/// The medians of `reps` stores (each of a new seed, after one warm-up store) and `reps` hits
/// (of seed 0, after one warm-up hit). `call(seed, true)` prepares a store's miss outside the
/// clock; `call(seed, false)` is the timed call, and what it returns is dropped after the clock
/// stops.
fn stores_and_hits<T>(
    reps: usize,
    mut call: impl FnMut(u64, bool) -> Option<T>,
) -> (Duration, Duration) {
    // Only a store is prepared: a hit must not find a freshly made copy of the value beside it
    // (an extra allocation and a cache's worth of writes before every sample).
    let mut sample = |seed: u64, store: bool| {
        if store {
            call(seed, true);
        }
        let start = Instant::now();
        let out = black_box(call(seed, false));
        let took = start.elapsed();
        drop(out);
        took
    };
    sample(0, true);
    let store = median((1..=reps as u64).map(|seed| sample(seed, true)).collect());
    sample(0, false);
    let hit = median((0..reps).map(|_| sample(0, false)).collect());
    (store, hit)
}

/// The child of the fresh-process case: the first call of `own_small` in a new process, timed
/// from before the call (the cache opens inside it). Prints the nanoseconds and how many times
/// the body ran.
pub fn fresh_child(dir: &Path) {
    // SAFETY: no other thread runs yet.
    unsafe { std::env::set_var("MEMO_CACHE_DIR", dir) };
    let start = Instant::now();
    let got = own_small(1);
    let took = start.elapsed();
    assert_eq!(got, small(1));
    println!(
        "{} {}",
        took.as_nanos(),
        SMALL_COMPUTED.load(Ordering::Relaxed)
    );
}

fn run_python(plan: Plan, sections: &[&str], dir: &Path) -> Result<serde_json::Value, String> {
    let python = python_peers()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/peers.py");
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let out = Command::new(&python)
        .arg(&script)
        .arg(dir)
        .args(["--small-ops", &plan.small_ops.to_string()])
        .args(["--reps", &plan.large_reps.to_string()])
        .args(["--huge-reps", &plan.huge_reps.min(3).to_string()])
        .args(["--processes", &plan.processes.to_string()])
        .args(["--sections", &sections.join(",")])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("")).map_err(|e| e.to_string())
}
