//! The real `pushd serve` in a temp folder, spoken to through the real CLI
//! and raw JSON lines on the control socket.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_pushd");

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub db: PathBuf,
    child: Child,
}

/// Polls `cond` every `every` until it yields, or panics after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut cond: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
}

impl Daemon {
    /// Writes `config` and `scripts` into a fresh folder and starts the daemon.
    pub fn start(config: &str, scripts: &str) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("pushd-bench-")
            .tempdir()
            .expect("tempdir");
        let cfg_path = dir.path().join("config.toml");
        std::fs::write(&cfg_path, config).expect("write config");
        std::fs::create_dir_all(dir.path().join("scripts")).expect("scripts dir");
        std::fs::write(dir.path().join("scripts/bench.lua"), scripts).expect("write scripts");
        let log = std::fs::File::create(dir.path().join("daemon.log")).expect("log file");
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&cfg_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn pushd serve");
        let data = dir.path().join("data");
        let mut d = Daemon {
            socket: data.join("pushd.sock"),
            db: data.join("pushd.db"),
            config: cfg_path,
            dir,
            child,
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("pushd serve exited early ({st}); log:\n{}", self.log());
            }
            if UnixStream::connect(&self.socket).is_ok() {
                let v = self.call("status", json!({}));
                if v["ok"] == true && v["data"]["scripts"]["generation"].is_i64() {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("pushd serve did not become ready; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One request on a fresh connection.
    pub fn call(&self, cmd: &str, args: Value) -> Value {
        let mut c = Conn::open(&self.socket);
        c.call(cmd, args)
    }

    pub fn conn(&self) -> Conn {
        Conn::open(&self.socket)
    }

    /// The real CLI (`pushd --config … ARGS`).
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run pushd CLI")
    }

    /// Creates a push now; returns its id.
    pub fn create_push(
        &self,
        name: &str,
        audience: &str,
        template: &str,
        rate: Option<u32>,
    ) -> i64 {
        let mut args = json!({ "audience": audience, "template": template, "name": name });
        if let Some(r) = rate {
            args["rate_per_minute"] = json!(r);
        }
        self.create_push_with(args)
    }

    /// Creates a push from raw `push.create` args; returns its id.
    pub fn create_push_with(&self, args: Value) -> i64 {
        let v = self.call("push.create", args);
        assert_eq!(v["ok"], true, "push.create failed: {v}");
        v["data"]["push"]["id"].as_i64().expect("push id")
    }

    /// Cancels a push and waits until it is cancelled.
    pub fn cancel(&self, push: &str) {
        let v = self.call("push.cancel", json!({ "push": push }));
        assert_eq!(v["ok"], true, "push.cancel {push} failed: {v}");
        let mut conn = self.conn();
        wait_for(
            &format!("push {push} to be cancelled"),
            Duration::from_secs(120),
            Duration::from_millis(10),
            || {
                let v = conn.call("push.show", json!({ "push": push }));
                (v["data"]["push"]["status"] == "cancelled").then_some(())
            },
        )
    }

    /// Rewrites config.toml and reloads it; panics if the daemon refuses it.
    pub fn reload_config(&self, config: &str) {
        std::fs::write(&self.config, config).expect("write config");
        let v = self.call("reload", json!({}));
        assert!(
            v["ok"] == true && v["data"]["config"]["ok"] == true,
            "reload failed: {v}\nlog:\n{}",
            self.log()
        );
    }

    /// CPU time the daemon has used so far (user + system), in seconds.
    pub fn cpu_secs(&self) -> f64 {
        cpu_secs(self.pid())
    }

    /// Waits for the push to complete; returns its summary.
    pub fn wait_completed(&self, push: &str, timeout: Duration) -> Value {
        let mut conn = self.conn();
        wait_for(
            &format!("push {push} to complete"),
            timeout,
            Duration::from_millis(10),
            || {
                let v = conn.call("push.show", json!({ "push": push }));
                let p = v["data"]["push"].clone();
                match p["status"].as_str() {
                    Some("completed") => Some(p),
                    Some("paused") | Some("cancelled") => {
                        panic!("push {push} stopped: {p}\nlog:\n{}", self.log())
                    }
                    _ => None,
                }
            },
        )
    }

    /// `/proc/<pid>/status` field in kB (VmRSS, VmHWM).
    pub fn proc_kb(&self, field: &str) -> u64 {
        proc_kb(self.pid(), field)
    }

    /// Resets the peak RSS to the current RSS (Linux ≥ 4.0).
    pub fn reset_peak_rss(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5");
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn db_path(&self) -> &Path {
        &self.db
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::env::var_os("PUSHD_BENCH_KEEP").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::TempDir::new().expect("tempdir"));
            eprintln!("kept the daemon's folder: {}", dir.keep().display());
        }
    }
}

pub fn proc_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process from `/proc/<pid>/stat`, in seconds (0 if
/// it cannot be read).
pub fn cpu_secs(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces, in parentheses):
    // state is field 3, utime 14 and stime 15.
    let Some(rest) = text.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) as f64 / hz
}

/// A control-socket connection (JSON lines).
pub struct Conn {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Conn {
    pub fn open(socket: &Path) -> Conn {
        let s = UnixStream::connect(socket).expect("connect control socket");
        Conn {
            r: BufReader::new(s.try_clone().expect("clone socket")),
            w: s,
        }
    }

    pub fn call(&mut self, cmd: &str, args: Value) -> Value {
        let mut line = json!({ "cmd": cmd, "args": args }).to_string();
        line.push('\n');
        self.w.write_all(line.as_bytes()).expect("write request");
        let mut reply = String::new();
        self.r.read_line(&mut reply).expect("read reply");
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("bad reply {reply:?}: {e}"))
    }
}
