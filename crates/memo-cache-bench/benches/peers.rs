//! memo-cache against its Rust peers on identical work, in one run, with the machine's floors.
//!
//! ```text
//! cargo bench -p memo-cache-bench --bench peers              # full run (a few minutes)
//! cargo bench -p memo-cache-bench --bench peers -- --quick   # short run (or MEMO_BENCH_QUICK=1)
//! cargo bench -p memo-cache-bench --bench peers -- --only small,fresh
//! ```
//!
//! Sections for `--only`: small, own, bytes, floats, huge, structs, fresh, shared, python.
//!
//! Every memo-cache case of the users' table is also measured through `#[disk_cache]`, and the
//! `python` section runs joblib.Memory and diskcache's memoize on the same work (see
//! `peers/versus.rs`; the table is printed last, with the targets of issue 14). `huge` (10^8
//! `f64`, 800 MB, through memo-cache and the Python peers) is in full runs only, or `--huge`.
//!
//! Peers: the `cached` crate's disk store (`RedbCache`) with its default durability (an fsync
//! per write) and with `durable(false)`, and `cacache` (sync API). Floors, measured by this same
//! binary: a prepared SQLite point select and insert, a plain file read and write of the same
//! size, a blake3 pass, an 8 MB read-and-copy into a `Vec<f64>`.
//!
//! Every figure is the median of its samples. The fresh-process and shared-cache cases re-run
//! this binary (`--child ...`), so they measure real processes.

// In a folder of its own: a file beside this one would be taken for a bench target.
#[path = "peers/versus.rs"]
mod versus;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cached::{ConcurrentCached, RedbCache};
use memo_cache::{Cache, Function};
use memo_cache_bench::{Small, median, noise, small};
use serde::{Deserialize, Serialize};

// ---- Work ------------------------------------------------------------------------------------

#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Point {
    id: u32,
    x: f64,
    y: f64,
    label: String,
}

fn points() -> Vec<Point> {
    (0..100_000u32)
        .map(|i| Point {
            id: i,
            x: i as f64 * 0.5,
            y: -(i as f64),
            label: format!("p{i}"),
        })
        .collect()
}

fn floats() -> Vec<f64> {
    (0..1_000_000).map(|i| i as f64 * 0.001 - 7.0).collect()
}

static SMALL: Function = Function::new("bench::small", "v1", "Small");
static BYTES: Function = Function::new("bench::bytes", "v1", "Vec<u8>");
static FLOATS: Function = Function::new("bench::floats", "v1", "Vec<f64>");
static POINTS: Function = Function::new("bench::points", "v1", "Vec<Point>");

/// Entries stored before the small-hit loops, which cycle over them.
const PRELOADED: u64 = 1000;

/// The "own writes, then hits" case: a process stores this many small values, then hits them
/// [`OWN_HITS`] times, as a batch job that reuses its own results does.
const OWN_KEYS: u64 = 64;
const OWN_HITS: u64 = 200_000;
/// Hits timed together in that case (one `Instant` pair per batch, not per hit).
const OWN_BATCH: u64 = 64;
/// The hits of that case timed as "early": those begun this soon after the last store.
const OWN_EARLY: Duration = Duration::from_millis(5);

/// The small function through `#[disk_cache]`, as users call it (the directory comes from
/// `MEMO_CACHE_DIR`, set by the child before its first call).
#[memo_cache::disk_cache(name = "bench::own_small")]
fn own_small(i: u64) -> Small {
    SMALL_COMPUTED.fetch_add(1, Ordering::Relaxed);
    small(i)
}

/// How many times `own_small`'s body ran in this process (so a case can check it hit).
static SMALL_COMPUTED: AtomicU64 = AtomicU64::new(0);

// ---- The stores, behind one face ---------------------------------------------------------------

/// One cache implementation, opened on a directory.
enum Store {
    Memo(Cache),
    Redb {
        small: RedbCache<String, Small>,
        bytes: RedbCache<String, Vec<u8>>,
        floats: RedbCache<String, Vec<f64>>,
        points: RedbCache<String, Vec<Point>>,
    },
    RedbSmall(RedbCache<String, Small>),
    Cacache(PathBuf),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Memo,
    RedbDurable,
    RedbFast,
    Cacache,
}

const KINDS: [Kind; 4] = [Kind::Memo, Kind::RedbDurable, Kind::RedbFast, Kind::Cacache];

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Memo => "memo-cache",
            Kind::RedbDurable => "cached redb",
            Kind::RedbFast => "redb no-sync",
            Kind::Cacache => "cacache",
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Kind::Memo => "memo",
            Kind::RedbDurable => "redb",
            Kind::RedbFast => "redb-fast",
            Kind::Cacache => "cacache",
        }
    }

    fn from_arg(s: &str) -> Kind {
        KINDS
            .into_iter()
            .find(|k| k.arg() == s)
            .expect("known kind")
    }
}

fn redb<V: Serialize + serde::de::DeserializeOwned>(
    dir: &Path,
    name: &str,
    durable: bool,
) -> Result<RedbCache<String, V>, String> {
    RedbCache::builder(name)
        .disk_dir(dir)
        .durable(durable)
        .build()
        .map_err(|e| e.to_string())
}

impl Store {
    fn open(kind: Kind, dir: &Path) -> Result<Store, String> {
        Ok(match kind {
            Kind::Memo => Store::Memo(
                Cache::builder(dir)
                    .no_remote()
                    .open()
                    .map_err(|e| e.to_string())?,
            ),
            Kind::RedbDurable | Kind::RedbFast => {
                let durable = kind == Kind::RedbDurable;
                Store::Redb {
                    small: redb(dir, "small", durable)?,
                    bytes: redb(dir, "bytes", durable)?,
                    floats: redb(dir, "floats", durable)?,
                    points: redb(dir, "points", durable)?,
                }
            }
            Kind::Cacache => Store::Cacache(dir.to_path_buf()),
        })
    }

    /// Opens only what a one-hit process needs: redb keeps one file per value type, and the
    /// others would be opened (and committed to) for nothing.
    fn open_small(kind: Kind, dir: &Path) -> Result<Store, String> {
        match kind {
            Kind::RedbDurable | Kind::RedbFast => Ok(Store::RedbSmall(redb(
                dir,
                "small",
                kind == Kind::RedbDurable,
            )?)),
            _ => Store::open(kind, dir),
        }
    }

    fn get_small(&self, i: u64) -> Option<Small> {
        match self {
            Store::Memo(c) => c.get(&SMALL, &(i,)).unwrap(),
            Store::Redb { small, .. } | Store::RedbSmall(small) => {
                small.cache_get(&format!("small-{i}")).unwrap()
            }
            Store::Cacache(dir) => {
                cacache_get(dir, &format!("small-{i}")).map(|b| rmp_serde::from_slice(&b).unwrap())
            }
        }
    }

    fn put_small(&self, i: u64, v: &Small) {
        match self {
            Store::Memo(c) => c.put(&SMALL, &(i,), v).unwrap(),
            Store::Redb { small, .. } | Store::RedbSmall(small) => {
                small.cache_set(format!("small-{i}"), v.clone()).unwrap();
            }
            Store::Cacache(dir) => {
                cacache::write_sync(dir, format!("small-{i}"), rmp_serde::to_vec(v).unwrap())
                    .unwrap();
            }
        }
    }

    fn get_bytes(&self, i: u64) -> Option<Vec<u8>> {
        match self {
            Store::Memo(c) => c.get(&BYTES, &(i,)).unwrap(),
            Store::RedbSmall(_) => unreachable!("opened for small values only"),
            Store::Redb { bytes, .. } => bytes.cache_get(&format!("bytes-{i}")).unwrap(),
            Store::Cacache(dir) => cacache_get(dir, &format!("bytes-{i}")),
        }
    }

    fn put_bytes(&self, i: u64, v: &Vec<u8>) {
        match self {
            Store::Memo(c) => c.put(&BYTES, &(i,), v).unwrap(),
            // cached's API takes the value by value: the clone is what a caller pays too.
            Store::RedbSmall(_) => unreachable!("opened for small values only"),
            Store::Redb { bytes, .. } => {
                bytes.cache_set(format!("bytes-{i}"), v.clone()).unwrap();
            }
            Store::Cacache(dir) => {
                cacache::write_sync(dir, format!("bytes-{i}"), v).unwrap();
            }
        }
    }

    fn get_floats(&self) -> Option<Vec<f64>> {
        match self {
            Store::Memo(c) => c.get(&FLOATS, &(0u64,)).unwrap(),
            Store::RedbSmall(_) => unreachable!("opened for small values only"),
            Store::Redb { floats, .. } => floats.cache_get(&"floats".to_string()).unwrap(),
            Store::Cacache(dir) => {
                cacache_get(dir, "floats").map(|b| rmp_serde::from_slice(&b).unwrap())
            }
        }
    }

    fn put_floats(&self, v: &Vec<f64>) {
        match self {
            Store::Memo(c) => c.put(&FLOATS, &(0u64,), v).unwrap(),
            Store::RedbSmall(_) => unreachable!("opened for small values only"),
            Store::Redb { floats, .. } => {
                floats.cache_set("floats".to_string(), v.clone()).unwrap();
            }
            Store::Cacache(dir) => {
                cacache::write_sync(dir, "floats", rmp_serde::to_vec(v).unwrap()).unwrap();
            }
        }
    }

    fn get_points(&self) -> Option<Vec<Point>> {
        match self {
            Store::Memo(c) => c.get(&POINTS, &(0u64,)).unwrap(),
            Store::RedbSmall(_) => unreachable!("opened for small values only"),
            Store::Redb { points, .. } => points.cache_get(&"points".to_string()).unwrap(),
            Store::Cacache(dir) => {
                cacache_get(dir, "points").map(|b| rmp_serde::from_slice(&b).unwrap())
            }
        }
    }

    fn put_points(&self, v: &Vec<Point>) {
        match self {
            Store::Memo(c) => c.put(&POINTS, &(0u64,), v).unwrap(),
            Store::RedbSmall(_) => unreachable!("opened for small values only"),
            Store::Redb { points, .. } => {
                points.cache_set("points".to_string(), v.clone()).unwrap();
            }
            Store::Cacache(dir) => {
                cacache::write_sync(dir, "points", rmp_serde::to_vec(v).unwrap()).unwrap();
            }
        }
    }
}

fn cacache_get(dir: &Path, key: &str) -> Option<Vec<u8>> {
    match cacache::read_sync(dir, key) {
        Ok(b) => Some(b),
        Err(cacache::Error::EntryNotFound(..)) => None,
        Err(e) => panic!("cacache: {e}"),
    }
}

// ---- Measuring -------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Plan {
    small_ops: usize,
    large_reps: usize,
    huge_reps: usize,
    processes: usize,
    shared_ops: u64,
    own_runs: usize,
}

const FULL: Plan = Plan {
    small_ops: 5000,
    large_reps: 9,
    huge_reps: 5,
    processes: 21,
    shared_ops: 2000,
    own_runs: 12,
};
const QUICK: Plan = Plan {
    small_ops: 500,
    large_reps: 3,
    huge_reps: 2,
    processes: 5,
    shared_ops: 300,
    own_runs: 4,
};

/// The median time of `f`, run `reps` times (after one warm-up run).
fn time(reps: usize, mut f: impl FnMut(usize)) -> Duration {
    f(usize::MAX);
    median(
        (0..reps)
            .map(|i| {
                let start = Instant::now();
                f(i);
                start.elapsed()
            })
            .collect(),
    )
}

#[derive(Clone)]
enum Cell {
    Time(Duration),
    Missing(String),
}

impl Cell {
    fn time(&self) -> Option<Duration> {
        match self {
            Cell::Time(t) => Some(*t),
            Cell::Missing(_) => None,
        }
    }
}

struct Row {
    case: String,
    cells: Vec<Cell>,
    floor: Option<(String, Duration)>,
}

fn fmt_time(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 10_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1_000_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

// ---- Cases -----------------------------------------------------------------------------------

struct Bench {
    plan: Plan,
    root: tempfile::TempDir,
    rows: Vec<Row>,
    /// The slowest per-run median of memo-cache in the "own writes, then hits" case.
    own_slowest: Option<Duration>,
    /// The `#[disk_cache]` and Python figures of the users' table.
    versus: versus::Versus,
}

impl Bench {
    fn dir(&self, kind: Kind, case: &str) -> PathBuf {
        let dir = self.root.path().join(format!("{case}-{}", kind.arg()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn push(&mut self, case: &str, cells: Vec<Cell>, floor: Option<(&str, Duration)>) {
        let row = Row {
            case: case.into(),
            cells,
            floor: floor.map(|(n, d)| (n.to_string(), d)),
        };
        print_row(&row);
        self.rows.push(row);
    }

    fn small(&mut self) {
        let ops = self.plan.small_ops;
        let mut hits = Vec::new();
        let mut stores = Vec::new();
        for kind in KINDS {
            let store = Store::open(kind, &self.dir(kind, "small")).unwrap();
            for i in 0..PRELOADED {
                store.put_small(i, &small(i));
            }
            let mut n = 0u64;
            let mut hit = || {
                n = (n + 1) % PRELOADED;
                assert!(black_box(store.get_small(n)).is_some());
            };
            // Warm up for 20 ms, the same for every store: steady-state hits are measured
            // (memo-cache holds a read snapshot only once the database has been quiet 2 ms).
            let warm = Instant::now();
            while warm.elapsed() < Duration::from_millis(20) {
                hit();
            }
            hits.push(Cell::Time(time(ops, |_| hit())));
            let mut next = 1_000_000u64;
            let value = small(7);
            stores.push(Cell::Time(time(
                ops.min(if kind == Kind::RedbDurable { 200 } else { ops }),
                |_| {
                    next += 1;
                    if store.get_small(next).is_none() {
                        store.put_small(next, &value);
                    }
                },
            )));
        }
        let (select, insert, select_in_txn) = sqlite_floors(ops);
        self.push(
            "small hit",
            hits,
            Some(("SQLite prepared point select", select)),
        );
        // What a design that keeps one read snapshot across hits could reach: the per-query
        // read-lock syscalls on the -shm file are gone (see BENCHMARKS.md, Where the time goes).
        println!(
            "{:<50}   (the same select inside one held read transaction: {})",
            "",
            fmt_time(select_in_txn)
        );
        self.push(
            "small miss + store",
            stores,
            Some(("SQLite prepared insert (WAL, sync NORMAL)", insert)),
        );
        self.versus.small(self.plan);
    }

    fn large_bytes(&mut self, mb: usize, reps: usize) {
        let value = noise(mb * 1_000_000);
        let mut stores = Vec::new();
        let mut hits = Vec::new();
        for kind in KINDS {
            let store = Store::open(kind, &self.dir(kind, &format!("bytes{mb}"))).unwrap();
            stores.push(Cell::Time(time(reps, |_| store.put_bytes(0, &value))));
            hits.push(Cell::Time(time(reps, |_| {
                let got = store.get_bytes(0).unwrap();
                assert_eq!(got.len(), value.len());
                black_box(got);
            })));
            drop(store);
            let _ = std::fs::remove_dir_all(self.dir(kind, &format!("bytes{mb}")));
        }
        let path = self.root.path().join("floor.bin");
        let write = time(reps, |_| std::fs::write(&path, &value).unwrap());
        let read = time(reps, |_| {
            black_box(std::fs::read(&path).unwrap());
        });
        let _ = std::fs::remove_file(&path);
        self.push(
            &format!("{mb} MB Vec<u8> store"),
            stores,
            Some(("plain file write", write)),
        );
        self.push(
            &format!("{mb} MB Vec<u8> hit"),
            hits,
            Some(("plain file read", read)),
        );
        if mb == 100 {
            self.versus.large_bytes(&value, reps);
            let hash = time(reps, |_| {
                black_box(blake3::hash(&value));
            });
            self.push(
                "100 MB blake3 pass",
                vec![],
                Some(("blake3::hash, one thread", hash)),
            );
        }
    }

    fn floats(&mut self) {
        let value = floats();
        let reps = self.plan.large_reps;
        let mut stores = Vec::new();
        let mut hits = Vec::new();
        for kind in KINDS {
            let store = Store::open(kind, &self.dir(kind, "floats")).unwrap();
            stores.push(Cell::Time(time(reps, |_| store.put_floats(&value))));
            hits.push(Cell::Time(time(reps, |_| {
                let got = store.get_floats().unwrap();
                assert_eq!(got.len(), value.len());
                black_box(got);
            })));
        }
        let path = self.root.path().join("floats.bin");
        let raw: Vec<u8> = value.iter().flat_map(|f| f.to_le_bytes()).collect();
        std::fs::write(&path, &raw).unwrap();
        let write = time(reps, |_| std::fs::write(&path, &raw).unwrap());
        let read = time(reps, |_| {
            let b = std::fs::read(&path).unwrap();
            let mut out = vec![0f64; b.len() / 8];
            // The floor: the bytes copied once into a Vec<f64>.
            unsafe {
                std::ptr::copy_nonoverlapping(b.as_ptr(), out.as_mut_ptr().cast::<u8>(), b.len())
            };
            black_box(out);
        });
        self.push(
            "Vec<f64> 10^6 store",
            stores,
            Some(("plain 8 MB file write", write)),
        );
        self.push(
            "Vec<f64> 10^6 hit",
            hits,
            Some(("8 MB file read + memcpy into Vec<f64>", read)),
        );
        self.versus.large_floats(&value, reps);
    }

    fn structs(&mut self) {
        let value = points();
        let reps = self.plan.large_reps;
        let mut stores = Vec::new();
        let mut hits = Vec::new();
        for kind in KINDS {
            let store = Store::open(kind, &self.dir(kind, "points")).unwrap();
            stores.push(Cell::Time(time(reps, |_| store.put_points(&value))));
            hits.push(Cell::Time(time(reps, |_| {
                let got = store.get_points().unwrap();
                assert_eq!(got.len(), value.len());
                black_box(got);
            })));
        }
        self.push("10^5 structs store", stores, None);
        self.push("10^5 structs hit", hits, None);
    }

    /// A process that stores [`OWN_KEYS`] values and then hits them [`OWN_HITS`] times, each
    /// run a new process (whether a held snapshot engages after a process's own writes varied
    /// from process to process); the runs of each store alternate, so drift hits all alike.
    fn own_writes(&mut self) {
        // memo-cache through `Cache::get`, through `#[disk_cache]`, then the peers.
        let modes: Vec<(&str, &str)> = std::iter::once(("memo-cache Cache::get", "memo"))
            .chain(std::iter::once(("memo-cache #[disk_cache]", "memo-macro")))
            // cacache is left out: at tens of µs a hit, its runs would take minutes.
            .chain(KINDS[1..3].iter().map(|k| (k.label(), k.arg())))
            .collect();
        let runs = self.plan.own_runs;
        let mut all = vec![Vec::new(); modes.len()];
        let mut early = vec![Vec::new(); modes.len()];
        for run in 0..runs {
            for (m, (_, arg)) in modes.iter().enumerate() {
                let dir = self.root.path().join(format!("own-{arg}-{run}"));
                std::fs::create_dir_all(&dir).unwrap();
                let out = child(&["own", arg, dir.to_str().unwrap()])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let text = String::from_utf8_lossy(&out.stdout);
                let mut ns = text.split_whitespace().map(|w| w.parse::<u64>().unwrap());
                all[m].push(Duration::from_nanos(ns.next().unwrap()));
                early[m].push(Duration::from_nanos(ns.next().unwrap()));
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        let cells = |of: &[Vec<Duration>], pick: &[usize]| -> Vec<Cell> {
            pick.iter()
                .map(|&m| Cell::Time(median(of[m].clone())))
                .collect()
        };
        let peers: Vec<usize> = (2..modes.len()).collect();
        let get_cols: Vec<usize> = std::iter::once(0).chain(peers.iter().copied()).collect();
        let macro_cols: Vec<usize> = std::iter::once(1).chain(peers.iter().copied()).collect();
        let case = format!("{OWN_KEYS} stores, then {OWN_HITS} hits, one process");
        self.push(&format!("{case}: Cache::get"), cells(&all, &get_cols), None);
        self.push(
            &format!("{case}: #[disk_cache]"),
            cells(&all, &macro_cols),
            None,
        );
        self.push(
            &format!(
                "same, hits begun < {} ms after the last store: Cache::get",
                OWN_EARLY.as_millis()
            ),
            cells(&early, &get_cols),
            None,
        );
        self.push(
            &format!(
                "same, hits begun < {} ms after the last store: #[disk_cache]",
                OWN_EARLY.as_millis()
            ),
            cells(&early, &macro_cols),
            None,
        );
        println!(
            "{:<50}   per-run medians, {runs} runs (each a new process):",
            ""
        );
        for (m, (label, _)) in modes.iter().enumerate() {
            let runs: Vec<String> = all[m].iter().map(|d| fmt_time(*d)).collect();
            println!("{:<50}   {label:<22} {}", "", runs.join("  "));
        }
        self.own_slowest = modes
            .iter()
            .enumerate()
            .filter(|(_, (_, arg))| arg.starts_with("memo"))
            .filter_map(|(m, _)| all[m].iter().max().copied())
            .max();
    }

    fn fresh_process(&mut self) {
        let mut inside = Vec::new();
        let mut whole = Vec::new();
        for kind in KINDS {
            let dir = self.dir(kind, "fresh");
            {
                let store = Store::open(kind, &dir).unwrap();
                store.put_small(1, &small(1));
            }
            let mut ins = Vec::new();
            let mut wall = Vec::new();
            for _ in 0..self.plan.processes {
                let start = Instant::now();
                let out = child(&["fresh", kind.arg(), dir.to_str().unwrap()])
                    .output()
                    .unwrap();
                wall.push(start.elapsed());
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let ns: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
                ins.push(Duration::from_nanos(ns));
            }
            inside.push(Cell::Time(median(ins)));
            whole.push(Cell::Time(median(wall)));
        }
        let dir = self.root.path().join("fresh-sqlite");
        std::fs::create_dir_all(&dir).unwrap();
        sqlite_table(&dir.join("floor.sqlite3"));
        let mut ins = Vec::new();
        let mut wall = Vec::new();
        for _ in 0..self.plan.processes {
            let start = Instant::now();
            let out = child(&["fresh-sqlite", dir.join("floor.sqlite3").to_str().unwrap()])
                .output()
                .unwrap();
            wall.push(start.elapsed());
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            ins.push(Duration::from_nanos(
                String::from_utf8_lossy(&out.stdout).trim().parse().unwrap(),
            ));
        }
        self.push(
            "fresh process: open + 1 hit (inside)",
            inside,
            Some(("SQLite open + point select", median(ins))),
        );
        self.push(
            "fresh process: spawn to exit",
            whole,
            Some(("same, SQLite", median(wall))),
        );
        let dir = self.root.path().join("fresh-macro");
        self.versus.fresh(self.plan, &dir);
    }

    fn shared(&mut self) {
        let ops = self.plan.shared_ops;
        let mut cells = Vec::new();
        for kind in KINDS {
            let dir = self.dir(kind, "shared");
            {
                let store = Store::open(kind, &dir).unwrap();
                for i in 0..PRELOADED {
                    store.put_small(i, &small(i));
                }
            }
            let start = Instant::now();
            let children: Vec<_> = (0..4)
                .map(|w| {
                    child(&[
                        "shared",
                        kind.arg(),
                        dir.to_str().unwrap(),
                        &w.to_string(),
                        &ops.to_string(),
                    ])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
                })
                .collect();
            let outs: Vec<_> = children
                .into_iter()
                .map(|c| c.wait_with_output().unwrap())
                .collect();
            let wall = start.elapsed();
            match outs.iter().find(|o| !o.status.success()) {
                None => cells.push(Cell::Time(wall)),
                Some(o) => {
                    let why = String::from_utf8_lossy(&o.stdout).trim().to_string();
                    cells.push(Cell::Missing(if why.is_empty() {
                        "failed".into()
                    } else {
                        why
                    }));
                }
            }
        }
        self.push(
            &format!("4 processes × {ops} ops (9 hits : 1 store), wall"),
            cells,
            None,
        );
    }
}

fn child(args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg("--child").args(args);
    cmd
}

// ---- SQLite floors ---------------------------------------------------------------------------

fn sqlite_table(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE IF NOT EXISTS t (key BLOB PRIMARY KEY, value BLOB) WITHOUT ROWID;",
    )
    .unwrap();
    {
        let mut ins = conn
            .prepare("INSERT OR REPLACE INTO t VALUES (?1, ?2)")
            .unwrap();
        for i in 0..PRELOADED {
            ins.execute(rusqlite::params![
                floor_key(i),
                rmp_serde::to_vec(&small(i)).unwrap()
            ])
            .unwrap();
        }
    }
    conn
}

fn floor_key(i: u64) -> [u8; 32] {
    *blake3::hash(&i.to_le_bytes()).as_bytes()
}

fn sqlite_floors(ops: usize) -> (Duration, Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let conn = sqlite_table(&dir.path().join("floor.sqlite3"));
    let mut select = conn.prepare("SELECT value FROM t WHERE key = ?1").unwrap();
    let mut n = 0;
    let select_time = time(ops, |_| {
        n = (n + 1) % PRELOADED;
        let v: Vec<u8> = select.query_row([&floor_key(n)[..]], |r| r.get(0)).unwrap();
        black_box(v);
    });
    conn.execute_batch("BEGIN").unwrap();
    let select_in_txn = time(ops, |_| {
        n = (n + 1) % PRELOADED;
        let v: Vec<u8> = select.query_row([&floor_key(n)[..]], |r| r.get(0)).unwrap();
        black_box(v);
    });
    conn.execute_batch("COMMIT").unwrap();
    let mut insert = conn.prepare("INSERT INTO t VALUES (?1, ?2)").unwrap();
    let value = rmp_serde::to_vec(&small(7)).unwrap();
    let mut next = 1_000_000;
    let insert_time = time(ops, |_| {
        next += 1;
        insert
            .execute(rusqlite::params![floor_key(next), value])
            .unwrap();
    });
    (select_time, insert_time, select_in_txn)
}

// ---- Children --------------------------------------------------------------------------------

fn run_child(args: &[String]) {
    match args[0].as_str() {
        "fresh" => {
            let start = Instant::now();
            let store = Store::open_small(Kind::from_arg(&args[1]), Path::new(&args[2])).unwrap();
            let got = store.get_small(1);
            let took = start.elapsed();
            assert_eq!(got, Some(small(1)));
            println!("{}", took.as_nanos());
            // Drop (memo-cache flushes its hit count) happens outside the measured part, as it
            // would at the end of a job.
        }
        "fresh-sqlite" => {
            let start = Instant::now();
            let conn = rusqlite::Connection::open(&args[1]).unwrap();
            let v: Vec<u8> = conn
                .prepare("SELECT value FROM t WHERE key = ?1")
                .unwrap()
                .query_row([&floor_key(1)[..]], |r| r.get(0))
                .unwrap();
            let took = start.elapsed();
            black_box(v);
            println!("{}", took.as_nanos());
        }
        "own" => own_child(&args[1], Path::new(&args[2])),
        "fresh-macro" => versus::fresh_child(Path::new(&args[1])),
        "shared" => {
            let kind = Kind::from_arg(&args[1]);
            let worker: u64 = args[3].parse().unwrap();
            let ops: u64 = args[4].parse().unwrap();
            let store = match Store::open_small(kind, Path::new(&args[2])) {
                Ok(s) => s,
                Err(e) => {
                    println!("cannot share: {}", e.chars().take(60).collect::<String>());
                    std::process::exit(3);
                }
            };
            for j in 0..ops {
                if j % 10 == 9 {
                    store.put_small(10_000_000 * (worker + 1) + j, &small(j));
                } else {
                    assert!(store.get_small((j * 7 + worker) % PRELOADED).is_some());
                }
            }
        }
        // For profilers (`valgrind --tool=callgrind`): `--child profile <case> <kind> <dir> <n>`
        // prepares <dir> on the first run and then does <n> of <case>, nothing else.
        "profile" => {
            let kind = Kind::from_arg(&args[2]);
            let store = Store::open(kind, Path::new(&args[3])).unwrap();
            let n: u64 = args[4].parse().unwrap();
            match args[1].as_str() {
                "hit" => {
                    if store.get_small(0).is_none() {
                        (0..PRELOADED).for_each(|i| store.put_small(i, &small(i)));
                    }
                    (0..n)
                        .for_each(|i| assert!(black_box(store.get_small(i % PRELOADED)).is_some()));
                }
                "store" => {
                    let base = std::process::id() as u64 * 1_000_000;
                    (0..n).for_each(|i| store.put_small(base + i, &small(i)));
                }
                // The "small miss + store" row: a lookup that misses, then the store.
                "miss-store" => {
                    let base = std::process::id() as u64 * 1_000_000;
                    for i in 0..n {
                        assert!(store.get_small(base + i).is_none());
                        store.put_small(base + i, &small(i));
                    }
                }
                // The same row through `#[disk_cache]` (the directory is <dir>: set
                // MEMO_CACHE_DIR to it): lookup, compute lock, call, store.
                "attr-miss-store" => {
                    let base = std::process::id() as u64 * 1_000_000;
                    (0..n).for_each(|i| drop(black_box(own_small(base + i))));
                    assert_eq!(SMALL_COMPUTED.load(Ordering::Relaxed), n);
                }
                // Warm hits through `#[disk_cache]` over PRELOADED keys (MEMO_CACHE_DIR=<dir>),
                // the keys stored on the first run.
                "attr-hit" => {
                    (0..PRELOADED).for_each(|i| drop(black_box(own_small(i))));
                    let before = SMALL_COMPUTED.load(Ordering::Relaxed);
                    (0..n).for_each(|i| drop(black_box(own_small(i % PRELOADED))));
                    assert_eq!(SMALL_COMPUTED.load(Ordering::Relaxed), before);
                }
                "bytes-hit" | "floats-hit" => {
                    let floats_case = args[1] == "floats-hit";
                    if floats_case && store.get_floats().is_none() {
                        store.put_floats(&floats());
                    } else if !floats_case && store.get_bytes(0).is_none() {
                        store.put_bytes(0, &noise(100_000_000));
                    }
                    for _ in 0..n {
                        if floats_case {
                            black_box(store.get_floats().unwrap());
                        } else {
                            black_box(store.get_bytes(0).unwrap());
                        }
                    }
                }
                other => panic!("unknown profile case {other}"),
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

/// One run of the "own writes, then hits" case: prints the median per-hit time of all the
/// hits, and of those begun within [`OWN_EARLY`] of the last store, in nanoseconds.
fn own_child(mode: &str, dir: &Path) {
    // SAFETY: no other thread runs yet.
    unsafe { std::env::set_var("MEMO_CACHE_DIR", dir) };
    let store =
        (mode != "memo-macro").then(|| Store::open_small(Kind::from_arg(mode), dir).unwrap());
    let hit = |i: u64| match &store {
        Some(store) => black_box(store.get_small(i)).unwrap(),
        None => black_box(own_small(black_box(i))),
    };
    for i in 0..OWN_KEYS {
        match &store {
            Some(store) => store.put_small(i, &small(i)),
            None => {
                black_box(own_small(i));
            }
        }
    }
    let last_write = Instant::now();
    let mut all = Vec::new();
    let mut early = Vec::new();
    for b in 0..OWN_HITS / OWN_BATCH {
        let start = Instant::now();
        for i in 0..OWN_BATCH {
            hit((b * OWN_BATCH + i) % OWN_KEYS);
        }
        let per_hit = start.elapsed() / OWN_BATCH as u32;
        if start.duration_since(last_write) < OWN_EARLY {
            early.push(per_hit);
        }
        all.push(per_hit);
    }
    let early = if early.is_empty() {
        Duration::ZERO
    } else {
        median(early)
    };
    println!("{} {}", median(all).as_nanos(), early.as_nanos());
}

// ---- Output ----------------------------------------------------------------------------------

fn print_header() {
    print!("{:<50}", "case");
    for kind in KINDS {
        print!(" | {:>12}", kind.label());
    }
    println!(" | {:>9} | {:>9} | floor", "x peer", "x floor");
    println!("{}", "-".repeat(50 + 15 * KINDS.len() + 50));
}

fn print_row(row: &Row) {
    print!("{:<50}", row.case);
    for cell in &row.cells {
        match cell {
            Cell::Time(t) => print!(" | {:>12}", fmt_time(*t)),
            Cell::Missing(_) => print!(" | {:>12}", "n/a"),
        }
    }
    for _ in row.cells.len()..KINDS.len() {
        print!(" | {:>12}", "");
    }
    let memo = row.cells.first().and_then(Cell::time);
    let best_peer = row.cells.iter().skip(1).filter_map(Cell::time).min();
    match (memo, best_peer) {
        (Some(m), Some(p)) => print!(" | {:>8.2}x", p.as_secs_f64() / m.as_secs_f64()),
        _ => print!(" | {:>9}", ""),
    }
    match (&row.floor, memo) {
        (Some((_, f)), Some(m)) => print!(" | {:>8.2}x", m.as_secs_f64() / f.as_secs_f64()),
        _ => print!(" | {:>9}", ""),
    }
    if let Some((name, f)) = &row.floor {
        print!(" | {} {name}", fmt_time(*f));
    }
    println!();
    for cell in &row.cells {
        if let Cell::Missing(why) = cell {
            println!("{:<50}   ({why})", "");
        }
    }
}

fn check_targets(rows: &[Row], own_slowest: Option<Duration>) {
    let find = |case: &str| rows.iter().find(|r| r.case.starts_with(case));
    let cell = |case: &str, i: usize| find(case).and_then(|r| r.cells.get(i)).and_then(Cell::time);
    let floor = |case: &str| find(case).and_then(|r| r.floor.as_ref()).map(|f| f.1);
    let ratio = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => a.as_secs_f64() / b.as_secs_f64(),
        _ => f64::NAN,
    };
    let best_peer =
        |case: &str| find(case).and_then(|r| r.cells.iter().skip(1).filter_map(Cell::time).min());
    println!("\ntargets (ratios within this run):");
    let report = |name: &str, value: f64, ok: bool| {
        println!(
            "  [{}] {name}: {value:.2}",
            if ok { "met " } else { "MISS" }
        )
    };
    let r = ratio(cell("small hit", 0), cell("small hit", 1));
    report("small hit, memo-cache / cached redb (<= 1.0)", r, r <= 1.0);
    let r = ratio(cell("small miss", 1), cell("small miss", 0));
    report(
        "small store, cached redb (default durability) / memo-cache (>= 5)",
        r,
        r >= 5.0,
    );
    let r = ratio(
        best_peer("100 MB Vec<u8> hit"),
        cell("100 MB Vec<u8> hit", 0),
    );
    report("100 MB hit, best peer / memo-cache (>= 2)", r, r >= 2.0);
    let r = ratio(cell("100 MB Vec<u8> hit", 0), floor("100 MB Vec<u8> hit"));
    report(
        "100 MB hit, memo-cache / plain file read (<= 1.5)",
        r,
        r <= 1.5,
    );
    let r = ratio(cell("Vec<f64> 10^6 hit", 0), floor("Vec<f64> 10^6 hit"));
    report(
        "Vec<f64> hit, memo-cache / 8 MB read + memcpy (<= 2)",
        r,
        r <= 2.0,
    );
    let r = ratio(own_slowest, cell(&format!("{OWN_KEYS} stores, then"), 1));
    report(
        "own writes then hits, slowest memo-cache run / cached redb median (<= 1.0)",
        r,
        r <= 1.0,
    );
    let t = cell("fresh process: open", 0).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    report(
        "fresh process open + first hit, ms inside (< 0.2)",
        t,
        t < 0.2,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        run_child(&args[at + 1..]);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let quick = args.iter().any(|a| a == "--quick")
        || std::env::var_os("MEMO_BENCH_QUICK").is_some_and(|v| v != "0");
    let plan = if quick { QUICK } else { FULL };
    let root = tempfile::Builder::new()
        .prefix("memo-cache-peers-")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    println!(
        "memo-cache peers benchmark ({} run), medians; 'x peer' = best peer / memo-cache (higher is better), 'x floor' = memo-cache / floor",
        if quick { "quick" } else { "full" }
    );
    print_header();
    let mut bench = Bench {
        plan,
        root,
        rows: Vec::new(),
        own_slowest: None,
        versus: versus::Versus::default(),
    };
    // The attribute's functions find their directory here (each resolves it at its first call).
    // SAFETY: no other thread runs yet.
    unsafe { std::env::set_var("MEMO_CACHE_DIR", bench.root.path().join("attr")) };
    // `--only small,fresh` runs those sections alone (for profiling one change at a time).
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|at| args.get(at + 1))
        .map(|list| list.split(',').map(str::to_string).collect());
    let wanted = |section: &str| only.as_ref().is_none_or(|o| o.iter().any(|s| s == section));
    let huge = args.iter().any(|a| a == "--huge")
        || (!quick && wanted("huge"))
        || only.as_ref().is_some_and(|o| o.iter().any(|s| s == "huge"));
    if wanted("small") {
        bench.small();
    }
    if wanted("own") {
        bench.own_writes();
    }
    if wanted("bytes") {
        bench.large_bytes(10, plan.large_reps);
        bench.large_bytes(100, plan.huge_reps);
    }
    if wanted("floats") {
        bench.floats();
    }
    if wanted("structs") {
        bench.structs();
    }
    if wanted("fresh") {
        bench.fresh_process();
    }
    if wanted("shared") {
        bench.shared();
    }
    if huge {
        let dir = bench.root.path().join("huge-cache");
        bench.versus.huge(plan.huge_reps.min(3), &dir);
    }
    if wanted("python") {
        let sections: Vec<&str> = ["small", "fresh", "bytes", "floats"]
            .into_iter()
            .filter(|s| wanted(s))
            .chain(huge.then_some("huge"))
            .collect();
        let dir = bench.root.path().join("python");
        bench.versus.python(plan, &sections, &dir);
    }
    check_targets(&bench.rows, bench.own_slowest);
    bench.versus.report(&bench.rows);
}
