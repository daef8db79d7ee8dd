#![allow(dead_code)] // each test binary uses part of it
//! Real memcached servers for the tests: each a `memcached` process on a free loopback port,
//! killed when dropped. Looked up on `PATH`; `scripts/test.sh` installs it when it is missing.
//! Without it these tests fail, they do not skip.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis_server::free_port;

pub struct Memcached {
    pub port: u16,
    child: Option<Child>,
    extra: Vec<String>,
}

impl Memcached {
    pub fn start() -> Memcached {
        Memcached::start_with(&[])
    }

    /// A server started with `extra` arguments as well (`-I 512k`, a smaller `-m`).
    pub fn start_with(extra: &[&str]) -> Memcached {
        let mut server = Memcached {
            port: free_port(),
            child: None,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("memcache://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("memcached")
            .args(["-l", "127.0.0.1", "-p", &self.port.to_string(), "-U", "0"])
            // `-u` matters only when run as root, which memcached otherwise refuses.
            .args(["-m", "64", "-t", "2", "-u", "root"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    panic!(
                        "memcached is not on PATH: run `bash scripts/test.sh` (it installs it) \
                         or `apt-get install memcached`"
                    )
                }
                panic!("cannot start memcached: {e}")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "memcached did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process id, for SIGSTOP and SIGCONT.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Starts again, empty, on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Sends one raw command and reads the reply up to its end marker.
    pub fn raw(&self, command: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(command).unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).unwrap();
        if let Some(rest) = line.strip_prefix(b"VA ") {
            let len: usize = std::str::from_utf8(rest)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let mut data = vec![0; len + 2];
            reader.read_exact(&mut data).unwrap();
            data.truncate(len);
            return data;
        }
        line
    }

    /// `stats`' figure `name`.
    pub fn stat(&self, name: &str) -> u64 {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.write_all(b"stats\r\n").unwrap();
        let reader = BufReader::new(stream);
        for line in reader.lines() {
            let line = line.unwrap();
            if line.starts_with("END") {
                break;
            }
            let words: Vec<&str> = line.split(' ').collect();
            if words.get(1) == Some(&name) {
                return words[2].trim().parse().unwrap();
            }
        }
        panic!("no stat {name}")
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.kill();
    }
}
