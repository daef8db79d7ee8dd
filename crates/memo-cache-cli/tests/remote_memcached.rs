//! `memo-cache remote stats|clear` against a real memcached: stats per server, and clear by
//! moving the namespace generation (memcached cannot list keys).

mod common;

#[allow(dead_code)] // only its free ports serve here
#[path = "../../memo-cache/tests/support/redis_server.rs"]
mod redis_server;

#[path = "../../memo-cache/tests/support/memcached_server.rs"]
mod memcached_server;

use common::{json_of, memo_cache};
use memo_cache::{Cache, Function, RemoteConfig};

#[test]
fn remote_clear_moves_the_namespace_and_stats_show_each_server() {
    let one = memcached_server::Memcached::start();
    let two = memcached_server::Memcached::start();
    let urls = format!("{},{}", one.url(), two.url());
    let dir = tempfile::tempdir().unwrap();
    let f = Function::new("cli_memcached::f", "v1", "u64");
    let config = RemoteConfig::new(&urls).unwrap().prefix("cli-m:");
    let cache = Cache::builder(dir.path().join("a"))
        .remote(config.clone())
        .open()
        .unwrap();
    for n in 0..20u64 {
        cache.put(&f, &(n,), &n).unwrap();
    }

    let stats = json_of(
        memo_cache()
            .env("MEMO_CACHE_REMOTE_URL", &urls)
            .env("MEMO_CACHE_REMOTE_PREFIX", "cli-m:")
            .args(["remote", "stats", "--json"]),
    );
    assert_eq!(stats["tier"], "memcached");
    assert_eq!(stats["servers"].as_array().unwrap().len(), 2);
    let before: Vec<u64> = stats["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["generation"].as_u64().unwrap())
        .collect();
    let human = memo_cache()
        .args(["remote", "--url", &urls, "--prefix", "cli-m:", "stats"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("memcached on 2 servers"), "{text}");
    assert_eq!(text.matches("namespace generation").count(), 2, "{text}");

    // Through the older variable, as scripts written for Redis set it.
    let cleared = memo_cache()
        .env("MEMO_CACHE_REDIS_URL", &urls)
        .env("MEMO_CACHE_REDIS_PREFIX", "cli-m:")
        .args(["remote", "clear", "--yes"])
        .output()
        .unwrap();
    assert!(cleared.status.success(), "{cleared:?}");
    assert!(
        String::from_utf8_lossy(&cleared.stdout).contains("new namespace generation"),
        "{cleared:?}"
    );
    let after = json_of(memo_cache().args([
        "remote", "--url", &urls, "--prefix", "cli-m:", "stats", "--json",
    ]));
    for (i, generation) in before.iter().enumerate() {
        assert_eq!(after["servers"][i]["generation"], generation + 1);
    }
    // Another machine finds nothing of before the clear.
    let fresh = Cache::builder(dir.path().join("b"))
        .remote(config)
        .open()
        .unwrap();
    assert_eq!(fresh.get::<_, u64>(&f, &(3,)).unwrap(), None);
}

/// Attack 16: `remote stats` and `remote clear` with one of two servers frozen (SIGSTOP): both
/// end within the timeouts, exit non-zero, name the server, say it did not answer in plain words
/// (not "Resource temporarily unavailable (os error 11)"), and a clear says the other server
/// was cleared.
#[test]
fn attack_remote_commands_with_one_server_frozen_end_with_a_plain_message() {
    let one = memcached_server::Memcached::start();
    let two = memcached_server::Memcached::start();
    let urls = format!("{},{}", one.url(), two.url());
    let pid = two.pid().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    for args in [&["stats"][..], &["clear", "--yes"][..]] {
        let started = std::time::Instant::now();
        let out = memo_cache()
            .args(["remote", "--url", &urls, "--prefix", "cli-f:"])
            .args(args)
            .timeout(std::time::Duration::from_secs(20))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {out:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{args:?} took {:?}",
            started.elapsed()
        );
        assert!(stderr.contains(&two.url()), "{args:?}: {stderr}");
        assert!(
            stderr.contains("no answer") && !stderr.contains("os error 11"),
            "{args:?}: {stderr}"
        );
        if args[0] == "clear" {
            assert!(stderr.contains("were cleared"), "{stderr}");
        }
    }
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
}
