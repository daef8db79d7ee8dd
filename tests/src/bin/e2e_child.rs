//! The child program of the end-to-end tests: one subcommand per role a process plays.
//!
//! Every subcommand prints what happened on stdout as `key=value` words (`computed=true
//! value=..`), so the parent can assert on it, and exits non-zero on any wrong value.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use memo_cache::Cache;
use memo_cache_e2e::functions::{LARGE, MAPS, RECORD, SMALL, SQUARE, STAMPEDE, TAKEOVER};
use memo_cache_e2e::{
    append_line, large_value, record_value, slow_value, small_value, wait_for_file,
};
use serde::Serialize;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str { args.get(i).map(String::as_str).unwrap_or_else(|| usage()) };
    let path = |i: usize| PathBuf::from(arg(i));
    match arg(0) {
        "square" => square(&path(1), arg(2).parse().unwrap()),
        "maps" => maps(&path(1), arg(2) == "reverse"),
        "mixed" => mixed(&path(1), arg(2).parse().unwrap(), arg(3).parse().unwrap()),
        "stampede" => stampede(&path(1), &path(2), &path(3)),
        "hold" => hold(&path(1), &path(2)),
        "takeover" => takeover(&path(1), &path(2)),
        "read-only" => read_only(&path(1)),
        "default-dir" => println!("{}", memo_cache::default_dir().unwrap().display()),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: e2e_child <square|maps|mixed|stampede|hold|takeover|read-only|default-dir> ..."
    );
    std::process::exit(2)
}

/// Logs the library's tracing output to stderr, where the parent looks for warnings.
fn log_to_stderr(level: tracing_subscriber::filter::LevelFilter) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_ansi(false)
        .init();
}

fn open(dir: &Path) -> Cache {
    Cache::open(dir).unwrap_or_else(|e| {
        eprintln!("cannot open the cache: {e}");
        std::process::exit(3)
    })
}

/// One call of `n -> n * n`, saying whether it computed.
fn square(dir: &Path, n: u64) {
    log_to_stderr(tracing_subscriber::filter::LevelFilter::WARN);
    let cache = open(dir);
    let mut computed = false;
    let value = cache.get_or_compute(&SQUARE, &(n,), || {
        computed = true;
        n * n
    });
    println!("computed={computed} value={value}");
}

/// A struct with a map inside, to check maps nested in user types.
#[derive(Serialize)]
struct Config {
    name: String,
    weights: HashMap<String, u64>,
    nested: Option<HashMap<u32, HashMap<String, u8>>>,
}

/// Calls [`MAPS`] with maps built in forward or reverse insertion order.
fn maps(dir: &Path, reverse: bool) {
    log_to_stderr(tracing_subscriber::filter::LevelFilter::WARN);
    let mut order: Vec<u32> = (0..64).collect();
    if reverse {
        order.reverse();
    }
    let mut top: HashMap<String, u64> = HashMap::new();
    for &i in &order {
        top.insert(format!("k{i}"), u64::from(i) * 7);
    }
    let mut deep: Vec<HashMap<String, BTreeMap<u32, Vec<String>>>> = Vec::new();
    for row in 0..3u32 {
        let mut m = HashMap::new();
        for &i in &order {
            let inner: BTreeMap<u32, Vec<String>> = (0..3)
                .map(|j| (j, vec![format!("{row}-{i}-{j}")]))
                .collect();
            m.insert(format!("r{row}c{i}"), inner);
        }
        deep.push(m);
    }
    let mut nested: HashMap<u32, HashMap<String, u8>> = HashMap::new();
    for &i in &order {
        let mut inner = HashMap::new();
        for &j in order.iter().filter(|&&j| j < 8) {
            inner.insert(format!("n{j}"), (i ^ j) as u8);
        }
        nested.insert(i, inner);
    }
    let mut weights = HashMap::new();
    for &i in &order {
        weights.insert(format!("w{i}"), u64::from(i));
    }
    let config = Config {
        name: "cfg".into(),
        weights,
        nested: Some(nested),
    };

    let cache = open(dir);
    let mut computed = false;
    let value = cache.get_or_compute(&MAPS, &(&top, &deep, &config), || {
        computed = true;
        top.values().sum::<u64>()
    });
    println!("computed={computed} value={value}");
}

/// A deterministic mix of `get_or_compute`, `put` and `get` over small, large and structured
/// values; every value read is checked against the one derived from its argument.
fn mixed(dir: &Path, worker: u64, ops: u64) {
    log_to_stderr(tracing_subscriber::filter::LevelFilter::WARN);
    let cache = open(dir);
    let mut state = worker.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut computed, mut hits, mut misses) = (0u64, 0u64, 0u64);
    for _ in 0..ops {
        let r = next();
        let i = r % 48;
        let op = (r >> 8) % 3;
        let fail = |what: &str| -> ! {
            eprintln!("worker {worker}: wrong or failed {what} for argument {i}");
            std::process::exit(1)
        };
        match (i % 3, op) {
            (0, 0) => {
                if cache.get_or_compute(&SMALL, &(i,), || {
                    computed += 1;
                    small_value(i)
                }) != small_value(i)
                {
                    fail("small get_or_compute")
                }
            }
            (0, 1) => cache
                .put(&SMALL, &(i,), &small_value(i))
                .unwrap_or_else(|e| fail(&e.to_string())),
            (0, _) => match cache.get::<_, String>(&SMALL, &(i,)) {
                Ok(Some(v)) if v == small_value(i) => hits += 1,
                Ok(None) => misses += 1,
                _ => fail("small get"),
            },
            (1, 0) => {
                if cache.get_or_compute(&LARGE, &(i,), || {
                    computed += 1;
                    large_value(i)
                }) != large_value(i)
                {
                    fail("large get_or_compute")
                }
            }
            (1, 1) => cache
                .put(&LARGE, &(i,), &large_value(i))
                .unwrap_or_else(|e| fail(&e.to_string())),
            (1, _) => match cache.get::<_, Vec<u8>>(&LARGE, &(i,)) {
                Ok(Some(v)) if v == large_value(i) => hits += 1,
                Ok(None) => misses += 1,
                _ => fail("large get"),
            },
            (_, 0) => {
                if cache.get_or_compute(&RECORD, &(i,), || {
                    computed += 1;
                    record_value(i)
                }) != record_value(i)
                {
                    fail("record get_or_compute")
                }
            }
            (_, 1) => cache
                .put(&RECORD, &(i,), &record_value(i))
                .unwrap_or_else(|e| fail(&e.to_string())),
            (_, _) => match cache.get::<_, memo_cache_e2e::Record>(&RECORD, &(i,)) {
                Ok(Some(v)) if v == record_value(i) => hits += 1,
                Ok(None) => misses += 1,
                _ => fail("record get"),
            },
        }
    }
    cache.flush().unwrap_or_else(|e| {
        eprintln!("worker {worker}: flush failed: {e}");
        std::process::exit(1)
    });
    println!("ok worker={worker} computed={computed} hits={hits} misses={misses}");
}

/// Says it is ready, waits for `go` to appear, then misses on the one slow key.
fn stampede(dir: &Path, go: &Path, log: &Path) {
    log_to_stderr(tracing_subscriber::filter::LevelFilter::WARN);
    let cache = open(dir);
    println!("ready");
    std::io::stdout().flush().unwrap();
    wait_for_file(go);
    let value = cache.get_or_compute(&STAMPEDE, &("the slow key",), || {
        append_line(log, &format!("computed by {}", std::process::id()));
        // Keep the lock long enough that the others surely arrive while it is held.
        std::thread::sleep(Duration::from_millis(300));
        slow_value()
    });
    println!("right={}", value == slow_value());
}

/// Takes the compute lock of the takeover key and never finishes: the parent kills it.
fn hold(dir: &Path, ready: &Path) {
    log_to_stderr(tracing_subscriber::filter::LevelFilter::WARN);
    let cache = open(dir);
    let value: String = cache.get_or_compute(&TAKEOVER, &(7u32,), || {
        std::fs::write(ready, b"holding").unwrap();
        std::thread::sleep(Duration::from_secs(120));
        "from-the-holder".to_owned()
    });
    println!("holder finished with {value}");
}

/// Misses on the takeover key while another process holds its lock; logs at debug level so the
/// parent sees when it starts waiting.
fn takeover(dir: &Path, log: &Path) {
    log_to_stderr(tracing_subscriber::filter::LevelFilter::DEBUG);
    let cache = open(dir);
    let mut computed = false;
    let value: String = cache.get_or_compute(&TAKEOVER, &(7u32,), || {
        computed = true;
        append_line(log, "computed by the waiter");
        "from-the-waiter".to_owned()
    });
    println!("computed={computed} value={value}");
}

/// Uses a cache this process may read but not write.
fn read_only(dir: &Path) {
    log_to_stderr(tracing_subscriber::filter::LevelFilter::WARN);
    let cache = open(dir);
    println!("read_only={}", cache.is_read_only());
    for n in [1u64, 2, 2] {
        let mut computed = false;
        let value = cache.get_or_compute(&SQUARE, &(n,), || {
            computed = true;
            n * n
        });
        println!("n={n} computed={computed} value={value}");
    }
}
