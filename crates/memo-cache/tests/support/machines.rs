//! "Machines" for the shared tiers' tests: this test binary run again as a child process that
//! computes keys through a cache with a tier, printing what it computed and got. A test binary
//! that uses it defines `#[test] #[ignore] fn child() { support::machines::child_body(NAME) }`.

#![allow(dead_code)] // the Redis tests have machines of their own

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use memo_cache::{Cache, Function, RemoteConfig};

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
/// tier of `CHILD_URL` under the prefix `t:` (or, with `CHILD_FROM_ENV`, the tier the
/// environment names); `CHILD_LOCK_TTL_MS`, `CHILD_WAIT_MS`, `CHILD_DELAY_MS` and
/// `CHILD_PAUSE_MS` tune it.
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
    let config = RemoteConfig::new(&std::env::var("CHILD_URL").unwrap())
        .unwrap()
        .prefix("t:")
        .command_timeout(Duration::from_secs(2))
        .connect_timeout(Duration::from_secs(2))
        .retry_after(Duration::from_millis(200))
        .lock_ttl(env_ms("CHILD_LOCK_TTL_MS", 30_000))
        .wait_timeout(env_ms("CHILD_WAIT_MS", 30_000));
    let cache = if std::env::var_os("CHILD_FROM_ENV").is_some() {
        Cache::open(&dir).unwrap()
    } else {
        Cache::builder(&dir).remote(config).open().unwrap()
    };
    let delay = env_ms("CHILD_DELAY_MS", 0);
    let pause = env_ms("CHILD_PAUSE_MS", 0);
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
