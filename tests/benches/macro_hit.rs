//! What a warm hit costs through `#[disk_cache]`, against the same hit through `Cache::get`, and
//! through a `memory = N` LRU; and what a miss and store costs through `#[disk_cache]` (which
//! also takes and drops the key's compute lease) against a plain `Cache::put`. `cargo bench -p memo-cache-e2e --bench macro_hit`; figures go in
//! BENCHMARKS.md ("#[disk_cache] overhead").
//!
//! Batches of calls are timed alternately (API, macro, API, macro, ..) so drift in the machine's
//! speed hits both sides alike; the median batch gives the per-call figure.

use std::hint::black_box;
use std::time::{Duration, Instant};

use memo_cache::{Cache, Function, disk_cache};
use memo_cache_bench::median_secs;

const KEYS: u64 = 64;
const BATCH: u64 = 250;
const BATCHES: usize = 201;

fn value(x: u64) -> String {
    format!("a small value for {x:>8}, about fifty bytes long")
}

#[disk_cache(name = "bench::disk")]
fn disk(x: u64) -> String {
    value(x)
}

#[disk_cache(name = "bench::miss")]
fn miss(x: u64) -> String {
    value(x)
}

#[disk_cache(name = "bench::memory", memory = 1000)]
fn memory(x: u64) -> String {
    value(x)
}

#[disk_cache(name = "bench::memory_u64", memory = 1000)]
fn memory_u64(x: u64) -> u64 {
    x * 3
}

const MISS_BATCH: u64 = 50;
const MISS_BATCHES: usize = 41;

/// Per-call nanoseconds of each batch of `f`.
fn batch(f: &mut impl FnMut(u64)) -> f64 {
    batch_of(f, BATCH)
}

/// Per-call nanoseconds of a batch of `n` calls of `f`.
fn batch_of(f: &mut impl FnMut(u64), n: u64) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        f(i % KEYS);
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// Medians of `fs`, timed in alternating batches.
fn compare(fs: &mut [&mut dyn FnMut(u64)]) -> Vec<f64> {
    let mut samples = vec![Vec::new(); fs.len()];
    for _ in 0..BATCHES {
        for (f, s) in fs.iter_mut().zip(&mut samples) {
            let mut f = |x| f(x);
            s.push(batch(&mut f));
        }
    }
    samples.into_iter().map(median_secs).collect()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    // SAFETY: single-threaded; set before any cached function runs.
    unsafe { std::env::set_var("MEMO_CACHE_DIR", dir.path()) };
    let cache = Cache::open(dir.path()).unwrap();
    let api_function = Function::new("bench::api", "v1", "alloc::string::String");

    for x in 0..KEYS {
        cache.put(&api_function, &(x,), &value(x)).unwrap();
        black_box(disk(x));
        black_box(memory(x));
        black_box(memory_u64(x));
    }
    // Let the batched hit statistics of the warm-up settle before timing.
    std::thread::sleep(Duration::from_millis(100));

    let mut api = |x: u64| {
        let v: Option<String> = cache.get(&api_function, &(x,)).unwrap();
        black_box(v.unwrap());
    };
    let mut macro_disk = |x: u64| {
        black_box(disk(black_box(x)));
    };
    let mut macro_memory = |x: u64| {
        black_box(memory(black_box(x)));
    };
    let mut macro_memory_u64 = |x: u64| {
        black_box(memory_u64(black_box(x)));
    };
    let medians = compare(&mut [
        &mut api,
        &mut macro_disk,
        &mut macro_memory,
        &mut macro_memory_u64,
    ]);
    let [api, macro_disk, macro_memory, macro_memory_u64] = medians[..] else {
        unreachable!()
    };

    println!(
        "warm hit, 50-byte String, {KEYS} keys, median of {BATCHES} batches of {BATCH} calls:"
    );
    println!("  Cache::get                    {api:>9.0} ns");
    println!(
        "  #[disk_cache]                 {macro_disk:>9.0} ns   ({:.3}x the API)",
        macro_disk / api
    );
    println!("  #[disk_cache(memory = 1000)]  {macro_memory:>9.1} ns   (String)");
    println!("  #[disk_cache(memory = 1000)]  {macro_memory_u64:>9.1} ns   (u64)");

    // Misses: every call a new key, so each computes (a few ns) and stores.
    let mut next = 1_000_000u64;
    let mut put = |_: u64| {
        next += 1;
        cache.put(&api_function, &(next,), &value(next)).unwrap();
    };
    let mut next_miss = 1_000_000u64;
    let mut macro_miss = |_: u64| {
        next_miss += 1;
        black_box(miss(black_box(next_miss)));
    };
    let mut samples = [Vec::new(), Vec::new()];
    for _ in 0..MISS_BATCHES {
        samples[0].push(batch_of(&mut put, MISS_BATCH));
        samples[1].push(batch_of(&mut macro_miss, MISS_BATCH));
    }
    let [put, macro_miss] = samples.map(median_secs);
    println!(
        "miss and store, 50-byte String, median of {MISS_BATCHES} batches of {MISS_BATCH} calls:"
    );
    println!("  Cache::put                    {:>9.1} us", put / 1000.0);
    println!(
        "  #[disk_cache] miss            {:>9.1} us   ({:.2}x the put)",
        macro_miss / 1000.0,
        macro_miss / put
    );
}
