//! Shared test fixtures: a real `pushd serve` in a temp dir, the real CLI,
//! the real socket and the real SQLite file.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_pushd");

/// Polls `cond` until it holds or `timeout` passes (then panics with `what`).
pub fn wait_for<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A daemon under test, with its own folder, config, socket and database.
pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub socket: PathBuf,
    pub db_path: PathBuf,
    pub child: Option<Child>,
    pub log_path: PathBuf,
}

/// Config used by tests unless they bring their own: no simulator seeding,
/// webhooks on an ephemeral port, fast reloads.
pub fn base_config(extra: &str) -> String {
    format!(
        r#"[daemon]
data_dir = "data"
[http]
listen = "127.0.0.1:0"
[scripts]
debounce = "100ms"
{extra}
"#
    )
}

impl TestDaemon {
    /// Prepares a folder with `config` (and an empty scripts dir) without starting.
    pub fn prepare(config: &str) -> TestDaemon {
        let dir = tempfile::Builder::new()
            .prefix("pushd-test-")
            .tempdir()
            .expect("tempdir");
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config).expect("write config");
        std::fs::create_dir_all(dir.path().join("scripts")).expect("scripts dir");
        let data = dir.path().join("data");
        TestDaemon {
            socket: data.join("pushd.sock"),
            db_path: data.join("pushd.db"),
            log_path: dir.path().join("daemon.log"),
            config_path,
            dir,
            child: None,
        }
    }

    /// Starts a daemon on `config` and waits until its socket answers.
    pub fn start(config: &str) -> TestDaemon {
        let mut d = TestDaemon::prepare(config);
        d.spawn();
        d
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write_script(&self, name: &str, text: &str) {
        let p = self.path("scripts").join(name);
        std::fs::write(p, text).expect("write script");
    }

    /// Spawns `pushd serve` and waits for the socket to answer `status`.
    pub fn spawn(&mut self) {
        let child = self.spawn_raw();
        self.child = Some(child);
        self.wait_ready();
    }

    /// Spawns without waiting (for tests that expect the start to fail).
    pub fn spawn_raw(&self) -> Child {
        self.spawn_raw_with_env(&[])
    }

    /// `spawn`, with these variables in the daemon's environment.
    pub fn spawn_with_env(&mut self, env: &[(&str, String)]) {
        let child = self.spawn_raw_with_env(env);
        self.child = Some(child);
        self.wait_ready();
    }

    fn spawn_raw_with_env(&self, env: &[(&str, String)]) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config"])
            .arg(&self.config_path)
            .env("RUST_LOG", "info,pushd=debug")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().expect("spawn pushd serve")
    }

    pub fn wait_ready(&mut self) {
        let socket = self.socket.clone();
        let log = self.log_path.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = UnixStream::connect(&socket)
                && s.write_all(b"{\"cmd\":\"status\"}\n").is_ok()
            {
                let mut line = String::new();
                if BufReader::new(&s).read_line(&mut line).is_ok() && line.contains("\"ok\":true") {
                    return;
                }
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "pushd exited early with {status}; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "pushd did not become ready; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Runs the CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .output()
            .expect("run pushd CLI")
    }

    /// Runs the CLI with `--json` and parses the reply.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "CLI {args:?} did not print JSON ({e}); stdout: {} stderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Sends one raw request line on a fresh connection and returns the reply.
    pub fn request(&self, line: &str) -> Value {
        let mut conn = Conn::open(&self.socket);
        conn.send_line(line);
        conn.recv()
    }

    pub fn status(&self) -> Value {
        let v = self.request(r#"{"cmd":"status"}"#);
        assert_eq!(v["ok"], true, "status failed: {v}");
        v["data"].clone()
    }

    /// The bound webhook address (the config asks for port 0).
    pub fn http_base(&self) -> String {
        let s = self.status();
        format!(
            "http://{}",
            s["http_listen"].as_str().expect("http enabled")
        )
    }

    /// The platform's message id of the push's delivery to `user` (the
    /// member's channel_user_id): what a receipt webhook refers to.
    pub fn provider_message_id(&self, user: &str) -> String {
        self.db()
            .query_row(
                "SELECT provider_message_id FROM deliveries d JOIN members m ON m.id = d.member_id WHERE m.channel_user_id = ?1",
                [user],
                |r| r.get(0),
            )
            .unwrap_or_else(|e| panic!("no sent delivery to {user}: {e}"))
    }

    pub fn db(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(&self.db_path).expect("open db");
        c.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        c
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid() as i32, sig);
        }
    }

    /// SIGTERM and wait for exit; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let status = wait_exit(&mut child, Duration::from_secs(30));
        status.code()
    }

    /// kill -9, as a crash.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    wait_for("process exit", timeout, || child.try_wait().ok().flatten())
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.crash();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("---- daemon log (last 60 lines) ----");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// A raw control-socket connection speaking JSON lines.
pub struct Conn {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Conn {
    pub fn open(path: &Path) -> Conn {
        let stream = UnixStream::connect(path).expect("connect to control socket");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Conn { stream, reader }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to socket");
    }

    pub fn send_line(&mut self, line: &str) {
        self.send_raw(line.as_bytes());
        self.send_raw(b"\n");
    }

    pub fn recv(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read reply");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {line:?}"))
    }

    pub fn call(&mut self, line: &str) -> Value {
        self.send_line(line);
        self.recv()
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn count(db: &rusqlite::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The first column of every row of a query, as text.
pub fn strings(db: &rusqlite::Connection, sql: &str) -> Vec<String> {
    let mut stmt = db.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    stmt.query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Deliveries in `sending`, as the state machine sees them: marked one by
/// one, or fresh inside a live claim.
pub fn sending(db: &rusqlite::Connection) -> i64 {
    count(
        db,
        &format!(
            "SELECT count(*) FROM deliveries d WHERE {} = 1",
            pushd::store::deliveries::STATE_SQL
        ),
    )
}

pub mod browser;
#[allow(dead_code)]
pub mod mocks;
pub mod preconditions;
pub mod webhooks;
