//! The built-in simulator platform: no account needed. It behaves like a real
//! platform — latency, blocked and invalid recipients, transient failures,
//! rate-limit answers with retry-after — and feeds delivered / read /
//! interaction receipts back through the same path real webhooks take.
//! Outcomes are a pure function of (seed, recipient, attempt): deterministic.

use super::{Channel, ChannelContext, Recipient, Rule, RuleError};
use crate::config::ChannelConfig;
use crate::model::{ChannelEvent, EventSink as ReceiptSink};
use crate::model::{
    ErrorClass, InboundEvent, Outbound, Platform, SendError, SendOk, StatusUpdate, now_ms,
};
use async_trait::async_trait;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct SimSettings {
    pub seed: u64,
    pub latency: Duration,
    pub block_rate: f64,
    pub invalid_rate: f64,
    pub transient_rate: f64,
    pub rate_limit_rate: f64,
    pub delivered_rate: f64,
    pub read_rate: f64,
    /// Read rates of messages whose text contains the key.
    pub read_rate_by_text: Vec<(String, f64)>,
    pub interact_rate: f64,
    pub receipt_delay: Duration,
}

impl SimSettings {
    pub fn from_config(cfg: &ChannelConfig) -> SimSettings {
        SimSettings {
            seed: cfg.seed.unwrap_or(42),
            latency: cfg.latency.unwrap_or(Duration::from_millis(20)),
            block_rate: cfg.block_rate.unwrap_or(0.0),
            invalid_rate: cfg.invalid_rate.unwrap_or(0.0),
            transient_rate: cfg.transient_rate.unwrap_or(0.0),
            rate_limit_rate: cfg.rate_limit_rate.unwrap_or(0.0),
            delivered_rate: cfg.delivered_rate.unwrap_or(1.0),
            read_rate: cfg.read_rate.unwrap_or(0.0),
            read_rate_by_text: cfg
                .read_rate_by_text
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            interact_rate: cfg.interact_rate.unwrap_or(0.0),
            receipt_delay: cfg.receipt_delay.unwrap_or(Duration::from_secs(1)),
        }
    }
}

pub struct Simulator {
    name: String,
    settings: SimSettings,
    receipts: ReceiptSink,
    rate_per_second: Option<f64>,
}

/// SplitMix64: a tiny, well-distributed hash for deterministic outcomes.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

impl Simulator {
    pub fn new(name: &str, cfg: &ChannelConfig, ctx: &ChannelContext) -> Simulator {
        Simulator {
            name: name.to_string(),
            settings: SimSettings::from_config(cfg),
            receipts: ctx.receipts.clone(),
            rate_per_second: cfg.rate_per_second,
        }
    }

    /// A uniform draw in [0, 1) for (recipient, purpose).
    fn draw(&self, user: &str, purpose: u64) -> f64 {
        let h = mix(self.settings.seed ^ mix(hash_str(user) ^ mix(purpose)));
        (h >> 11) as f64 / (1u64 << 53) as f64
    }

    fn outcome(&self, user: &str, attempt: u32) -> Result<(), SendError> {
        let s = &self.settings;
        let x = self.draw(user, 1);
        if x < s.block_rate {
            return Err(SendError::new(
                ErrorClass::Blocked,
                "sim_blocked",
                "the user blocked the bot (simulated)",
            ));
        }
        if x < s.block_rate + s.invalid_rate {
            return Err(SendError::new(
                ErrorClass::InvalidRecipient,
                "sim_invalid",
                "no such user on this platform (simulated)",
            ));
        }
        // Transient trouble clears on the next attempt.
        if attempt == 1 {
            let y = self.draw(user, 2);
            if y < s.transient_rate {
                return Err(SendError::new(
                    ErrorClass::Transient,
                    "sim_503",
                    "service temporarily unavailable (simulated)",
                ));
            }
            if y < s.transient_rate + s.rate_limit_rate {
                return Err(SendError::new(
                    ErrorClass::RateLimited,
                    "sim_429",
                    "too many requests (simulated)",
                )
                .with_retry_after(Some(Duration::from_secs(1))));
            }
        }
        Ok(())
    }

    /// Schedules the receipts a real platform would send for this message.
    fn schedule_receipts(&self, user: &str, provider_id: &str, outbound: &Outbound) {
        let s = &self.settings;
        let delivered = self.draw(user, 3) < s.delivered_rate;
        if !delivered {
            return;
        }
        let read_rate = match outbound {
            Outbound::Message { message, .. } => s
                .read_rate_by_text
                .iter()
                .find(|(k, _)| message.text.contains(k.as_str()))
                .map_or(s.read_rate, |(_, r)| *r),
            _ => s.read_rate,
        };
        let read = self.draw(user, 4) < read_rate;
        let interacted = self.draw(user, 5) < s.interact_rate;
        let sink = self.receipts.clone();
        let channel = self.name.clone();
        let (user, provider_id) = (user.to_string(), provider_id.to_string());
        let delay = s.receipt_delay;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let now = now_ms();
            let mut events = vec![InboundEvent::Status {
                provider_message_id: provider_id.clone(),
                update: StatusUpdate::Delivered,
                user: Some(user.clone()),
                at: now,
            }];
            if read {
                events.push(InboundEvent::Status {
                    provider_message_id: provider_id.clone(),
                    update: StatusUpdate::Read,
                    user: Some(user.clone()),
                    at: now,
                });
            }
            if interacted {
                events.push(InboundEvent::Message {
                    user: user.clone(),
                    id: format!("{provider_id}-click"),
                    name: None,
                    text: None,
                    payload: Some("SIM_CLICK".into()),
                    context_id: Some(provider_id.clone()),
                    at: now,
                });
            }
            for event in events {
                let ev = ChannelEvent {
                    channel: channel.clone(),
                    event,
                    raw: None,
                };
                if sink.send(ev).await.is_err() {
                    return; // shutting down
                }
            }
        });
    }
}

/// The simulator's message rules (what [`Channel::validate`] checks): like
/// a plain-text platform, a non-empty text of at most 4096 characters.
pub(crate) fn rules(outbound: &Outbound) -> Result<(), RuleError> {
    let broken = match outbound {
        Outbound::Message { message, .. } if message.text.trim().is_empty() => {
            "the message text is empty"
        }
        Outbound::Message { message, .. } if message.text.chars().count() > 4096 => {
            "text is longer than 4096 characters"
        }
        _ => return Ok(()),
    };
    Err(Rule::Other(broken.into()).on("simulator"))
}

#[async_trait]
impl Channel for Simulator {
    fn name(&self) -> &str {
        &self.name
    }

    fn platform(&self) -> Platform {
        Platform::Simulator
    }

    fn validate(&self, outbound: &Outbound) -> Result<(), RuleError> {
        rules(outbound)
    }

    async fn send(&self, to: &Recipient, outbound: &Outbound) -> Result<SendOk, SendError> {
        // Transient trouble clears on the next attempt (the dispatcher
        // counts them, so outcomes survive a restart).
        let attempt = to.attempt;
        if let Err(reason) = self.validate(outbound) {
            return Err(SendError::new(
                ErrorClass::Rejected,
                "sim_invalid_message",
                reason.to_string(),
            ));
        }
        if !self.settings.latency.is_zero() {
            tokio::time::sleep(self.settings.latency).await;
        }
        self.outcome(&to.channel_user_id, attempt)?;
        let provider_message_id = format!("sim.{}.{}", to.delivery_id, attempt);
        self.schedule_receipts(&to.channel_user_id, &provider_message_id, outbound);
        Ok(SendOk {
            provider_message_id,
        })
    }

    fn default_rate_per_second(&self) -> Option<f64> {
        self.rate_per_second
    }

    /// Nothing to check: the simulator needs no account.
    async fn probe(&self) -> super::Probe {
        super::Probe::ok(
            "none (the simulator is built in)",
            "the simulator needs no account; it is always ready",
            Vec::new(),
        )
    }
}

/// The synthetic members a fresh simulator install starts with.
/// Deterministic: member i always has the same attributes.
pub fn seed_members(
    channel: &str,
    count: u64,
    now: crate::model::Millis,
) -> Vec<crate::model::NewMember> {
    const NAMES: [&str; 12] = [
        "Ava", "Ben", "Chloe", "Dev", "Elif", "Farah", "Goran", "Hana", "Ivan", "Jun", "Kemi",
        "Lucas",
    ];
    const ZH_NAMES: [&str; 6] = ["王芳", "李伟", "张敏", "刘洋", "陈静", "杨磊"];
    const ES_NAMES: [&str; 6] = ["Sofía", "Mateo", "Lucía", "Diego", "Valeria", "Pablo"];
    const CITIES: [&str; 5] = ["Hong Kong", "London", "Madrid", "Shanghai", "New York"];
    const ZONES: [&str; 5] = [
        "Asia/Hong_Kong",
        "Europe/London",
        "Europe/Madrid",
        "Asia/Shanghai",
        "America/New_York",
    ];
    (1..=count)
        .map(|i| {
            let (locale, name) = match i % 20 {
                0..=11 => ("en", NAMES[(i as usize) % NAMES.len()]),
                12..=16 => ("zh", ZH_NAMES[(i as usize) % ZH_NAMES.len()]),
                _ => ("es", ES_NAMES[(i as usize) % ES_NAMES.len()]),
            };
            let mut tags = Vec::new();
            if i % 10 == 0 {
                tags.push("vip".to_string());
            }
            if i % 2 == 0 {
                tags.push("newsletter".to_string());
            }
            if i % 7 == 0 {
                tags.push("churn-risk".to_string());
            }
            tags.sort();
            let mut attributes = serde_json::Map::new();
            attributes.insert("spend".into(), ((i * 37) % 500).into());
            attributes.insert(
                "plan".into(),
                if i % 4 == 0 { "pro" } else { "free" }.into(),
            );
            attributes.insert("city".into(), CITIES[(i as usize) % CITIES.len()].into());
            let days_ago = (mix(i) % (60 * 24)) as i64; // in hours, up to 60 days
            crate::model::NewMember {
                channel: channel.to_string(),
                channel_user_id: format!("sim-{i:04}"),
                name: Some(name.to_string()),
                locale: Some(locale.to_string()),
                timezone: Some(ZONES[(i as usize) % ZONES.len()].to_string()),
                tags: Some(tags),
                attributes: Some(attributes),
                subscribed: Some(i % 20 != 5),
                last_interaction_at: Some(now - days_ago * 3_600_000),
            }
        })
        .collect()
}
