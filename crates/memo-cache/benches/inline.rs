//! Where should values stop living inline in the SQLite row and move to a blob file?
//!
//! For each value size, stores 200 values with everything inline and with everything in blobs,
//! then reads them back, and prints the median hit and store times side by side.
//!
//! ```text
//! cargo bench -p memo-cache-rs --bench inline
//! ```

use std::time::{Duration, Instant};

use memo_cache::{Cache, Function};

const VALUES: u64 = 200;
static F: Function = Function::new("bench::inline", "v1", "Vec<u8>");

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn measure(size: usize, inline_threshold: usize) -> (Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path())
        .inline_threshold(inline_threshold)
        .open()
        .unwrap();
    let value = vec![0xa5u8; size];
    let mut stores = Vec::new();
    for i in 0..VALUES {
        let start = Instant::now();
        cache.put(&F, &(i,), &value).unwrap();
        stores.push(start.elapsed());
    }
    let mut hits = Vec::new();
    for _round in 0..5 {
        for i in 0..VALUES {
            let start = Instant::now();
            let got: Vec<u8> = cache.get(&F, &(i,)).unwrap().unwrap();
            hits.push(start.elapsed());
            assert_eq!(got.len(), size);
        }
    }
    (median(hits), median(stores))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!(
        "{:>9} | {:>12} {:>12} {:>7} | {:>12} {:>12} {:>7}",
        "size", "hit inline", "hit blob", "ratio", "store inline", "store blob", "ratio"
    );
    for size in [
        256,
        1024,
        4 * 1024,
        8 * 1024,
        16 * 1024,
        32 * 1024,
        64 * 1024,
        256 * 1024,
    ] {
        let (hit_inline, store_inline) = measure(size, usize::MAX);
        let (hit_blob, store_blob) = measure(size, 0);
        println!(
            "{:>9} | {:>12?} {:>12?} {:>7.2} | {:>12?} {:>12?} {:>7.2}",
            size,
            hit_inline,
            hit_blob,
            hit_blob.as_secs_f64() / hit_inline.as_secs_f64(),
            store_inline,
            store_blob,
            store_blob.as_secs_f64() / store_inline.as_secs_f64(),
        );
    }
}
