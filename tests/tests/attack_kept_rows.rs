//! Outside attack (session 9) on the rows a busy handle keeps in memory (commit 95e36aa, "The
//! held read snapshot" in the library's `index.rs`), through the public API with a real second
//! process. Each test here failed when written.
//!
//! - `a_busy_reader_sees_a_value_stored_after_its_cache_directory_was_deleted` and
//!   `a_new_reader_sees_a_value_stored_after_its_cache_directory_was_deleted`: a handle that only
//!   read kept reading the index file it opened. After `rm -rf` of the cache directory and a
//!   store of another value at the same path by another process, it still returned the deleted
//!   value, warm (rows kept) or not (one lookup): `Cache::reopen_if_gone` ran on stores only.
//!   Reads now look for a deleted index too, at most every 10 ms.
//! - `deleting_only_the_index_under_a_reader_leaves_the_cache_usable`: with a reader holding
//!   the index open, deleting `index.sqlite3` (its `-wal` and `-shm` left) made a new process's
//!   `Cache::open` fail with "disk I/O error" for as long as the reader lived. The reader's next
//!   read now makes the index again; until then the failure stands (RELIABILITY.md).
//!
//! The other process is this test binary's ignored `child` test, reading commands from stdin.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use memo_cache::{Cache, Function};
use memo_cache_e2e::{CHILD_TIMEOUT, KillOnDrop};

static KEPT: Function = Function::new("attack::kept", "v1", "String");

/// Lookups of one key: far more than a handle makes before it holds a snapshot (8), so the
/// row is kept and answered from memory.
const WARM: u64 = 2_000;

fn get(cache: &Cache, n: u64) -> Option<String> {
    cache.get::<_, String>(&KEPT, &(n,)).unwrap()
}

/// A child process changing the cache on command: each command opens the cache afresh (so a
/// deleted directory is made again), runs, drops the handle and answers one line.
struct Child {
    _child: KillOnDrop,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Child {
    fn start(dir: &Path) -> Child {
        let mut child = KillOnDrop(
            Command::new(std::env::current_exe().unwrap())
                .args(["child", "--exact", "--ignored", "--nocapture"])
                .env("ATTACK_DIR", dir)
                .env("MEMO_CACHE_QUIET", "1")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if line.starts_with("child: ") && tx.send(line).is_err() {
                    break;
                }
            }
        });
        Child {
            _child: child,
            stdin,
            lines,
        }
    }

    /// Runs `put <n> <value>` in the child: `Ok` once its store has returned.
    fn put(&mut self, n: u64, value: &str) -> Result<(), String> {
        writeln!(self.stdin, "put {n} {value}").unwrap();
        self.stdin.flush().unwrap();
        let line = self.lines.recv_timeout(CHILD_TIMEOUT).unwrap();
        match line.strip_prefix("child: ") {
            Some("stored") => Ok(()),
            _ => Err(line),
        }
    }
}

#[test]
#[ignore = "the child process of the tests here"]
fn child() {
    let Ok(dir) = std::env::var("ATTACK_DIR") else {
        return;
    };
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["put", n, value] = words[..] else {
            panic!("unknown command {line:?}");
        };
        let n: u64 = n.parse().unwrap();
        let stored = Cache::open(&dir).and_then(|cache| cache.put(&KEPT, &(n,), &value.to_owned()));
        match stored {
            Ok(()) => println!("child: stored"),
            Err(e) => println!("child: failed: {e}"),
        }
    }
}

/// Stores `old` for key 1 through `reader` and reads it back, `lookups` times; then deletes the
/// cache directory, has another process store `new` for key 1 at the same path, and returns
/// what `reader` reads next.
fn read_after_directory_deleted(lookups: u64) -> Option<String> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let mut child = Child::start(&dir);
    let reader = Cache::open(&dir).unwrap();
    reader.put(&KEPT, &(1,), &"old".to_owned()).unwrap();
    for _ in 0..lookups {
        assert_eq!(get(&reader, 1).as_deref(), Some("old"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
    child.put(1, "new").unwrap();
    // Another process, opened after the store, sees it.
    assert_eq!(get(&Cache::open(&dir).unwrap(), 1).as_deref(), Some("new"));
    // A reading handle looks for a deleted index at most every 10 ms (one `lstat` then, not
    // one per hit): past that, its next read must find the new cache.
    std::thread::sleep(Duration::from_millis(30));
    get(&reader, 1)
}

#[test]
fn a_busy_reader_sees_a_value_stored_after_its_cache_directory_was_deleted() {
    assert_eq!(
        read_after_directory_deleted(WARM).as_deref(),
        Some("new"),
        "a handle that kept hitting key 1 read the deleted cache's value"
    );
}

#[test]
fn a_new_reader_sees_a_value_stored_after_its_cache_directory_was_deleted() {
    assert_eq!(
        read_after_directory_deleted(1).as_deref(),
        Some("new"),
        "a handle that had read key 1 once read the deleted cache's value"
    );
}

#[test]
fn deleting_only_the_index_under_a_reader_leaves_the_cache_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let mut child = Child::start(&dir);
    let reader = Cache::open(&dir).unwrap();
    reader.put(&KEPT, &(1,), &"old".to_owned()).unwrap();
    assert_eq!(get(&reader, 1).as_deref(), Some("old"));
    std::fs::remove_file(dir.join(memo_cache::INDEX_FILE)).unwrap();
    // The reader's next read, past its 10 ms check, makes the index again (and its old
    // connections, closing, take the deleted index's `-wal` and `-shm` with them); until
    // then a new process cannot open the cache (RELIABILITY.md).
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(get(&reader, 1), None, "the deleted index's value was read");
    let stored = child.put(1, "new");
    assert_eq!(
        stored,
        Ok(()),
        "a new process could not store into the cache whose index was deleted"
    );
    assert_eq!(get(&Cache::open(&dir).unwrap(), 1).as_deref(), Some("new"));
}
