#![allow(dead_code)] // each test binary uses part of it
//! Real PostgreSQL servers for the tests: each a cluster made by `initdb` in a temporary
//! directory and run by `pg_ctl` on a free loopback port, trust authentication, stopped when
//! dropped. As root, the server runs as the `postgres` user (it refuses root).
//!
//! The binaries are looked up in `$MEMO_TEST_PG_BIN`, then the newest
//! `/usr/lib/postgresql/*/bin` (Debian's layout), then `PATH`; `scripts/test.sh` installs the
//! `postgresql` package when none is there. Without them these tests fail, they do not skip.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::redis_server::free_port;

pub struct Postgres {
    pub port: u16,
    /// Holds the cluster's directory (`data/`) and the server's log.
    dir: tempfile::TempDir,
    bin: PathBuf,
    running: bool,
    /// Without `fsync` (the tests): what a crash of the machine would lose does not matter.
    fast: bool,
    /// More server options (`-c name=value ...`), after ours, so they win.
    extra: String,
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MEMO_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "the PostgreSQL server binaries (initdb, pg_ctl) are not installed: run \
             `bash scripts/test.sh` (it installs them) or `apt-get install postgresql`, or set \
             MEMO_TEST_PG_BIN to their directory"
        )
    })
}

/// The `postgres` user's ids, when running as root.
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: a valid C string; the result is read at once, before another getpw* call.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !entry.is_null(),
        "running as root, and there is no `postgres` user to run the server as: install the \
         postgresql package (it makes one) or run the tests as another user"
    );
    // SAFETY: checked non-null above.
    unsafe { Some(((*entry).pw_uid, (*entry).pw_gid)) }
}

impl Postgres {
    /// A new, empty cluster, running, without `fsync` (fast, for tests).
    pub fn start() -> Postgres {
        Self::start_with(true)
    }

    /// A new, empty cluster with the server's default durability (for benchmarks).
    pub fn start_durable() -> Postgres {
        Self::start_with(false)
    }

    /// A new, empty cluster, running without `fsync`, with more server options (`-c name=value`).
    pub fn start_with_options(extra: &str) -> Postgres {
        Self::start_full(true, extra)
    }

    fn start_with(fast: bool) -> Postgres {
        Self::start_full(fast, "")
    }

    fn start_full(fast: bool, extra: &str) -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        let user = server_user();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let out = Self::as_server_user(Command::new(bin.join("initdb")), user)
            .args([
                "-N",
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "-D",
            ])
            .arg(&data)
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb from {}: {e}", bin.display()));
        assert!(out.status.success(), "initdb failed: {}", show(&out));
        let mut server = Postgres {
            port: free_port(),
            dir,
            bin,
            running: false,
            fast,
            extra: extra.to_owned(),
        };
        server.spawn();
        server
    }

    fn as_server_user(mut cmd: Command, user: Option<(u32, u32)>) -> Command {
        if let Some((uid, gid)) = user {
            cmd.uid(uid).gid(gid);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    fn pg_ctl(&self) -> Command {
        let mut cmd = Self::as_server_user(Command::new(self.bin.join("pg_ctl")), server_user());
        cmd.arg("-D").arg(self.data());
        cmd
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn spawn(&mut self) {
        let mut options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200",
            self.port,
            self.data().display()
        );
        if self.fast {
            options.push_str(" -c fsync=off -c full_page_writes=off");
        }
        if !self.extra.is_empty() {
            options.push(' ');
            options.push_str(&self.extra);
        }
        let out = self
            .pg_ctl()
            .args(["-w", "-t", "60", "-l"])
            .arg(self.dir.path().join("server.log"))
            .args(["-o", &options, "start"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            show(&out),
            self.log()
        );
        self.running = true;
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server: `fast` closes the connections and shuts down cleanly, `immediate`
    /// is a crash (recovery replays the WAL on the next start).
    pub fn stop(&mut self, mode: &str) {
        if !self.running {
            return;
        }
        let out = self
            .pg_ctl()
            .args(["-w", "-t", "60", "-m", mode, "stop"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl stop failed: {}", show(&out));
        self.running = false;
    }

    /// Starts again on the same port, with what the cluster held.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// `pg_ctl restart`: the same cluster and port.
    pub fn restart(&mut self) {
        self.stop("fast");
        self.spawn();
    }

    /// Runs `sql` with `psql` and returns its unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Self::as_server_user(Command::new(self.bin.join("psql")), server_user())
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
            ])
            .arg("postgres")
            .args(["-p", &self.port.to_string(), "-d", "postgres", "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql failed on {sql}: {}", show(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

fn show(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .pg_ctl()
                .args(["-w", "-m", "immediate", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
