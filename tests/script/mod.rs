//! The script host through its public API: loading and validation errors,
//! sandbox and limits, rendering and routing, `where` → SQL, the watcher, and
//! the shipped example scripts.

mod examples;
mod limits;
mod load;
mod render;
mod variants;
mod watch;
mod where_sql;

use pushd::model::{Member, Platform};
use pushd::script::{ChannelInfo, Generation, ScriptEnv, ScriptError, ScriptLimits};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

/// A scripts folder named `scripts` (so errors read `scripts/x.lua:N`) in a temp dir.
pub struct Scripts {
    pub _tmp: TempDir,
    pub dir: PathBuf,
}

pub fn scripts(files: &[(&str, &str)]) -> Scripts {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("scripts");
    std::fs::create_dir(&dir).expect("scripts dir");
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write script");
    }
    Scripts { _tmp: tmp, dir }
}

pub fn limits() -> ScriptLimits {
    ScriptLimits {
        instruction_limit: 1_000_000,
        call_timeout: Duration::from_secs(5),
        memory_limit_bytes: 16 << 20,
        states: 2,
    }
}

/// Channels `sim` (simulator), `wa` (whatsapp), `fb` (messenger, 1h window).
pub fn env() -> ScriptEnv {
    let mut channels = BTreeMap::new();
    channels.insert("sim".to_string(), ChannelInfo::new(Platform::Simulator));
    channels.insert("wa".to_string(), ChannelInfo::new(Platform::Whatsapp));
    channels.insert(
        "fb".to_string(),
        ChannelInfo {
            platform: Platform::Messenger,
            service_window: Duration::from_secs(3600),
        },
    );
    ScriptEnv {
        channels,
        default_locale: "en".into(),
        validate: ScriptEnv::accept_all(),
        links: Default::default(),
    }
}

pub fn load_with(
    files: &[(&str, &str)],
    limits: &ScriptLimits,
    env: &ScriptEnv,
) -> Result<Arc<Generation>, Vec<ScriptError>> {
    let s = scripts(files);
    Generation::load(1, &s.dir, limits, env)
}

pub fn load(files: &[(&str, &str)]) -> Arc<Generation> {
    match load_with(files, &limits(), &env()) {
        Ok(g) => g,
        Err(errs) => panic!("scripts should load, got:\n{}", show(&errs)),
    }
}

pub fn load_err(files: &[(&str, &str)]) -> Vec<ScriptError> {
    match load_with(files, &limits(), &env()) {
        Ok(g) => panic!("scripts should fail to load, but loaded {g:?}"),
        Err(errs) => errs,
    }
}

pub fn show(errs: &[ScriptError]) -> String {
    errs.iter().map(|e| format!("  {e}\n")).collect()
}

/// Asserts some error is at `file:line` and mentions every one of `words`.
pub fn assert_error_at(errs: &[ScriptError], file_line: &str, words: &[&str]) {
    let hit = errs.iter().any(|e| {
        let loc = e
            .location
            .as_ref()
            .map(|l| l.to_string())
            .unwrap_or_default();
        let text = e.to_string();
        loc == file_line && words.iter().all(|w| text.contains(w))
    });
    assert!(
        hit,
        "expected an error at {file_line} mentioning {words:?}, got:\n{}",
        show(errs)
    );
}

pub fn member(id: i64, channel: &str, locale: &str) -> Member {
    Member {
        id,
        channel: channel.into(),
        channel_user_id: format!("u{id}"),
        name: format!("Member {id}"),
        locale: locale.into(),
        timezone: "UTC".into(),
        tags: Vec::new(),
        attributes: serde_json::Map::new(),
        subscribed: true,
        last_interaction_at: None,
    }
}
