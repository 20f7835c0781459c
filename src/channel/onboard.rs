//! Connecting a real channel: what `pushd channel test` and `pushd channel
//! webhook` tell an operator.
//!
//! - [`Probe`]: what a credential check asked the platform and what it
//!   answered ([`super::Channel::probe`]; each platform's check lives in
//!   `<platform>/probe.rs`, next to the codes it knows).
//! - [`advice`]: what to do about a failed check or test message: the
//!   platform's own advice for its codes first, then the generic advice per
//!   error class here.
//! - [`webhook_setup`]: the webhook URL's companions to paste into each
//!   platform's console (verify token, events to subscribe, signing scheme).

use crate::channel::messenger::Flavor;
use crate::channel::{custom, messenger, slack, telegram, wechat, whatsapp};
use crate::config::ChannelConfig;
use crate::model::{ErrorClass, Platform, SendError};
use serde::{Deserialize, Serialize};

/// A credential check: the harmless call made, and how it went.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The call as an operator would repeat it, without credentials
    /// (`GET /v21.0/106540352242922?fields=display_phone_number,verified_name`).
    pub call: String,
    pub result: Result<ProbeAnswer, ProbeFailure>,
}

/// What the platform answered to a check that passed.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeAnswer {
    /// Who the credentials belong to (`+1 555-078-3881 "Acme Shoes"`).
    pub summary: String,
    /// Things worth knowing that are not failures.
    pub notes: Vec<String>,
}

/// A check that failed: the platform's error, classified as sends are, and
/// what the operator should do.
#[derive(Debug, Clone)]
pub struct ProbeFailure {
    pub error: SendError,
    pub advice: String,
}

impl Probe {
    pub fn ok(call: impl Into<String>, summary: impl Into<String>, notes: Vec<String>) -> Probe {
        Probe {
            call: call.into(),
            result: Ok(ProbeAnswer {
                summary: summary.into(),
                notes,
            }),
        }
    }

    /// A failed check with the platform's advice for `error` (see [`advice`]).
    pub fn failed(call: impl Into<String>, platform: Platform, error: SendError) -> Probe {
        let advice = advice(platform, &error);
        Probe::failed_with(call, error, advice)
    }

    /// A failed check with advice only the check itself can give (it knows
    /// the configured id it asked about).
    pub fn failed_with(call: impl Into<String>, error: SendError, advice: String) -> Probe {
        Probe {
            call: call.into(),
            result: Err(ProbeFailure { error, advice }),
        }
    }
}

/// What to do about `err` from `platform`: the platform's advice for its
/// own code when it has one, else the advice for the error class.
pub fn advice(platform: Platform, err: &SendError) -> String {
    let specific = match platform {
        Platform::Whatsapp => whatsapp::probe::advice(err),
        Platform::Messenger => messenger::probe::advice(Flavor::Messenger, err),
        Platform::Instagram => messenger::probe::advice(Flavor::Instagram, err),
        Platform::Telegram => telegram::probe::advice(err),
        Platform::Slack => slack::probe::advice(err),
        Platform::Wechat => wechat::probe::advice(err),
        Platform::Webchat | Platform::Custom => custom::probe::advice(err),
        Platform::Simulator => None,
    };
    specific.unwrap_or_else(|| generic_advice(err).to_string())
}

/// Advice from the transport failure or the error class alone.
fn generic_advice(err: &SendError) -> &'static str {
    match err.code.as_str() {
        "connect" | "timeout" | "network" | "truncated" | "request" => {
            return "pushd could not get an answer from the platform: check the network, any proxy in between and `base_url` (or `url`) in this channel's config section, then test again.";
        }
        _ => {}
    }
    match err.class {
        ErrorClass::Auth => {
            "The platform refused the credentials: check the token and ids in this channel's config section, run `pushd reload`, and test again."
        }
        ErrorClass::Transient => {
            "The platform failed for now (its servers, or a proxy in front of them): wait a moment and test again; a push would retry this by itself."
        }
        ErrorClass::RateLimited => {
            "The platform asked pushd to slow down: wait a minute and test again; a push would retry this by itself."
        }
        ErrorClass::Blocked => {
            "This user blocked the bot or turned its messages off: test with another user."
        }
        ErrorClass::InvalidRecipient => {
            "The platform knows no such user for this bot: use the id a message from that user carried (`pushd events` shows them)."
        }
        ErrorClass::OutsideWindow => {
            "The user has not written to the bot recently, so the platform refuses a free-form message: have them write to the bot first, then test again."
        }
        ErrorClass::Rejected | ErrorClass::Interrupted => {
            "The platform refused the request; its message says why."
        }
    }
}

/// What to enter in a platform's console so its webhooks reach pushd.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebhookSetup {
    /// Where in the platform's console, and what to do there, in order.
    pub steps: Vec<String>,
    /// The values to paste, by the console's own label.
    pub fields: Vec<WebhookField>,
    /// Events (or update types) to subscribe to.
    pub events: Vec<String>,
}

/// One value to paste into a platform's console.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebhookField {
    /// The console's label for it ("Callback URL", "Verify token").
    pub label: String,
    pub value: String,
    /// A secret: shown to the admin who asked, never written to the audit
    /// trail or the log.
    pub secret: bool,
}

fn field(label: &str, value: impl Into<String>, secret: bool) -> WebhookField {
    WebhookField {
        label: label.into(),
        value: value.into(),
        secret,
    }
}

/// The configured secret `key`, or a note saying it is missing and where
/// it goes.
fn secret_field(
    label: &str,
    name: &str,
    key: &str,
    value: Option<&crate::config::Secret>,
) -> WebhookField {
    match value {
        Some(s) => field(label, s.expose(), true),
        None => field(
            label,
            format!(
                "(not set: add `{key}` or `{key}_env` to [channels.{name}] and run `pushd reload`)"
            ),
            false,
        ),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// What to enter in `cfg.kind`'s console for the webhook at `url`.
pub fn webhook_setup(name: &str, cfg: &ChannelConfig, url: &str) -> WebhookSetup {
    let secrets = &cfg.secrets;
    let verify = || {
        secret_field(
            "Verify token",
            name,
            "verify_token",
            secrets.verify_token.as_ref(),
        )
    };
    let app_secret_step = format!(
        "pushd checks each delivery's X-Hub-Signature-256 with the App secret (App settings → Basic): it goes in `app_secret` of [channels.{name}]{}.",
        if secrets.app_secret.is_some() {
            " (set)"
        } else {
            " (not set yet)"
        }
    );
    match cfg.kind {
        Platform::Whatsapp => WebhookSetup {
            steps: vec![
                "Meta app dashboard → WhatsApp → Configuration → Webhook → Edit: paste the Callback URL and the Verify token, then Verify and save (Meta calls the URL with GET hub.challenge; pushd answers).".into(),
                "Under Webhook fields, subscribe to `messages`: delivery and read statuses, failures and replies all come in that field.".into(),
                app_secret_step,
                "No webhook arriving? The app must be subscribed to your WhatsApp Business Account: POST /{waba-id}/subscribed_apps with the same token.".into(),
            ],
            fields: vec![field("Callback URL", url, false), verify()],
            events: strings(&["messages"]),
        },
        Platform::Messenger => WebhookSetup {
            steps: vec![
                "Meta app dashboard → Messenger → Settings (Messenger API Settings) → Configure webhooks: paste the Callback URL and the Verify token, then Verify and save.".into(),
                "Under Webhooks, add your Page and subscribe it to the fields below (deliveries and reads feed the report).".into(),
                app_secret_step,
            ],
            fields: vec![field("Callback URL", url, false), verify()],
            events: strings(&["messages", "message_deliveries", "message_reads", "messaging_postbacks"]),
        },
        Platform::Instagram => WebhookSetup {
            steps: vec![
                "Meta app dashboard → Messenger → Instagram settings → Webhooks: paste the Callback URL and the Verify token, then Verify and save.".into(),
                "Subscribe the Instagram account to the fields below (Instagram sends no delivery receipts; `messaging_seen` carries reads).".into(),
                app_secret_step,
            ],
            fields: vec![field("Callback URL", url, false), verify()],
            events: strings(&["messages", "messaging_postbacks", "messaging_seen"]),
        },
        Platform::Telegram => WebhookSetup {
            steps: vec![
                format!(
                    "Nothing to paste: pushd registers the URL with Telegram's setWebhook, with `secret_token` (Telegram sends it back in X-Telegram-Bot-Api-Secret-Token) and the updates pushd reads ({}).",
                    telegram::probe::ALLOWED_UPDATES.join(", ")
                ),
                "Telegram delivers only to https URLs on ports 443, 80, 88 or 8443.".into(),
                format!("To stop: pushd channel webhook {name} --delete (deleteWebhook)."),
            ],
            fields: Vec::new(),
            events: Vec::new(),
        },
        Platform::Slack => WebhookSetup {
            steps: vec![
                "api.slack.com/apps → your app → Event Subscriptions: Enable Events, paste the Request URL (Slack sends a url_verification challenge; pushd answers), and under Subscribe to bot events add `message.im` (needs the im:history scope).".into(),
                "Interactivity & Shortcuts: turn Interactivity on and paste the same Request URL (button clicks).".into(),
                format!(
                    "pushd checks each request's X-Slack-Signature with the Signing Secret (Basic Information → App Credentials): it goes in `signing_secret` of [channels.{name}]{}.",
                    if secrets.signing_secret.is_some() { " (set)" } else { " (not set yet)" }
                ),
                "App Home → Show Tabs: turn on the Messages Tab so members can write to the app.".into(),
            ],
            fields: vec![field("Request URL", url, false)],
            events: strings(&["message.im (Event Subscriptions)", "block_actions (Interactivity)"]),
        },
        Platform::Wechat => WebhookSetup {
            steps: vec![
                "mp.weixin.qq.com → 设置与开发 (Settings and Development) → 基本配置 (Basic configuration) → 服务器配置 (Server configuration) → 修改配置 (Modify): paste the URL and the Token, click 随机生成 (Random) for EncodingAESKey, choose 明文模式 (plaintext) as 消息加解密方式 (message encryption), submit, then 启用 (Enable).".into(),
                "WeChat calls only port 80 (http) or 443 (https).".into(),
                "Same page, IP白名单 (IP whitelist): add this server's public IP, or the access-token fetch answers 40164.".into(),
            ],
            fields: vec![
                field("URL (服务器地址)", url, false),
                secret_field("Token (令牌)", name, "verify_token", secrets.verify_token.as_ref()),
            ],
            events: strings(&["all messages and events (WeChat sends everything to the server URL once it is enabled)"]),
        },
        Platform::Webchat | Platform::Custom => WebhookSetup {
            steps: vec![
                "Have your platform POST its events as JSON to the Webhook URL: {\"type\":\"status\"|\"message\"|\"unsubscribed\",…} (the contract is at the top of src/receipts/custom.rs).".into(),
                "Sign each request the Standard Webhooks way: headers webhook-id, webhook-timestamp (unix seconds) and webhook-signature = v1,<base64 HMAC-SHA256 of \"{webhook-id}.{webhook-timestamp}.{raw body}\">, keyed with the base64-decoded part after `whsec_` of the signing secret (else its UTF-8 bytes). pushd refuses timestamps more than 5 minutes off.".into(),
                "pushd signs what it sends to `url` with the same secret and scheme.".into(),
            ],
            fields: vec![
                field("Webhook URL", url, false),
                secret_field("Signing secret", name, "webhook_secret", secrets.webhook_secret.as_ref()),
            ],
            events: strings(&["status", "message", "unsubscribed"]),
        },
        Platform::Simulator => WebhookSetup {
            steps: vec![
                "Nothing to set up: the simulator feeds its receipts back inside pushd and has no webhook.".into(),
            ],
            fields: Vec::new(),
            events: Vec::new(),
        },
    }
}

/// Worth knowing after a test message the platform accepted.
pub fn sent_notes(platform: Platform) -> Vec<String> {
    match platform {
        Platform::Whatsapp => vec![
            "WhatsApp reports delivery later, by webhook: outside the 24-hour customer service window it drops free-form messages with error 131047 (only approved templates get through), and a number not on WhatsApp fails with 131026. No message? Write to the business number from that phone first, then test again.".into(),
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_advice_by_transport_then_class() {
        let e = SendError::new(ErrorClass::Transient, "connect", "cannot connect");
        assert!(advice(Platform::Simulator, &e).contains("base_url"));
        let e = SendError::new(ErrorClass::Auth, "x", "no");
        assert!(advice(Platform::Simulator, &e).contains("pushd reload"));
    }
}
