//! A program using `#[disk_cache]` for the fault tests (`tests/faults.rs`): a holder the test
//! freezes, a waiter, a function that calls itself with its own key, a process holding SQLite's
//! write lock, a writer whose directory is deleted under it. Every computation prints a
//! `computed ..` line; warnings go to stderr. The cache directory comes from `MEMO_CACHE_DIR`.
//!
//! Usage: `fault_child <scenario> [args..]`.

use std::io::BufRead;
use std::time::Duration;

use memo_cache::disk_cache;

/// `ms` of work; the lease is short so that a test of a frozen holder is quick.
#[disk_cache(lease = "2s", ignore(ms))]
fn slow(k: u64, ms: u64) -> u64 {
    println!("computing slow {k}");
    std::thread::sleep(Duration::from_millis(ms));
    println!("computed slow {k}");
    k * 1000 + 7
}

/// A retry that calls itself with the same key (`attempt` is not part of it).
#[disk_cache(ignore(attempt))]
fn fetch(url: String, attempt: u32) -> Result<String, String> {
    println!("computed fetch {url} attempt {attempt}");
    if attempt < 3 {
        return fetch(url, attempt + 1);
    }
    Ok(format!("body of {url} after {attempt} attempts"))
}

/// The same, as an `async fn` awaiting itself.
#[disk_cache(ignore(attempt))]
async fn fetch_async(url: String, attempt: u32) -> Result<String, String> {
    println!("computed fetch_async {url} attempt {attempt}");
    if attempt < 3 {
        return Box::pin(fetch_async(url, attempt + 1)).await;
    }
    Ok(format!("body of {url} after {attempt} attempts"))
}

#[disk_cache]
fn small(k: u64) -> String {
    println!("computed small {k}");
    format!("value {k}")
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
        // `slow <k> <ms>`
        "slow" => println!("result {}", slow(num(1), num(2))),
        "fetch" => println!("result {:?}", fetch(arg(1), 0)),
        "fetch-async" => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            println!("result {:?}", runtime.block_on(fetch_async(arg(1), 0)));
        }
        // `small <from> <to>`: calls `small` for every k in from..to.
        "small" => {
            for k in num(1)..num(2) {
                println!("result {}", small(k));
            }
        }
        // `hits <k> <seconds>`: hits `small(k)` again and again for that long, then reports.
        "hits" => {
            let until = std::time::Instant::now() + Duration::from_secs(num(2));
            let mut hits = 0u64;
            while std::time::Instant::now() < until {
                assert_eq!(small(num(1)), format!("value {}", num(1)));
                hits += 1;
            }
            println!("hits {hits}");
        }
        // `cached <from> <to>`: how many of small(from..to) are stored, computing nothing.
        "cached" => {
            let n = (num(1)..num(2)).filter(|&k| small__is_cached(k)).count();
            println!("cached {n}");
        }
        // `small-twice <n>`: stores small(0..n), says so, waits for a line on stdin, then
        // stores small(n..2n).
        "small-twice" => {
            let n = num(1);
            for k in 0..n {
                small(k);
            }
            println!("stored first");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).unwrap();
            for k in n..2 * n {
                small(k);
            }
            println!("stored second");
        }
        // `hold-write <index> [exclusive]`: holds SQLite's write lock on the index (a `BEGIN IMMEDIATE`
        // that never ends), as a `sqlite3` shell left open in a transaction does.
        // `hold-write <index> [exclusive]`: the same in exclusive locking mode, which keeps
        // readers out too.
        "hold-write" => {
            let conn = rusqlite::Connection::open(arg(1)).unwrap();
            if arg(2) == "exclusive" {
                conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE")
                    .unwrap();
                conn.execute_batch("BEGIN IMMEDIATE; UPDATE functions SET last_used = last_used")
                    .unwrap();
            } else {
                conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            }
            println!("holding");
            std::thread::sleep(Duration::from_secs(3600));
        }
        // `chdir <cache> <elsewhere>`: opens the cache by a relative path, changes the working
        // directory, then stores a blob-sized value and a small one.
        "chdir" => {
            let cache = memo_cache::Cache::open(arg(1)).unwrap();
            std::env::set_current_dir(arg(2)).unwrap();
            let f = memo_cache::Function::new("fault_child::chdir", "v1", "Vec<u8>");
            cache.put(&f, &(1u8,), &vec![7u8; 100_000]).unwrap();
            cache.put(&f, &(2u8,), &vec![7u8; 10]).unwrap();
            println!("stored");
        }
        other => panic!("unknown scenario {other:?}"),
    }
}
