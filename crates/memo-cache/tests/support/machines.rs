//! "Machines" for the shared tiers' tests: this test binary run again as a child process that
//! computes keys through a cache with a tier, printing what it computed and got. A test binary
//! that uses it defines `#[test] #[ignore] fn child() { support::machines::child_body(NAME) }`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use memo_cache::{Cache, Function, RemoteConfig};

use super::count_lines;
use crate::children::{KillOnDrop, output_bounded};

/// The value a child computes for key `n`.
pub fn expected(n: u64) -> String {
    format!("value of {n}: {}", n * n + 7)
}

/// Runs this binary as a child "machine": computes `keys` (`"0..20"` or `"1,2,3"`) through a
/// cache in `dir` with the shared tier at `url`, sleeping `delay_ms` per computation, with the
/// `extra` environment. Prints `@@computed N` for each key it computed and `@@got N = V` for each
/// result.
pub fn spawn_child(
    dir: &Path,
    url: &str,
    keys: &str,
    delay_ms: u64,
    extra: &[(&str, &str)],
) -> KillOnDrop {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--ignored",
        "--exact",
        "child",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env("MEMO_TEST_CHILD", "1")
    .env("CHILD_DIR", dir)
    .env("CHILD_URL", url)
    .env("CHILD_KEYS", keys)
    .env("CHILD_DELAY_MS", delay_ms.to_string())
    .env_remove("MEMO_CACHE_REDIS_URL")
    .env_remove("MEMO_CACHE_REMOTE_URL")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    KillOnDrop(cmd.spawn().unwrap())
}

/// What a child computed and got, and its stderr (the warnings).
pub struct ChildOutput {
    pub computed: Vec<u64>,
    pub got: Vec<(u64, String)>,
    pub stderr: String,
}

/// Waits for `child` (bounded) and reads its lines; every value it got must be right.
pub fn finish(mut child: KillOnDrop) -> ChildOutput {
    let out = output_bounded(&mut child);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "the child ran no test:\n{stdout}\n{stderr}"
    );
    let mut result = ChildOutput {
        computed: Vec::new(),
        got: Vec::new(),
        stderr,
    };
    for line in stdout.lines() {
        let Some(line) = line.find("@@").map(|at| &line[at + 2..]) else {
            continue;
        };
        if let Some(n) = line.strip_prefix("computed ") {
            result.computed.push(n.parse().unwrap());
        } else if let Some(rest) = line.strip_prefix("got ") {
            let (n, v) = rest.split_once(" = ").unwrap();
            result.got.push((n.parse().unwrap(), v.to_owned()));
        }
    }
    for (n, v) in &result.got {
        assert_eq!(v, &expected(*n), "a wrong value for {n}");
    }
    result
}

/// [`spawn_child`] without a delay, waited for.
pub fn run_child(dir: &Path, url: &str, keys: &str) -> ChildOutput {
    finish(spawn_child(dir, url, keys, 0, &[]))
}

fn parse_keys(spec: &str) -> Vec<u64> {
    if let Some((a, b)) = spec.split_once("..") {
        (a.parse().unwrap()..b.parse().unwrap()).collect()
    } else {
        spec.split(',').map(|k| k.parse().unwrap()).collect()
    }
}

/// The environment variable `name` as milliseconds, or `default`.
pub fn env_ms(name: &str, default: u64) -> Duration {
    Duration::from_millis(std::env::var(name).map_or(default, |ms| ms.parse().unwrap()))
}

/// The child's body: the keys of `CHILD_KEYS` through the function named `function`, with the
/// tier of `CHILD_URL` under the prefix `CHILD_PREFIX` (`t:` when unset; with `CHILD_FROM_ENV`,
/// the tier and prefix the environment names); `CHILD_LOCK_TTL_MS`, `CHILD_WAIT_MS`,
/// `CHILD_DELAY_MS`, `CHILD_PAUSE_MS`, `CHILD_ROUNDS` (passes over the keys), `CHILD_COMPRESS`
/// (a level) and `CHILD_MAX_VALUE_MIB` tune it. With `CHILD_ROLE=store` or `fetch` it computes (or must fetch from the tier) one
/// 300 MiB `Vec<u8>` instead, for measuring a transfer's peak memory from outside.
pub fn child_body(function: &'static str) {
    assert!(
        std::env::var_os("MEMO_TEST_CHILD").is_some(),
        "`child` is the body of a child process; the tests that call spawn_child run it"
    );
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let square = Function::new(function, "v1", "String");
    let dir = std::env::var("CHILD_DIR").unwrap();
    let mut config = RemoteConfig::new(&std::env::var("CHILD_URL").unwrap())
        .unwrap()
        .prefix(std::env::var("CHILD_PREFIX").unwrap_or_else(|_| "t:".into()))
        .command_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(2))
        .retry_after(Duration::from_millis(200))
        .lock_ttl(env_ms("CHILD_LOCK_TTL_MS", 30_000))
        .wait_timeout(env_ms("CHILD_WAIT_MS", 30_000));
    if let Ok(mib) = std::env::var("CHILD_MAX_VALUE_MIB") {
        config = config.max_value_bytes(mib.parse::<usize>().unwrap() << 20);
    }
    let mut builder = Cache::builder(&dir);
    if std::env::var_os("CHILD_FROM_ENV").is_none() {
        builder = builder.remote(config);
    }
    if let Ok(level) = std::env::var("CHILD_COMPRESS") {
        builder = builder.compress(level.parse().unwrap());
    }
    let cache = builder.open().unwrap();
    let role = std::env::var("CHILD_ROLE").unwrap_or_else(|_| "keys".into());
    if role == "store" || role == "fetch" {
        let big = Function::new("machines::big", "v1", "Vec<u8>");
        let len = 300 << 20;
        let got: Vec<u8> = cache.get_or_compute(&big, &(1,), || {
            assert_eq!(role, "store", "the fetch computed instead of fetching");
            super::noise(len, 1)
        });
        assert_eq!(got.len(), len);
        println!("@@done {role}");
        return;
    }
    let delay = env_ms("CHILD_DELAY_MS", 0);
    let pause = env_ms("CHILD_PAUSE_MS", 0);
    let rounds: usize = std::env::var("CHILD_ROUNDS").map_or(1, |r| r.parse().unwrap());
    for _ in 0..rounds {
        for n in parse_keys(&std::env::var("CHILD_KEYS").unwrap()) {
            let value = cache.get_or_compute(&square, &(n,), || {
                println!("@@computed {n}");
                std::thread::sleep(delay);
                expected(n)
            });
            println!("@@got {n} = {value}");
            std::thread::sleep(pause);
        }
    }
}

// The scenarios every shared tier must pass, each against the tier at `url`.

/// Machine A computes keys 0..20; machine B, configured as a user configures it
/// (`MEMO_CACHE_REMOTE_URL=env_url`, prefix `t:`; its `CHILD_URL` is `decoy`, which must go
/// unused), computes none of them and gets all twenty.
pub fn a_second_machine_recomputes_nothing(url: &str, env_url: &str, decoy: &str) {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = run_child(a.path(), url, "0..20");
    assert_eq!(first.computed.len(), 20);
    let second = finish(spawn_child(
        b.path(),
        decoy,
        "0..20",
        0,
        &[
            ("CHILD_FROM_ENV", "1"),
            ("MEMO_CACHE_REMOTE_URL", env_url),
            ("MEMO_CACHE_REMOTE_PREFIX", "t:"),
        ],
    ));
    assert_eq!(second.computed, Vec::<u64>::new(), "machine B recomputed");
    assert_eq!(second.got.len(), 20);
}

/// A holder computes key 42 for a minute under a 2 s lease (`held` returns once it holds the
/// fleet lock); a waiter starts, then the holder is killed: the waiter takes over and computes
/// it, well before the holder would have finished.
pub fn a_waiter_takes_over_from_a_killed_holder(url: &str, held: impl FnOnce()) {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lease = [("CHILD_LOCK_TTL_MS", "2000")];
    let holder = spawn_child(a.path(), url, "42", 60_000, &lease);
    held();
    let started = Instant::now();
    let waiter = spawn_child(b.path(), url, "42", 0, &lease);
    std::thread::sleep(Duration::from_millis(500));
    drop(holder); // SIGKILL: its lock is no longer renewed
    let out = finish(waiter);
    assert_eq!(out.computed, vec![42], "the waiter took over");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}: it waited past the dead holder's lease",
        started.elapsed()
    );
}

/// A holder computing key 43 for a minute (`held` returns once it holds the fleet lock) is
/// frozen with SIGSTOP; a waiter with a 1.5 s `wait_timeout` computes the key itself, saying so
/// once, and does not wait out the holder.
pub fn a_waiter_gives_up_on_a_frozen_holder(url: &str, held: impl FnOnce()) {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let holder = spawn_child(a.path(), url, "43", 60_000, &[]);
    held();
    let pid = holder.0.id().to_string();
    let signal = |name: &str| Command::new("kill").args([name, &pid]).status().unwrap();
    assert!(signal("-STOP").success());
    let started = Instant::now();
    let out = finish(spawn_child(
        b.path(),
        url,
        "43",
        0,
        &[("CHILD_WAIT_MS", "1500")],
    ));
    signal("-CONT");
    assert_eq!(out.computed, vec![43]);
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(
        count_lines(&out.stderr, "computing here"),
        1,
        "{}",
        out.stderr
    );
}

/// A child computes keys 0..60, 40 ms apart; `before` into the run, `outage` takes the server
/// away and brings it back. Every call returns its right value, with one warning for the
/// outage and one line when the tier is back.
pub fn an_outage_mid_run_leaves_calls_right(url: &str, before: Duration, outage: impl FnOnce()) {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_child(dir.path(), url, "0..60", 0, &[("CHILD_PAUSE_MS", "40")]);
    std::thread::sleep(before);
    outage();
    let out = finish(child);
    assert_eq!(out.got.len(), 60, "every call returned");
    assert_eq!(
        count_lines(&out.stderr, "unavailable"),
        1,
        "one warning per outage:\n{}",
        out.stderr
    );
    assert_eq!(count_lines(&out.stderr, "is back"), 1, "{}", out.stderr);
}
