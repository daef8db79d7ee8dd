//! `memo-cache remote stats|clear|prune` against a real PostgreSQL server (a cluster made by
//! `initdb` for the test): counts by function, clear of one function or the whole prefix, prune
//! by expiry and age; and what the other tiers say of prune.

mod common;

#[allow(dead_code)] // only its free ports serve here
#[path = "../../memo-cache/tests/support/redis_server.rs"]
mod redis_server;

#[path = "../../memo-cache/tests/support/postgres_server.rs"]
mod postgres_server;

use std::time::Duration;

use common::{json_of, memo_cache};
use memo_cache::{Cache, Function, RemoteConfig};

#[test]
fn remote_stats_clear_and_prune_on_postgres() {
    let server = postgres_server::Postgres::start();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let (f, g) = (
        Function::new("cli_pg::f", "v1", "u64"),
        Function::new("cli_pg::g", "v1", "Vec<u8>"),
    );
    let config = RemoteConfig::new(&url).unwrap().prefix("cli-p:");
    let cache = Cache::builder(dir.path().join("a"))
        .remote(config.clone())
        .compress(0)
        .open()
        .unwrap();
    for n in 0..10u64 {
        cache.put(&f, &(n,), &n).unwrap();
    }
    for n in 0..3u64 {
        cache.put(&g, &(n,), &vec![n as u8; 10_000]).unwrap();
    }
    cache
        .put_with_ttl(&f, &(99,), &99u64, Some(Duration::from_millis(300)))
        .unwrap();
    // Another prefix in the same database, which nothing below may touch.
    let other = Cache::builder(dir.path().join("b"))
        .remote(config.clone().prefix("other:"))
        .open()
        .unwrap();
    other.put(&f, &(1,), &1u64).unwrap();
    std::thread::sleep(Duration::from_millis(400));

    let stats = json_of(
        memo_cache()
            .env("MEMO_CACHE_REMOTE_URL", &url)
            .env("MEMO_CACHE_REMOTE_PREFIX", "cli-p:")
            .args(["remote", "stats", "--json"]),
    );
    assert_eq!(stats["tier"], "PostgreSQL");
    assert_eq!(stats["values"], 14, "{stats}");
    assert_eq!(stats["expired"], 1, "{stats}");
    assert_eq!(stats["locks"], 0);
    assert!(stats["disk_bytes"].as_u64().unwrap() > 0);
    let functions = stats["functions"].as_array().unwrap();
    assert_eq!(functions.len(), 2);
    // Largest first.
    assert_eq!(functions[0]["name"], "cli_pg::g");
    assert_eq!(functions[0]["values"], 3);
    assert!(functions[0]["bytes"].as_u64().unwrap() >= 30_000);
    assert_eq!(functions[1]["values"], 11);

    let human = memo_cache()
        .args(["remote", "--url", &url, "--prefix", "cli-p:", "stats"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("14 values"), "{text}");
    assert!(text.contains("  cli_pg::g: 3 values"), "{text}");
    assert!(text.contains("1 expired"), "{text}");

    // Prune: the expired value, then what is older than 90 days.
    let pruned = json_of(memo_cache().args([
        "remote", "--url", &url, "--prefix", "cli-p:", "prune", "--json",
    ]));
    assert_eq!(pruned["removed"], 1);
    let table = server.psql("SELECT table_name FROM memo_cache_schema WHERE prefix = 'cli-p:'");
    server.psql(&format!(
        "UPDATE \"{table}\" SET created = now() - interval '100 days' WHERE function = 'cli_pg::g'"
    ));
    let pruned = memo_cache()
        .args([
            "remote",
            "--url",
            &url,
            "--prefix",
            "cli-p:",
            "prune",
            "--older-than",
            "90d",
        ])
        .output()
        .unwrap();
    assert!(pruned.status.success(), "{pruned:?}");
    let text = String::from_utf8_lossy(&pruned.stdout);
    assert!(text.starts_with("Removed 3 values"), "{text}");
    assert!(text.contains("computed more than 90 days ago"), "{text}");

    // Clear one function, then the rest.
    let cleared = json_of(memo_cache().args([
        "remote",
        "--url",
        &url,
        "--prefix",
        "cli-p:",
        "clear",
        "--func",
        "cli_pg::f",
        "--yes",
        "--json",
    ]));
    assert_eq!(cleared["removed"], 10);
    cache.put(&f, &(1,), &1u64).unwrap();
    let cleared = memo_cache()
        .args([
            "remote", "--url", &url, "--prefix", "cli-p:", "clear", "--yes",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&cleared.stdout).starts_with("Removed 1 values"),
        "{cleared:?}"
    );
    // The other prefix kept its value.
    let stats = json_of(memo_cache().args([
        "remote", "--url", &url, "--prefix", "other:", "stats", "--json",
    ]));
    assert_eq!(stats["values"], 1);
}

#[test]
fn remote_prune_and_clear_by_function_say_what_other_tiers_cannot_do() {
    let port = redis_server::free_port();
    for url in [
        format!("redis://127.0.0.1:{port}"),
        format!("memcache://127.0.0.1:{port}"),
    ] {
        let out = memo_cache()
            .args(["remote", "--url", &url, "prune", "--older-than", "90d"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("does not support prune"), "{stderr}");
        let out = memo_cache()
            .args(["remote", "--url", &url, "clear", "--func", "f", "--yes"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("does not support clearing one function"),
            "{stderr}"
        );
    }
}
