//! Real Redis servers for the tests: a single server, or a Redis Cluster of several nodes, each a
//! `redis-server` process on a free loopback port, killed when dropped. The server is looked up
//! on `PATH`; `scripts/test.sh` installs it when it is missing. Without it these tests fail, they
//! do not skip.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `cmd`, a `redis-server` command. The server is looked up on `PATH`, as
/// `scripts/test.sh` looks for it; a missing one fails the test, saying how to install it.
fn start_server(cmd: &mut Command) -> Child {
    cmd.spawn().unwrap_or_else(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            panic!(
                "redis-server is not on PATH: run `bash scripts/test.sh` (it installs it) or \
                 `apt-get install redis-server redis-tools`"
            )
        }
        panic!("cannot start redis-server: {e}")
    })
}

/// One redis-server process.
pub struct Node {
    pub port: u16,
    dir: PathBuf,
    cluster: bool,
    child: Option<Child>,
}

impl Node {
    pub fn start(dir: &Path, cluster: bool) -> Node {
        let mut node = Node {
            port: free_port(),
            dir: dir.to_path_buf(),
            cluster,
            child: None,
        };
        node.spawn();
        node
    }

    /// A single server on a given port (for URLs that must be known at compile time).
    pub fn start_on(dir: &Path, port: u16) -> Node {
        let mut node = Node {
            port,
            dir: dir.to_path_buf(),
            cluster: false,
            child: None,
        };
        node.spawn();
        node
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(&self.dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if self.cluster {
            cmd.args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                .args([
                    "--cluster-config-file",
                    &format!("nodes-{}.conf", self.port),
                ]);
        }
        self.child = Some(start_server(&mut cmd));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start",
                self.port
            );
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

    /// Starts again on the same port (and, in a cluster, with the same node identity).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Single {
    pub node: Node,
    _dir: tempfile::TempDir,
}

impl Single {
    pub fn start() -> Single {
        let dir = tempfile::tempdir().unwrap();
        Single {
            node: Node::start(dir.path(), false),
            _dir: dir,
        }
    }
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Three masters, no replicas, all slots assigned, state ok.
    pub fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<Node> = (0..3).map(|_| Node::start(dir.path(), true)).collect();
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        args.extend([
            "--cluster-replicas".into(),
            "0".into(),
            "--cluster-yes".into(),
        ]);
        let out = Command::new("redis-cli")
            .args(&args)
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Cluster { nodes, _dir: dir };
        cluster.wait_ok();
        cluster
    }

    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(Node::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = self
                .nodes
                .iter()
                .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"));
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "cluster did not reach state ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A redis-server that speaks only TLS, with a certificate for `localhost` and 127.0.0.1 signed
/// by a throwaway CA (`ca_file`, to give clients as `SSL_CERT_FILE`).
pub struct Tls {
    child: Child,
    pub port: u16,
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tls {
    pub fn start() -> Tls {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=memo-cache test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        let port = free_port();
        let child = start_server(
            Command::new("redis-server")
                .args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                ])
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--tls-auth-clients",
                    "no",
                ])
                .arg("--tls-cert-file")
                .arg(d.join("server.pem"))
                .arg("--tls-key-file")
                .arg(d.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(d.join("ca.pem"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "TLS redis-server on port {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Tls {
            child,
            port,
            ca_file: d.join("ca.pem"),
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("rediss://localhost:{}", self.port)
    }
}

impl Drop for Tls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
