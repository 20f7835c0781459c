//! Connecting a real channel, through the real binary against the mock
//! platforms: `pushd channel test` (each platform's credential check, its
//! typical failures with the platform's message and the advice, one test
//! message with `--to`), `pushd channel webhook` (what to paste per
//! platform, Telegram's setWebhook/deleteWebhook, secrets kept out of the
//! audit trail and the log), and the small things a newcomer trips over.

mod newcomer;
mod readme;
mod test;
mod webhook;

use crate::e2e::runtime;
use crate::support::mocks::MockPlatform;
use crate::support::*;
use pushd::model::Platform;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Output;

/// A daemon with channels on mock platforms, and the mocks.
pub struct Onboard {
    pub d: TestDaemon,
    pub mocks: BTreeMap<String, MockPlatform>,
    /// Keeps the mocks served; dropped last.
    _rt: tokio::runtime::Runtime,
}

/// A channel to configure: its name, the platform, and extra config lines
/// (which replace the mock's own line for the same key).
pub struct Ch<'a>(pub &'a str, pub Platform, pub &'a str);

impl Onboard {
    /// Starts one mock per channel and a daemon with them all; `http` is
    /// added to the `[http]` section (e.g. `public_url = "…"`).
    pub fn start(channels: &[Ch<'_>], http: &str) -> Onboard {
        Onboard::start_with(channels, http, "")
    }

    /// [`Onboard::start`] with more config `tables` (e.g. `[control]`).
    /// In a channel's extra lines `{base}` is its mock's address.
    pub fn start_with(channels: &[Ch<'_>], http: &str, tables: &str) -> Onboard {
        let rt = runtime();
        let mut mocks = BTreeMap::new();
        let mut config = String::new();
        for Ch(name, platform, overrides) in channels {
            let mock = rt.block_on(MockPlatform::start(*platform));
            let overrides = overrides.replace("{base}", &mock.base_url());
            config.push_str(&with_overrides(&mock.channel_toml(name), &overrides));
            config.push('\n');
            mocks.insert(name.to_string(), mock);
        }
        let listen = "listen = \"127.0.0.1:0\"\n";
        let config = base_config(&format!("{tables}\n{config}"))
            .replace(listen, &format!("{listen}{http}\n"));
        let d = TestDaemon::start(&config);
        Onboard { d, mocks, _rt: rt }
    }

    pub fn mock(&self, name: &str) -> &MockPlatform {
        &self.mocks[name]
    }

    /// `pushd --json ARGS`: the exit status and the whole reply.
    pub fn json(&self, args: &[&str]) -> (bool, Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.d.cli(&all);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} did not print JSON ({e}): {}{}",
                stdout(&out),
                stderr(&out)
            )
        });
        (out.status.success(), v)
    }

    /// `pushd ARGS` as a person reads it.
    pub fn text(&self, args: &[&str]) -> Output {
        self.d.cli(args)
    }
}

/// The mock's channel table with `overrides` lines replacing its lines for
/// the same keys (a wrong id, a wrong token) and adding new ones.
fn with_overrides(toml: &str, overrides: &str) -> String {
    let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_string();
    let replaced: Vec<String> = overrides
        .lines()
        .filter(|l| l.contains('='))
        .map(key)
        .collect();
    let mut out: Vec<&str> = toml
        .lines()
        .filter(|l| !replaced.contains(&key(l)) || !l.contains('='))
        .collect();
    out.extend(overrides.lines());
    out.join("\n") + "\n"
}

/// Asserts a failed credential check: exit status, class, code, the
/// platform's words and the start of the advice.
pub fn assert_check_failed(
    o: &Onboard,
    channel: &str,
    class: &str,
    code: &str,
    message_part: &str,
    advice_part: &str,
) -> Value {
    let (ok, v) = o.json(&["channel", "test", channel]);
    assert!(!ok, "the CLI must exit non-zero: {v}");
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["error"]["code"], "channel_test_failed", "{v}");
    let e = &v["data"]["check"]["error"];
    assert_eq!(e["class"], class, "{v}");
    assert_eq!(e["code"], code, "{v}");
    let message = e["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(message_part),
        "{message:?} lacks {message_part:?}"
    );
    let advice = e["advice"].as_str().unwrap_or_default();
    assert!(
        advice.contains(advice_part),
        "{advice:?} lacks {advice_part:?}"
    );
    v
}

/// Asserts a passing credential check and returns the platform's answer.
pub fn assert_check_ok(o: &Onboard, channel: &str) -> String {
    let (ok, v) = o.json(&["channel", "test", channel]);
    assert!(ok, "{v}");
    assert_eq!(v["data"]["check"]["ok"], true, "{v}");
    assert!(v["data"]["send"].is_null(), "no --to, no message: {v}");
    v["data"]["check"]["answer"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
