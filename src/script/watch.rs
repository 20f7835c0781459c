//! Watches the scripts folder and the config file and reports, debounced,
//! which of the two changed.
//!
//! Editors save in many ways: in place, by writing a temporary file and
//! renaming it over the original (vim, VS Code, most "atomic save"s), with
//! swap, backup and lock files on the side. Those side files (`.x.lua.swp`,
//! `x.lua~`, `.#x.lua`, vim's `4913` probe) never trigger a reload; a rename
//! onto `x.lua`, a new file and a deleted file do. Kubernetes ConfigMap
//! volumes swap a `..data` symlink; that counts as a change too.

use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Changed {
    Scripts,
    Config,
}

/// What the watcher looks at.
#[derive(Debug, Clone)]
struct Targets {
    /// Folders whose `*.lua` files are scripts.
    script_dirs: Vec<PathBuf>,
    /// Config files, by full path.
    config_files: Vec<PathBuf>,
}

/// Editor side files that must never trigger a reload.
pub fn is_editor_noise(name: &str) -> bool {
    name.ends_with('~')
        || name.starts_with(".#")
        || name == "4913"
        || (name.starts_with('.')
            && (name.ends_with(".swp") || name.ends_with(".swx") || name.ends_with(".swo")))
        || name.ends_with(".tmp")
        || name.ends_with(".bak")
}

impl Targets {
    fn classify(&self, path: &Path) -> Option<Changed> {
        let name = path.file_name()?.to_string_lossy();
        let parent = path.parent()?;
        if self.config_files.iter().any(|c| c == path) {
            return Some(Changed::Config);
        }
        if self.script_dirs.iter().any(|d| d == parent) {
            if name == "..data" {
                return Some(Changed::Scripts);
            }
            if is_editor_noise(&name) {
                return None;
            }
            if super::is_script_name(&name) {
                return Some(Changed::Scripts);
            }
        }
        // The scripts folder itself replaced or removed.
        if self.script_dirs.iter().any(|d| d == path) {
            return Some(Changed::Scripts);
        }
        None
    }
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Starts watching. `paths` are the scripts folder(s) and the config file(s):
/// an existing file or a `*.toml` path is a config file (its folder is
/// watched), anything else a scripts folder. Events are merged until nothing relevant
/// happened for `debounce`, then each kind that changed is sent once.
/// Watching stops when the receiver is dropped.
pub fn spawn(paths: Vec<PathBuf>, debounce: Duration) -> mpsc::Receiver<Changed> {
    let (tx, rx) = mpsc::channel(16);
    let mut targets = Targets {
        script_dirs: Vec::new(),
        config_files: Vec::new(),
    };
    let mut watch_dirs = BTreeSet::new();
    for p in paths {
        let is_config = p.is_file() || p.extension().is_some_and(|e| e == "toml");
        if !is_config {
            let d = canonical(&p);
            watch_dirs.insert(d.clone());
            targets.script_dirs.push(d);
        } else {
            let parent = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map(canonical)
                .unwrap_or_else(|| canonical(Path::new(".")));
            let file = parent.join(p.file_name().unwrap_or_default());
            watch_dirs.insert(parent);
            targets.config_files.push(file);
        }
    }
    let (raw_tx, raw_rx) = std_mpsc::channel::<notify::Result<notify::Event>>();
    let watcher = notify::recommended_watcher(move |ev| {
        let _ = raw_tx.send(ev);
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(
                "cannot watch scripts and config for changes: {e}; use `pushd reload` or SIGHUP"
            );
            return rx;
        }
    };
    for d in &watch_dirs {
        if let Err(e) = watcher.watch(d, RecursiveMode::NonRecursive) {
            tracing::error!(
                "cannot watch {}: {e}; use `pushd reload` or SIGHUP after changes",
                d.display()
            );
        }
    }
    let spawned = std::thread::Builder::new()
        .name("pushd-watch".into())
        .spawn(move || {
            let _watcher = watcher;
            debounce_loop(raw_rx, tx, targets, debounce);
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the file watcher thread: {e}");
    }
    rx
}

fn relevant(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any
    ) && !matches!(
        kind,
        EventKind::Modify(notify::event::ModifyKind::Metadata(_))
    )
}

fn debounce_loop(
    raw: std_mpsc::Receiver<notify::Result<notify::Event>>,
    tx: mpsc::Sender<Changed>,
    targets: Targets,
    debounce: Duration,
) {
    // Endless saves (a log file next to config.toml) must not starve the reload.
    let max_wait = debounce.saturating_mul(10).max(Duration::from_secs(1));
    let mut pending: BTreeSet<Changed> = BTreeSet::new();
    let mut first_at: Option<Instant> = None;
    let mut last_at = Instant::now();
    loop {
        let timeout = match first_at {
            Some(first) => {
                let quiet = (last_at + debounce).saturating_duration_since(Instant::now());
                let cap = (first + max_wait).saturating_duration_since(Instant::now());
                quiet.min(cap)
            }
            None => Duration::from_millis(500),
        };
        match raw.recv_timeout(timeout) {
            Ok(Ok(ev)) => {
                if !relevant(&ev.kind) {
                    continue;
                }
                let mut hit = false;
                for p in &ev.paths {
                    if let Some(c) = targets.classify(p) {
                        pending.insert(c);
                        hit = true;
                    }
                }
                if hit {
                    last_at = Instant::now();
                    first_at.get_or_insert(last_at);
                }
            }
            Ok(Err(e)) => {
                tracing::warn!("file watcher: {e}");
                // Overflowed or lost events: reload both to be safe.
                pending.insert(Changed::Scripts);
                pending.insert(Changed::Config);
                last_at = Instant::now();
                first_at.get_or_insert(last_at);
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                if first_at.is_some() {
                    for c in std::mem::take(&mut pending) {
                        if tx.blocking_send(c).is_err() {
                            return;
                        }
                    }
                    first_at = None;
                } else if tx.is_closed() {
                    return;
                }
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_scripts_config_and_noise() {
        let t = Targets {
            script_dirs: vec![PathBuf::from("/etc/pushd/scripts")],
            config_files: vec![PathBuf::from("/etc/pushd/config.toml")],
        };
        let c = |p: &str| t.classify(Path::new(p));
        assert_eq!(c("/etc/pushd/scripts/10_vip.lua"), Some(Changed::Scripts));
        assert_eq!(c("/etc/pushd/config.toml"), Some(Changed::Config));
        assert_eq!(c("/etc/pushd/scripts/..data"), Some(Changed::Scripts));
        for noise in [
            "/etc/pushd/scripts/.10_vip.lua.swp",
            "/etc/pushd/scripts/10_vip.lua~",
            "/etc/pushd/scripts/.#10_vip.lua",
            "/etc/pushd/scripts/4913",
            "/etc/pushd/scripts/notes.txt",
            "/etc/pushd/scripts/pushd.d.lua",
            "/etc/pushd/.config.toml.swp",
            "/etc/pushd/other.toml",
        ] {
            assert_eq!(c(noise), None, "{noise}");
        }
    }
}
