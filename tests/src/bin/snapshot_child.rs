//! The child program of the held-snapshot tests (`tests/held_snapshot.rs`): a process that
//! changes a cache on command while the test process keeps hitting it, and one that keeps
//! hitting while the test process stores.
//!
//! Usage:
//!
//! - `snapshot_child serve <dir>`: prints `ready`, then reads commands from stdin, one a line,
//!   and answers each with a `done <command>` line once it has returned (its transaction is
//!   committed): `put <n> <value>` stores `value` as [`HELD`] of `(n,)`, `clear` clears the
//!   cache, `fill <from> <count> [<pause-µs>]` stores [`small_value`]`(i)` as [`FILL`] of `(i,)`
//!   for each `i` in `from..from + count`, each in a transaction of its own, back to back or,
//!   given a pause, sleeping that many microseconds before each store. Exits at the end of stdin.
//! - `snapshot_child hit <dir> <keys> <stop-file>`: reads [`HELD`] of `(i,)` for `i` in
//!   `0..keys` round and round, each of which must be [`small_value`]`(i)`, until `stop-file`
//!   exists; prints `hitting` after its first 100 reads and `hits=<n>` at the end.
//!
//! Any failure or wrong value is reported on stderr with a non-zero exit.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use memo_cache::Cache;
use memo_cache_e2e::functions::{FILL, HELD};
use memo_cache_e2e::small_value;

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_ansi(false)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str { args.get(i).map(String::as_str).unwrap_or_else(|| usage()) };
    match arg(0) {
        "serve" => serve(Path::new(arg(1))),
        "hit" => hit(
            Path::new(arg(1)),
            arg(2).parse().unwrap_or_else(|_| usage()),
            &PathBuf::from(arg(3)),
        ),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: snapshot_child serve <dir> | hit <dir> <keys> <stop-file>");
    std::process::exit(2)
}

fn fail(what: &str) -> ! {
    eprintln!("snapshot_child: {what}");
    std::process::exit(1)
}

fn open(dir: &Path) -> Cache {
    Cache::open(dir).unwrap_or_else(|e| fail(&format!("cannot open the cache: {e}")))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).unwrap();
}

fn serve(dir: &Path) {
    let cache = open(dir);
    say("ready");
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap_or_else(|e| fail(&format!("reading stdin: {e}")));
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| -> u64 {
            words
                .get(i)
                .and_then(|w| w.parse().ok())
                .unwrap_or_else(|| fail(&format!("bad command {line:?}")))
        };
        let result = match words.first().copied() {
            Some("put") => {
                let value = words
                    .get(2)
                    .unwrap_or_else(|| fail(&format!("bad command {line:?}")));
                cache
                    .put(&HELD, &(number(1),), &value.to_string())
                    .map(|()| String::new())
            }
            Some("clear") => cache
                .clear()
                .map(|removal| format!(" entries={}", removal.entries)),
            Some("fill") => {
                let from = number(1);
                let pause = (words.len() > 3).then(|| Duration::from_micros(number(3)));
                (from..from + number(2))
                    .try_for_each(|i| {
                        if let Some(pause) = pause {
                            std::thread::sleep(pause);
                        }
                        cache.put(&FILL, &(i,), &small_value(i))
                    })
                    .map(|()| String::new())
            }
            _ => fail(&format!("unknown command {line:?}")),
        };
        match result {
            Ok(extra) => say(&format!("done {line}{extra}")),
            Err(e) => fail(&format!("{line}: {e}")),
        }
    }
}

fn hit(dir: &Path, keys: u64, stop: &Path) {
    let cache = open(dir);
    let mut hits = 0u64;
    loop {
        for i in 0..keys {
            match cache.get::<_, String>(&HELD, &(i,)) {
                Ok(Some(v)) if v == small_value(i) => hits += 1,
                other => fail(&format!("read {other:?} for key {i} after {hits} hits")),
            }
            if hits == 100 {
                say("hitting");
            }
        }
        if stop.exists() {
            break;
        }
    }
    say(&format!("hits={hits}"));
}
