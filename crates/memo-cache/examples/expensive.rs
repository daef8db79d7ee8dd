//! The main job through the plain `Cache` API (`quickstart` does it with `#[disk_cache]`): an
//! expensive function whose results persist on disk, for when the function's identity is decided
//! at run time or the caller wants to see cache errors. Run it twice:
//!
//! ```text
//! cargo run --release -p memo-cache-rs --example expensive   # computes, ~1 s
//! cargo run --release -p memo-cache-rs --example expensive   # a new process: served from disk
//! ```
//!
//! The cache directory is `MEMO_CACHE_DIR` when set, else the platform cache directory
//! (`~/.cache/memo-cache` on Linux). `memo-cache ls` shows what it stored.

use std::time::{Duration, Instant};

use memo_cache::{Cache, Function};
use serde::{Deserialize, Serialize};

/// What we learn about the primes below a limit.
#[derive(Debug, Serialize, Deserialize)]
struct PrimeStats {
    count: u64,
    largest: u64,
    twin_pairs: u64,
}

static PRIME_STATS: Function = Function::new("expensive::prime_stats", "v1", "PrimeStats");
static PRIMES_BELOW: Function = Function::new("expensive::primes_below", "v1", "Vec<u64>");

/// The sieve of Eratosthenes: the expensive part.
fn primes_below(limit: u64) -> Vec<u64> {
    let mut composite = vec![false; limit as usize];
    let mut primes = Vec::new();
    for n in 2..limit {
        if !composite[n as usize] {
            primes.push(n);
            let mut multiple = n * n;
            while multiple < limit {
                composite[multiple as usize] = true;
                multiple += n;
            }
        }
    }
    primes
}

fn prime_stats(limit: u64) -> PrimeStats {
    let primes = primes_below(limit);
    PrimeStats {
        count: primes.len() as u64,
        largest: primes.last().copied().unwrap_or(0),
        twin_pairs: primes.windows(2).filter(|w| w[1] - w[0] == 2).count() as u64,
    }
}

/// Runs `compute` through the cache and says which happened and how long it took.
fn timed<T>(label: &str, run: impl FnOnce(&mut bool) -> T) -> T {
    let mut computed = false;
    let start = Instant::now();
    let value = run(&mut computed);
    let how = if computed {
        "computed"
    } else {
        "served from disk"
    };
    println!("{label}: {how} in {}", human(start.elapsed()));
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

fn main() -> Result<(), memo_cache::Error> {
    let open = Instant::now();
    let cache = Cache::open_default()?;
    println!(
        "cache directory: {} (opened in {})",
        cache.dir().display(),
        human(open.elapsed())
    );

    for limit in [1_000_000u64, 30_000_000] {
        let stats = timed(&format!("prime_stats({limit})"), |computed| {
            cache.get_or_compute(&PRIME_STATS, &(limit,), || {
                *computed = true;
                prime_stats(limit)
            })
        });
        println!(
            "    {} primes, the largest {}, {} twin pairs",
            stats.count, stats.largest, stats.twin_pairs
        );
    }

    let primes = timed("primes_below(100000)", |computed| {
        cache.get_or_compute(&PRIMES_BELOW, &(100_000u64,), || {
            *computed = true;
            primes_below(100_000)
        })
    });
    println!(
        "    {} primes, stored as a {} KiB blob",
        primes.len(),
        primes.len() * 8 / 1024
    );
    println!("Run it again: a new process finds every result on disk.");
    Ok(())
}
