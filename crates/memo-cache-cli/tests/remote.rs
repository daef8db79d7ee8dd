//! `memo-cache remote stats|clear` and the Redis line of `stats`, against a real redis-server.

mod common;

#[allow(dead_code)] // the cluster half of the harness serves the library's tests
#[path = "../../memo-cache/tests/support/redis_server.rs"]
mod redis_server;

use common::{json_of, memo_cache};
use memo_cache::{Cache, Function, RemoteConfig};

#[test]
fn remote_stats_and_clear_see_only_their_prefix() {
    let redis = redis_server::Single::start();
    let url = redis.node.url();
    let dir = tempfile::tempdir().unwrap();
    let f = Function::new("cli_remote::f", "v1", "Vec<u8>");
    let config = RemoteConfig::new(&url)
        .unwrap()
        .prefix("cli-a:")
        .max_value_bytes(1000);
    // Uncompressed, so the 5000 zero bytes stay over the limit.
    let cache = Cache::builder(dir.path().join("a"))
        .remote(config)
        .compress(0)
        .open()
        .unwrap();
    for n in 0..3u32 {
        cache.put(&f, &(n,), &vec![n as u8; 100]).unwrap();
    }
    cache.put(&f, &(99u32,), &vec![0u8; 5000]).unwrap(); // over the limit: local-only
    let other = Cache::builder(dir.path().join("b"))
        .remote(RemoteConfig::new(&url).unwrap().prefix("cli-b:"))
        .open()
        .unwrap();
    other.put(&f, &(1u32,), &vec![1u8; 10]).unwrap();

    let stats = json_of(memo_cache().args([
        "remote", "--url", &url, "--prefix", "cli-a:", "stats", "--json",
    ]));
    assert_eq!(stats["values"], 3);
    assert_eq!(stats["nodes"], 1);

    // No terminal and no --yes: refused, exit 2, nothing removed.
    memo_cache()
        .args(["remote", "--url", &url, "--prefix", "cli-a:", "clear"])
        .assert()
        .code(2);
    let stats = json_of(memo_cache().args([
        "remote", "--url", &url, "--prefix", "cli-a:", "stats", "--json",
    ]));
    assert_eq!(stats["values"], 3);

    memo_cache()
        .args([
            "remote", "--url", &url, "--prefix", "cli-a:", "clear", "--yes",
        ])
        .assert()
        .success()
        .stdout(predicates::str::contains("Removed 3 keys"));
    let stats = json_of(
        memo_cache()
            .env("MEMO_CACHE_REDIS_URL", &url)
            .env("MEMO_CACHE_REDIS_PREFIX", "cli-a:")
            .args(["remote", "stats", "--json"]),
    );
    assert_eq!(stats["values"], 0);
    let theirs = json_of(memo_cache().args([
        "remote", "--url", &url, "--prefix", "cli-b:", "stats", "--json",
    ]));
    assert_eq!(theirs["values"], 1, "another prefix's keys were touched");
}

#[test]
fn stats_says_which_values_stay_local_only() {
    let dir = tempfile::tempdir().unwrap();
    let f = Function::new("cli_remote::g", "v1", "Vec<u8>");
    // Uncompressed, so the 20 MiB of zeros stay over the limit.
    let cache = Cache::builder(dir.path())
        .no_remote()
        .compress(0)
        .open()
        .unwrap();
    cache
        .put(&f, &(1u32,), &vec![0u8; 20 * 1024 * 1024])
        .unwrap(); // over the 16 MiB default
    cache.put(&f, &(2u32,), &vec![0u8; 10]).unwrap();
    drop(cache);
    // Nothing listens on port 1: stats reads the local index and only reports the configuration.
    let stats = json_of(
        memo_cache()
            .env("MEMO_CACHE_REDIS_URL", "redis://127.0.0.1:1")
            .args(["--dir"])
            .arg(dir.path())
            .args(["stats", "--json"]),
    );
    assert_eq!(stats["remote"]["local_only"], 1);
    assert_eq!(stats["remote"]["max_value_bytes"], 16 * 1024 * 1024);
    let plain = json_of(
        memo_cache()
            .args(["--dir"])
            .arg(dir.path())
            .args(["stats", "--json"]),
    );
    assert!(plain["remote"].is_null());
}

#[test]
fn remote_without_a_url_is_one_clear_line() {
    let out = memo_cache().args(["remote", "stats"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no shared tier is configured"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1);
    let bad = memo_cache()
        .args(["remote", "--url", "http://x", "stats"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected redis://"));
}
