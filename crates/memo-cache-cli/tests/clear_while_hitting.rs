//! `memo-cache clear --yes` run while this process keeps hitting the cache it clears. A handle
//! that keeps hitting holds a read snapshot (see "The held read snapshot" in the library's
//! `index.rs`); once the command has exited, its next read of a key it was hitting must be a
//! miss, never a value from before the clear.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use memo_cache::{Cache, Function};

static HIT: Function = Function::new("clear_while_hitting::hit", "v1", "String");

/// More lookups than a handle makes before it holds a snapshot (8 in `index.rs`).
const WARM_HITS: u64 = 50;

fn value(n: u64) -> String {
    format!("value of {n}")
}

fn get(cache: &Cache, n: u64) -> Option<String> {
    cache.get::<_, String>(&HIT, &(n,)).unwrap()
}

fn clear_command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_memo-cache"));
    cmd.env_remove("MEMO_CACHE_DIR")
        .arg("--dir")
        .arg(dir)
        .args(["clear", "--yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn after_memo_cache_clear_a_handle_that_kept_hitting_misses() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    for round in 0..5 {
        for n in 0..4 {
            cache.put(&HIT, &(n,), &value(n)).unwrap();
        }
        for i in 0..WARM_HITS {
            assert_eq!(get(&cache, i % 4), Some(value(i % 4)));
        }
        let mut clear = clear_command(dir.path()).spawn().unwrap();
        // Hit until the command has exited: each read is the value, or (once the clear has
        // committed) a miss, after which the value never comes back.
        let start = Instant::now();
        let mut reads = 0u64;
        let mut cleared = false;
        let status = loop {
            let n = reads % 4;
            match get(&cache, n) {
                None => cleared = true,
                Some(v) => {
                    assert_eq!(v, value(n));
                    assert!(
                        !cleared,
                        "round {round}: key {n} read again after a miss during the clear"
                    );
                }
            }
            reads += 1;
            if let Some(status) = clear.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = clear.kill();
                panic!("memo-cache clear did not finish");
            }
        };
        let output = clear.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            status.success(),
            "memo-cache clear failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.starts_with("Removed 4 entries"), "{stdout}");
        for n in 0..4 {
            assert_eq!(
                get(&cache, n),
                None,
                "round {round}: key {n} after `memo-cache clear` exited ({reads} reads while it ran)"
            );
        }
    }
}
