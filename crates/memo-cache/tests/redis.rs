//! The Redis tier against real servers: a single redis-server and a 3-node Redis Cluster.
//!
//! "Machines" are separate processes with separate local cache directories sharing one Redis.
//! Child processes are this test binary run again as `--ignored --exact child` with
//! `MEMO_TEST_CHILD` set (see `child`).

#[allow(dead_code)] // each test binary uses part of the servers' support
mod support;

#[allow(dead_code)] // the line readers and file waits serve the end-to-end tests
#[path = "../../../tests/src/children.rs"]
mod children;

use std::process::{Command, Stdio};
use std::time::Duration;

use children::KillOnDrop;
use memo_cache::{Cache, Function, RemoteConfig, remote_clear, remote_stats};
use support::count_lines;
use support::machines::{self, ChildOutput, expected, finish};
use support::redis_server::{Cluster, Single};

/// [`machines::spawn_child`] under `prefix`.
fn spawn_child(
    dir: &std::path::Path,
    urls: &str,
    prefix: &str,
    keys: &str,
    delay_ms: u64,
    extra: &[(&str, &str)],
) -> KillOnDrop {
    let mut env = vec![("CHILD_PREFIX", prefix)];
    env.extend_from_slice(extra);
    machines::spawn_child(dir, urls, keys, delay_ms, &env)
}

fn run_child(
    dir: &std::path::Path,
    urls: &str,
    prefix: &str,
    keys: &str,
    delay_ms: u64,
) -> ChildOutput {
    finish(spawn_child(dir, urls, prefix, keys, delay_ms, &[]))
}

static SQUARE: Function = Function::new("redis_test::square", "v1", "String");

/// The body of the child processes of `support::machines`, which run it with `--ignored`.
#[test]
#[ignore = "child process body, spawned by the Redis tier tests through spawn_child"]
fn child() {
    machines::child_body("redis_test::square");
}

#[test]
fn a_second_machine_never_recomputes_what_the_first_computed() {
    let redis = Single::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = run_child(a.path(), &redis.node.url(), "t1:", "0..20", 0);
    assert_eq!(first.computed.len(), 20);
    let second = run_child(b.path(), &redis.node.url(), "t1:", "0..20", 0);
    assert_eq!(
        second.computed,
        Vec::<u64>::new(),
        "machine B recomputed what A had computed"
    );
    assert_eq!(second.got.len(), 20);
    // B now has its own local copies: a third run on B works with Redis gone.
    drop(redis);
    let third = run_child(b.path(), "redis://127.0.0.1:1", "t1:", "0..20", 0);
    assert!(
        third.computed.is_empty(),
        "B's local directory did not keep the values fetched from Redis"
    );
}

#[test]
fn four_processes_on_two_directories_compute_a_slow_key_once() {
    let redis = Single::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let children: Vec<_> = [a.path(), a.path(), b.path(), b.path()]
        .into_iter()
        .map(|dir| spawn_child(dir, &redis.node.url(), "t2:", "42", 1500, &[]))
        .collect();
    let outputs: Vec<ChildOutput> = children.into_iter().map(finish).collect();
    let computed: usize = outputs.iter().map(|o| o.computed.len()).sum();
    assert_eq!(
        computed, 1,
        "the slow key was computed {computed} times across the fleet"
    );
    assert!(outputs.iter().all(|o| o.got == vec![(42, expected(42))]));
}

#[test]
fn redis_killed_mid_run_and_restarted_every_call_is_right_and_the_tier_recovers() {
    let mut redis = Single::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let child = spawn_child(
        a.path(),
        &redis.node.url(),
        "t3:",
        "0..60",
        0,
        &[("CHILD_PAUSE_MS", "40"), ("CHILD_ROUNDS", "1")],
    );
    std::thread::sleep(Duration::from_millis(600));
    redis.node.kill();
    std::thread::sleep(Duration::from_millis(800));
    redis.node.restart();
    let out = finish(child);
    assert_eq!(out.got.len(), 60, "every call returned");
    assert_eq!(
        count_lines(&out.stderr, "unavailable"),
        1,
        "one warning per outage:\n{}",
        out.stderr
    );
    let back = out
        .stderr
        .lines()
        .filter(|l| l.trim_end().ends_with("is back"))
        .count();
    assert_eq!(back, 1, "the tier's return is logged once:\n{}", out.stderr);
    // Keys computed after the restart reached Redis: a fresh machine does not compute them.
    let fresh = run_child(b.path(), &redis.node.url(), "t3:", "55..60", 0);
    assert!(
        fresh.computed.is_empty(),
        "the tier did not recover: {:?}",
        fresh.computed
    );
}

#[test]
fn the_cluster_shares_results_and_survives_a_node_restart() {
    let mut cluster = Cluster::start();
    let urls = cluster.urls();
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let first = run_child(a.path(), &urls, "t4:", "0..30", 0);
    assert_eq!(first.computed.len(), 30);
    let second = run_child(b.path(), &urls, "t4:", "0..30", 0);
    assert!(
        second.computed.is_empty(),
        "machine B recomputed {:?}",
        second.computed
    );

    // A node restarts mid-run (its data is gone: no persistence); every call stays right.
    let child = spawn_child(
        c.path(),
        &urls,
        "t4:",
        "100..160",
        0,
        &[("CHILD_PAUSE_MS", "30")],
    );
    std::thread::sleep(Duration::from_millis(500));
    cluster.nodes[1].restart();
    let out = finish(child);
    assert_eq!(out.got.len(), 60);
    cluster.wait_ok();
    let fresh = run_child(
        tempfile::tempdir().unwrap().path(),
        &urls,
        "t4:",
        "150..160",
        0,
    );
    assert!(
        fresh.computed.is_empty(),
        "the cluster tier did not recover: {:?}",
        fresh.computed
    );
}

#[test]
fn four_processes_compute_a_slow_key_once_on_the_cluster() {
    let cluster = Cluster::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let children: Vec<_> = [a.path(), a.path(), b.path(), b.path()]
        .into_iter()
        .map(|dir| spawn_child(dir, &cluster.urls(), "t5:", "7", 1500, &[]))
        .collect();
    let computed: usize = children
        .into_iter()
        .map(finish)
        .map(|o| o.computed.len())
        .sum();
    assert_eq!(computed, 1);
}

#[test]
fn ttls_map_to_redis_expiry_and_large_values_stay_local() {
    let redis = Single::start();
    let dir = tempfile::tempdir().unwrap();
    let config = RemoteConfig::new(&redis.node.url())
        .unwrap()
        .prefix("t6:")
        .max_value_bytes(1000);
    let cache = Cache::builder(dir.path())
        .remote(config.clone())
        .open()
        .unwrap();
    let f = Function::new("redis_test::blob", "v1", "Vec<u8>");
    cache
        .put_with_ttl(&f, &(1,), &vec![1u8; 10], Some(Duration::from_secs(60)))
        .unwrap();
    // Bytes that do not compress, so they stay over the limit.
    let noise: Vec<u8> = (0..5000u64)
        .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
        .collect();
    cache.put(&f, &(2,), &noise).unwrap();

    let small = config.value_key(&f.key(&(1,)).unwrap());
    let ttl: i64 = redis.node.cli(&["pttl", &small]).parse().unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "PTTL of a 60 s entry was {ttl}");
    let large = config.value_key(&f.key(&(2,)).unwrap());
    assert_eq!(
        redis.node.cli(&["exists", &large]),
        "0",
        "a value over the limit went to Redis"
    );

    let stats = cache.stats().unwrap();
    assert_eq!(stats.local_only, Some(1));
    let remote = remote_stats(&config).unwrap();
    assert_eq!((remote.values, remote.nodes), (1, 1));
}

#[test]
fn a_corrupt_redis_value_is_a_miss_never_a_wrong_answer() {
    let redis = Single::start();
    let config = RemoteConfig::new(&redis.node.url()).unwrap().prefix("t7:");
    let a = tempfile::tempdir().unwrap();
    let cache = Cache::builder(a.path())
        .remote(config.clone())
        .open()
        .unwrap();
    cache.put(&SQUARE, &(5u64,), &expected(5)).unwrap();
    let name = config.value_key(&SQUARE.key(&(5u64,)).unwrap());
    // Flip the last byte of the stored value (SETRANGE keeps the length).
    let len: usize = redis.node.cli(&["strlen", &name]).parse().unwrap();
    redis
        .node
        .cli(&["setrange", &name, &(len - 2).to_string(), "#"]);

    let b = tempfile::tempdir().unwrap();
    let other = Cache::builder(b.path()).remote(config).open().unwrap();
    let mut computed = false;
    let value = other.get_or_compute(&SQUARE, &(5u64,), || {
        computed = true;
        expected(5)
    });
    assert!(computed, "a corrupt Redis value was served");
    assert_eq!(value, expected(5));
}

#[test]
fn remote_clear_removes_only_this_prefix() {
    let redis = Single::start();
    let dir = tempfile::tempdir().unwrap();
    let mine = RemoteConfig::new(&redis.node.url())
        .unwrap()
        .prefix("proj-a:");
    let theirs = RemoteConfig::new(&redis.node.url())
        .unwrap()
        .prefix("proj-b:");
    let a = Cache::builder(dir.path().join("a"))
        .remote(mine.clone())
        .open()
        .unwrap();
    let b = Cache::builder(dir.path().join("b"))
        .remote(theirs.clone())
        .open()
        .unwrap();
    for n in 0..25u64 {
        a.put(&SQUARE, &(n,), &expected(n)).unwrap();
        b.put(&SQUARE, &(n,), &expected(n)).unwrap();
    }
    assert_eq!(remote_clear(&mine).unwrap(), 25);
    assert_eq!(remote_stats(&mine).unwrap().values, 0);
    assert_eq!(remote_stats(&theirs).unwrap().values, 25);
}

#[test]
fn redis_down_from_the_start_means_local_only_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_child(dir.path(), "redis://127.0.0.1:1", "t8:", "0..30", 0, &[]);
    let out = finish(child);
    assert_eq!(out.computed.len(), 30);
    assert_eq!(count_lines(&out.stderr, "unavailable"), 1, "{}", out.stderr);
    let again = run_child(dir.path(), "redis://127.0.0.1:1", "t8:", "0..30", 0);
    assert!(
        again.computed.is_empty(),
        "the local tier did not keep the values"
    );
}

/// The port of the server for the attribute test: `remote = ".."` is a literal, so this one test
/// uses a fixed port.
const MACRO_PORT: u16 = 16_399;

#[memo_cache::disk_cache(remote = "redis://127.0.0.1:16399", name = "redis_test::through_macro")]
fn through_macro(n: u64) -> String {
    println!("@@computed {n}");
    expected(n)
}

/// Not a test of its own: the child of the `#[disk_cache(remote = ..)]` test, which runs it with
/// `--ignored`.
#[test]
#[ignore = "child process body, spawned by the_attribute_remote_option_shares_results_between_machines"]
fn macro_child() {
    assert!(
        std::env::var_os("MEMO_TEST_MACRO_CHILD").is_some(),
        "`macro_child` is the body of a child process; \
         the_attribute_remote_option_shares_results_between_machines runs it"
    );
    for n in 0..10 {
        println!("@@got {n} = {}", through_macro(n));
    }
    assert!(through_macro__is_cached(3));
}

#[test]
fn the_attribute_remote_option_shares_results_between_machines() {
    let data = tempfile::tempdir().unwrap();
    let _redis = support::redis_server::Node::start_on(data.path(), MACRO_PORT);
    let run = |dir: &std::path::Path| {
        let child = KillOnDrop(
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--ignored",
                    "--exact",
                    "macro_child",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env("MEMO_TEST_MACRO_CHILD", "1")
                .env("MEMO_CACHE_DIR", dir)
                .env_remove("MEMO_CACHE_REDIS_URL")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        finish(child)
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert_eq!(run(a.path()).computed.len(), 10);
    let second = run(b.path());
    assert!(
        second.computed.is_empty(),
        "machine B recomputed {:?}",
        second.computed
    );
    assert_eq!(second.got.len(), 10);
}

#[test]
fn rediss_urls_speak_tls_and_verify_the_server() {
    let tls = support::redis_server::Tls::start();
    let ca = tls.ca_file.to_str().unwrap().to_owned();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let trusted = [("SSL_CERT_FILE", ca.as_str())];
    let first = finish(spawn_child(
        a.path(),
        &tls.url(),
        "tls:",
        "0..10",
        0,
        &trusted,
    ));
    assert_eq!(first.computed.len(), 10);
    assert_eq!(
        count_lines(&first.stderr, "unavailable"),
        0,
        "{}",
        first.stderr
    );
    let second = finish(spawn_child(
        b.path(),
        &tls.url(),
        "tls:",
        "0..10",
        0,
        &trusted,
    ));
    assert!(
        second.computed.is_empty(),
        "values did not travel over TLS: {:?}",
        second.computed
    );

    // A server whose certificate is not trusted is refused: local-only, one warning, right values.
    let c = tempfile::tempdir().unwrap();
    let untrusted = finish(spawn_child(
        c.path(),
        &tls.url(),
        "tls:",
        "0..10",
        0,
        &[("SSL_CERT_FILE", "/dev/null")],
    ));
    assert_eq!(untrusted.computed.len(), 10, "an untrusted server was used");
    assert_eq!(
        count_lines(&untrusted.stderr, "unavailable"),
        1,
        "{}",
        untrusted.stderr
    );
}

#[test]
fn the_environment_variables_enable_the_tier_and_name_its_prefix() {
    let redis = Single::start();
    let url = redis.node.url();
    let env = [
        ("CHILD_FROM_ENV", "1"),
        ("MEMO_CACHE_REDIS_URL", url.as_str()),
        ("MEMO_CACHE_REDIS_PREFIX", "from-env:"),
    ];
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = finish(spawn_child(a.path(), &url, "ignored:", "0..5", 0, &env));
    assert_eq!(first.computed.len(), 5);
    let second = finish(spawn_child(b.path(), &url, "ignored:", "0..5", 0, &env));
    assert!(
        second.computed.is_empty(),
        "the environment did not enable the tier"
    );
    let config = RemoteConfig::new(&url).unwrap().prefix("from-env:");
    assert_eq!(
        remote_stats(&config).unwrap().values,
        5,
        "values are not under the prefix"
    );
}

#[test]
fn a_waiter_takes_over_an_expired_fleet_lock_and_gives_up_on_a_held_one() {
    let redis = Single::start();
    let config = RemoteConfig::new(&redis.node.url()).unwrap().prefix("t9:");
    let lock_of = |n: u64| {
        let value = config.value_key(&SQUARE.key(&(n,)).unwrap());
        value.replacen("t9:v:", "t9:l:", 1)
    };
    // A holder that died: its lock expires after 800 ms, and the waiter computes then.
    redis
        .node
        .cli(&["set", &lock_of(1), "dead-holder", "px", "800"]);
    let dir = tempfile::tempdir().unwrap();
    let took_over = finish(spawn_child(
        dir.path(),
        &redis.node.url(),
        "t9:",
        "1",
        0,
        &[],
    ));
    assert_eq!(took_over.computed, vec![1]);
    assert_eq!(took_over.got, vec![(1, expected(1))]);
    assert_eq!(
        count_lines(&took_over.stderr, "computing here"),
        0,
        "{}",
        took_over.stderr
    );

    // A holder that never finishes: the waiter gives up after wait_timeout and computes.
    redis
        .node
        .cli(&["set", &lock_of(2), "slow-holder", "px", "600000"]);
    let gave_up = finish(spawn_child(
        dir.path(),
        &redis.node.url(),
        "t9:",
        "2",
        0,
        &[("CHILD_WAIT_MS", "700")],
    ));
    assert_eq!(gave_up.computed, vec![2]);
    assert_eq!(gave_up.got, vec![(2, expected(2))]);
    assert_eq!(
        count_lines(&gave_up.stderr, "computing here"),
        1,
        "{}",
        gave_up.stderr
    );
}

/// One function in two builds (same name, fingerprint and return type): without a ttl, then with
/// one of a second.
fn stamp_builds() -> (Function, Function) {
    let plain = Function::new("redis_test::stamp", "v1", "u64");
    (plain.clone(), plain.with_ttl(Duration::from_secs(1)))
}

#[test]
fn the_ttl_in_force_applies_to_redis_values_stored_before_it() {
    let redis = Single::start();
    let config = RemoteConfig::new(&redis.node.url()).unwrap().prefix("t20:");
    let clock = memo_cache::ManualClock::new(1_700_000_000_000);
    let machine = |dir: &std::path::Path| {
        Cache::builder(dir)
            .clock(clock.clone())
            .remote(config.clone())
            .open()
            .unwrap()
    };
    let (plain, short) = stamp_builds();
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let first = machine(a.path());
    for x in 1..=2u64 {
        first.put(&plain, &(x,), &(x * 10)).unwrap();
    }
    clock.advance(Duration::from_secs(3));
    // Another machine with the ttl: Redis's copy is 3 s old, a miss.
    let later = machine(b.path());
    assert_eq!(later.get::<_, u64>(&short, &(1u64,)).unwrap(), None);
    assert!(!later.contains(&short, &(2u64,)).unwrap());
    // Without the ttl it is served, and its local copy keeps its creation time: still too old
    // for the ttl.
    let plain_machine = machine(c.path());
    assert_eq!(
        plain_machine.get::<_, u64>(&plain, &(1u64,)).unwrap(),
        Some(10)
    );
    assert_eq!(plain_machine.get::<_, u64>(&short, &(1u64,)).unwrap(), None);
    let created = plain_machine
        .entry(&plain.key(&(1u64,)).unwrap())
        .unwrap()
        .unwrap()
        .created;
    assert_eq!(
        created,
        std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000)
    );
}

#[test]
fn values_of_the_older_redis_layout_are_read_and_a_ttl_recomputes_them() {
    let redis = Single::start();
    let config = RemoteConfig::new(&redis.node.url()).unwrap().prefix("t21:");
    let (plain, short) = stamp_builds();
    let dir = tempfile::tempdir().unwrap();
    let local = Cache::builder(dir.path()).no_remote().open().unwrap();
    let mut conn = redis::Client::open(redis.node.url())
        .unwrap()
        .get_connection()
        .unwrap();
    for x in 1..=2u64 {
        // What an older memo-cache stored: "MC1" ‖ hash ‖ expiry (0: none) ‖ value.
        let key = plain.key(&(x,)).unwrap();
        local.put(&plain, &(x,), &(x * 10)).unwrap();
        let bytes = local.stored_bytes(&key).unwrap().unwrap();
        let mut old = b"MC1".to_vec();
        old.extend_from_slice(&memo_cache::Digest::of(&bytes).0);
        old.extend_from_slice(&0i64.to_le_bytes());
        old.extend_from_slice(&bytes);
        redis::cmd("SET")
            .arg(config.value_key(&key))
            .arg(old)
            .query::<()>(&mut conn)
            .unwrap();
    }
    let reader = |dir: &std::path::Path| Cache::builder(dir).remote(config.clone()).open().unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert_eq!(
        reader(a.path()).get::<_, u64>(&plain, &(1u64,)).unwrap(),
        Some(10)
    );
    // Its age is unknown: under a ttl it is computed again.
    let with_ttl = reader(b.path());
    let mut computed = false;
    let value = with_ttl.get_or_compute(&short, &(2u64,), || {
        computed = true;
        20u64
    });
    assert!(computed, "a value of unknown age was served under a ttl");
    assert_eq!(value, 20);
}

/// A compressed value travels as stored: its zstd frame under the `MC3` tag, with the local
/// row's hash; another machine, compressing nothing itself, reads it and keeps it as it came.
/// An uncompressed value keeps the `MC2` tag that builds from before compression read.
#[test]
fn compressed_values_travel_compressed_and_are_read_by_another_machine() {
    let redis = Single::start();
    let config = RemoteConfig::new(&redis.node.url()).unwrap().prefix("t30:");
    let f = Function::new("redis_test::report", "v1", "String");
    let text = "2024-05-17 INFO request path=/api/items status=200\n".repeat(2000);
    let a = tempfile::tempdir().unwrap();
    let writer = Cache::builder(a.path())
        .remote(config.clone())
        .compress(3)
        .open()
        .unwrap();
    writer.put(&f, &(1,), &text).unwrap();
    writer.put(&f, &(2,), &"short".to_string()).unwrap();
    let name = config.value_key(&f.key(&(1,)).unwrap());
    let len: usize = redis.node.cli(&["strlen", &name]).parse().unwrap();
    assert!(len < text.len() / 10, "{len} bytes in Redis");
    assert_eq!(redis.node.cli(&["getrange", &name, "0", "2"]), "MC3");
    let short = config.value_key(&f.key(&(2,)).unwrap());
    assert_eq!(redis.node.cli(&["getrange", &short, "0", "2"]), "MC2");

    let b = tempfile::tempdir().unwrap();
    let reader = Cache::builder(b.path())
        .remote(config)
        .compress(0)
        .open()
        .unwrap();
    assert_eq!(
        reader.get::<_, String>(&f, &(1,)).unwrap(),
        Some(text.clone())
    );
    let key = f.key(&(1,)).unwrap();
    let kept = reader.entry(&key).unwrap().expect("a local copy");
    assert!(kept.compressed);
    assert_eq!(kept.hash, writer.entry(&key).unwrap().unwrap().hash);
    assert_eq!(
        reader.get::<_, String>(&f, &(2,)).unwrap(),
        Some("short".into())
    );
}
