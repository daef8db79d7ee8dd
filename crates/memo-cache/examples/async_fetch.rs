//! `#[disk_cache]` on an `async fn`: a slow, rate-limited API called from tokio. Cache reads and
//! writes run on tokio's blocking pool, so the executor never waits on the disk. Needs the
//! library's `tokio` feature:
//!
//! ```text
//! cargo run -p memo-cache-rs --features tokio --example async_fetch   # twice: the second is instant
//! ```
//!
//! The cache directory is `MEMO_CACHE_DIR` when set, else the platform cache directory
//! (`~/.cache/memo-cache` on Linux); `memo-cache clear --func async_fetch::fetch_report --yes`
//! empties this example's entries.

use std::time::{Duration, Instant};

use memo_cache::disk_cache;

/// Stands in for a request to a slow API. `ignore(verbose)` leaves the flag out of the key; an
/// `Err` is never stored, so a failed request is tried again next time.
#[disk_cache(ttl = "1h", ignore(verbose))]
async fn fetch_report(id: u32, verbose: bool) -> Result<String, std::io::Error> {
    if verbose {
        println!("    requesting report {id} (300 ms)");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    if id == 0 {
        return Err(std::io::Error::other("report 0 does not exist"));
    }
    Ok(format!(
        "report {id}: {} widgets",
        u64::from(id) * 37 % 1000
    ))
}

#[tokio::main]
async fn main() {
    match memo_cache::default_dir() {
        Ok(dir) => println!("cache directory: {}", dir.display()),
        Err(e) => println!("no cache directory ({e}): every call runs uncached"),
    }

    // Four requests at once; whatever an earlier run stored comes back without a request.
    let start = Instant::now();
    let reports = futures_join(vec![1, 2, 3, 0]).await;
    for (id, report) in [1, 2, 3, 0].iter().zip(&reports) {
        match report {
            Ok(text) => println!("{id}: {text}"),
            Err(e) => println!("{id}: failed ({e}), not stored"),
        }
    }
    println!("four calls in {:.0?}", start.elapsed());
    println!(
        "report 1 stored: {}, report 0 stored: {}",
        fetch_report__is_cached(1, false),
        fetch_report__is_cached(0, false)
    );
    println!("Run it again within the hour: reports 1 to 3 come from disk.");
}

/// Runs the requests concurrently on the runtime and collects their results in order.
async fn futures_join(ids: Vec<u32>) -> Vec<Result<String, std::io::Error>> {
    let tasks: Vec<_> = ids
        .into_iter()
        .map(|id| tokio::spawn(fetch_report(id, true)))
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("the task does not panic"));
    }
    results
}
