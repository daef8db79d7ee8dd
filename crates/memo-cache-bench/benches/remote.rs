//! The Redis tier: a Redis hit against a local hit, and memo-cache's tier against the `cached`
//! crate's `RedisCache` on the same server, in one run.
//!
//! ```text
//! cargo bench -p memo-cache-bench --bench remote
//! ```
//!
//! Starts its own `redis-server` on a free loopback port (install it with
//! `apt-get install redis-server`; `scripts/test.sh` does). Every figure is a median.

use std::hint::black_box;
use std::time::{Duration, Instant};

#[allow(dead_code)] // the bench uses only the single server
#[path = "../../memo-cache/tests/support/redis_server.rs"]
mod redis_server;

use cached::{ConcurrentCached, RedisCache};
use memo_cache::{Cache, Function, RemoteConfig};
use memo_cache_bench::{Small, median, small};

const N: u64 = 2_000;
static SMALL: Function = Function::new("bench::remote_small", "v1", "Small");
static LARGE: Function = Function::new("bench::remote_large", "v1", "Vec<u8>");

fn time_each(n: u64, mut f: impl FnMut(u64)) -> Duration {
    median(
        (0..n)
            .map(|i| {
                let start = Instant::now();
                f(i);
                start.elapsed()
            })
            .collect(),
    )
}

fn row(name: &str, memo: Duration, peer: Option<Duration>, note: &str) {
    match peer {
        Some(peer) => println!(
            "| {name} | {memo:.2?} | {peer:.2?} | {:.2} | {note} |",
            peer.as_secs_f64() / memo.as_secs_f64()
        ),
        None => println!("| {name} | {memo:.2?} | – | – | {note} |"),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let server = redis_server::Single::start();
    let url = server.node.url();
    let dirs = tempfile::tempdir().unwrap();
    let config = RemoteConfig::new(&url).unwrap().prefix("bench:");
    let open = |name: &str| {
        Cache::builder(dirs.path().join(name))
            .remote(config.clone())
            .open()
            .unwrap()
    };
    let large = vec![0x5au8; 1 << 20];

    // Machine A stores everything: locally and in Redis.
    let a = open("a");
    let store_small = time_each(N, |i| a.put(&SMALL, &(i,), &small(i)).unwrap());
    let store_large = time_each(50, |i| a.put(&LARGE, &(i,), &large).unwrap());
    let local_hit = time_each(N, |i| {
        black_box(a.get::<_, Small>(&SMALL, &(i,)).unwrap().unwrap());
    });

    // Machine B: every first call is a local miss and a Redis hit, written back locally.
    let b = open("b");
    let redis_hit = time_each(N, |i| {
        black_box(b.get::<_, Small>(&SMALL, &(i,)).unwrap().unwrap());
    });
    let redis_hit_large = time_each(50, |i| {
        black_box(b.get::<_, Vec<u8>>(&LARGE, &(i,)).unwrap().unwrap());
    });
    // Machine C reads Redis without keeping a copy (its directory is read-only to it).
    drop(
        Cache::builder(dirs.path().join("c"))
            .no_remote()
            .open()
            .unwrap(),
    );
    let c = Cache::builder(dirs.path().join("c"))
        .read_only()
        .remote(config.clone())
        .open()
        .unwrap();
    let redis_only_hit = time_each(N, |i| {
        black_box(c.get::<_, Small>(&SMALL, &(i,)).unwrap().unwrap());
    });

    // The cached crate's RedisCache on the same server.
    let peer: RedisCache<u64, Small> = RedisCache::builder("bench-cached")
        .connection_string(&url)
        .build()
        .unwrap();
    let peer_store = time_each(N, |i| {
        peer.cache_set(i, small(i)).unwrap();
    });
    let peer_hit = time_each(N, |i| {
        black_box(peer.cache_get(&i).unwrap().unwrap());
    });
    let peer_large: RedisCache<u64, Vec<u8>> = RedisCache::builder("bench-cached-large")
        .connection_string(&url)
        .build()
        .unwrap();
    let peer_store_large = time_each(50, |i| {
        peer_large.cache_set(i, large.clone()).unwrap();
    });
    let peer_hit_large = time_each(50, |i| {
        black_box(peer_large.cache_get(&i).unwrap().unwrap());
    });

    println!("| case | memo-cache | cached RedisCache | x peer | note |");
    println!("|---|---|---|---|---|");
    row(
        "small hit, local directory",
        local_hit,
        Some(peer_hit),
        "no network at all",
    );
    row(
        "small hit from Redis (kept locally)",
        redis_hit,
        Some(peer_hit),
        "GET, hash check, local store",
    );
    row(
        "small hit from Redis (not kept)",
        redis_only_hit,
        Some(peer_hit),
        "GET and hash check",
    );
    row(
        "small store (local + Redis)",
        store_small,
        Some(peer_store),
        "",
    );
    row(
        "1 MiB hit from Redis (kept locally)",
        redis_hit_large,
        Some(peer_hit_large),
        "",
    );
    row(
        "1 MiB store (local + Redis)",
        store_large,
        Some(peer_store_large),
        "",
    );
    println!();
    println!(
        "A Redis hit costs {:.1}x a local hit; a local hit is {:.1}x faster than the peer's Redis hit.",
        redis_hit.as_secs_f64() / local_hit.as_secs_f64(),
        peer_hit.as_secs_f64() / local_hit.as_secs_f64()
    );
}
