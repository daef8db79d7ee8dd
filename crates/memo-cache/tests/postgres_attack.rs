//! An outside tester's attacks on the PostgreSQL tier, against real servers (a cluster made by
//! `initdb` per test, see `support/postgres_server.rs`): foreign tables, a newer build's
//! schema, prefixes whose table names collide, rows that lie about their size, ages beyond the
//! calendar, passwords in messages, a Unix-socket host, a lock row planted forever; and, with
//! child processes, a lock holder's backends terminated, a crash in the middle of a 300 MB
//! COPY, too few connections for ten processes, a server-side `statement_timeout`.

#[allow(dead_code)] // each test binary uses part of the servers' support
mod support;

use std::time::{Duration, Instant};

use memo_cache::{Cache, Digest, Function, RemoteConfig, remote_prune, remote_stats};
use support::machines::{self, finish};
use support::postgres_server::Postgres;
use support::{count_lines, noise, warnings_of};

/// The values table of `prefix`, as `schema.rs` names it (copied: the function is private).
fn table_name(prefix: &str) -> String {
    let mut readable = String::new();
    for c in prefix.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_alphanumeric() {
            readable.push(c);
        } else if !readable.ends_with('_') {
            readable.push('_');
        }
    }
    let readable: String = readable.trim_matches('_').chars().take(24).collect();
    let readable = readable.trim_end_matches('_');
    let hash = &Digest::of(prefix.as_bytes()).to_hex()[..8];
    if readable.is_empty() {
        format!("memo_cache_{hash}")
    } else {
        format!("memo_cache_{readable}_{hash}")
    }
}

fn config(server: &Postgres, prefix: &str) -> RemoteConfig {
    RemoteConfig::new(&server.url())
        .unwrap()
        .prefix(prefix)
        .retry_after(Duration::from_millis(50))
}

/// Someone else's table that happens to bear the name of a prefix's table: the tier must leave
/// it as it is (no `ALTER`, no lock table beside it, no claim in `memo_cache_schema`) and say
/// why it is unavailable.
#[test]
fn a_foreign_table_of_the_same_name_is_never_altered_or_claimed() {
    let server = Postgres::start();
    let table = table_name("foreign");
    server.psql(&format!(
        "CREATE TABLE \"{table}\" (key bytea PRIMARY KEY, value bytea, note text); \
         INSERT INTO \"{table}\" VALUES ('\\x01', '\\x02', 'theirs')"
    ));
    let storage = || {
        server.psql(&format!(
            "SELECT attstorage FROM pg_attribute WHERE attrelid = '\"{table}\"'::regclass \
             AND attname = 'value'"
        ))
    };
    let before = storage();
    let dir = tempfile::tempdir().unwrap();
    let f = Function::new("attack::f", "v1", "u64");
    let cache = Cache::builder(dir.path())
        .remote(config(&server, "foreign"))
        .open()
        .unwrap();
    let (value, warnings) = warnings_of(|| cache.get_or_compute(&f, &(1,), || 41u64 + 1));
    assert_eq!(value, 42);
    assert_eq!(storage(), before, "the foreign table's column was altered");
    assert_eq!(
        server.psql(&format!("SELECT to_regclass('\"{table}_locks\"') IS NULL")),
        "t",
        "a lock table was made beside a foreign table"
    );
    let claimed = if server.psql("SELECT to_regclass('memo_cache_schema') IS NULL") == "t" {
        "0".to_owned()
    } else {
        server.psql(&format!(
            "SELECT count(*) FROM memo_cache_schema WHERE table_name = '{table}'"
        ))
    };
    assert_eq!(claimed, "0", "the foreign table was claimed as the tier's");
    assert_eq!(
        server.psql(&format!("SELECT note FROM \"{table}\"")),
        "theirs"
    );
    assert!(
        warnings.contains("not made by memo-cache"),
        "no clear warning: {warnings}"
    );
    // `remote clear` of the prefix must not empty their table either.
    let cleared = memo_cache::remote_clear(&config(&server, "foreign"));
    let message = format!("{cleared:?}");
    assert!(message.contains("not made by memo-cache"), "{message}");
    assert_eq!(
        server.psql(&format!("SELECT note FROM \"{table}\"")),
        "theirs"
    );
}

/// A newer build's table (schema version 2, which, say, no longer has a `_locks` table): an
/// older build must refuse it, not make its old tables again and record version 1 over 2.
#[test]
fn a_newer_builds_table_is_refused_not_downgraded() {
    let server = Postgres::start();
    let f = Function::new("attack::f", "v1", "u64");
    let first = Cache::builder(tempfile::tempdir().unwrap().path())
        .remote(config(&server, "future"))
        .open()
        .unwrap();
    first.put(&f, &(1,), &1u64).unwrap();
    drop(first);
    let table = table_name("future");
    server.psql(&format!(
        "UPDATE memo_cache_schema SET version = 2 WHERE table_name = '{table}'; \
         ALTER TABLE \"{table}_locks\" RENAME TO \"{table}_leases\""
    ));
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path())
        .remote(config(&server, "future"))
        .open()
        .unwrap();
    let (value, warnings) = warnings_of(|| cache.get_or_compute(&f, &(2,), || 2u64));
    assert_eq!(value, 2);
    assert_eq!(
        server.psql(&format!(
            "SELECT version FROM memo_cache_schema WHERE table_name = '{table}'"
        )),
        "2",
        "the newer schema's version was overwritten"
    );
    assert_eq!(
        server.psql(&format!("SELECT to_regclass('\"{table}_locks\"') IS NULL")),
        "t",
        "the old build made its lock table again in a newer build's schema"
    );
    assert!(warnings.contains("newer"), "{warnings}");
}

/// Two prefixes whose table names are the same (the same first 24 readable characters and the
/// same 8 hex digits of their hash: a birthday search finds such a pair in a second): each must
/// still see only its own values.
#[test]
fn two_prefixes_whose_table_names_collide_stay_apart() {
    let base = "abcdefghijklmnopqrstuvwxyz-";
    let mut seen = std::collections::HashMap::new();
    let (a, b) = (0u64..)
        .find_map(|n| {
            let prefix = format!("{base}{n}");
            let name = table_name(&prefix);
            seen.insert(name, prefix.clone())
                .map(|earlier| (earlier, prefix))
        })
        .unwrap();
    assert_eq!(table_name(&a), table_name(&b));
    let server = Postgres::start();
    let f = Function::new("attack::f", "v1", "u64");
    let one = Cache::builder(tempfile::tempdir().unwrap().path())
        .remote(config(&server, &a))
        .open()
        .unwrap();
    one.put(&f, &(1,), &111u64).unwrap();
    let two = Cache::builder(tempfile::tempdir().unwrap().path())
        .remote(config(&server, &b))
        .open()
        .unwrap();
    let (seen, warnings) = warnings_of(|| two.get::<_, u64>(&f, &(1,)).unwrap());
    assert_eq!(seen, None, "prefix {b:?} sees the value of prefix {a:?}");
    assert!(
        warnings.contains("whose table name is the same"),
        "{warnings}"
    );
    // The CLI's operations for the second prefix leave the first one's values alone.
    let stats = remote_stats(&config(&server, &b));
    assert!(!matches!(&stats, Ok(s) if s.values > 0), "{stats:?}");
    let _ = memo_cache::remote_clear(&config(&server, &b));
    assert_eq!(remote_stats(&config(&server, &a)).unwrap().values, 1);
}

/// A row whose `size` column says 10 bytes while its value is 3 MiB (its hash right): a reader
/// whose limit is 2 MiB must neither serve it nor fetch it whole.
#[test]
fn a_row_lying_about_its_size_is_not_fetched_past_the_limit() {
    let server = Postgres::start();
    let big = Function::new("attack::bytes", "v1", "Vec<u8>");
    let writer = Cache::builder(tempfile::tempdir().unwrap().path())
        .remote(config(&server, "size"))
        .compress(0)
        .open()
        .unwrap();
    writer.put(&big, &(1,), &noise(3 * 1024 * 1024, 1)).unwrap();
    let table = table_name("size");
    server.psql(&format!("UPDATE \"{table}\" SET size = 10"));
    // Honest rows under the limit, small and sliced, are still served.
    writer.put(&big, &(2,), &noise(1000, 2)).unwrap();
    writer.put(&big, &(3,), &noise(1536 * 1024, 3)).unwrap();
    let reader = Cache::builder(tempfile::tempdir().unwrap().path())
        .remote(config(&server, "size").max_value_bytes(2 * 1024 * 1024))
        .compress(0)
        .open()
        .unwrap();
    assert_eq!(
        reader.get::<_, Vec<u8>>(&big, &(1,)).unwrap(),
        None,
        "a value over the reader's limit was fetched and served"
    );
    assert_eq!(
        reader.get::<_, Vec<u8>>(&big, &(2,)).unwrap(),
        Some(noise(1000, 2))
    );
    assert_eq!(
        reader.get::<_, Vec<u8>>(&big, &(3,)).unwrap(),
        Some(noise(1536 * 1024, 3))
    );
}

/// `remote prune --older-than` with an age longer than the calendar: nothing is that old, so
/// only the expired rows go; no panic, no "out of range".
#[test]
fn prune_with_an_age_beyond_the_calendar_removes_nothing_and_does_not_panic() {
    let server = Postgres::start();
    let f = Function::new("attack::f", "v1", "u64");
    let cache = Cache::builder(tempfile::tempdir().unwrap().path())
        .remote(config(&server, "old"))
        .open()
        .unwrap();
    cache.put(&f, &(1,), &1u64).unwrap();
    let config = config(&server, "old");
    for age in [
        Duration::from_secs(99_999_999 * 86_400),
        Duration::from_secs(u64::MAX / 2),
        Duration::MAX,
    ] {
        let pruned = std::panic::catch_unwind(|| remote_prune(&config, Some(age)));
        let pruned = pruned.unwrap_or_else(|_| panic!("remote prune panicked on {age:?}"));
        assert_eq!(pruned.unwrap(), 0, "{age:?}");
    }
    assert_eq!(remote_stats(&config).unwrap().values, 1);
}

/// A password must appear in no message about a URL that cannot be used.
#[test]
fn a_password_never_appears_in_url_errors() {
    let secret = "s3cretPW";
    for spec in [
        format!("password={secret} host=127.0.0.1 user=postgres dbname=x"),
        format!("postgres://u:{secret}@host:notaport/db"),
        format!("postgres://u:{secret}@host/db?sslmode=nonsense"),
        format!("postgres://u:{secret}%ff@host/db"),
        format!("postgres://u@host/db?password={secret}&sslmode=nonsense"),
        format!("redis://:{secret}@host:notaport"),
    ] {
        match RemoteConfig::new(&spec) {
            Ok(_) => {}
            Err(e) => {
                let text = format!("{e} {e:?}");
                assert!(!text.contains(secret), "{spec}: {text}");
            }
        }
    }
}

/// A Unix-socket host (`?host=/dir`), as libpq users write it: a working tier.
#[test]
fn a_unix_socket_host_works() {
    let server = Postgres::start();
    let socket_dir = server.data_dir().join("data");
    let url = format!(
        "postgres://postgres@/postgres?host={}&port={}",
        socket_dir.display(),
        server.port
    );
    let f = Function::new("attack::f", "v1", "u64");
    let remote = RemoteConfig::new(&url).unwrap().prefix("unix");
    let one = Cache::builder(tempfile::tempdir().unwrap().path())
        .remote(remote.clone())
        .open()
        .unwrap();
    let (_, warnings) = warnings_of(|| one.put(&f, &(1,), &5u64).unwrap());
    assert_eq!(
        remote_stats(&config(&server, "unix")).unwrap().values,
        1,
        "nothing stored over the socket: {warnings}"
    );
}

/// A lock row planted with an expiry of `infinity`: a caller waits `wait_timeout`, then
/// computes itself.
#[test]
fn a_lock_row_planted_forever_costs_only_wait_timeout() {
    let server = Postgres::start();
    let f = Function::new("attack::f", "v1", "u64");
    let config = config(&server, "forever").wait_timeout(Duration::from_millis(1500));
    let cache = Cache::builder(tempfile::tempdir().unwrap().path())
        .remote(config.clone())
        .open()
        .unwrap();
    cache.put(&f, &(0,), &0u64).unwrap(); // makes the tables
    let table = table_name("forever");
    let key = f.key(&(7,)).unwrap().to_hex();
    server.psql(&format!(
        "INSERT INTO \"{table}_locks\" VALUES ('\\x{key}', 'evil', 'infinity')"
    ));
    let started = Instant::now();
    let (value, warnings) = warnings_of(|| cache.get_or_compute(&f, &(7,), || 49u64));
    assert_eq!(value, 49);
    let took = started.elapsed();
    assert!(warnings.contains("computing here"), "{warnings}");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

// ---- Servers and processes under stress: a terminated backend, a crash mid-COPY, too few
// connections, a server-side statement_timeout (and the child body the memory figures use).

#[allow(dead_code)] // the line readers and file waits serve the end-to-end tests
#[path = "../../../tests/src/children.rs"]
mod children;

/// The body of the child processes of `support::machines`, which run it with `--ignored`.
/// With `CHILD_ROLE=store` or `fetch` it stores or fetches a 300 MB value, for measuring a
/// transfer's peak memory from outside (RELIABILITY.md).
#[test]
#[ignore = "child process body, spawned by the tests below through spawn_child"]
fn child() {
    machines::child_body("attack::square");
}

/// [`machines::spawn_child`] under the prefix `attack:`, compression off, values up to 400 MiB.
fn spawn_child(
    dir: &std::path::Path,
    url: &str,
    keys: &str,
    delay_ms: u64,
    extra: &[(&str, &str)],
) -> children::KillOnDrop {
    let mut env = vec![
        ("CHILD_PREFIX", "attack:"),
        ("CHILD_COMPRESS", "0"),
        ("CHILD_MAX_VALUE_MIB", "400"),
    ];
    env.extend_from_slice(extra);
    machines::spawn_child(dir, url, keys, delay_ms, &env)
}

/// A DBA terminates the lock holder's connections (`pg_terminate_backend`) while it computes;
/// the holder's process lives on. Its lease renewal must reconnect, the value be computed once
/// and right, and a waiter get it without hanging.
#[test]
fn a_lock_holders_backends_terminated_while_it_computes() {
    let server = Postgres::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lease = ("CHILD_LOCK_TTL_MS", "2000");
    let holder = spawn_child(
        a.path(),
        &format!("{}?application_name=holder", server.url()),
        "42",
        6000,
        &[lease],
    );
    let locks = format!("{}_locks", table_name("attack:"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.psql(&format!("SELECT to_regclass('\"{locks}\"') IS NULL")) == "t"
        || server.psql(&format!("SELECT count(*) FROM \"{locks}\"")) != "1"
    {
        assert!(Instant::now() < deadline, "the holder took no lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    let waiter = spawn_child(b.path(), &server.url(), "42", 0, &[lease]);
    let terminate = || {
        server.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'holder'",
        )
    };
    std::thread::sleep(Duration::from_millis(300));
    let first = terminate();
    std::thread::sleep(Duration::from_millis(2500));
    let second = terminate();
    eprintln!("terminated {first} then {second} backends of the holder");
    assert_ne!(first, "0", "the holder had no connection to terminate");
    let (holder, waiter) = (finish(holder), finish(waiter));
    eprintln!("holder:\n{}\nwaiter:\n{}", holder.stderr, waiter.stderr);
    assert_eq!((holder.got.len(), waiter.got.len()), (1, 1));
    assert_eq!(holder.computed, vec![42]);
    assert_eq!(waiter.computed, Vec::<u64>::new(), "computed twice");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(
        count_lines(&holder.stderr, "unavailable") <= 2,
        "{}",
        holder.stderr
    );
}

/// `pg_ctl stop -m immediate` lands in the middle of the COPY of a 300 MB value, then the
/// server starts again: the store returns, with one warning; a fresh reader never sees a part
/// of the value (a miss, computed again), and the handle comes back.
#[test]
fn a_crash_in_the_middle_of_a_300_mb_store_leaves_no_partial_value() {
    let mut server = Postgres::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = config(&server, "crash").max_value_bytes(400 << 20);
    let big = Function::new("attack::big", "v1", "Vec<u8>");
    let small = Function::new("attack::f", "v1", "u64");
    let writer = Cache::builder(a.path())
        .remote(config.clone())
        .compress(0)
        .open()
        .unwrap();
    writer.put(&small, &(0,), &0u64).unwrap(); // makes the tables
    let value = noise(300 << 20, 5);
    let (stored, warnings, copying) = std::thread::scope(|scope| {
        let storing = scope.spawn(|| {
            let started = Instant::now();
            let (out, warnings) = warnings_of(|| writer.put(&big, &(1,), &value));
            (out, warnings, started.elapsed())
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let copying;
        loop {
            let active = server.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
                 AND query LIKE 'COPY%'",
            );
            if active == "1" {
                let seen = Instant::now();
                std::thread::sleep(Duration::from_millis(300));
                copying = seen.elapsed();
                break;
            }
            assert!(
                !storing.is_finished(),
                "the store ended before its COPY was seen"
            );
            assert!(Instant::now() < deadline, "no COPY seen");
            std::thread::sleep(Duration::from_millis(10));
        }
        server.stop("immediate");
        let (out, warnings, took) = storing.join().unwrap();
        eprintln!("the store returned {took:?} after it began");
        (out, warnings, copying)
    });
    eprintln!("crash after {copying:?} of COPY; writer's warnings:\n{warnings}");
    assert!(stored.is_ok(), "{stored:?}");
    assert_eq!(count_lines(&warnings, "unavailable"), 1, "{warnings}");
    server.start_again();
    let table = table_name("crash");
    assert_eq!(
        server.psql(&format!(
            "SELECT count(*) FROM \"{table}\" WHERE size <> octet_length(value)"
        )),
        "0",
        "a torn row"
    );
    let reader = Cache::builder(b.path())
        .remote(config.clone())
        .compress(0)
        .open()
        .unwrap();
    let got = reader.get::<_, Vec<u8>>(&big, &(1,)).unwrap();
    assert!(
        got.is_none() || got.as_ref() == Some(&value),
        "a partial or wrong value"
    );
    // The writer's handle is back.
    let mut back = false;
    for n in 2..50u64 {
        writer.put(&small, &(n,), &n).unwrap();
        if reader.get::<_, u64>(&small, &(n,)).unwrap() == Some(n) {
            back = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(back, "the writer's handle did not come back");
}

/// The server allows 5 connections (none reserved); 10 processes use the tier at once (two
/// connections each): every call returns the right value within bounded time, and a process
/// whose connections are refused warns about it a few times, not at every call.
#[test]
fn too_few_connections_for_ten_processes_leave_calls_right_and_warnings_few() {
    let server =
        Postgres::start_with_options("-c max_connections=5 -c superuser_reserved_connections=0");
    let dirs: Vec<_> = (0..10).map(|_| tempfile::tempdir().unwrap()).collect();
    let started = Instant::now();
    let children: Vec<_> = dirs
        .iter()
        .map(|dir| {
            spawn_child(
                dir.path(),
                &server.url(),
                "0..30",
                20,
                &[("CHILD_PAUSE_MS", "100")],
            )
        })
        .collect();
    let outs: Vec<_> = children.into_iter().map(finish).collect();
    let took = started.elapsed();
    let warnings: Vec<usize> = outs
        .iter()
        .map(|o| count_lines(&o.stderr, "unavailable"))
        .collect();
    let computed: usize = outs.iter().map(|o| o.computed.len()).sum();
    eprintln!("took {took:?}; computed {computed} of 300 calls; warnings per process {warnings:?}");
    for out in &outs {
        assert_eq!(out.got.len(), 30, "{}", out.stderr);
    }
    assert!(took < Duration::from_secs(90), "{took:?}");
    for (out, &n) in outs.iter().zip(&warnings) {
        assert!(n <= 3, "a storm of {n} warnings:\n{}", out.stderr);
    }
}

/// A server-side `statement_timeout` of 50 ms (set on the database by a DBA) and a 50 MB value:
/// calls go on and return the right value, and the value is shared (its COPY takes longer than
/// 50 ms; the tier gives its large transfers their own deadline on the server too).
#[test]
fn a_server_side_statement_timeout_and_a_50_mb_value() {
    let server = Postgres::start();
    let config = config(&server, "timeout").max_value_bytes(400 << 20);
    let big = Function::new("attack::big", "v1", "Vec<u8>");
    let small = Function::new("attack::f", "v1", "u64");
    let open = || {
        Cache::builder(tempfile::tempdir().unwrap().keep())
            .remote(config.clone())
            .compress(0)
            .open()
            .unwrap()
    };
    let before = noise(50 << 20, 1);
    open().put(&big, &(1,), &before).unwrap();
    server.psql("ALTER DATABASE postgres SET statement_timeout = '50ms'");
    let writer = open();
    let after = noise(50 << 20, 2);
    let (_, written) = warnings_of(|| {
        assert_eq!(writer.get_or_compute(&big, &(2,), || after.clone()), after);
        for n in 0..5u64 {
            assert_eq!(writer.get_or_compute(&small, &(n,), || n), n);
        }
    });
    let reader = open();
    let (got, read) = warnings_of(|| {
        (
            reader.get::<_, Vec<u8>>(&big, &(1,)).unwrap(),
            reader.get::<_, Vec<u8>>(&big, &(2,)).unwrap(),
            (0..5u64)
                .filter(|n| reader.get::<_, u64>(&small, &(*n,)).unwrap().is_some())
                .count(),
        )
    });
    eprintln!(
        "written before: {}; written under the timeout: {}; small shared: {}\nwriter:\n{written}\nreader:\n{read}",
        got.0
            .as_ref()
            .map_or("miss", |v| if *v == before { "right" } else { "WRONG" }),
        got.1
            .as_ref()
            .map_or("miss", |v| if *v == after { "right" } else { "WRONG" }),
        got.2
    );
    assert!(
        got.0 == Some(before),
        "the value stored before the timeout was set"
    );
    // The tier's own deadline for a 50 MB COPY is seconds: a 50 ms default of the database
    // must not cut it (and take the whole tier down for `retry_after` each time).
    assert!(
        got.1 == Some(after),
        "the 50 MB value stored under the timeout is not shared"
    );
    assert_eq!(got.2, 5, "the small values after it were not shared");
    assert_eq!(count_lines(&written, "unavailable"), 0, "{written}");
}
