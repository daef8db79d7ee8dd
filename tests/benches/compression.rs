//! What zstd compression of stored values buys and costs: bytes on disk, store time and hit time
//! at levels 0 (off), 1, 3 and 9, for log-like text, JSON-like structs and `f64` arrays of three
//! kinds, and, for the threshold, JSON-like values from 1 KiB to 64 KiB.
//!
//! ```text
//! cargo bench -p memo-cache-e2e --bench compression              # a few minutes
//! cargo bench -p memo-cache-e2e --bench compression -- --quick   # fewer repetitions
//! ```
//!
//! Every figure goes through the public API: `Cache::put` of a new key (encode, compress, hash,
//! write, index row), and `Cache::get` of one stored key (lookup, read, hash check,
//! decompress, decode), warm in the page cache. Each level is forced per function
//! (`Function::with_compression`), which is what `#[disk_cache(compress = N)]` does, so number
//! arrays are compressed too. Figures are medians; results go in BENCHMARKS.md
//! ("Compression").

use std::hint::black_box;
use std::time::Instant;

use memo_cache::{Cache, Function};
use memo_cache_bench::median_secs;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const LEVELS: [i32; 4] = [0, 1, 3, 9];

/// Deterministic pseudo-random numbers: xorshift64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// About `len` bytes of service log: timestamps, levels, request paths, ids, timings.
fn log_text(len: usize) -> String {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"];
    let paths = [
        "/api/v1/items",
        "/api/v1/orders",
        "/api/v1/users",
        "/health",
        "/api/v2/search",
    ];
    let users = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"];
    let mut out = String::with_capacity(len + 200);
    let mut ms = 1_700_000_000_000u64;
    while out.len() < len {
        ms += rng.below(50);
        let status = [200, 200, 200, 201, 304, 404, 500][rng.below(7) as usize];
        out.push_str(&format!(
            "{}.{:03} {:5} worker-{} request id={:016x} path={}/{} status={} took={:.1}ms user={}\n",
            ms / 1000,
            ms % 1000,
            rng.pick(&levels),
            rng.below(8),
            rng.next(),
            rng.pick(&paths),
            rng.below(100_000),
            status,
            rng.unit() * 250.0,
            rng.pick(&users),
        ));
    }
    out
}

#[derive(Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: String,
    email: String,
    status: String,
    created: String,
    total: f64,
    items: Vec<Item>,
}

#[derive(Serialize, Deserialize)]
struct Item {
    sku: String,
    quantity: u32,
    price: f64,
}

/// JSON-like records (strings, numbers, nested lists) encoding to about `len` bytes.
fn orders(len: usize) -> Vec<Order> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let names = [
        "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Leslie",
    ];
    let statuses = ["pending", "paid", "shipped", "delivered", "refunded"];
    let mut out = Vec::new();
    let mut size = 0;
    while size < len {
        let name = rng.pick(&names);
        let items: Vec<Item> = (0..1 + rng.below(4))
            .map(|_| Item {
                sku: format!("SKU-{:06}", rng.below(1_000_000)),
                quantity: 1 + rng.below(5) as u32,
                price: (rng.below(100_000) as f64) / 100.0,
            })
            .collect();
        let order = Order {
            id: 1_000_000 + out.len() as u64,
            customer: format!("{name} {}", rng.below(10_000)),
            email: format!("{}{}@example.com", name.to_lowercase(), rng.below(10_000)),
            status: rng.pick(&statuses).to_owned(),
            created: format!(
                "2024-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                1 + rng.below(12),
                1 + rng.below(28),
                rng.below(24),
                rng.below(60),
                rng.below(60)
            ),
            total: items.iter().map(|i| i.price * f64::from(i.quantity)).sum(),
            items,
        };
        size += memo_cache::codec::encode(&order).unwrap().len();
        out.push(order);
    }
    out
}

/// A random walk: what a simulation or a price series gives; full-precision mantissas.
fn random_walk(n: usize) -> Vec<f64> {
    let mut rng = Rng(0xd1b5_4a32_d192_ed03);
    let mut x = 100.0;
    (0..n)
        .map(|_| {
            x += (rng.unit() - 0.5) * 0.2;
            x
        })
        .collect()
}

/// A smooth signal: neighbours close, mantissas still full.
fn smooth(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let t = i as f64 * 1e-4;
            (t * 3.0).sin() * 50.0 + (t * 0.7).cos() * 20.0
        })
        .collect()
}

/// Counts held as floats (a histogram, a label column): few distinct values.
fn counts(n: usize) -> Vec<f64> {
    let mut rng = Rng(0x94d0_49bb_1331_11eb);
    (0..n).map(|_| rng.below(16) as f64).collect()
}

/// Seconds `f` takes; what it returns is dropped after the clock stops.
fn seconds<R>(f: impl FnOnce() -> R) -> f64 {
    let start = Instant::now();
    let out = black_box(f());
    let secs = start.elapsed().as_secs_f64();
    drop(out);
    secs
}

struct Row {
    stored: u64,
    encoded: u64,
    store: f64,
    hit: f64,
}

/// Stores `value` `stores` times under new keys and reads it back `hits` times, at `level`, in
/// a fresh cache under `root`.
fn measure<T>(
    root: &std::path::Path,
    name: &str,
    level: i32,
    value: &T,
    stores: usize,
    hits: usize,
) -> Row
where
    T: Serialize + DeserializeOwned + std::any::Any,
{
    let dir = root.join(format!("{name}-{level}"));
    let cache = Cache::builder(&dir).no_remote().open().unwrap();
    let func = Function::owned(format!("bench::{name}"), "v1", "T").with_compression(level);
    let mut store = Vec::new();
    for i in 0..stores {
        let start = Instant::now();
        cache.put(&func, &(i,), value).unwrap();
        store.push(start.elapsed().as_secs_f64());
    }
    // One read first, off the clock: the index's connection and the page cache are warm after.
    drop(black_box(cache.get::<_, T>(&func, &(0,)).unwrap().unwrap()));
    let mut hit = Vec::new();
    for _ in 0..hits {
        let start = Instant::now();
        let got = black_box(cache.get::<_, T>(&func, &(0,)).unwrap());
        hit.push(start.elapsed().as_secs_f64());
        assert!(got.is_some());
        drop(got);
    }
    let entry = cache
        .entries(None)
        .unwrap()
        .into_iter()
        .find(|e| e.key == func.key(&(0usize,)).unwrap())
        .unwrap();
    assert_eq!(entry.compressed, entry.bytes < encoded_len(value));
    Row {
        stored: entry.bytes,
        encoded: encoded_len(value),
        store: median_secs(store),
        hit: median_secs(hit),
    }
}

fn encoded_len<T: Serialize + std::any::Any>(value: &T) -> u64 {
    memo_cache::codec::encode(value).unwrap().len() as u64
}

fn time(secs: f64) -> String {
    if secs >= 1e-3 {
        format!("{:.2} ms", secs * 1e3)
    } else {
        format!("{:.1} µs", secs * 1e6)
    }
}

fn bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.2} MiB", n as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

fn print_header() {
    println!("| value | level | stored | of encoded | store | hit |");
    println!("|---|---|---|---|---|---|");
}

fn print_row(name: &str, level: i32, row: &Row) {
    println!(
        "| {name} | {} | {} | {:.1}% | {} | {} |",
        if level == 0 {
            "off".to_owned()
        } else {
            level.to_string()
        },
        bytes(row.stored),
        100.0 * row.stored as f64 / row.encoded as f64,
        time(row.store),
        time(row.hit),
    );
}

fn run<T>(root: &std::path::Path, name: &str, value: &T, stores: usize, hits: usize)
where
    T: Serialize + DeserializeOwned + std::any::Any,
{
    for level in LEVELS {
        let row = measure(root, name, level, value, stores, hits);
        print_row(name, level, &row);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick =
        args.iter().any(|a| a == "--quick") || std::env::var_os("MEMO_BENCH_QUICK").is_some();
    let (stores, hits) = if quick { (3, 10) } else { (7, 41) };
    let root = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    println!(
        "compression, {} cores, {stores} stores and {hits} hits per figure (medians)",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    print_header();
    run(root.path(), "text 1 MB", &log_text(1 << 20), stores, hits);
    run(root.path(), "structs 1 MB", &orders(1 << 20), stores, hits);
    let n = 1_000_000;
    run(root.path(), "f64 walk 1M", &random_walk(n), stores, hits);
    run(root.path(), "f64 smooth 1M", &smooth(n), stores, hits);
    run(root.path(), "f64 counts 1M", &counts(n), stores, hits);
    println!();
    println!("below the threshold: zstd alone on the encoding of JSON-like structs");
    println!("| encoded | level | compressed | compress | decompress |");
    println!("|---|---|---|---|---|");
    for size in [512, 1 << 10, 2 << 10, 4 << 10] {
        let encoded = memo_cache::codec::encode(&orders(size)).unwrap();
        for level in [1, 3] {
            let frame = zstd::bulk::compress(&encoded, level).unwrap();
            let reps = hits * 20;
            let compress = median_secs(
                (0..reps)
                    .map(|_| seconds(|| zstd::bulk::compress(&encoded, level).unwrap()))
                    .collect(),
            );
            let mut decompressor = zstd::bulk::Decompressor::new().unwrap();
            let decompress = median_secs(
                (0..reps)
                    .map(|_| seconds(|| decompressor.decompress(&frame, encoded.len()).unwrap()))
                    .collect(),
            );
            println!(
                "| {} | {level} | {} ({:.0}%) | {} | {} |",
                bytes(encoded.len() as u64),
                bytes(frame.len() as u64 + 1),
                100.0 * (frame.len() + 1) as f64 / encoded.len() as f64,
                time(compress),
                time(decompress),
            );
        }
    }
    println!();
    println!("from the threshold on: JSON-like structs by size");
    print_header();
    for size in [1 << 10, 2 << 10, 4 << 10, 8 << 10, 16 << 10, 64 << 10] {
        let value = orders(size);
        let name = format!("structs {} KiB", size >> 10);
        for level in [0, 1, 3] {
            let row = measure(root.path(), &name, level, &value, stores * 3, hits * 5);
            print_row(&name, level, &row);
        }
    }
}
