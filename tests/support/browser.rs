//! A real headless Chromium for the panel's browser tests, driven over the
//! DevTools protocol on a pipe (`--remote-debugging-pipe`: no port, no
//! extra crate). Each test gets its own profile folder, so tests run in
//! parallel. Without a Chromium the tests print one loud SKIPPED line, or
//! fail when `PUSHD_REQUIRE_BROWSER=1` (as `.ci/run` sets).
//!
//! When a test panics with a page open, the page is saved as a PNG under
//! the target folder and its path printed.

use serde_json::{Value, json};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

pub struct Browser {
    name: String,
    child: Child,
    to_chrome: File,
    from_chrome: mpsc::Receiver<Value>,
    next_id: u64,
    session: String,
    /// Every event seen, in order (Page.javascriptDialogOpening, …).
    pub events: Vec<Value>,
    pub downloads: PathBuf,
    profile: tempfile::TempDir,
}

fn find_chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PUSHD_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
    .find(|p| p.is_file())
}

/// Two pipes: fd 3 in the child reads our commands, fd 4 writes replies.
fn pipes() -> ([i32; 2], [i32; 2]) {
    let mut to = [0i32; 2];
    let mut from = [0i32; 2];
    // SAFETY: pipe2 writes two fds into each array.
    unsafe {
        assert_eq!(libc::pipe2(to.as_mut_ptr(), libc::O_CLOEXEC), 0);
        assert_eq!(libc::pipe2(from.as_mut_ptr(), libc::O_CLOEXEC), 0);
    }
    (to, from)
}

impl Browser {
    /// A fresh browser, or `None` (after one loud line) when there is none
    /// and none is required.
    pub fn launch(test: &str) -> Option<Browser> {
        let Some(exe) = find_chromium() else {
            if std::env::var("PUSHD_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
                panic!(
                    "{test}: PUSHD_REQUIRE_BROWSER=1 but no Chromium was found \
                     (apt-get install chromium, or set PUSHD_CHROMIUM)"
                );
            }
            // One line for the whole run, not one per test, written past
            // the test harness's capture so that it shows.
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "!!!!!!!! SKIPPED: the panel's browser tests ({test} and the rest): no Chromium \
                     found (apt-get install chromium); set PUSHD_REQUIRE_BROWSER=1 to make this a failure !!!!!!!!"
                );
            });
            return None;
        };
        let profile = tempfile::Builder::new()
            .prefix("pushd-chromium-")
            .tempdir()
            .expect("profile dir");
        let downloads = profile.path().join("downloads");
        std::fs::create_dir_all(&downloads).expect("downloads dir");
        let (to, from) = pipes();
        let (child_in, child_out) = (to[0], from[1]);
        let mut cmd = Command::new(&exe);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--no-proxy-server",
            "--hide-scrollbars",
            "--mute-audio",
            "--remote-debugging-pipe",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Via high fds first, so neither dup2 clobbers the other's source.
                let a = libc::fcntl(child_in, libc::F_DUPFD, 10);
                let b = libc::fcntl(child_out, libc::F_DUPFD, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn chromium");
        // SAFETY: the fds are ours; the child has its own copies.
        let (to_chrome, reader) = unsafe {
            libc::close(child_in);
            libc::close(child_out);
            (File::from_raw_fd(to[1]), File::from_raw_fd(from[0]))
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || read_messages(reader, tx));
        let mut b = Browser {
            name: test.to_string(),
            child,
            to_chrome,
            from_chrome: rx,
            next_id: 0,
            session: String::new(),
            events: Vec::new(),
            downloads,
            profile,
        };
        b.call_browser("Browser.getVersion", json!({}));
        let target = b.call_browser("Target.createTarget", json!({ "url": "about:blank" }));
        let attached = b.call_browser(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        b.session = attached["sessionId"]
            .as_str()
            .expect("session id")
            .to_string();
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        let dir = b.downloads.display().to_string();
        b.call_browser(
            "Browser.setDownloadBehavior",
            json!({ "behavior": "allow", "downloadPath": dir, "eventsEnabled": true }),
        );
        Some(b)
    }

    pub fn profile(&self) -> &Path {
        self.profile.path()
    }

    fn send(&mut self, method: &str, params: Value, session: Option<String>) -> u64 {
        self.next_id += 1;
        let mut msg = json!({ "id": self.next_id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to_chrome.write_all(&bytes).expect("write to chromium");
        self.next_id
    }

    fn wait_reply(&mut self, id: u64, method: &str) -> Result<Value, String> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self
                .from_chrome
                .recv_timeout(left)
                .map_err(|_| format!("chromium did not answer {method} in time"))?;
            if msg["id"].as_u64() == Some(id) {
                if let Some(e) = msg.get("error") {
                    return Err(format!("chromium refused {method}: {e}"));
                }
                return Ok(msg["result"].clone());
            }
            if msg.get("id").is_none() {
                self.on_event(msg);
            }
        }
    }

    fn on_event(&mut self, msg: Value) {
        // A dialog blocks the page: note it, and dismiss it so the test goes on.
        if msg["method"] == "Page.javascriptDialogOpening" {
            let s = self.session.clone();
            self.send(
                "Page.handleJavaScriptDialog",
                json!({ "accept": false }),
                Some(s),
            );
        }
        self.events.push(msg);
    }

    /// Drains events that arrived without a command waiting.
    pub fn pump(&mut self) {
        while let Ok(msg) = self.from_chrome.try_recv() {
            if msg.get("id").is_none() {
                self.on_event(msg);
            }
        }
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params, None);
        self.wait_reply(id, method)
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    /// A command to the page.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    fn try_call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let s = self.session.clone();
        let mut msg = json!({ "method": method, "params": params, "sessionId": s });
        self.next_id += 1;
        msg["id"] = json!(self.next_id);
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to_chrome
            .write_all(&bytes)
            .map_err(|e| format!("write to chromium: {e}"))?;
        self.wait_reply(self.next_id, method)
    }

    /// Opens `url` and waits until the new document has loaded (after any
    /// redirects).
    pub fn goto(&mut self, url: &str) {
        self.mark_document();
        let r = self.call("Page.navigate", json!({ "url": url }));
        if let Some(e) = r.get("errorText") {
            panic!("navigating to {url} failed: {e}");
        }
        self.wait_new_document();
    }

    /// Tags the current document, so a new one can be told from it.
    fn mark_document(&mut self) {
        self.pump();
        self.events.clear();
        self.eval("window.__pushd_old_document = true");
    }

    /// Waits for a document without the tag, fully loaded.
    fn wait_new_document(&mut self) {
        self.wait_js(
            "the next page to load",
            DEADLINE,
            "window.__pushd_old_document !== true && document.readyState === 'complete'",
        );
    }

    /// Waits until an event named `method` has arrived (since the last clear).
    pub fn wait_event(&mut self, what: &str, method: &str) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(e) = self.events.iter().find(|e| e["method"] == method) {
                return e.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from_chrome.recv_timeout(left) {
                Ok(msg) if msg.get("id").is_none() => self.on_event(msg),
                Ok(_) => {}
                Err(_) => panic!("{}: timed out waiting for {what}", self.name),
            }
        }
    }

    /// Runs `js` in the page; its value (promises awaited).
    pub fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{}: script failed: {js}\n{e}", self.name);
        }
        r["result"]["value"].clone()
    }

    pub fn text(&mut self, selector: &str) -> String {
        let js = format!(
            "(() => {{ const e = document.querySelector({}); return e ? e.textContent.trim() : null; }})()",
            json!(selector)
        );
        match self.eval(&js) {
            Value::String(s) => s,
            _ => panic!("{}: no element {selector}", self.name),
        }
    }

    /// Polls `js` until it returns something truthy; returns that value.
    /// A page in the middle of navigating (no context to run in) counts as
    /// not yet.
    pub fn wait_js(&mut self, what: &str, timeout: Duration, js: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.try_call(
                "Runtime.evaluate",
                json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
            );
            if let Ok(r) = r
                && r.get("exceptionDetails").is_none()
            {
                let v = r["result"]["value"].clone();
                let truthy = !matches!(v, Value::Null | Value::Bool(false))
                    && v != json!("")
                    && v != json!(0);
                if truthy {
                    return v;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: timed out after {timeout:?} waiting for {what}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the element (a link or a submit button) and waits for the next page.
    pub fn click_and_wait(&mut self, selector: &str) {
        self.mark_document();
        let js = format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return false; e.click(); return true; }})()",
            json!(selector)
        );
        assert_eq!(
            self.eval(&js),
            json!(true),
            "{}: no element {selector}",
            self.name
        );
        self.wait_new_document();
    }

    /// Sets the viewport: a laptop (1280×900) or a phone (390×844, touch).
    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        );
    }

    /// `prefers-color-scheme`: "light" or "dark".
    pub fn color_scheme(&mut self, scheme: &str) {
        self.call(
            "Emulation.setEmulatedMedia",
            json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] }),
        );
    }

    /// A PNG of the whole page.
    pub fn screenshot(&mut self, path: &Path) {
        self.try_screenshot(path)
            .unwrap_or_else(|e| panic!("{}: screenshot: {e}", self.name));
    }

    fn try_screenshot(&mut self, path: &Path) -> Result<(), String> {
        use base64::Engine as _;
        let shot = self.try_call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        )?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or(""))
            .map_err(|e| format!("screenshot is not base64: {e}"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(path, png).map_err(|e| e.to_string())
    }

    /// Waits for a download to finish; returns the file's bytes.
    pub fn wait_download(&mut self) -> Vec<u8> {
        let done = self.wait_event_where("the download to finish", |e| {
            e["method"] == "Browser.downloadProgress" && e["params"]["state"] == "completed"
        });
        let guid = done["params"]["guid"].as_str().unwrap_or("").to_string();
        let begin = self
            .events
            .iter()
            .find(|e| {
                e["method"] == "Browser.downloadWillBegin" && e["params"]["guid"] == guid.as_str()
            })
            .cloned()
            .expect("downloadWillBegin before completion");
        let name = begin["params"]["suggestedFilename"]
            .as_str()
            .unwrap_or("")
            .to_string();
        // With eventsEnabled the file is saved under its guid.
        let by_guid = self.downloads.join(&guid);
        let path = if by_guid.exists() {
            by_guid
        } else {
            self.downloads.join(name)
        };
        std::fs::read(&path).unwrap_or_else(|e| panic!("read download {}: {e}", path.display()))
    }

    fn wait_event_where(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(e) = self.events.iter().find(|e| pred(e)) {
                return e.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from_chrome.recv_timeout(left) {
                Ok(msg) if msg.get("id").is_none() => self.on_event(msg),
                Ok(_) => {}
                Err(_) => panic!("{}: timed out waiting for {what}", self.name),
            }
        }
    }

    /// Events of one kind seen so far (pumped first).
    pub fn seen(&mut self, method: &str) -> Vec<Value> {
        self.pump();
        self.events
            .iter()
            .filter(|e| e["method"] == method)
            .cloned()
            .collect()
    }
}

fn read_messages(mut reader: File, tx: mpsc::Sender<Value>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.iter().position(|b| *b == 0) {
            let msg: Vec<u8> = buf.drain(..=end).collect();
            if let Ok(v) = serde_json::from_slice(&msg[..msg.len() - 1])
                && tx.send(v).is_err()
            {
                return;
            }
        }
    }
}

/// Where failure screenshots go.
pub fn failure_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("panel-failures")
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let path = failure_dir().join(format!("{}.png", self.name));
            // Best effort, and never a panic here: the browser may be what failed.
            match self.try_screenshot(&path) {
                Ok(()) => eprintln!("screenshot of the failing page: {}", path.display()),
                Err(e) => eprintln!("no screenshot of the failing page: {e}"),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
