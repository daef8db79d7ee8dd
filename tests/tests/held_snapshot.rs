//! A handle that keeps hitting holds a read snapshot (see "The held read snapshot" in the
//! library's `index.rs`). These tests check, through the public API, that this is invisible:
//! such a handle sees at once what another process committed (stores, replacements, a clear)
//! and what another handle in the same process committed (stores, replacements, removals), and
//! the WAL stays bounded while it keeps hitting. (To see
//! that a hitting process does hold snapshots between another's stores, which the API does not
//! show, one test also watches its locks on SQLite's `-shm` file.)
//!
//! The other process is `src/bin/snapshot_child.rs`, which answers each command with a
//! `done` line once its transaction has committed. Until that line arrives the test process
//! keeps hitting, so its snapshot is as fresh as a hit loop makes it; whatever it reads after the
//! line must include the commit. No assertion is about time, except that a lock held for a
//! millisecond or more is taken for a held snapshot.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use memo_cache::Cache;
use memo_cache_e2e::functions::HELD;
use memo_cache_e2e::{CHILD_TIMEOUT, KillOnDrop, Lines, small_value, wait_bounded};

const CHILD: &str = env!("CARGO_BIN_EXE_snapshot_child");

/// More than the lookups a handle makes before it holds a snapshot (8 in `index.rs`).
const WARM_HITS: u64 = 50;

/// A `snapshot_child serve` process, changing the cache on command.
struct Writer {
    child: KillOnDrop,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: Option<Lines>,
}

impl Writer {
    fn start(dir: &Path) -> Writer {
        let mut child = KillOnDrop(
            Command::new(CHILD)
                .arg("serve")
                .arg(dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let stdin = child.stdin.take();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let stderr = Some(Lines::new(child.stderr.take().unwrap()));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut writer = Writer {
            child,
            stdin,
            lines,
            stderr,
        };
        assert_eq!(writer.next_line(), "ready");
        writer
    }

    /// Sends one command; its `done` line comes when it has committed.
    fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
    }

    /// The next line of output, waiting (bounded) for it.
    fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(CHILD_TIMEOUT) {
            Ok(line) => line,
            Err(e) => panic!("the writer said nothing ({e}):\n{}", self.stop()),
        }
    }

    /// The next line of output if there is one already.
    fn try_line(&mut self) -> Option<String> {
        match self.lines.try_recv() {
            Ok(line) => Some(line),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => {
                panic!("the writer ended:\n{}", self.stop())
            }
        }
    }

    /// Runs `command` to completion in the writer.
    fn run(&mut self, command: &str) -> String {
        self.send(command);
        let line = self.next_line();
        assert!(line.starts_with(&format!("done {command}")), "{line}");
        line
    }

    /// Ends the writer and returns what it logged; it must have exited cleanly.
    fn stop(&mut self) -> String {
        drop(self.stdin.take());
        let status = wait_bounded(&mut self.child);
        let stderr = self.stderr.take().map(Lines::rest).unwrap_or_default();
        assert!(
            status.success(),
            "the writer failed ({status}):\n{stderr:?}"
        );
        stderr.join("\n")
    }

    /// Ends the writer, which must not have logged anything (no warnings, no errors).
    fn finish(mut self) {
        let stderr = self.stop();
        assert!(stderr.is_empty(), "the writer logged:\n{stderr}");
    }
}

fn get(cache: &Cache, n: u64) -> Option<String> {
    cache.get::<_, String>(&HELD, &(n,)).unwrap()
}

/// Stores [`small_value`] for keys `0..4` and hits them [`WARM_HITS`] times, so `cache` holds a
/// read snapshot.
fn warm_up(cache: &Cache) {
    store_stable(cache);
    hit_stable(cache, WARM_HITS);
}

/// Stores [`small_value`] for the keys `0..4` that the hitters hit.
fn store_stable(cache: &Cache) {
    for n in 0..4 {
        cache.put(&HELD, &(n,), &small_value(n)).unwrap();
    }
}

/// `hits` hits on keys `0..4`, which nobody changes.
fn hit_stable(cache: &Cache, hits: u64) {
    for i in 0..hits {
        let n = i % 4;
        assert_eq!(get(cache, n), Some(small_value(n)), "stable key {n}");
    }
}

/// Reads key `n` in a loop until the writer's `done` line for the command just sent arrives.
/// Every read must be `before` or `after`, and once `after` has been read `before` must never
/// come back. Returns the `done` line and the number of reads.
fn hit_until_done(
    cache: &Cache,
    writer: &mut Writer,
    n: u64,
    before: Option<&str>,
    after: Option<&str>,
) -> (String, u64) {
    let start = Instant::now();
    let mut reads = 0u64;
    let mut changed = false;
    loop {
        let read = get(cache, n);
        reads += 1;
        if read.as_deref() == after {
            changed = true;
        } else {
            assert_eq!(
                read.as_deref(),
                before,
                "read {reads} of key {n}: neither the value before nor the one after"
            );
            assert!(
                !changed,
                "read {reads} of key {n}: {before:?} again after {after:?} had been read"
            );
        }
        if let Some(line) = writer.try_line() {
            return (line, reads);
        }
        assert!(start.elapsed() < CHILD_TIMEOUT, "no answer from the writer");
    }
}

#[test]
fn a_value_another_process_just_stored_is_a_hit_without_recomputing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    warm_up(&cache);
    let mut writer = Writer::start(dir.path());
    for round in 0..20u64 {
        let n = 100 + round;
        let value = format!("stored-by-the-child-{round}");
        writer.send(&format!("put {n} {value}"));
        // Keep hitting other keys (so the snapshot stays held) until the child has committed.
        let mut hits = 0u64;
        let done = loop {
            hit_stable(&cache, 4);
            hits += 4;
            if let Some(line) = writer.try_line() {
                break line;
            }
        };
        assert!(done.starts_with("done put"), "{done}");
        let mut computed = false;
        let got: String = cache.get_or_compute(&HELD, &(n,), || {
            computed = true;
            "computed-by-the-parent".to_owned()
        });
        assert_eq!(
            (got.as_str(), computed),
            (value.as_str(), false),
            "round {round}, after {hits} hits while the child stored"
        );
    }
    writer.finish();
}

#[test]
fn a_value_another_process_replaced_is_never_read_stale() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    warm_up(&cache);
    let mut writer = Writer::start(dir.path());
    let n = 7;
    writer.run(&format!("put {n} value-0"));
    for round in 1..=30u64 {
        let (old, new) = (format!("value-{}", round - 1), format!("value-{round}"));
        // Many hits on the key itself: its value is in the held snapshot.
        for _ in 0..WARM_HITS {
            assert_eq!(get(&cache, n).as_deref(), Some(old.as_str()));
        }
        writer.send(&format!("put {n} {new}"));
        let (done, reads) = hit_until_done(
            &cache,
            &mut writer,
            n,
            Some(old.as_str()),
            Some(new.as_str()),
        );
        assert!(done.starts_with("done put"), "{done}");
        assert_eq!(
            get(&cache, n).as_deref(),
            Some(new.as_str()),
            "round {round}: the first read after the other process committed \
             ({reads} reads while it stored)"
        );
    }
    writer.finish();
}

#[test]
fn after_another_process_clears_the_cache_a_key_just_hit_is_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let mut writer = Writer::start(dir.path());
    for round in 0..10 {
        // Stored again each round by this process (a write of its own ends its snapshot), then
        // hit until it holds one again.
        warm_up(&cache);
        let value = small_value(0);
        writer.send("clear");
        let (done, reads) = hit_until_done(&cache, &mut writer, 0, Some(value.as_str()), None);
        assert!(done.starts_with("done clear"), "{done}");
        assert!(
            !done.ends_with("entries=0"),
            "round {round}: the clear removed nothing: {done}"
        );
        for n in 0..4 {
            assert_eq!(
                get(&cache, n),
                None,
                "round {round}: key {n} after the other process cleared the cache \
                 ({reads} reads of key 0 while it cleared)"
            );
        }
    }
    writer.finish();
}

#[test]
fn a_second_handle_in_the_same_process_sees_stores_and_removals_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = Cache::open(dir.path()).unwrap();
    let b = Cache::open(dir.path()).unwrap();
    warm_up(&a);
    check_other_handle(&a, &b);
    // A clone shares its handle's connections and snapshot: its writes end the snapshot.
    let clone = a.clone();
    check_other_handle(&a, &clone);
}

/// `writer` stores, replaces and removes a key while `reader` keeps hitting: `reader` sees each
/// change at its next read.
fn check_other_handle(reader: &Cache, writer: &Cache) {
    let n = 42;
    for round in 0..100u64 {
        let (first, second) = (format!("first-{round}"), format!("second-{round}"));
        hit_stable(reader, 20);
        for (change, value) in [("stored", &first), ("replaced", &second)] {
            writer.put(&HELD, &(n,), value).unwrap();
            assert_eq!(
                get(reader, n).as_deref(),
                Some(value.as_str()),
                "round {round}: {change}"
            );
            for _ in 0..20 {
                assert_eq!(get(reader, n).as_deref(), Some(value.as_str()));
            }
        }
        assert!(writer.remove(&HELD, &(n,)).unwrap());
        assert_eq!(get(reader, n), None, "round {round}: removed");
    }
}

// ---- The WAL while a process keeps hitting -----------------------------------------------------

/// Small entries stored beside the hitting process. Each commit appends about six 4 KiB pages
/// to the WAL, so beside a reader that never lets go of its snapshot (checkpoints cannot pass
/// it, so the WAL is never restarted) 4000 of them grow it to about 100 MiB; see the
/// calibration below.
const FILL_ENTRIES: u64 = 4_000;

/// SQLite checkpoints every 1000 pages and then starts the WAL over: beside no reader, or one
/// that only reads in autocommit, it stays at about 4 MiB (measured: 4.1 MiB, and 5-12 MiB on a
/// 2-core machine with both cores also kept busy by other processes, where a reader is
/// sometimes descheduled while it reads).
const WAL_BOUND: u64 = 32 * 1024 * 1024;

fn wal_size(dir: &Path) -> u64 {
    let wal = PathBuf::from(format!(
        "{}-wal",
        dir.join(memo_cache::INDEX_FILE).display()
    ));
    std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0)
}

/// A child process hitting 4 keys of [`HELD`] in a loop until the stop file appears.
struct Hitter {
    child: KillOnDrop,
    stdout: Lines,
    stderr: Lines,
}

impl Hitter {
    fn start(dir: &Path, stop: &Path) -> Hitter {
        let mut child = KillOnDrop(
            Command::new(CHILD)
                .arg("hit")
                .arg(dir)
                .arg("4")
                .arg(stop)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut stdout = Lines::new(child.stdout.take().unwrap());
        let stderr = Lines::new(child.stderr.take().unwrap());
        stdout.wait_for("hitting");
        Hitter {
            child,
            stdout,
            stderr,
        }
    }

    /// Stops it, checks it ended well and logged nothing, and returns what it printed.
    fn stop(mut self, stop: &Path) -> Vec<String> {
        std::fs::write(stop, b"stop").unwrap();
        let status = wait_bounded(&mut self.child);
        let (stdout, stderr) = (self.stdout.rest(), self.stderr.rest());
        assert!(status.success(), "the hitter failed: {stdout:?} {stderr:?}");
        assert!(stderr.is_empty(), "the hitter logged: {stderr:?}");
        stdout
    }
}

fn fill(writer: &mut Writer) {
    let step = 500;
    for from in (0..FILL_ENTRIES).step_by(step as usize) {
        writer.run(&format!("fill {from} {step}"));
    }
}

#[test]
fn the_wal_stays_bounded_while_another_process_keeps_hitting() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let stop = work.path().join("stop");
    let cache = Cache::open(dir.path()).unwrap();
    store_stable(&cache);

    let hitter = Hitter::start(dir.path(), &stop);

    let mut writer = Writer::start(dir.path());
    fill(&mut writer);
    // Measured while every process still has the cache open (the last one to close it
    // checkpoints and deletes the WAL).
    let wal = wal_size(dir.path());

    let stdout = hitter.stop(&stop);
    writer.finish();
    println!("WAL after {FILL_ENTRIES} stores beside a hitting process: {wal} bytes ({stdout:?})");
    assert!(
        wal < WAL_BOUND,
        "the WAL grew to {wal} bytes while {FILL_ENTRIES} entries were stored beside a \
         hitting process ({stdout:?})"
    );
    assert_eq!(
        cache.stats().unwrap().entries,
        FILL_ENTRIES + 4,
        "every entry was stored"
    );
}

/// The calibration of the test above: the same stores beside a reader that holds one snapshot
/// throughout grow the WAL past [`WAL_BOUND`], so that test would catch a snapshot never
/// released.
#[test]
fn the_same_stores_beside_a_reader_that_never_lets_go_grow_the_wal_past_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    store_stable(&cache);
    let reader = memo_cache_e2e::raw_index(dir.path());
    reader.execute_batch("BEGIN").unwrap();
    let entries: i64 = reader
        .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(entries, 4);

    let mut writer = Writer::start(dir.path());
    fill(&mut writer);
    let wal = wal_size(dir.path());
    println!("WAL after {FILL_ENTRIES} stores beside a held snapshot: {wal} bytes");
    reader.execute_batch("COMMIT").unwrap();
    writer.finish();
    assert!(
        wal > WAL_BOUND,
        "only {wal} bytes of WAL for {FILL_ENTRIES} entries stored beside a held snapshot: \
         the bound of the test above would not catch one"
    );
}

// ---- The WAL while a process holds snapshots between commits -----------------------------------

/// Small entries stored one at a time, [`PAUSE`] apart, beside the hitting process. Each store
/// appends about six 4 KiB pages to the WAL, so if it were never started over they would grow
/// it to about 20 MiB (measured beside a reader that holds one snapshot throughout: 21 MiB).
const PAUSED_ENTRIES: u64 = 800;

/// Longer than a handle waits without a commit before it begins a held snapshot (2 ms, `QUIET`
/// in `index.rs`), so the hitting process holds snapshots between the stores, unlike beside
/// back-to-back stores, where it always reads in autocommit.
const PAUSE: Duration = Duration::from_millis(5);

/// SQLite checkpoints every 1000 pages, and the hitting process runs one itself before it
/// holds a snapshot: the WAL stays at about 4 MiB (measured: 3.9-4.0 MiB, also with both cores
/// of a 2-core machine kept busy). Low enough to catch a hitter that never lets go of a
/// snapshot it began, though its own writes of hit statistics (every 2 s) end that snapshot
/// too: the WAL then grows to about 9.6 MiB (measured with such a library).
const PAUSED_WAL_BOUND: u64 = 7 * 1024 * 1024;

/// The byte of the `-shm` file that a reader locks (shared) while it reads at read mark 0,
/// which is where a held snapshot reads (it begins only once the WAL is all copied back):
/// `WAL_READ_LOCK(0)`, 3 past the lock area at byte 120
/// ([the WAL-index format](https://sqlite.org/walformat.html), "2.3.1 How the locks are used").
const READ_LOCK_0: libc::off_t = 123;

/// A spell of [`READ_LOCK_0`] held without a break at least this long is a held snapshot: an
/// autocommit read lets go of it after each lookup, some microseconds.
const HELD_SPELL: Duration = Duration::from_millis(1);

/// Held snapshots the test must see. The hitter holds one between two stores only when the WAL
/// is all copied back: after its own checkpoint (at most once a second, `CHECKPOINT_EVERY` in
/// `index.rs`) or after one of the writer's; measured: 5 to 11 in a run, 5 to 7 with both cores
/// also kept busy.
const MIN_HELD: usize = 2;

/// A process holding a lock on [`READ_LOCK_0`] of the open `-shm` file `shm` (another than this
/// one), and whether that lock is shared (a reader) rather than exclusive (a checkpoint).
fn read_lock_0_holder(shm: &std::fs::File) -> Option<(libc::pid_t, bool)> {
    use std::os::fd::AsRawFd;
    // SAFETY: `flock` is plain data, for which all zeroes is a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as _;
    lock.l_whence = libc::SEEK_SET as _;
    lock.l_start = READ_LOCK_0;
    lock.l_len = 1;
    // SAFETY: `shm` is open and F_GETLK writes one `flock`, which `lock` is.
    let rc = unsafe { libc::fcntl(shm.as_raw_fd(), libc::F_GETLK, &raw mut lock) };
    assert_eq!(rc, 0, "F_GETLK: {}", std::io::Error::last_os_error());
    (lock.l_type != libc::F_UNLCK as _).then_some((lock.l_pid, lock.l_type == libc::F_RDLCK as _))
}

/// Samples, every 100 µs or so until `stop`, whether process `pid` reads at read mark 0 (holds
/// a shared lock on [`READ_LOCK_0`] of `shm`); returns how long each spell in which every sample
/// found it reading there lasted (from its first sample to its last, so never more than it
/// really lasted).
///
/// This process must not have the cache open meanwhile: closing `shm` drops every POSIX lock
/// this process holds on the file, SQLite's included.
fn read_lock_0_spells(shm: &Path, pid: u32, stop: &AtomicBool) -> Vec<Duration> {
    let shm = std::fs::File::open(shm).unwrap();
    let pid = libc::pid_t::try_from(pid).unwrap();
    let mut spells = Vec::new();
    let mut spell: Option<(Instant, Instant)> = None;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if read_lock_0_holder(&shm) == Some((pid, true)) {
            spell = Some((spell.map_or(now, |(from, _)| from), now));
        } else if let Some((from, to)) = spell.take() {
            spells.push(to - from);
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    spells.extend(spell.map(|(from, to)| to - from));
    spells
}

#[test]
fn the_wal_stays_bounded_while_another_process_holds_snapshots_between_stores() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let stop = work.path().join("stop");
    {
        let cache = Cache::open(dir.path()).unwrap();
        store_stable(&cache);
        // Closed before the lock probe below opens the `-shm` file.
    }

    let started = Instant::now();
    let hitter = Hitter::start(dir.path(), &stop);

    // The first store ends the snapshot the hitter holds while nobody writes; only then does
    // the probe start, so every spell it sees is one between two stores (or after the last).
    let mut writer = Writer::start(dir.path());
    writer.run("fill 0 1");
    let shm = PathBuf::from(format!(
        "{}-shm",
        dir.path().join(memo_cache::INDEX_FILE).display()
    ));
    let probing = Arc::new(AtomicBool::new(false));
    let probe = {
        let (probing, pid) = (Arc::clone(&probing), hitter.child.id());
        std::thread::spawn(move || read_lock_0_spells(&shm, pid, &probing))
    };
    let step = 100;
    for from in (1..PAUSED_ENTRIES).step_by(step as usize) {
        let count = step.min(PAUSED_ENTRIES - from);
        writer.run(&format!("fill {from} {count} {}", PAUSE.as_micros()));
    }
    // Measured while every process still has the cache open (the last one to close it
    // checkpoints and deletes the WAL).
    let wal = wal_size(dir.path());

    probing.store(true, Ordering::Relaxed);
    let spells = probe.join().unwrap();
    let stdout = hitter.stop(&stop);
    writer.finish();
    let elapsed = started.elapsed();
    let hits: u64 = stdout
        .iter()
        .find_map(|line| line.strip_prefix("hits="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no hit count from the hitter: {stdout:?}"));
    let held: Vec<Duration> = spells
        .iter()
        .copied()
        .filter(|s| *s >= HELD_SPELL)
        .collect();
    let longest = spells.iter().max().copied().unwrap_or_default();
    println!(
        "WAL after {PAUSED_ENTRIES} stores {PAUSE:?} apart beside a hitting process: {wal} \
         bytes; {hits} hits in {elapsed:?}; read lock 0 held {} times, {} of them for \
         {HELD_SPELL:?} or more (longest {longest:?}): {held:?}",
        spells.len(),
        held.len(),
    );
    // The library has no public way to tell whether a handle holds a snapshot, so the test
    // watches the hitter's locks on the `-shm` file (a held snapshot reads at read mark 0 and
    // keeps its lock between lookups). How many hits it made depends on the machine's speed and
    // load, so that count is only printed; every one of them was checked by the hitter.
    assert!(
        held.len() >= MIN_HELD,
        "the hitter held a snapshot between stores only {} times (spells at read mark 0: \
         {spells:?}), so this test did not exercise held snapshots",
        held.len()
    );
    assert!(
        wal < PAUSED_WAL_BOUND,
        "the WAL grew to {wal} bytes while {PAUSED_ENTRIES} entries were stored {PAUSE:?} \
         apart beside a hitting process ({hits} hits; {} held snapshots seen)",
        held.len()
    );

    let cache = Cache::open(dir.path()).unwrap();
    assert_eq!(
        cache.stats().unwrap().entries,
        PAUSED_ENTRIES + 4,
        "every entry was stored"
    );
}
