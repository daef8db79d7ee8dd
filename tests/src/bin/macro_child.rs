//! A program whose functions are cached with `#[disk_cache]`; the `macro_*` tests run it in
//! separate processes. Every computation prints a `computed ..` line, so a test can count them.
//! The cache directory comes from `MEMO_CACHE_DIR`.
//!
//! Usage: `macro_child <scenario> [args..]`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use memo_cache::disk_cache;
use serde::{Deserialize, Serialize};

#[disk_cache]
fn features(path: &str, window: usize) -> Vec<f64> {
    println!("computed features {path} {window}");
    path.bytes().map(|b| f64::from(b) / window as f64).collect()
}

#[disk_cache]
fn total_weight(weights: HashMap<String, u32>, tags: HashSet<String>) -> u64 {
    println!("computed total_weight");
    weights.values().map(|&w| u64::from(w)).sum::<u64>() + tags.len() as u64
}

#[disk_cache]
fn fib(n: u64) -> u64 {
    println!("computed fib {n}");
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

/// `lines` lines of a log-like report: text that compresses well.
#[disk_cache]
fn report(lines: u64) -> String {
    println!("computed report {lines}");
    (0..lines)
        .map(|i| format!("line {i}: status=ok path=/api/items/{}\n", i % 100))
        .collect()
}

#[disk_cache]
fn parse(text: &str) -> Result<i64, String> {
    println!("computed parse {text}");
    text.parse().map_err(|e| format!("{text:?}: {e}"))
}

#[disk_cache(cache_err = true)]
fn parse_all(text: &str) -> Result<i64, String> {
    println!("computed parse_all {text}");
    text.parse().map_err(|e| format!("{text:?}: {e}"))
}

#[disk_cache(ignore(verbose))]
fn shout(word: String, verbose: bool) -> String {
    println!("computed shout {word}");
    if verbose {
        eprintln!("shouting {word}");
    }
    word.to_uppercase()
}

/// An hour, so that no run of a test outlives it: the test expires the entry through the index.
#[disk_cache(ttl = "1h")]
fn quote(symbol: &str) -> f64 {
    println!("computed quote {symbol}");
    symbol.len() as f64 * 1.5
}

/// One function in three builds (the same pinned name and version, so the same entries): first
/// cached without a ttl, then given `ttl = "1s"`, then with a memory tier as well. The ttl in
/// force when a value is read decides whether it is served.
#[disk_cache(name = "child::stamp", version = "1")]
fn stamp(x: u64) -> u64 {
    println!("computed stamp {x}");
    x * 10
}

#[disk_cache(name = "child::stamp", version = "1", ttl = "1s")]
fn stamp_ttl(x: u64) -> u64 {
    println!("computed stamp {x}");
    x * 10
}

#[disk_cache(name = "child::stamp", version = "1", ttl = "1s", memory = 16)]
fn stamp_memory(x: u64) -> u64 {
    println!("computed stamp {x}");
    x * 10
}

/// Counts held as floats (few distinct values, scattered): zstd saves most of their bytes.
fn counts(bins: usize) -> Vec<f64> {
    (0..bins as u64)
        .map(|i| ((i.wrapping_mul(2_654_435_761) >> 7) % 16) as f64)
        .collect()
}

/// Asks for compression: a `Vec<f64>` is compressed only when asked.
#[disk_cache(compress = 3)]
fn histogram(bins: usize) -> Vec<f64> {
    println!("computed histogram {bins}");
    counts(bins)
}

/// The same values under the cache's own setting, which leaves number arrays alone.
#[disk_cache]
fn plain_histogram(bins: usize) -> Vec<f64> {
    println!("computed plain_histogram {bins}");
    counts(bins)
}

#[disk_cache]
fn slow_square(x: u64) -> u64 {
    println!("computed slow_square {x}");
    std::thread::sleep(Duration::from_millis(300));
    x * x
}

#[disk_cache(memory = 16)]
fn remembered(x: u64) -> String {
    println!("computed remembered {x}");
    format!("<{x}>")
}

#[disk_cache]
fn describe<T: Serialize + std::fmt::Debug>(value: T) -> String {
    println!("computed describe {value:?}");
    format!("{value:?}")
}

#[derive(Serialize, Deserialize, Debug, Clone)]
struct Point {
    x: f64,
    y: f64,
}

impl Point {
    #[disk_cache]
    fn norm(&self) -> f64 {
        println!("computed norm {} {}", self.x, self.y);
        (self.x * self.x + self.y * self.y).sqrt()
    }

    #[disk_cache]
    fn origin_distance(x: f64, y: f64) -> f64 {
        println!("computed origin_distance {x} {y}");
        Point { x, y }.norm()
    }
}

#[disk_cache(ignore(progress))]
async fn fetch(url: String, progress: bool) -> Result<String, String> {
    println!("computed fetch {url}");
    if progress {
        eprintln!("fetching {url}");
    }
    tokio::task::yield_now().await;
    if url.starts_with("bad") {
        Err(format!("cannot fetch {url}"))
    } else {
        Ok(format!("body of {url}"))
    }
}

#[disk_cache]
async fn big(n: usize) -> Vec<u8> {
    println!("computed big {n}");
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let num = |i: usize| arg(i).parse::<u64>().expect("a number");
    match arg(0).as_str() {
        "features" => println!("result {:?}", features(&arg(1), num(2) as usize)),
        "map" => {
            // Built in an order that depends on this process's random hasher seed.
            let weights: HashMap<String, u32> = (0..50).map(|i| (format!("k{i}"), i)).collect();
            let tags: HashSet<String> = (0..20).map(|i| format!("t{i}")).collect();
            println!("result {}", total_weight(weights, tags));
        }
        "fib" => println!("result {}", fib(num(1))),
        // Also says whether the call opened the index (it leaves SQLite's `-wal` file behind
        // until the process exits), for the first-hit tests.
        "fib-first" => {
            println!("result {}", fib(num(1)));
            let dir = std::env::var_os("MEMO_CACHE_DIR").expect("MEMO_CACHE_DIR is set");
            let wal = std::path::Path::new(&dir).join(format!("{}-wal", memo_cache::INDEX_FILE));
            println!("index={}", if wal.exists() { "opened" } else { "unopened" });
        }
        // `histogram <bins>`: both functions, each result summed; also says whether the index
        // was opened, as `fib-first` does.
        "histogram" => {
            for value in [histogram(num(1) as usize), plain_histogram(num(1) as usize)] {
                println!("result {} {}", value.len(), value.iter().sum::<f64>());
            }
            let dir = std::env::var_os("MEMO_CACHE_DIR").expect("MEMO_CACHE_DIR is set");
            let wal = std::path::Path::new(&dir).join(format!("{}-wal", memo_cache::INDEX_FILE));
            println!("index={}", if wal.exists() { "opened" } else { "unopened" });
        }
        "report" => println!("result {}", report(num(1)).len()),
        "parse" => println!("result {:?}", parse(&arg(1))),
        "parse_all" => println!("result {:?}", parse_all(&arg(1))),
        "shout" => println!("result {}", shout(arg(1), arg(2) == "true")),
        "quote" => println!("result {}", quote(&arg(1))),
        "slow" => println!("result {}", slow_square(num(1))),
        // `stamp <x>..`, `stamp_ttl <x>..`: one call per argument.
        "stamp" => (1..args.len()).for_each(|i| println!("result {}", stamp(num(i)))),
        "stamp_ttl" => (1..args.len()).for_each(|i| println!("result {}", stamp_ttl(num(i)))),
        // `stamp_memory <x> <pause ms>`: a call, a pause, a call.
        "stamp_memory" => {
            println!("result {}", stamp_memory(num(1)));
            std::thread::sleep(Duration::from_millis(num(2)));
            println!("result {}", stamp_memory(num(1)));
        }
        "remembered" => {
            for _ in 0..3 {
                println!("result {}", remembered(num(1)));
            }
        }
        "generic" => {
            println!("result {}", describe(num(1)));
            println!("result {}", describe(arg(1)));
            println!("result {}", describe(vec![num(1)]));
        }
        "method" => {
            let p = Point { x: 3.0, y: 4.0 };
            println!("result {}", p.norm());
            println!("result {}", Point::origin_distance(6.0, 8.0));
        }
        "companions" => {
            println!("cached {}", features__is_cached("companion", 2));
            println!("result {:?}", features("companion", 2));
            println!("cached {}", features__is_cached("companion", 2));
            println!("result {:?}", features__recompute("companion", 2));
            println!("result {:?}", features__uncached("companion", 2));
            println!("cleared {}", features__clear().expect("clear").entries);
            println!("cached {}", features__is_cached("companion", 2));
            let p = Point { x: 1.0, y: 1.0 };
            println!("result {}", p.norm());
            println!("cached {}", p.norm__is_cached());
            println!("cleared {}", Point::norm__clear().expect("clear").entries);
            println!("cached {}", describe__is_cached(7u8));
            println!("result {}", describe(7u8));
            println!("cached {}", describe__is_cached(7u8));
            println!("cached {}", describe__is_cached(7u16));
        }
        "async" => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                println!("result {:?}", fetch(arg(1), true).await);
                println!("result {:?}", fetch(arg(1), false).await);
                let value = big(3_000_000).await;
                println!(
                    "result big {} {}",
                    value.len(),
                    value.iter().map(|&b| u64::from(b)).sum::<u64>()
                );
            });
        }
        "async_current_thread" => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                println!("result {:?}", fetch(arg(1), false).await);
                println!("cached {}", fetch__is_cached(arg(1), false));
            });
        }
        other => panic!("unknown scenario {other:?}"),
    }
}
