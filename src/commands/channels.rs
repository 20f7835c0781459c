//! channel.list: each configured channel instance with its kind, its rate
//! (configured, the platform's default, and what it sent over the last
//! minute), its last send error and the webhook URL to register with the
//! platform. Channels come from config.toml: a short list, not paged.

use super::Handles;
use crate::model::{Platform, fmt_ms};
use crate::protocol::{ChannelError, ChannelListData, ChannelSummary};

pub fn list(h: &Handles) -> ChannelListData {
    let cfg = h.config.get();
    let adapters = h.channels.all();
    let http = h.process.http_addr.get().filter(|_| cfg.http.enabled);
    let channels = cfg
        .channels
        .iter()
        .map(|(name, c)| {
            let activity = h.metrics.activity.get(name);
            ChannelSummary {
                name: name.clone(),
                kind: c.kind.to_string(),
                configured_rate_per_second: c.rate_per_second,
                default_rate_per_second: adapters
                    .get(name)
                    .and_then(|a| a.default_rate_per_second()),
                current_per_minute: activity.per_minute,
                last_error: activity.last_error.map(|e| ChannelError {
                    at: fmt_ms(e.at),
                    class: e.class,
                    code: e.code,
                    message: e.message,
                }),
                // The simulator feeds its receipts back in-process.
                webhook_url: http
                    .filter(|_| c.kind != Platform::Simulator)
                    .map(|addr| format!("http://{addr}/webhooks/{name}")),
            }
        })
        .collect();
    ChannelListData { channels }
}
