//! The child program of the first-hit tests (`tests/first_hit.rs`): one process per step, so
//! that every lookup is a fresh process's first.
//!
//! Usage: `hint_child <dir> <command> [<n> [<value>]]`, where the entry is [`SMALL`] of `(n,)`
//! for a value of at most 40 characters and [`LARGE`] of `(n,)` (the value's bytes repeated to
//! 64 KiB, a blob file) for `big` commands:
//!
//! - `get <n>` / `get-big <n>`: prints `value=<value>` or `value=none`, then `index=opened` or
//!   `index=unopened`: whether the lookup left SQLite's `-wal` file behind, which opening the
//!   index does and a first hit from a first-hit file does not;
//! - `put <n> <value>` / `put-big <n> <value>`, `remove <n>`, `clear`, `clear-function`,
//!   `prune-older`: the operation, then a normal exit;
//! - `hold <command...>`: the operation, then `done` on stdout, keeping the cache open (and
//!   its write-ahead log full) until stdin ends;
//! - `abort <command...>`: the operation, then `abort()`: no handle is dropped, so SQLite's
//!   files stay as a crash leaves them.
//!
//! Failures are reported on stderr with a non-zero exit.

use std::io::Read;
use std::path::Path;

use memo_cache::{Cache, Prune};
use memo_cache_e2e::functions::{LARGE, SMALL};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        fail("usage: hint_child <dir> <command> [<n> [<value>]]");
    }
    let dir = Path::new(&args[0]);
    let words: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    match words[0] {
        "hold" => {
            let cache = run(dir, &words[1..]);
            println!("done");
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            drop(cache);
        }
        "abort" => {
            let cache = run(dir, &words[1..]);
            std::mem::forget(cache);
            std::process::abort();
        }
        _ => drop(run(dir, &words)),
    }
}

fn fail(what: &str) -> ! {
    eprintln!("hint_child: {what}");
    std::process::exit(1)
}

fn big(value: &str) -> Vec<u8> {
    value.bytes().cycle().take(64 * 1024).collect()
}

/// Runs one command and returns the handle, still open.
fn run(dir: &Path, words: &[&str]) -> Cache {
    let cache = Cache::open(dir).unwrap_or_else(|e| fail(&format!("open: {e}")));
    let n = || -> u64 {
        words
            .get(1)
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| fail("missing <n>"))
    };
    let value = || -> &str {
        words
            .get(2)
            .copied()
            .unwrap_or_else(|| fail("missing <value>"))
    };
    let done = match words.first().copied() {
        Some("get") => {
            let got = cache.get::<_, String>(&SMALL, &(n(),));
            report(dir, got.map(|v| v.unwrap_or_else(|| "none".into())))
        }
        Some("get-big") => {
            let got = cache.get::<_, Vec<u8>>(&LARGE, &(n(),));
            report(
                dir,
                got.map(|v| match v {
                    None => "none".into(),
                    Some(bytes) => {
                        let end = bytes.iter().position(|&b| b == b'.').unwrap_or(0);
                        let value = String::from_utf8_lossy(&bytes[..end]).into_owned();
                        if bytes == big(&format!("{value}.")) {
                            value
                        } else {
                            "damaged".into()
                        }
                    }
                }),
            )
        }
        Some("put") => cache.put(&SMALL, &(n(),), &value().to_owned()),
        // The value ends with a dot, so that `get-big` can tell where it repeats.
        Some("put-big") => cache.put(&LARGE, &(n(),), &big(&format!("{}.", value()))),
        Some("remove") => cache.remove(&SMALL, &(n(),)).map(drop),
        Some("clear") => cache.clear().map(drop),
        Some("clear-function") => cache.clear_function(SMALL.name()).map(drop),
        Some("prune-older") => cache
            .prune(&Prune::new().older_than(std::time::Duration::ZERO))
            .map(drop),
        _ => fail(&format!("unknown command {words:?}")),
    };
    done.unwrap_or_else(|e| fail(&format!("{words:?}: {e}")));
    cache
}

fn report(dir: &Path, got: memo_cache::Result<String>) -> memo_cache::Result<()> {
    let value = got?;
    let wal = dir.join(format!("{}-wal", memo_cache::INDEX_FILE));
    let opened = if wal.exists() { "opened" } else { "unopened" };
    println!("value={value}");
    println!("index={opened}");
    Ok(())
}
