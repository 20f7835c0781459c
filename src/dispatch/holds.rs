//! Channel holds: a channel whose platform said "nothing more today" (the
//! whole account is out of quota, e.g. WeChat's daily API quota, 45009)
//! sends nothing until the time the platform's error names. A recipient the
//! walk reaches meanwhile is left pending as it is (no write, no attempt
//! counted) and the walk waits for the hold to end; one whose request got
//! the error goes back to pending, due then, its attempt refunded. While a
//! hold lasts, `status` shows an alert naming the channel and when it
//! resumes; at that time the hold and its alert end by themselves.
//!
//! Holds live in memory: after a restart the first send on the channel
//! meets the platform's error again and the hold is taken again (one
//! request per request slot, not a resend of anyone).

use crate::alerts::Alerts;
use crate::model::{Millis, SendError, fmt_ms, now_ms};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Why a channel is held, and until when.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    pub until: Millis,
    /// The platform's error that started it.
    pub error: SendError,
}

pub struct ChannelHolds {
    /// channel → its hold.
    until: Mutex<HashMap<String, Hold>>,
    alerts: Arc<Alerts>,
    shutdown: CancellationToken,
}

impl ChannelHolds {
    pub fn new(alerts: Arc<Alerts>, shutdown: CancellationToken) -> ChannelHolds {
        ChannelHolds {
            until: Mutex::new(HashMap::new()),
            alerts,
            shutdown,
        }
    }

    /// The alert's key for `channel`.
    fn source(channel: &str) -> String {
        format!("channel-hold:{channel}")
    }

    /// Holds `channel` until `until` because of `error` (a later time
    /// extends a hold, an earlier one never shortens it).
    pub fn hold(self: &Arc<Self>, channel: &str, until: Millis, error: &SendError) {
        let until = {
            let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
            let before = map.get(channel).map(|h| h.until);
            let after = before.map_or(until, |b| b.max(until));
            if before == Some(after) {
                // Already held that long (the other requests in flight
                // meet the same error): nothing new to say.
                return;
            }
            let hold = Hold {
                until: after,
                error: error.clone(),
            };
            map.insert(channel.to_string(), hold);
            after
        };
        let message = format!(
            "channel {channel}: the platform refuses every send until {} ({}: {}); its sends are held until then and resume by themselves (recipients stay pending)",
            fmt_ms(until),
            error.code,
            error.message
        );
        tracing::warn!(channel, until = %fmt_ms(until), code = %error.code, "channel out of quota: its sends are held");
        self.alerts.set(&Self::source(channel), message);
        let (holds, channel) = (self.clone(), channel.to_string());
        tokio::spawn(async move {
            let wait = Duration::from_millis((until - now_ms()).max(0) as u64);
            tokio::select! {
                _ = tokio::time::sleep(wait) => holds.release(&channel, until),
                _ = holds.shutdown.cancelled() => {}
            }
        });
    }

    /// Ends the hold taken until `until` (not one extended since).
    fn release(&self, channel: &str, until: Millis) {
        let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(channel).map(|h| h.until) == Some(until) {
            map.remove(channel);
            self.alerts.clear(&Self::source(channel));
            tracing::info!(channel, "channel hold over: its sends resume");
        }
    }

    /// When `channel` may send again, while it is held.
    pub fn held_until(&self, channel: &str) -> Option<Millis> {
        self.held(channel).map(|h| h.until)
    }

    /// `channel`'s hold, while it lasts.
    pub fn held(&self, channel: &str) -> Option<Hold> {
        let map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        map.get(channel).filter(|h| h.until > now_ms()).cloned()
    }
}
