//! An outside tester's attacks on `memo-cache remote stats|clear|prune` with PostgreSQL: odd
//! ages, LIKE wildcards in a function name, a server that is down or frozen, a password in the
//! URL.

#[allow(dead_code)] // only its free ports serve here
#[path = "../../memo-cache/tests/support/redis_server.rs"]
mod redis_server;

#[path = "../../memo-cache/tests/support/postgres_server.rs"]
mod postgres_server;

use std::time::{Duration, Instant};

use assert_cmd::Command;
use memo_cache::{Cache, Function, RemoteConfig};

fn memo_cache(url: &str, prefix: &str) -> Command {
    let mut cmd = Command::cargo_bin("memo-cache").unwrap();
    cmd.env_remove("MEMO_CACHE_REDIS_URL")
        .env_remove("MEMO_CACHE_REDIS_PREFIX")
        .env_remove("MEMO_CACHE_DIR")
        .env("MEMO_CACHE_REMOTE_URL", url)
        .env("MEMO_CACHE_REMOTE_PREFIX", prefix)
        .timeout(Duration::from_secs(120));
    cmd
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn prune_with_odd_ages_neither_panics_nor_removes_what_is_young() {
    let server = postgres_server::Postgres::start();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let f = Function::new("cli_attack::f", "v1", "u64");
    let cache = Cache::builder(dir.path())
        .remote(RemoteConfig::new(&url).unwrap().prefix("ages:"))
        .open()
        .unwrap();
    cache.put(&f, &(1,), &1u64).unwrap();
    for age in ["99999999d", "500000000000y", "18446744073709551615s"] {
        let out = memo_cache(&url, "ages:")
            .args(["remote", "prune", "--older-than", age])
            .output()
            .unwrap();
        let said = text(&out);
        assert!(!said.contains("panicked"), "{age}: {said}");
        assert!(out.status.success(), "{age}: {said}");
    }
    let stats = memo_cache(&url, "ages:")
        .args(["remote", "stats", "--json"])
        .output()
        .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["values"], 1, "{stats}");
    // A negative age is refused by the parser, with a message, not a panic.
    let out = memo_cache(&url, "ages:")
        .args(["remote", "prune", "--older-than", "-1d"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!text(&out).contains("panicked"), "{}", text(&out));
}

#[test]
fn clear_of_a_function_named_with_like_wildcards_clears_only_that_one() {
    let server = postgres_server::Postgres::start();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let config = RemoteConfig::new(&url).unwrap().prefix("like:");
    let cache = Cache::builder(dir.path()).remote(config).open().unwrap();
    let (f, g) = (
        Function::new("cli_attack::a_b", "v1", "u64"),
        Function::new("cli_attack::aXb", "v1", "u64"),
    );
    cache.put(&f, &(1,), &1u64).unwrap();
    cache.put(&g, &(1,), &1u64).unwrap();
    for name in ["cli_attack::a%", "cli_attack::a_b"] {
        memo_cache(&url, "like:")
            .args(["remote", "clear", "--yes", "--func", name])
            .assert()
            .success();
    }
    let stats = memo_cache(&url, "like:")
        .args(["remote", "stats", "--json"])
        .output()
        .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["values"], 1, "{stats}");
    assert_eq!(stats["functions"][0]["name"], "cli_attack::aXb");
}

/// A server whose postmaster is frozen (SIGSTOP): every remote command ends with a message
/// within seconds, and the password never shows.
#[test]
fn remote_commands_against_a_frozen_or_absent_server_end_quickly_and_hide_the_password() {
    let server = postgres_server::Postgres::start();
    let pid: i32 = std::fs::read_to_string(server.data_dir().join("data/postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let url = format!(
        "postgres://postgres:hunter2%40x@127.0.0.1:{}/postgres",
        server.port
    );
    /// Continues the server however the test ends, so its drop can stop it.
    struct Thaw(i32);
    impl Drop for Thaw {
        fn drop(&mut self) {
            // SAFETY: a plain kill(2) of the server this test started.
            unsafe { libc::kill(self.0, libc::SIGCONT) };
        }
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let _thaw = Thaw(pid);
    let absent = format!(
        "postgres://postgres:hunter2%40x@127.0.0.1:{}/postgres",
        redis_server::free_port()
    );
    for url in [&url, &absent] {
        for args in [
            &["remote", "stats"][..],
            &["remote", "clear", "--yes", "--func", "x"],
            &["remote", "prune", "--older-than", "90d"],
        ] {
            let started = Instant::now();
            let out = memo_cache(url, "frozen:").args(args).output().unwrap();
            let took = started.elapsed();
            let said = text(&out);
            assert!(!out.status.success(), "{args:?}: {said}");
            assert!(took < Duration::from_secs(15), "{args:?} took {took:?}");
            assert!(!said.contains("hunter2"), "{args:?}: {said}");
            assert!(
                said.contains("PostgreSQL") || said.contains("127.0.0.1"),
                "{said}"
            );
        }
    }
}

/// A server that refuses the statement (a read-only database): the message says why, not only
/// "db error".
#[test]
fn a_refused_statement_is_explained_not_just_db_error() {
    let server = postgres_server::Postgres::start();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let f = Function::new("cli_attack::f", "v1", "u64");
    let cache = Cache::builder(dir.path())
        .remote(RemoteConfig::new(&url).unwrap().prefix("ro:"))
        .open()
        .unwrap();
    cache.put(&f, &(1,), &1u64).unwrap();
    server.psql("ALTER DATABASE postgres SET default_transaction_read_only = on");
    let out = memo_cache(&url, "ro:")
        .args(["remote", "clear", "--yes"])
        .output()
        .unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("read-only"), "{said}");
}
