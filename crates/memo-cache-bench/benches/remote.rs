//! The shared tiers: a Redis hit against a local hit, memo-cache's tier against the `cached`
//! crate's `RedisCache` on the same server, and the memcached and PostgreSQL tiers beside the
//! Redis one, in one run.
//!
//! ```text
//! cargo bench -p memo-cache-bench --bench remote
//! ```
//!
//! Starts its own `redis-server`, `memcached` and PostgreSQL (a cluster made by `initdb` in a
//! temporary directory, with the server's default durability: `fsync` and synchronous commit
//! on) on free loopback ports (install them with `apt-get install redis-server memcached
//! postgresql`; `scripts/test.sh` does). Every figure is a median.

use std::hint::black_box;
use std::time::{Duration, Instant};

#[allow(dead_code)] // the bench uses only the single server
#[path = "../../memo-cache/tests/support/redis_server.rs"]
mod redis_server;

#[path = "../../memo-cache/tests/support/memcached_server.rs"]
mod memcached_server;

#[path = "../../memo-cache/tests/support/postgres_server.rs"]
mod postgres_server;

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

    // The three tiers side by side, each on its own server, same work, same run.
    let memcached = memcached_server::Memcached::start();
    let postgres = postgres_server::Postgres::start_durable();
    let tiers = [
        ("Redis", Tier::measure(&dirs.path().join("r"), &config)),
        (
            "memcached",
            Tier::measure(
                &dirs.path().join("m"),
                &RemoteConfig::new(&memcached.url())
                    .unwrap()
                    .prefix("bench:"),
            ),
        ),
        (
            "PostgreSQL",
            Tier::measure(
                &dirs.path().join("p"),
                &RemoteConfig::new(&postgres.url()).unwrap().prefix("bench:"),
            ),
        ),
    ];
    println!();
    println!("| case | Redis | memcached | PostgreSQL | memcached / Redis | PostgreSQL / Redis |");
    println!("|---|---|---|---|---|---|");
    let cases: [(&str, Figure); 6] = [
        ("small hit, local directory", |t| t.local_hit),
        ("small hit from the tier (kept locally)", |t| t.hit),
        ("small hit from the tier (not kept)", |t| t.hit_not_kept),
        ("small store (local + tier)", |t| t.store),
        ("1 MiB incompressible hit (kept locally)", |t| t.hit_large),
        ("1 MiB incompressible store (local + tier)", |t| {
            t.store_large
        }),
    ];
    for (name, figure) in cases {
        let (r, m, p) = (
            figure(&tiers[0].1),
            figure(&tiers[1].1),
            figure(&tiers[2].1),
        );
        println!(
            "| {name} | {r:.2?} | {m:.2?} | {p:.2?} | {:.2} | {:.2} |",
            m.as_secs_f64() / r.as_secs_f64(),
            p.as_secs_f64() / r.as_secs_f64()
        );
    }
    for (name, tier) in &tiers {
        println!(
            "A {name} hit (not kept) costs {:.1}x a local hit.",
            tier.hit_not_kept.as_secs_f64() / tier.local_hit.as_secs_f64()
        );
    }
}

/// Which figure of a [`Tier`] a row shows.
type Figure = fn(&Tier) -> Duration;

/// One tier's figures: machine A stores, machine B hits (keeping copies), machine C hits
/// without keeping them.
struct Tier {
    local_hit: Duration,
    hit: Duration,
    hit_not_kept: Duration,
    store: Duration,
    hit_large: Duration,
    store_large: Duration,
}

impl Tier {
    fn measure(dir: &std::path::Path, config: &RemoteConfig) -> Tier {
        let open = |name: &str| {
            Cache::builder(dir.join(name))
                .remote(config.clone())
                .open()
                .unwrap()
        };
        // Incompressible, so both tiers carry the whole MiB (memcached in two chunks).
        let large: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8 ^ (i >> 7) as u8)
            .collect();
        let a = open("a");
        let store = time_each(N, |i| a.put(&SMALL, &(i,), &small(i)).unwrap());
        let store_large = time_each(50, |i| a.put(&LARGE, &(i,), &large).unwrap());
        let local_hit = time_each(N, |i| {
            black_box(a.get::<_, Small>(&SMALL, &(i,)).unwrap().unwrap());
        });
        let b = open("b");
        let hit = time_each(N, |i| {
            black_box(b.get::<_, Small>(&SMALL, &(i,)).unwrap().unwrap());
        });
        let hit_large = time_each(50, |i| {
            black_box(b.get::<_, Vec<u8>>(&LARGE, &(i,)).unwrap().unwrap());
        });
        drop(Cache::builder(dir.join("c")).no_remote().open().unwrap());
        let c = Cache::builder(dir.join("c"))
            .read_only()
            .remote(config.clone())
            .open()
            .unwrap();
        let hit_not_kept = time_each(N, |i| {
            black_box(c.get::<_, Small>(&SMALL, &(i,)).unwrap().unwrap());
        });
        Tier {
            local_hit,
            hit,
            hit_not_kept,
            store,
            hit_large,
            store_large,
        }
    }
}
