//! A shared tier's URL given to a build without that tier's cargo feature is not ignored
//! quietly: a real process (this test binary, run again as a child) says so in one line on
//! stderr, runs its cached functions local-only, and `MEMO_CACHE_QUIET=1` mutes the line.
//!
//! The memcached cases run in builds without the `memcached` feature; the Redis
//! one in builds without the `redis` feature, the PostgreSQL ones without `postgres`
//! (`cargo test -p memo-cache-rs`).

#![cfg(not(feature = "memcached"))]

use std::process::Command;

use memo_cache::{Cache, Function, RemoteConfig};

#[memo_cache::disk_cache(name = "tier_not_built::double")]
fn double(x: u64) -> u64 {
    x * 2
}

#[memo_cache::disk_cache(name = "tier_not_built::triple", remote = "memcache://127.0.0.1:1")]
fn triple(x: u64) -> u64 {
    x * 3
}

#[memo_cache::disk_cache(
    name = "tier_not_built::quadruple",
    remote = "postgres://memo@127.0.0.1:1/db"
)]
fn quadruple(x: u64) -> u64 {
    x * 4
}

/// What the child calls: `CHILD_CALLS` names it.
#[test]
#[ignore = "child process body, run by the tests below"]
fn child_calls_cached_functions() {
    let calls = std::env::var("CHILD_CALLS").unwrap();
    for i in 0..3 {
        match calls.as_str() {
            "double" => assert_eq!(double(i), i * 2),
            "triple" => assert_eq!(triple(i), i * 3),
            "quadruple" => assert_eq!(quadruple(i), i * 4),
            "builder" => {
                let dir = std::env::var("MEMO_CACHE_DIR").unwrap();
                let cache = Cache::builder(dir)
                    .remote(RemoteConfig::new("memcache://127.0.0.1:1").unwrap())
                    .open()
                    .unwrap();
                assert!(cache.remote().is_none(), "no tier without its feature");
                let f = Function::new("tier_not_built::f", "v1", "u64");
                assert_eq!(cache.get_or_compute(&f, &(i,), || i + 1), i + 1);
            }
            other => panic!("unknown CHILD_CALLS {other}"),
        }
    }
}

/// Runs the child with `env` and returns its stderr; asserts it succeeded.
fn child(calls: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "child_calls_cached_functions",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("CHILD_CALLS", calls)
    .env("MEMO_CACHE_DIR", dir.path())
    .env_remove("MEMO_CACHE_QUIET")
    .env_remove("MEMO_CACHE_REMOTE_URL")
    .env_remove("MEMO_CACHE_REDIS_URL")
    .env_remove("RUST_LOG");
    for (name, value) in env {
        cmd.env(name, value);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "child failed: {stderr}");
    // A filter that matched nothing also exits 0, and a child that ran nothing prints no
    // warning: make sure the child body really ran.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "the child ran no test:\n{stdout}\n{stderr}"
    );
    stderr
}

fn warnings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("memo-cache: warning:"))
        .collect()
}

#[test]
fn a_memcached_url_in_the_environment_is_reported_once() {
    let stderr = child(
        "double",
        &[("MEMO_CACHE_REMOTE_URL", "memcache://127.0.0.1:1")],
    );
    let lines = warnings(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("memcache://127.0.0.1:1")
            && lines[0].contains("lacks its `memcached` feature")
            && lines[0].contains("MEMO_CACHE_QUIET=1"),
        "{stderr}"
    );
}

#[test]
fn the_quiet_variable_mutes_the_line() {
    let stderr = child(
        "double",
        &[
            ("MEMO_CACHE_REMOTE_URL", "memcache://127.0.0.1:1"),
            ("MEMO_CACHE_QUIET", "1"),
        ],
    );
    assert!(warnings(&stderr).is_empty(), "{stderr}");
}

#[test]
fn a_memcached_url_in_the_attribute_is_reported_once() {
    let stderr = child("triple", &[]);
    let lines = warnings(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("`memcached` feature"), "{stderr}");
}

#[test]
fn a_memcached_url_on_the_builder_is_reported_once() {
    let stderr = child("builder", &[]);
    assert_eq!(warnings(&stderr).len(), 1, "{stderr}");
}

#[cfg(not(feature = "redis"))]
#[test]
fn a_redis_url_in_the_older_variable_is_reported_once() {
    let stderr = child("double", &[("MEMO_CACHE_REDIS_URL", "redis://127.0.0.1:1")]);
    let lines = warnings(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("lacks its `redis` feature"), "{stderr}");
}

#[cfg(not(feature = "postgres"))]
#[test]
fn a_postgres_url_in_the_attribute_or_the_environment_is_reported_once() {
    for (calls, env) in [
        ("quadruple", &[][..]),
        (
            "double",
            &[(
                "MEMO_CACHE_REMOTE_URL",
                "postgresql://memo:secret@127.0.0.1:1/db",
            )][..],
        ),
    ] {
        let stderr = child(calls, env);
        let lines = warnings(&stderr);
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].contains("shared PostgreSQL tier")
                && lines[0].contains("lacks its `postgres` feature"),
            "{stderr}"
        );
        assert!(
            !stderr.contains("secret"),
            "the password was shown: {stderr}"
        );
    }
}
