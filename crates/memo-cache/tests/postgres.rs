//! The PostgreSQL tier against real PostgreSQL servers: each test makes its own cluster with
//! `initdb` in a temporary directory and runs it on a free loopback port (see
//! `support/postgres_server.rs`).
//!
//! "Machines" are separate processes with separate local cache directories sharing the server.
//! Child processes are this test binary run again as `--ignored --exact child` with
//! `MEMO_TEST_CHILD` set.

#[allow(dead_code)] // each test binary uses part of the servers' support
mod support;

#[allow(dead_code)] // the line readers and file waits serve the end-to-end tests
#[path = "../../../tests/src/children.rs"]
mod children;

use std::time::{Duration, Instant};

use memo_cache::{
    Cache, Function, RemoteConfig, remote_clear, remote_clear_function, remote_prune, remote_stats,
};
use support::machines::{self, expected, finish, run_child, spawn_child};
use support::postgres_server::Postgres;
use support::{count_lines, noise};

static SQUARE: Function = Function::new("postgres_test::square", "v1", "String");

/// The body of the child processes of `support::machines`, which run it with `--ignored`.
#[test]
#[ignore = "child process body, spawned by the PostgreSQL tier tests through spawn_child"]
fn child() {
    machines::child_body("postgres_test::square");
}

fn table_of(server: &Postgres, prefix: &str) -> String {
    server.psql(&format!(
        "SELECT table_name FROM memo_cache_schema WHERE prefix = '{}'",
        prefix.replace('\'', "''")
    ))
}

#[test]
fn a_second_machine_never_recomputes_what_the_first_computed() {
    let server = Postgres::start();
    // As a user configures it: MEMO_CACHE_REMOTE_URL, and the postgresql:// spelling.
    let env_url = server.url().replace("postgres://", "postgresql://");
    machines::a_second_machine_recomputes_nothing(
        &server.url(),
        &env_url,
        "postgres://unused@nowhere/x",
    );
    // The row keeps the envelope's fields as columns a person can read.
    let table = table_of(&server, "t:");
    let row = server.psql(&format!(
        "SELECT function, size = length(value), length(hash), expires IS NULL \
         FROM \"{table}\" LIMIT 1"
    ));
    assert_eq!(row, "postgres_test::square|t|32|t");
    assert_eq!(
        server.psql(&format!("SELECT count(*) FROM \"{table}\"")),
        "20"
    );
}

#[test]
fn values_of_3_mb_and_300_mb_travel_whole() {
    let server = Postgres::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Over the default limit of 256 MiB.
    let config = RemoteConfig::new(&server.url())
        .unwrap()
        .prefix("big:")
        .max_value_bytes(400 << 20);
    let f = Function::new("postgres_test::big", "v1", "Vec<u8>");
    let open = |dir: &std::path::Path| {
        Cache::builder(dir)
            .remote(config.clone())
            .compress(0)
            .open()
            .unwrap()
    };
    let (one, two) = (open(a.path()), open(b.path()));
    for (n, len) in [(3u64, 3 * 1024 * 1024), (300, 300 * 1024 * 1024)] {
        let value = noise(len, n);
        assert_eq!(one.get_or_compute(&f, &(n,), || value.clone()), value);
        let got: Vec<u8> = two.get_or_compute(&f, &(n,), || panic!("recomputed {n} MB"));
        assert!(got == value, "{n} MB came back different");
    }
    let table = table_of(&server, "big:");
    // The stored sizes: the encoded value, a few bytes of framing over the vector.
    let sizes: Vec<i64> = server
        .psql(&format!(
            "SELECT size FROM \"{table}\" WHERE size = length(value) ORDER BY size"
        ))
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(sizes.len(), 2, "{sizes:?}");
    assert!((3 << 20..(3 << 20) + 64).contains(&sizes[0]), "{sizes:?}");
    assert!(
        (300 << 20..(300 << 20) + 64).contains(&sizes[1]),
        "{sizes:?}"
    );
    // A value over the limit stays local.
    let small = RemoteConfig::new(&server.url())
        .unwrap()
        .prefix("big:")
        .max_value_bytes(1024);
    let three = Cache::builder(tempfile::tempdir().unwrap().path())
        .remote(small)
        .open()
        .unwrap();
    three.put(&f, &(7,), &noise(4096, 7)).unwrap();
    assert_eq!(
        server.psql(&format!("SELECT count(*) FROM \"{table}\"")),
        "2"
    );
}

#[test]
fn results_survive_a_server_restart_and_a_handle_reconnects_by_itself() {
    let mut server = Postgres::start();
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    assert_eq!(
        run_child(a.path(), &server.url(), "0..10").computed.len(),
        10
    );
    let config = RemoteConfig::new(&server.url())
        .unwrap()
        .prefix("t:")
        .retry_after(Duration::from_millis(100));
    let handle = Cache::builder(c.path()).remote(config).open().unwrap();
    assert_eq!(
        handle.get::<_, String>(&SQUARE, &(1,)).unwrap(),
        Some(expected(1))
    );
    server.restart();
    // A fresh machine after the restart computes nothing.
    let after = run_child(b.path(), &server.url(), "0..10");
    assert!(after.computed.is_empty(), "recomputed {:?}", after.computed);
    // The handle opened before the restart finds its connection gone, and connects again.
    let mut got = None;
    for _ in 0..50 {
        got = handle.get::<_, String>(&SQUARE, &(2,)).unwrap();
        if got.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(got, Some(expected(2)));
}

/// Waits until a holder has its lock row; returns the values table's name.
fn wait_for_lock_row(server: &Postgres) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let locks = server.psql(
            "SELECT coalesce(max(tablename), '') FROM pg_tables WHERE tablename LIKE '%\\_locks'",
        );
        if !locks.is_empty() && server.psql(&format!("SELECT count(*) FROM \"{locks}\"")) == "1" {
            return locks.trim_end_matches("_locks").to_owned();
        }
        assert!(Instant::now() < deadline, "the holder took no lock");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_waiter_takes_over_from_a_killed_holder() {
    let server = Postgres::start();
    let mut table = String::new();
    machines::a_waiter_takes_over_from_a_killed_holder(&server.url(), || {
        table = wait_for_lock_row(&server)
    });
    // The waiter released its lock: no row left behind.
    assert_eq!(
        server.psql(&format!("SELECT count(*) FROM \"{table}_locks\"")),
        "0"
    );
}

#[test]
fn a_waiter_gives_up_on_a_frozen_holder_after_wait_timeout() {
    let server = Postgres::start();
    machines::a_waiter_gives_up_on_a_frozen_holder(&server.url(), || {
        wait_for_lock_row(&server);
    });
}

#[test]
fn a_server_stopped_mid_run_leaves_calls_right_with_one_warning() {
    let mut server = Postgres::start();
    let url = server.url();
    machines::an_outage_mid_run_leaves_calls_right(&url, Duration::from_millis(1200), || {
        server.stop("immediate"); // as a crash
        std::thread::sleep(Duration::from_millis(800));
        server.start_again();
    });
}

#[test]
fn no_server_at_all_leaves_calls_right_and_local() {
    let port = support::redis_server::free_port();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = finish(spawn_child(
        dir.path(),
        &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        "0..10",
        0,
        &[],
    ));
    assert_eq!(out.computed.len(), 10, "computed locally");
    assert_eq!(count_lines(&out.stderr, "unavailable"), 1, "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_row_whose_hash_is_wrong_is_never_served() {
    let server = Postgres::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = RemoteConfig::new(&server.url()).unwrap().prefix("bad:");
    let f = Function::new("postgres_test::text", "v1", "String");
    let big = Function::new("postgres_test::bytes", "v1", "Vec<u8>");
    let one = Cache::builder(a.path())
        .remote(config.clone())
        .compress(0)
        .open()
        .unwrap();
    one.put(&f, &(1,), &"the truth".to_string()).unwrap();
    one.put(&f, &(2,), &"also true".to_string()).unwrap();
    // A large one too, read in slices.
    one.put(&big, &(3,), &noise(20 * 1024 * 1024, 3)).unwrap();
    let table = table_of(&server, "bad:");
    let key = |func: &Function, n: u64| func.key(&(n,)).unwrap().to_hex();
    // Flip one byte of a value, keep its hash: a hostile or broken writer.
    server.psql(&format!(
        "UPDATE \"{table}\" SET value = set_byte(value, 3, get_byte(value, 3) # 32) \
         WHERE key = '\\x{}'",
        key(&f, 1)
    ));
    server.psql(&format!(
        "UPDATE \"{table}\" SET value = set_byte(value, 10000000, get_byte(value, 10000000) # 1) \
         WHERE key = '\\x{}'",
        key(&big, 3)
    ));
    // A hash of the wrong length.
    server.psql(&format!(
        "UPDATE \"{table}\" SET hash = '\\x00' WHERE key = '\\x{}'",
        key(&f, 2)
    ));
    let two = Cache::builder(b.path())
        .remote(config)
        .compress(0)
        .open()
        .unwrap();
    assert_eq!(two.get::<_, String>(&f, &(1,)).unwrap(), None);
    assert_eq!(two.get::<_, String>(&f, &(2,)).unwrap(), None);
    assert_eq!(two.get::<_, Vec<u8>>(&big, &(3,)).unwrap(), None);
    assert_eq!(
        two.get_or_compute(&f, &(1,), || "recomputed".to_string()),
        "recomputed"
    );
    // The recomputed value replaced the bad row.
    assert_eq!(
        server.psql(&format!(
            "SELECT hash = '\\x{}'::bytea FROM \"{table}\" WHERE key = '\\x{}'",
            memo_cache::Digest::of(&memo_cache::codec::encode(&"recomputed".to_string()).unwrap())
                .to_hex(),
            key(&f, 1)
        )),
        "t"
    );
}

#[test]
fn expired_rows_are_misses_and_prune_removes_them_and_old_ones() {
    let server = Postgres::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = RemoteConfig::new(&server.url()).unwrap().prefix("ttl:");
    let f = Function::new("postgres_test::n", "v1", "u64");
    let g = Function::new("postgres_test::m", "v1", "u64");
    let one = Cache::builder(a.path())
        .remote(config.clone())
        .open()
        .unwrap();
    one.put_with_ttl(&f, &(1,), &1u64, Some(Duration::from_millis(300)))
        .unwrap();
    one.put_with_ttl(&f, &(2,), &2u64, Some(Duration::from_secs(3600)))
        .unwrap();
    one.put(&g, &(3,), &3u64).unwrap();
    let table = table_of(&server, "ttl:");
    let expires = server.psql(&format!(
        "SELECT round(extract(epoch FROM expires - created))::int FROM \"{table}\" \
         WHERE expires IS NOT NULL ORDER BY 1"
    ));
    assert_eq!(expires, "0\n3600");
    std::thread::sleep(Duration::from_millis(600));
    let two = Cache::builder(b.path())
        .remote(config.clone())
        .open()
        .unwrap();
    assert_eq!(two.get::<_, u64>(&f, &(1,)).unwrap(), None, "expired");
    assert_eq!(two.get::<_, u64>(&f, &(2,)).unwrap(), Some(2));
    let stats = remote_stats(&config).unwrap();
    assert_eq!((stats.values, stats.expired), (3, 1), "{stats:?}");
    assert_eq!(remote_prune(&config, None).unwrap(), 1, "the expired row");
    // Make the row of g look 100 days old.
    server.psql(&format!(
        "UPDATE \"{table}\" SET created = now() - interval '100 days' WHERE function = '{}'",
        g.name()
    ));
    assert_eq!(
        remote_prune(&config, Some(Duration::from_secs(90 * 86_400))).unwrap(),
        1
    );
    let stats = remote_stats(&config).unwrap();
    assert_eq!(stats.values, 1);
    assert_eq!(stats.functions.len(), 1);
    assert_eq!(stats.functions[0].name, f.name());
}

#[test]
fn two_prefixes_in_one_database_do_not_see_each_other() {
    let server = Postgres::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let hostile = "x\"; DROP TABLE memo_cache_schema; --";
    let f = Function::new("postgres_test::p", "v1", "u64");
    let config = |prefix: &str| RemoteConfig::new(&server.url()).unwrap().prefix(prefix);
    let one = Cache::builder(a.path())
        .remote(config("team-a:"))
        .open()
        .unwrap();
    let two = Cache::builder(b.path())
        .remote(config(hostile))
        .open()
        .unwrap();
    for n in 0..5u64 {
        one.put(&f, &(n,), &n).unwrap();
    }
    two.put(&f, &(0,), &100u64).unwrap();
    let three = Cache::builder(tempfile::tempdir().unwrap().path())
        .remote(config(hostile))
        .open()
        .unwrap();
    assert_eq!(three.get::<_, u64>(&f, &(0,)).unwrap(), Some(100));
    assert_eq!(three.get::<_, u64>(&f, &(1,)).unwrap(), None, "team-a's");
    assert_eq!(remote_stats(&config("team-a:")).unwrap().values, 5);
    assert_eq!(remote_stats(&config(hostile)).unwrap().values, 1);
    assert_eq!(remote_stats(&config("unused:")).unwrap().values, 0);
    assert_eq!(remote_clear(&config(hostile)).unwrap(), 1);
    assert_eq!(remote_stats(&config("team-a:")).unwrap().values, 5);
    assert_eq!(
        remote_clear_function(&config("team-a:"), "no::such").unwrap(),
        0
    );
    assert_eq!(
        remote_clear_function(&config("team-a:"), f.name()).unwrap(),
        5
    );
    // Two tables per prefix and our schema table: nothing else was made, nothing dropped.
    assert_eq!(
        server.psql(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' \
             AND tablename LIKE 'memo_cache%'"
        ),
        "5"
    );
    assert_eq!(
        server.psql("SELECT count(*) FROM memo_cache_schema WHERE version = 1"),
        "2"
    );
}

#[test]
fn a_read_only_server_serves_what_it_has_and_calls_go_on() {
    let server = Postgres::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert_eq!(run_child(a.path(), &server.url(), "0..5").computed.len(), 5);
    server.psql("ALTER DATABASE postgres SET default_transaction_read_only = on");
    let out = run_child(b.path(), &server.url(), "0..8");
    assert_eq!(
        out.computed,
        vec![5, 6, 7],
        "read what it had, computed the rest"
    );
    assert_eq!(out.got.len(), 8);
    assert_eq!(count_lines(&out.stderr, "unavailable"), 1, "{}", out.stderr);
    assert!(out.stderr.contains("25006"), "{}", out.stderr);
}

/// The server `scripts/test.sh` starts (`MEMO_TEST_POSTGRES_URL`), a cluster these tests did not
/// make: two machines share through it. Without the variable the test makes its own server,
/// except in CI (`CI` set), where a missing URL fails the test instead of hiding a broken script.
#[test]
fn a_server_given_by_url_is_shared_as_is() {
    let own;
    let url = match std::env::var("MEMO_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "MEMO_TEST_POSTGRES_URL is not set: run the tests through scripts/test.sh"
            );
            own = Postgres::start();
            own.url()
        }
    };
    // A prefix of its own, so a rerun against the same server starts empty.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let prefix = format!("shared-{}-{}:", std::process::id(), now.as_nanos());
    let config = RemoteConfig::new(&url).unwrap().prefix(prefix.as_str());
    let f = Function::new("postgres_test::shared", "v1", "u64");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = Cache::builder(a.path())
        .remote(config.clone())
        .open()
        .unwrap();
    let two = Cache::builder(b.path())
        .remote(config.clone())
        .open()
        .unwrap();
    for n in 0..10u64 {
        assert_eq!(one.get_or_compute(&f, &(n,), || n * 3), n * 3);
    }
    for n in 0..10u64 {
        assert_eq!(
            two.get_or_compute(&f, &(n,), || -> u64 { panic!("recomputed {n}") }),
            n * 3
        );
    }
    assert_eq!(remote_clear(&config).unwrap(), 10);
}

/// An async program that calls the cache directly (not on the blocking pool) and drops it at
/// the end of its `main`: the tier's own runtime neither panics inside the caller's nor blocks
/// it on drop.
#[test]
fn a_handle_used_and_dropped_inside_an_async_runtime() {
    let server = Postgres::start();
    let config = RemoteConfig::new(&server.url()).unwrap().prefix("async:");
    let f = Function::new("postgres_test::in_async", "v1", "u64");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let one = Cache::builder(a.path())
            .remote(config.clone())
            .open()
            .unwrap();
        one.put(&f, &(1,), &41u64).unwrap();
        let two = Cache::builder(b.path())
            .remote(config.clone())
            .open()
            .unwrap();
        assert_eq!(two.get::<_, u64>(&f, &(1,)).unwrap(), Some(41));
        assert_eq!(remote_stats(&config).unwrap().values, 1);
        drop((one, two));
    });
}

/// A DBA drops the tier's tables under a running handle: it reports the outage once, makes the
/// tables again by the migration and goes on sharing.
#[test]
fn a_table_dropped_under_a_running_handle_is_made_again() {
    let server = Postgres::start();
    let config = RemoteConfig::new(&server.url())
        .unwrap()
        .prefix("dropped:")
        .retry_after(Duration::from_millis(50));
    let f = Function::new("postgres_test::dropped", "v1", "u64");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = Cache::builder(a.path())
        .remote(config.clone())
        .open()
        .unwrap();
    one.put(&f, &(1,), &1u64).unwrap();
    let table = table_of(&server, "dropped:");
    server.psql(&format!("DROP TABLE \"{table}\", \"{table}_locks\""));
    let mut stored = false;
    for n in 2..40u64 {
        one.put(&f, &(n,), &n).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        if server.psql(&format!(
            "SELECT count(*) FROM pg_tables WHERE tablename = '{table}'"
        )) == "1"
            && server.psql(&format!("SELECT count(*) FROM \"{table}\" WHERE size > 0")) != "0"
        {
            stored = true;
            break;
        }
    }
    assert!(stored, "the table was not made again");
    let two = Cache::builder(b.path()).remote(config).open().unwrap();
    let found = (2..40u64)
        .filter(|n| two.get::<_, u64>(&f, &(*n,)).unwrap().is_some())
        .count();
    assert!(found >= 1, "nothing shared after the table came back");
}

/// A TCP relay in front of the server that can be frozen: it keeps the connections open but
/// stops passing bytes, as a hung server or a dead network path does.
struct Relay {
    port: u16,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    fn to(server_port: u16) -> Relay {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = frozen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", server_port)) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let flag = flag.clone();
                    std::thread::spawn(move || {
                        let mut buffer = vec![0u8; 64 * 1024];
                        loop {
                            while flag.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            match from.read(&mut buffer) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    while flag.load(Ordering::SeqCst) {
                                        std::thread::sleep(Duration::from_millis(10));
                                    }
                                    if to.write_all(&buffer[..n]).is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    });
                }
            }
        });
        Relay { port, frozen }
    }

    fn freeze(&self, frozen: bool) {
        self.frozen
            .store(frozen, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A server that stops answering in the middle of a run (connections open, no bytes): every
/// call returns within the tier's deadlines, computed locally, and the tier comes back when the
/// server does.
#[test]
fn a_frozen_server_costs_a_call_its_deadline_not_a_hang() {
    let server = Postgres::start();
    let relay = Relay::to(server.port);
    let config = RemoteConfig::new(&format!(
        "postgres://postgres@127.0.0.1:{}/postgres",
        relay.port
    ))
    .unwrap()
    .prefix("frozen:")
    .connect_timeout(Duration::from_millis(300))
    .command_timeout(Duration::from_millis(300))
    .retry_after(Duration::from_millis(100));
    let f = Function::new("postgres_test::frozen", "v1", "u64");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = Cache::builder(a.path())
        .remote(config.clone())
        .open()
        .unwrap();
    one.put(&f, &(1,), &1u64).unwrap();
    relay.freeze(true);
    let started = Instant::now();
    for n in 2..8u64 {
        let call = Instant::now();
        assert_eq!(one.get_or_compute(&f, &(n,), || n * 10), n * 10);
        assert!(
            call.elapsed() < Duration::from_secs(3),
            "call {n} took {:?}",
            call.elapsed()
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    relay.freeze(false);
    // Back: a new value reaches the server (the stale connection is replaced).
    let mut shared = false;
    for _ in 0..40 {
        one.put(&f, &(100,), &100u64).unwrap();
        let two = Cache::builder(b.path())
            .remote(config.clone())
            .open()
            .unwrap();
        if two.get::<_, u64>(&f, &(100,)).unwrap() == Some(100) {
            shared = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(shared, "the tier did not come back after the server did");
}
