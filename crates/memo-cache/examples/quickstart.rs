//! The main job through `#[disk_cache]`: a memoized Fibonacci and a heavier computation whose
//! results persist on disk. Run it twice:
//!
//! ```text
//! cargo run --release -p memo-cache-rs --example quickstart   # computes, a second or two
//! cargo run --release -p memo-cache-rs --example quickstart   # a new process: served from disk
//! ```
//!
//! The cache directory is `MEMO_CACHE_DIR` when set, else the platform cache directory
//! (`~/.cache/memo-cache` on Linux). `memo-cache ls` shows what it stored;
//! `memo-cache clear --func quickstart::prime_stats --yes` makes the next run compute again.
//!
//! When the cache cannot be used (`MEMO_CACHE_DIR` names a file, say), memo-cache says so in one
//! line on stderr and every call runs uncached; the run still takes about as long as a first
//! one, because `fib`'s recursion also goes through an in-process layer (`memory = ..`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use memo_cache::disk_cache;
use serde::{Deserialize, Serialize};

/// How many times a cached function's body ran in this process: every other call was served
/// from the cache.
static BODIES_RUN: AtomicU64 = AtomicU64::new(0);

/// The classic memoized Fibonacci. Every recursive call goes through the cache too, so each
/// `fib(k)` is computed once, ever: a later process reads `fib(n)` in one lookup. The
/// in-process layer in front of the disk (`memory = 256`) keeps the recursion linear even when
/// the disk cannot be used; without any cache it would make 2^100 calls.
#[disk_cache(memory = 256)]
fn fib(n: u32) -> u128 {
    BODIES_RUN.fetch_add(1, Ordering::Relaxed);
    if n < 2 {
        u128::from(n)
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

/// What we learn about the primes below a limit.
#[derive(Debug, Serialize, Deserialize)]
struct PrimeStats {
    count: u64,
    largest: u64,
    twin_pairs: u64,
}

/// The sieve of Eratosthenes over `limit` numbers: the expensive part.
#[disk_cache]
fn prime_stats(limit: u64) -> PrimeStats {
    BODIES_RUN.fetch_add(1, Ordering::Relaxed);
    let limit = usize::try_from(limit).expect("a limit that fits in memory");
    let mut composite = vec![false; limit];
    let (mut count, mut largest, mut twin_pairs, mut previous) = (0, 0, 0, 0);
    for n in 2..limit {
        if composite[n] {
            continue;
        }
        count += 1;
        largest = n as u64;
        if n - previous == 2 {
            twin_pairs += 1;
        }
        previous = n;
        for multiple in (n * n..limit).step_by(n) {
            composite[multiple] = true;
        }
    }
    PrimeStats {
        count,
        largest,
        twin_pairs,
    }
}

/// Runs `call` and says whether any cached body ran (computed) or none did (served from disk).
fn timed<T>(label: &str, call: impl FnOnce() -> T) -> T {
    let before = BODIES_RUN.load(Ordering::Relaxed);
    let start = Instant::now();
    let value = call();
    let elapsed = start.elapsed();
    let ran = BODIES_RUN.load(Ordering::Relaxed) - before;
    let how = match ran {
        0 => "served from disk".to_owned(),
        1 => "computed".to_owned(),
        n => format!("computed ({n} bodies ran)"),
    };
    println!("{label}: {how} in {}", human(elapsed));
    value
}

fn human(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else if d >= Duration::from_millis(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    }
}

fn main() {
    match memo_cache::default_dir() {
        Ok(dir) => println!("cache directory: {}", dir.display()),
        Err(e) => println!("no cache directory ({e}): every call runs uncached"),
    }

    let f = timed("fib(150)", || fib(150));
    println!("    = {f}");

    for limit in [1_000_000, 50_000_000] {
        let stats = timed(&format!("prime_stats({limit})"), || prime_stats(limit));
        println!(
            "    {} primes, the largest {}, {} twin pairs",
            stats.count, stats.largest, stats.twin_pairs
        );
    }
    // A companion of the attribute: asks the cache without computing. (Not `fib__is_cached`:
    // it would find `fib(150)` in this process's memory layer.)
    if prime_stats__is_cached(50_000_000) {
        println!("Run it again: a new process finds every result on disk.");
    } else {
        println!("Nothing was stored (stderr says why): every run computes again.");
    }
}
