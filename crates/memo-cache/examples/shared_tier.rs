//! A shared Redis tier behind each machine's local directory: a value computed on one machine is
//! served to every other. Two "machines" here are two caches over two local directories (temp
//! directories, removed at exit) sharing one Redis. Needs the library's `redis` feature and a
//! Redis server:
//!
//! ```text
//! redis-server --port 6379 --save '' &          # or any Redis you may write to
//! MEMO_CACHE_REDIS_URL=redis://127.0.0.1:6379 \
//!     cargo run -p memo-cache-rs --features redis --example shared_tier
//! ```
//!
//! It writes only under a prefix of its own (`memo-cache-example:<pid>:`) and removes those keys
//! at the end.

use std::time::Instant;

use memo_cache::{Cache, Function, RemoteConfig, remote_clear, remote_stats};

static SIMULATE: Function = Function::new("shared_tier::simulate", "v1", "f64");

/// About a second in a debug build.
const STEPS: u64 = 50_000_000;

/// The expensive part: a deterministic random walk of `steps` steps (xorshift), its final
/// distance from the start.
fn simulate(seed: u64, steps: u64) -> f64 {
    let (mut state, mut position) = (seed | 1, 0i64);
    for _ in 0..steps {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        position += if state & 1 == 0 { 1 } else { -1 };
    }
    position.unsigned_abs() as f64
}

fn main() {
    if let Err(e) = run() {
        eprintln!("shared_tier: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let Some(config) = RemoteConfig::from_env()? else {
        println!(
            "Set {} to a Redis you may write to, for example\n    \
             {}=redis://127.0.0.1:6379 cargo run -p memo-cache-rs --features redis --example shared_tier\n\
             (`redis-server --port 6379 --save ''` starts one; several comma-separated URLs name \
             a Redis Cluster, rediss:// is TLS).",
            memo_cache::REDIS_URL_ENV,
            memo_cache::REDIS_URL_ENV
        );
        return Ok(());
    };
    let config = config.prefix(format!("memo-cache-example:{}:", std::process::id()));
    if let Err(e) = remote_stats(&config) {
        return Err(format!("cannot reach {}: {e}", config.display_urls()).into());
    }
    println!(
        "Redis tier: {} (prefix {})",
        config.display_urls(),
        config.key_prefix()
    );

    let (dir_a, dir_b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let machine_a = Cache::builder(dir_a.path()).remote(config.clone()).open()?;
    let machine_b = Cache::builder(dir_b.path()).remote(config.clone()).open()?;

    for (name, machine) in [("machine A", &machine_a), ("machine B", &machine_b)] {
        let start = Instant::now();
        let mut computed = false;
        let distance = machine.get_or_compute(&SIMULATE, &(42u64, STEPS), || {
            computed = true;
            simulate(42, STEPS)
        });
        let how = if computed {
            "computed"
        } else {
            "served from Redis"
        };
        println!(
            "{name}: distance {distance} {how} in {:.1?} (local directory {})",
            start.elapsed(),
            machine.dir().display()
        );
    }
    // Machine B keeps a local copy now: its next call does not even ask Redis.
    println!(
        "machine B has it locally: {}",
        machine_b.contains(&SIMULATE, &(42u64, STEPS))?
    );

    let stats = remote_stats(&config)?;
    println!(
        "under the prefix: {} value(s), {} bytes, on {} node(s)",
        stats.values, stats.bytes, stats.nodes
    );
    println!("removed {} key(s) from Redis", remote_clear(&config)?);
    Ok(())
}
