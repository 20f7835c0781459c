//! What each channel instance has been doing lately, for the panel's
//! Channels page and `channel.list`: its sends per minute over the last
//! minute and its last send error (any class, transient ones included).
//! Fed by the dispatcher through `Metrics` — once per recorded run of
//! sends, not per send — so it costs the send path one map lookup per run.

use crate::model::{Millis, SendError, now_ms};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A channel's last send error.
#[derive(Debug, Clone, PartialEq)]
pub struct LastError {
    pub at: Millis,
    pub class: String,
    pub code: String,
    pub message: String,
}

/// Sends in one-second buckets over the last minute (constant memory at
/// any rate), and the last error.
#[derive(Debug, Clone)]
struct Channel {
    /// (second since the epoch, sends in it), indexed by second mod 60.
    buckets: [(i64, u64); 60],
    /// First send seen: a channel that just started is rated over its own
    /// age, not a whole minute.
    since: Option<Millis>,
    last_error: Option<LastError>,
}

impl Default for Channel {
    fn default() -> Self {
        Channel {
            buckets: [(i64::MIN, 0); 60],
            since: None,
            last_error: None,
        }
    }
}

impl Channel {
    fn record(&mut self, at: Millis, n: u64) {
        self.since.get_or_insert(at);
        let sec = at.div_euclid(1000);
        let slot = &mut self.buckets[sec.rem_euclid(60) as usize];
        if slot.0 != sec {
            *slot = (sec, 0);
        }
        slot.1 += n;
    }

    fn per_minute(&self, now: Millis) -> f64 {
        let sec = now.div_euclid(1000);
        let sends: u64 = self
            .buckets
            .iter()
            .filter(|(s, _)| *s > sec - 60 && *s <= sec)
            .map(|(_, n)| *n)
            .sum();
        let span = (now - self.since.unwrap_or(now)).clamp(1_000, 60_000);
        sends as f64 * 60_000.0 / span as f64
    }
}

/// One channel as [`Activity::get`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Sends the platform accepted, per minute, over the last minute.
    pub per_minute: f64,
    pub last_error: Option<LastError>,
}

#[derive(Default)]
pub struct Activity {
    channels: Mutex<BTreeMap<String, Channel>>,
}

impl Activity {
    fn with(&self, channel: &str, f: impl FnOnce(&mut Channel)) {
        let mut map = match self.channels.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        match map.get_mut(channel) {
            Some(c) => f(c),
            None => f(map.entry(channel.to_string()).or_default()),
        }
    }

    /// `n` sends the channel accepted just now.
    pub fn sent(&self, channel: &str, n: u64) {
        let at = now_ms();
        self.with(channel, |c| c.record(at, n));
    }

    pub fn failed(&self, channel: &str, e: &SendError) {
        let last = LastError {
            at: now_ms(),
            class: e.class.as_str().to_string(),
            code: e.code.clone(),
            message: e.message.clone(),
        };
        self.with(channel, |c| c.last_error = Some(last));
    }

    /// The channel's rate and last error (a channel that never sent: 0, none).
    pub fn get(&self, channel: &str) -> Snapshot {
        let now = now_ms();
        let map = match self.channels.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        match map.get(channel) {
            Some(c) => Snapshot {
                per_minute: c.per_minute(now),
                last_error: c.last_error.clone(),
            },
            None => Snapshot {
                per_minute: 0.0,
                last_error: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ErrorClass;

    #[test]
    fn rate_over_the_last_minute_and_the_last_error() {
        let mut c = Channel::default();
        let t0 = 1_000_000_000;
        // 10 a second for 60 seconds: 600/min.
        for s in 0..60 {
            c.record(t0 + s * 1000, 10);
        }
        let rate = c.per_minute(t0 + 59_999);
        assert!((rate - 600.0).abs() < 1.0, "{rate}");
        // A minute of silence later, nothing is current.
        assert_eq!(c.per_minute(t0 + 125_000), 0.0);
        // A young channel is rated over its age: 20 in 2 s is 600/min.
        let mut young = Channel::default();
        young.record(t0, 10);
        young.record(t0 + 1000, 10);
        assert!((young.per_minute(t0 + 2000) - 600.0).abs() < 1.0);

        let a = Activity::default();
        assert_eq!(a.get("wa").per_minute, 0.0);
        a.failed(
            "wa",
            &SendError::new(ErrorClass::Blocked, "131047", "re-engage"),
        );
        let e = a.get("wa").last_error.unwrap();
        assert_eq!((e.class.as_str(), e.code.as_str()), ("blocked", "131047"));
        assert!(a.get("tg").last_error.is_none());
    }
}
