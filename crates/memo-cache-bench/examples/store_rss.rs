//! One store of a large `Vec<u8>` of noise through `Cache::put`, for measuring the store's peak
//! memory from outside (BENCHMARKS.md, "Large stores from the value's own memory"):
//!
//! ```sh
//! cargo build --release -p memo-cache-bench --example store_rss
//! /usr/bin/time -v target/release/examples/store_rss /tmp/rss-cache 300   # MiB; "Maximum resident set size"
//! ```

use memo_cache::{Cache, Function};

static F: Function = Function::new("store_rss::bytes", "v1", "Vec<u8>");

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(mib)) = (args.next(), args.next()) else {
        eprintln!("usage: store_rss <new cache directory> <MiB>");
        std::process::exit(2);
    };
    let mib: usize = mib.parse().expect("a whole number of MiB");
    let value = memo_cache_bench::noise(mib << 20);
    let cache = Cache::open(&dir).expect("opening the cache");
    cache.put(&F, &(mib,), &value).expect("storing");
    println!("stored {} bytes in {dir}", value.len());
}
