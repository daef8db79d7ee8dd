//! The memcached tier against real memcached processes on free loopback ports.
//!
//! "Machines" are separate processes with separate local cache directories sharing the servers.
//! Child processes are this test binary run again as `--ignored --exact child` with
//! `MEMO_TEST_CHILD` set.

#[allow(dead_code)] // each test binary uses part of the servers' support
mod support;

#[allow(dead_code)] // the line readers and file waits serve the end-to-end tests
#[path = "../../../tests/src/children.rs"]
mod children;

use std::process::Command;
use std::time::{Duration, Instant};

use memo_cache::{Cache, Function, RemoteConfig, remote_clear, remote_stats};
use support::machines::{self, expected, finish, run_child, spawn_child};
use support::memcached_server::Memcached;
use support::{count_lines, noise, warnings_of};

static SQUARE: Function = Function::new("memcached_test::square", "v1", "String");

/// The body of the child processes of `support::machines`, which run it with `--ignored`.
#[test]
#[ignore = "child process body, spawned by the memcached tier tests through spawn_child"]
fn child() {
    machines::child_body("memcached_test::square");
}

#[test]
fn a_second_machine_never_recomputes_what_the_first_computed() {
    let server = Memcached::start();
    machines::a_second_machine_recomputes_nothing(
        &server.url(),
        &server.url(),
        "memcache://unused",
    );
}

#[test]
fn a_value_over_the_item_limit_travels_in_chunks() {
    let server = Memcached::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = RemoteConfig::new(&server.url()).unwrap().prefix("big:");
    let f = Function::new("memcached_test::big", "v1", "Vec<u8>");
    // 3 MiB that zstd cannot shrink: three chunks and a manifest.
    let big = noise(3 << 20, 0);
    // Uncompressed, so the value stays over the item limit.
    let one = Cache::builder(a.path())
        .remote(config.clone())
        .compress(0)
        .open()
        .unwrap();
    assert_eq!(one.get_or_compute(&f, &(1,), || big.clone()), big);
    let two = Cache::builder(b.path())
        .remote(config)
        .compress(0)
        .open()
        .unwrap();
    let got: Vec<u8> = two.get_or_compute(&f, &(1,), || panic!("recomputed a chunked value"));
    assert_eq!(got, big);
    assert!(
        server.stat("curr_items") >= 5,
        "manifest, 3 chunks, namespace"
    );
}

#[test]
fn a_value_whose_hash_is_wrong_is_never_served() {
    let server = Memcached::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = RemoteConfig::new(&server.url()).unwrap().prefix("bad:");
    let f = Function::new("memcached_test::text", "v1", "String");
    let one = Cache::builder(a.path())
        .remote(config.clone())
        .open()
        .unwrap();
    one.put(&f, &(1,), &"the truth".to_string()).unwrap();
    let generation = remote_stats(&config).unwrap().generation.unwrap();
    let item = format!("bad:{generation}:v:{}", f.key(&(1,)).unwrap().to_hex());
    let mut value = server.raw(format!("mg {item} v\r\n").as_bytes());
    assert!(
        value.starts_with(b"MC2"),
        "{:?}",
        String::from_utf8_lossy(&value)
    );
    // Flip one byte of the value, keep the hash: a hostile or broken server.
    *value.last_mut().unwrap() ^= 0x20;
    let mut set = format!("ms {item} {}\r\n", value.len()).into_bytes();
    set.extend_from_slice(&value);
    set.extend_from_slice(b"\r\n");
    assert!(server.raw(&set).starts_with(b"HD"));
    // Garbage in a value of another key.
    let other = format!("bad:{generation}:v:{}", f.key(&(2,)).unwrap().to_hex());
    assert!(
        server
            .raw(format!("ms {other} 7\r\ngarbage\r\n").as_bytes())
            .starts_with(b"HD")
    );
    let two = Cache::builder(b.path()).remote(config).open().unwrap();
    assert_eq!(two.get::<_, String>(&f, &(1,)).unwrap(), None);
    assert_eq!(two.get::<_, String>(&f, &(2,)).unwrap(), None);
    assert_eq!(
        two.get_or_compute(&f, &(1,), || "recomputed".to_string()),
        "recomputed"
    );
}

// The holder is given 800 ms to take its lock: memcached cannot be asked who holds one.

#[test]
fn a_waiter_takes_over_from_a_killed_holder() {
    let server = Memcached::start();
    machines::a_waiter_takes_over_from_a_killed_holder(&server.url(), || {
        std::thread::sleep(Duration::from_millis(800))
    });
}

#[test]
fn a_waiter_gives_up_on_a_frozen_holder_after_wait_timeout() {
    let server = Memcached::start();
    machines::a_waiter_gives_up_on_a_frozen_holder(&server.url(), || {
        std::thread::sleep(Duration::from_millis(800))
    });
}

#[test]
fn a_server_stopped_mid_run_leaves_calls_right_with_one_warning() {
    let mut server = Memcached::start();
    let url = server.url();
    machines::an_outage_mid_run_leaves_calls_right(&url, Duration::from_millis(600), || {
        server.kill();
        std::thread::sleep(Duration::from_millis(800));
        server.restart(); // empty: calls go on
    });
}

#[test]
fn two_servers_share_the_keys_and_one_down_leaves_the_other_serving() {
    let mut one = Memcached::start();
    let two = Memcached::start();
    let urls = format!("{},{}", one.url(), two.url());
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    assert_eq!(run_child(a.path(), &urls, "0..40").computed.len(), 40);
    let (on_one, on_two) = (one.stat("curr_items"), two.stat("curr_items"));
    assert!(
        on_one >= 8 && on_two >= 8,
        "keys spread over both servers: {on_one} and {on_two}"
    );
    assert!(run_child(b.path(), &urls, "0..40").computed.is_empty());
    // One server gone: its keys are computed again, the other's are still shared.
    one.kill();
    let out = run_child(c.path(), &urls, "0..40");
    assert!(
        !out.computed.is_empty() && out.computed.len() < 40,
        "computed {} of 40",
        out.computed.len()
    );
    assert_eq!(count_lines(&out.stderr, "unavailable"), 1, "{}", out.stderr);
}

#[test]
fn clear_moves_the_namespace_and_stats_report_the_servers() {
    let server = Memcached::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = RemoteConfig::new(&server.url()).unwrap().prefix("ns:");
    let f = Function::new("memcached_test::n", "v1", "u64");
    let one = Cache::builder(a.path())
        .remote(config.clone())
        .open()
        .unwrap();
    one.put(&f, &(1,), &11u64).unwrap();
    let before = remote_stats(&config).unwrap();
    assert_eq!(before.servers.len(), 1);
    assert!(before.servers[0].items >= 2, "{before:?}");
    assert_eq!(remote_clear(&config).unwrap(), 0);
    let after = remote_stats(&config).unwrap();
    assert_eq!(after.generation, before.generation.map(|g| g + 1));
    let two = Cache::builder(b.path()).remote(config).open().unwrap();
    assert_eq!(two.get::<_, u64>(&f, &(1,)).unwrap(), None, "cleared");
}

#[test]
fn a_server_answering_garbage_leaves_calls_right_and_local() {
    // Not memcached: a listener that answers every request with nonsense.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buffer = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 || stream.write_all(b"VA 99999999999 c1\r\nxx\r\n").is_err() {
                        return;
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let out = finish(spawn_child(
        dir.path(),
        &format!("memcache://127.0.0.1:{port}"),
        "0..10",
        0,
        &[],
    ));
    assert_eq!(out.computed.len(), 10, "computed locally");
    assert_eq!(out.got.len(), 10, "every call returned its own value");
    assert_eq!(count_lines(&out.stderr, "unavailable"), 1, "{}", out.stderr);
}

#[test]
fn three_servers_with_one_killed_mid_run_every_call_is_right() {
    let mut servers = [Memcached::start(), Memcached::start(), Memcached::start()];
    let urls = servers
        .iter()
        .map(Memcached::url)
        .collect::<Vec<_>>()
        .join(",");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let child = spawn_child(a.path(), &urls, "0..60", 0, &[("CHILD_PAUSE_MS", "30")]);
    std::thread::sleep(Duration::from_millis(600));
    servers[1].kill();
    let out = finish(child);
    assert_eq!(out.got.len(), 60, "every call returned");
    assert_eq!(count_lines(&out.stderr, "unavailable"), 1, "{}", out.stderr);
    // The two live servers still share what reached them: a fresh machine computes only what
    // the dead one held (about a third), not everything.
    let fresh = run_child(b.path(), &urls, "0..60");
    assert!(
        !fresh.computed.is_empty() && fresh.computed.len() < 45,
        "computed {} of 60",
        fresh.computed.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Attack 16: a hostile environment around the memcached tier. Each test below reproduced a
// finding on the code it was written against; see ATTACK-REPORT.md at the top of the repository.

/// A fake "memcached" on a free loopback port: each connection is handed to `serve` in a thread
/// of its own. Not a mock of the client: a real TCP server that misbehaves.
fn fake_server(serve: fn(std::net::TcpStream)) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || serve(stream));
        }
    });
    format!("memcache://127.0.0.1:{port}")
}

/// Reads one request line (the client's first command) from `stream`.
fn read_request(stream: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    let mut byte = [0u8; 1];
    let mut seen = Vec::new();
    while !seen.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => seen.push(byte[0]),
            _ => return false,
        }
    }
    true
}

/// Runs `call` on a thread of its own; its answer if it came within `limit`.
fn within<T: Send + 'static>(
    limit: Duration,
    call: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(call());
    });
    rx.recv_timeout(limit).ok()
}

#[test]
fn attack_a_reply_line_that_never_ends_is_cut_off_within_the_timeout() {
    // Answers the first request with bytes and no newline, 64 KiB every 10 ms for 20 s:
    // a reader that waits for the end of the line grows its buffer as long as it comes.
    let url = fake_server(|mut stream| {
        use std::io::Write;
        if !read_request(&mut stream) {
            return;
        }
        let blob = vec![b'A'; 64 * 1024];
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until && stream.write_all(&blob).is_ok() {
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path())
        .remote(RemoteConfig::new(&url).unwrap())
        .open()
        .unwrap();
    let started = Instant::now();
    let got = within(Duration::from_secs(5), move || {
        cache.get_or_compute(&SQUARE, &(1u64,), || expected(1))
    });
    assert_eq!(
        got.as_deref(),
        Some(expected(1).as_str()),
        "the call did not return within 5 s (command timeout 500 ms): still reading one endless line after {:?}",
        started.elapsed()
    );
}

#[test]
fn attack_a_server_trickling_a_value_cannot_hold_a_call_past_its_timeout() {
    // Announces a 100 000 byte value, then sends one byte every 100 ms: each read returns
    // well within the 500 ms command timeout, so a per-read timeout never fires.
    let url = fake_server(|mut stream| {
        use std::io::Write;
        // The namespace generation first, as memcached would answer it.
        if !read_request(&mut stream) || stream.write_all(b"VA 1 c1\r\n5\r\n").is_err() {
            return;
        }
        if !read_request(&mut stream) || stream.write_all(b"VA 100000 c1\r\n").is_err() {
            return;
        }
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until && stream.write_all(b"7").is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path())
        .remote(RemoteConfig::new(&url).unwrap())
        .open()
        .unwrap();
    let got = within(Duration::from_secs(5), move || {
        cache.get_or_compute(&SQUARE, &(2u64,), || expected(2))
    });
    assert_eq!(
        got.as_deref(),
        Some(expected(2).as_str()),
        "a server trickling bytes held the call past 5 s (command timeout 500 ms)"
    );
}

#[test]
fn attack_remote_stats_against_endless_stat_lines_ends() {
    // `stats` answered with STAT lines that never reach END.
    let url = fake_server(|mut stream| {
        use std::io::Write;
        if !read_request(&mut stream) {
            return;
        }
        let until = Instant::now() + Duration::from_secs(20);
        let mut n = 0u64;
        while Instant::now() < until {
            let lines: String = (0..100).map(|i| format!("STAT x{} 1\r\n", n + i)).collect();
            n += 100;
            if stream.write_all(lines.as_bytes()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let config = RemoteConfig::new(&url).unwrap();
    let got = within(Duration::from_secs(5), move || {
        remote_stats(&config).is_err()
    });
    assert_eq!(
        got,
        Some(true),
        "remote stats did not fail within 5 s against a server whose stats never end"
    );
}

#[test]
fn attack_a_ttl_past_2038_is_still_shared() {
    // Memcached reads expirations as 32-bit: an absolute time past January 2038 wraps into the
    // past and the item is stored already expired.
    let server = Memcached::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = RemoteConfig::new(&server.url()).unwrap().prefix("ttl:");
    let f = Function::new("memcached_test::long_ttl", "v1", "u64")
        .with_ttl(Duration::from_secs(20 * 365 * 24 * 3600));
    let one = Cache::builder(a.path())
        .remote(config.clone())
        .open()
        .unwrap();
    one.put(&f, &(1,), &77u64).unwrap();
    let two = Cache::builder(b.path()).remote(config).open().unwrap();
    assert_eq!(
        two.get::<_, u64>(&f, &(1,)).unwrap(),
        Some(77),
        "a value with a 20-year ttl never reached the second machine"
    );
}

/// True when the raw item `name` exists on `server`.
fn has_item(server: &Memcached, name: &str) -> bool {
    server.raw(format!("mg {name} v\r\n").as_bytes()) != b"EN\r\n"
}

#[test]
fn attack_a_long_or_spaced_prefix_never_turns_a_value_into_commands() {
    // Memcached does not skip the data of an `ms` whose key it refuses: the value's bytes are
    // read as commands. A prefix with a space (or over ~140 bytes) makes every key refused.
    let server = Memcached::start();
    let dir = tempfile::tempdir().unwrap();
    let f = Function::new("memcached_test::text", "v1", "String");
    assert!(server.raw(b"ms canary 2\r\nok\r\n").starts_with(b"HD"));
    for prefix in ["my project:", &"p".repeat(200)] {
        let config = RemoteConfig::new(&server.url()).unwrap().prefix(prefix);
        let refused = remote_stats(&config).unwrap_err().to_string();
        assert!(refused.contains("prefix"), "{refused}");
        let cache = Cache::builder(dir.path().join(&prefix[..2]))
            .remote(config)
            .compress(0)
            .open()
            .unwrap();
        // A result that happens to hold memcached commands (text from anywhere), stored on a
        // healthy server (a lookup first would have failed and left the server alone).
        let text = "x\r\nms planted 6 T0\r\nowned!\r\nflush_all\r\n".to_string();
        cache.put(&f, &(1,), &text).unwrap();
        assert!(
            !has_item(&server, "planted"),
            "prefix {prefix:?}: the cached value's bytes ran as memcached commands (an item was planted)"
        );
        assert!(
            has_item(&server, "canary"),
            "prefix {prefix:?}: the cached value's bytes ran as memcached commands (flush_all)"
        );
    }
}

#[test]
fn attack_a_planted_manifest_cannot_send_commands() {
    // A manifest's write id goes into the names of the chunks it asks for: one holding CRLF
    // makes the reader send whatever follows as a command.
    let server = Memcached::start();
    let dir = tempfile::tempdir().unwrap();
    let config = RemoteConfig::new(&server.url()).unwrap().prefix("man:");
    let f = Function::new("memcached_test::text", "v1", "String");
    let cache = Cache::builder(dir.path())
        .remote(config.clone())
        .open()
        .unwrap();
    cache.put(&f, &(0,), &"first".to_string()).unwrap(); // makes the generation
    let generation = remote_stats(&config).unwrap().generation.unwrap();
    let item = format!("man:{generation}:v:{}", f.key(&(1,)).unwrap().to_hex());
    let manifest = b"MCKx\r\nflush_all\r\n 1 5";
    let mut set = format!("ms {item} {}\r\n", manifest.len()).into_bytes();
    set.extend_from_slice(manifest);
    set.extend_from_slice(b"\r\n");
    assert!(server.raw(&set).starts_with(b"HD"));
    assert!(server.raw(b"ms canary 2\r\nok\r\n").starts_with(b"HD"));
    assert_eq!(cache.get::<_, String>(&f, &(1,)).unwrap(), None);
    assert!(
        has_item(&server, "canary"),
        "reading a planted manifest sent flush_all to the server"
    );
}

#[test]
fn attack_a_server_refusing_one_large_value_still_shares_the_others() {
    // A server with a 512 KiB item limit refuses a 800 KiB value (SERVER_ERROR object too
    // large for cache) and skips its data: the connection is fine, only that value is not
    // stored. The client took the server for down: the next value was not shared.
    let server = Memcached::start_with(&["-I", "512k", "-o", "slab_chunk_max=262144"]);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = RemoteConfig::new(&server.url())
        .unwrap()
        .prefix("lim:")
        .retry_after(Duration::from_secs(60));
    let big = Function::new("memcached_test::big", "v1", "Vec<u8>");
    let small = Function::new("memcached_test::n", "v1", "u64");
    let one = Cache::builder(a.path())
        .remote(config.clone())
        .compress(0)
        .open()
        .unwrap();
    let bytes = noise(800 << 10, 0);
    one.put(&big, &(1,), &bytes).unwrap();
    one.put(&small, &(2,), &22u64).unwrap();
    let two = Cache::builder(b.path()).remote(config).open().unwrap();
    assert_eq!(
        two.get::<_, u64>(&small, &(2,)).unwrap(),
        Some(22),
        "one value refused for its size took the whole server out"
    );
}

static QUEUED: Function = Function::new("memcached_test::queued", "v1", "u64");

#[test]
fn attack_calls_on_many_threads_do_not_queue_behind_a_frozen_server() {
    let server = Memcached::start();
    let dir = tempfile::tempdir().unwrap();
    let config = RemoteConfig::new(&server.url())
        .unwrap()
        .prefix("q:")
        .retry_after(Duration::from_secs(30));
    let cache = std::sync::Arc::new(Cache::builder(dir.path()).remote(config).open().unwrap());
    let f = &QUEUED;
    // Warm: every thread's key stored, the generation read (kept for a second).
    for n in 0..8u64 {
        cache.put(f, &(n,), &n).unwrap();
    }
    let pid = server.pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let threads: Vec<_> = (0..8u64)
        .map(|n| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let v = cache.get_or_compute(&QUEUED, &(n + 100,), || n);
                assert_eq!(v, n);
                started.elapsed()
            })
        })
        .collect();
    let slowest = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .max()
        .unwrap();
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    assert!(
        slowest < Duration::from_millis(1500),
        "the slowest of 8 calls took {slowest:?} with a 500 ms command timeout: they waited in line for the frozen server"
    );
}

#[test]
fn attack_urls_that_cannot_work_are_refused_when_parsed() {
    for bad in [
        "memcache://host:notaport",
        "memcache://host:99999",
        "memcache://host:",
        "memcache://[::1",
        "memcache://host:11211:11211",
    ] {
        assert!(
            RemoteConfig::new(bad).is_err(),
            "{bad:?} was accepted; it can only fail later, at every connection"
        );
    }
    for good in [
        "memcache://127.0.0.1:11211",
        "memcache://[::1]:11211",
        "memcache://[::1]",
        "memcache://localhost",
        "memcache://a:1,memcache://b:2,",
    ] {
        assert!(RemoteConfig::new(good).is_ok(), "{good:?} was refused");
    }
}

/// The raw items of a chunked value of `f(1)` under `prefix` on `server`: the manifest's name,
/// and the names and lengths of its chunks.
fn chunk_items(
    server: &Memcached,
    config: &RemoteConfig,
    f: &Function,
) -> (String, Vec<(String, usize)>) {
    let prefix = config.key_prefix();
    let generation = remote_stats(config).unwrap().generation.unwrap();
    let hex = f.key(&(1,)).unwrap().to_hex();
    let manifest_name = format!("{prefix}{generation}:v:{hex}");
    let manifest = server.raw(format!("mg {manifest_name} v\r\n").as_bytes());
    let text = String::from_utf8(manifest[3..].to_vec()).unwrap();
    let fields: Vec<&str> = text.split(' ').collect();
    let (id, count): (&str, usize) = (fields[0], fields[1].parse().unwrap());
    let chunks = (0..count)
        .map(|i| {
            let name = format!("{prefix}{generation}:c:{hex}:{id}:{i}");
            let len = server.raw(format!("mg {name} v\r\n").as_bytes()).len();
            (name, len)
        })
        .collect();
    (manifest_name, chunks)
}

fn raw_set(server: &Memcached, name: &str, value: &[u8]) {
    let mut set = format!("ms {name} {}\r\n", value.len()).into_bytes();
    set.extend_from_slice(value);
    set.extend_from_slice(b"\r\n");
    assert!(server.raw(&set).starts_with(b"HD"), "raw set of {name}");
}

#[test]
fn attack_held_chunks_deleted_swapped_or_lied_about_are_a_miss() {
    let server = Memcached::start();
    let config = RemoteConfig::new(&server.url()).unwrap().prefix("ch:");
    let f = Function::new("memcached_test::big", "v1", "Vec<u8>");
    let big = noise(3 << 20, 0);
    let open = |dir: &std::path::Path| {
        Cache::builder(dir)
            .remote(config.clone())
            .compress(0)
            .open()
            .unwrap()
    };
    let fresh_get = || {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path()).get::<_, Vec<u8>>(&f, &(1,)).unwrap()
    };
    let store = || {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path()).put(&f, &(1,), &big).unwrap();
        chunk_items(&server, &config, &f)
    };
    // Sound: served.
    let (_, chunks) = store();
    assert_eq!(chunks.len(), 4, "{chunks:?}");
    assert_eq!(fresh_get().as_ref(), Some(&big));
    // One chunk deleted (evicted): a miss.
    assert!(
        server
            .raw(format!("md {}\r\n", chunks[1].0).as_bytes())
            .starts_with(b"HD")
    );
    assert_eq!(fresh_get(), None, "a chunk deleted");
    // One chunk overwritten with other bytes of its length: a miss.
    let (_, chunks) = store();
    raw_set(&server, &chunks[2].0, &vec![0x55; chunks[2].1]);
    assert_eq!(fresh_get(), None, "a chunk swapped");
    // One chunk cut short, one chunk grown.
    let (_, chunks) = store();
    raw_set(&server, &chunks[0].0, b"short");
    assert_eq!(fresh_get(), None, "a chunk cut short");
    // Manifests that lie: 10^12 bytes, a count past the total, a zero count.
    let (manifest, chunks) = store();
    let id = chunks[0].0.rsplit(':').nth(1).unwrap().to_owned();
    for lie in [
        format!("MCK{id} 4 1000000000000"),
        format!("MCK{id} 1000000 3145779"),
        format!("MCK{id} 0 3145779"),
        format!("MCK{id} 2 3145779"),
        format!("MCK{id} -1 3145779"),
        format!("MCK{id}"),
        "MCK".to_string(),
    ] {
        raw_set(&server, &manifest, lie.as_bytes());
        assert_eq!(fresh_get(), None, "manifest {lie:?}");
    }
    // A foreign writer's bytes under the value's name, and the generation item made garbage.
    raw_set(&server, &manifest, b"MC2 not a value at all");
    assert_eq!(fresh_get(), None);
}

#[test]
fn attack_held_a_memcached_too_small_for_the_chunks_never_serves_a_torn_value() {
    // 2 MiB of memory: every new chunk evicts older ones.
    let server = Memcached::start_with(&["-m", "2"]);
    let config = RemoteConfig::new(&server.url()).unwrap().prefix("ev:");
    let f = Function::new("memcached_test::evicted", "v1", "Vec<u8>");
    let dir = tempfile::tempdir().unwrap();
    let writer = Cache::builder(dir.path().join("w"))
        .remote(config.clone())
        .compress(0)
        .open()
        .unwrap();
    let value = |n: u32| -> Vec<u8> { noise(3 << 20, u64::from(n)) };
    for n in 0..6u32 {
        writer.put(&f, &(n,), &value(n)).unwrap();
    }
    let reader = Cache::builder(dir.path().join("r"))
        .remote(config)
        .compress(0)
        .open()
        .unwrap();
    for n in 0..6u32 {
        if let Some(got) = reader.get::<_, Vec<u8>>(&f, &(n,)).unwrap() {
            assert!(got == value(n), "a wrong value for {n}");
        }
    }
}

#[test]
fn attack_a_foreign_namespace_item_is_reported_not_silent() {
    // Something else wrote the prefix's generation item: the tier cannot name anything on
    // that server. It used to run local-only with no word at all.
    let server = Memcached::start();
    assert!(server.raw(b"ms t:ns 5\r\nhello\r\n").starts_with(b"HD"));
    let dir = tempfile::tempdir().unwrap();
    let out = finish(spawn_child(dir.path(), &server.url(), "0..5", 0, &[]));
    assert_eq!(out.got.len(), 5);
    assert!(
        out.stderr.contains("t:ns"),
        "no word of the unusable generation item:\n{}",
        out.stderr
    );
    assert_eq!(count_lines(&out.stderr, "t:ns"), 1, "{}", out.stderr);
}

#[test]
fn attack_held_a_frozen_holder_loses_its_lock_when_it_expires() {
    // The holder is frozen (SIGSTOP): its watchdog cannot renew, so its lock expires after
    // lock_ttl and a waiter computes long before wait_timeout. Thawed, the old holder does not
    // delete the new holder's lock, and both results are right.
    let server = Memcached::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lock = [("CHILD_LOCK_TTL_MS", "2000"), ("CHILD_WAIT_MS", "60000")];
    let holder = spawn_child(a.path(), &server.url(), "44", 3_000, &lock);
    std::thread::sleep(Duration::from_millis(800));
    let pid = holder.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    let out = finish(spawn_child(b.path(), &server.url(), "44", 0, &lock));
    let took = started.elapsed();
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(out.computed, vec![44]);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let first = finish(holder);
    assert_eq!(first.got.len(), 1);
}

#[test]
fn attack_held_a_server_frozen_and_thawed_mid_run() {
    // SIGSTOP: connections are still accepted (the kernel's backlog) but nothing answers; the
    // calls go on local-only within the command timeout, one warning, and the tier comes back
    // after SIGCONT by itself.
    let server = Memcached::start();
    let a = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let child = spawn_child(
        a.path(),
        &server.url(),
        "0..60",
        0,
        &[("CHILD_PAUSE_MS", "50")],
    );
    std::thread::sleep(Duration::from_millis(800));
    let pid = server.pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = finish(child);
    assert_eq!(out.got.len(), 60, "every call returned");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(count_lines(&out.stderr, "unavailable"), 1, "{}", out.stderr);
    assert_eq!(count_lines(&out.stderr, "is back"), 1, "{}", out.stderr);
}

#[test]
fn attack_a_value_over_this_readers_limit_is_a_quiet_miss() {
    // A writer allowed 64 MiB stores a 20 MiB value in chunks; a reader with the default
    // 16 MiB limit cannot take it. It called the manifest "not a memo-cache value" with a
    // warning on every call, and (its own store being over its limit too) never stopped.
    let server = Memcached::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = RemoteConfig::new(&server.url()).unwrap().prefix("lim2:");
    let f = Function::new("memcached_test::huge", "v1", "Vec<u8>");
    let big = noise(20 << 20, 0);
    let writer = Cache::builder(a.path())
        .remote(config.clone().max_value_bytes(64 * 1024 * 1024))
        .compress(0)
        .open()
        .unwrap();
    writer.put(&f, &(1,), &big).unwrap();
    let reader = Cache::builder(b.path())
        .remote(config)
        .compress(0)
        .open()
        .unwrap();
    let ((), warned) = warnings_of(|| {
        for _ in 0..3 {
            assert_eq!(reader.get::<_, Vec<u8>>(&f, &(1,)).unwrap(), None);
        }
    });
    assert!(
        !warned.contains("not a memo-cache value"),
        "a sound value over this reader's limit was called foreign, on every call:\n{warned}"
    );
}
