//! A program using `#[disk_cache]` as most do: with no `tracing` subscriber. The `diagnostics`
//! tests run it with `MEMO_CACHE_DIR` where no cache can be, to see what a user sees. With
//! `CHILD_LOG=1` it installs a `fmt` subscriber reading `RUST_LOG`, to see the debug events;
//! with `CHILD_LOG=readme`, the subscriber the README recommends (warnings by default).
//! Every computation prints a `computed ..` line.
//!
//! Usage: `plain_child <scenario> [args..]`.

use std::time::Duration;

use memo_cache::{Cache, Function, disk_cache};

#[disk_cache]
fn square(x: u64) -> u64 {
    println!("computed square {x}");
    x * x
}

#[disk_cache]
fn label(x: u64) -> String {
    println!("computed label {x}");
    format!("#{x}")
}

#[disk_cache(name = "child::scaled", version = "1")]
fn scaled_v1(x: u64) -> u64 {
    println!("computed scaled {x}");
    x * 10
}

#[disk_cache(name = "child::scaled", version = "2")]
fn scaled_v2(x: u64) -> u64 {
    println!("computed scaled {x}");
    x * 100
}

#[disk_cache(ttl = "1s")]
fn brief(x: u64) -> u64 {
    println!("computed brief {x}");
    x + 1
}

/// A memoized recursion, as the README's example has it: exponential if each call ran uncached.
#[disk_cache(memory = 256)]
fn fib(n: u32) -> u128 {
    println!("computed fib {n}");
    if n < 2 {
        u128::from(n)
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

fn main() {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::filter::LevelFilter;
    match std::env::var("CHILD_LOG").as_deref() {
        // The README's pattern ("Warnings, and why a call computed"), as written there but for
        // the writer and colours.
        Ok("readme") => {
            let filter = EnvFilter::builder()
                .with_default_directive(LevelFilter::WARN.into())
                .from_env_lossy();
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .with_env_filter(filter)
                .init();
        }
        Ok(_) => tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_env_filter(EnvFilter::from_default_env())
            .init(),
        Err(_) => {}
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| -> u64 { args[i].parse().expect("a number") };
    match args[0].as_str() {
        // Several calls of two functions: a cache that cannot be used fails for each of them.
        "calls" => {
            for x in 1..=3 {
                println!("result {} {}", square(x), label(x));
            }
        }
        "fib" => println!("result {}", fib(num(1) as u32)),
        "scaled_v1" => println!("result {}", scaled_v1(num(1))),
        "scaled_v2" => println!("result {}", scaled_v2(num(1))),
        // `brief <x> <pause ms>`: a call, a pause, a call.
        "brief" => {
            println!("result {}", brief(num(1)));
            std::thread::sleep(Duration::from_millis(num(2)));
            println!("result {}", brief(num(1)));
        }
        // Stores into a cache of 3,000 bytes until the first entries are evicted.
        "evict" => {
            let dir = std::env::var_os("MEMO_CACHE_DIR").expect("MEMO_CACHE_DIR is set");
            let cache = Cache::builder(dir).size_limit(3_000).open().unwrap();
            let func = Function::new("child::block", "v1", "Vec<u8>");
            for i in 0..6u64 {
                cache.put(&func, &(i,), &vec![i as u8; 1_000]).unwrap();
            }
        }
        other => panic!("unknown scenario {other:?}"),
    }
}
