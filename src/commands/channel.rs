//! channel.list, channel.test and channel.webhook: what is configured, and
//! connecting a real channel. `test`
//! checks the credentials with the platform's harmless call and, when asked,
//! sends one test message through the adapter's real `send`; `webhook` says
//! what to enter in the platform's console so its webhooks reach pushd, and
//! registers the webhook itself where the platform has an API for it
//! (Telegram). A failed step answers `ok: false` with the whole report as
//! data, so the operator sees the platform's answer and what to do.

use super::{CommandError, CommandResult, Handles, ProcessInfo, Reply};
use crate::channel::{ChannelRef, Channels, Probe, Recipient, onboard};
use crate::config::{Config, LiveConfig, parse_public_url};
use crate::model::{Message, Outbound, Platform, SendError, fmt_ms, now_ms};
use crate::protocol::{
    ChannelError, ChannelListData, ChannelStep, ChannelStepError, ChannelSummary, ChannelTestArgs,
    ChannelTestData, ChannelWebhookArgs, ChannelWebhookData, Response,
};
use serde::Serialize;

/// `pushd channel test NAME [--to USER]`.
pub async fn test(channels: &Channels, a: ChannelTestArgs) -> CommandResult<Reply> {
    let channel = find(channels, &a.name)?;
    let to = match a.to.as_deref().map(str::trim) {
        Some("") => {
            return Err(CommandError::Invalid(
                "--to is empty: give the platform's id for the user (a phone number with country code on WhatsApp, a chat id on Telegram, a member id on Slack, …)".into(),
            ));
        }
        other => other.map(str::to_string),
    };
    let platform = channel.platform();
    let mut check = step(channel.probe().await);
    let send = match &to {
        Some(to) if check.ok => Some(test_message(&channel, to).await),
        Some(_) => {
            check
                .notes
                .push("No test message was sent: the credential check failed.".into());
            None
        }
        None => None,
    };
    let failed = [Some(&check), send.as_ref()]
        .into_iter()
        .flatten()
        .find(|s| !s.ok);
    let mut summary = format!("check {}", step_summary(&check));
    if let (Some(s), Some(to)) = (&send, &to) {
        summary.push_str(&format!("; test message to {to} {}", step_summary(s)));
    }
    let failure = failed.map(|s| {
        let what = if check.ok {
            "the test message"
        } else {
            "the credential check"
        };
        let (class, code) = s
            .error
            .as_ref()
            .map(|e| (e.class.as_str(), e.code.as_str()))
            .unwrap_or_default();
        format!(
            "channel {:?}: {what} failed ({class} {code}): see its advice (what to do)",
            a.name
        )
    });
    tracing::info!(channel = %a.name, ok = failure.is_none(), "channel test: {summary}");
    let data = ChannelTestData {
        channel: a.name,
        kind: platform.to_string(),
        check,
        send,
        summary,
    };
    Ok(reply(data, failure.map(|m| ("channel_test_failed", m))))
}

/// `pushd channel webhook NAME [--url BASE] [--delete]`.
pub async fn webhook(
    channels: &Channels,
    config: &LiveConfig,
    process: &ProcessInfo,
    a: ChannelWebhookArgs,
) -> CommandResult<Reply> {
    let channel = find(channels, &a.name)?;
    let config = config.get();
    let Some(cfg) = config.channels.get(&a.name) else {
        return Err(not_found(channels, &a.name));
    };
    let kind = cfg.kind;
    if a.delete {
        return delete(&channel, a, kind).await;
    }
    let (base, base_from, warnings) = public_base(a.url.as_deref(), &config, process)?;
    if kind == Platform::Telegram && !base.starts_with("https://") {
        return Err(CommandError::Invalid(format!(
            "Telegram delivers webhooks only to https URLs and {base} is not one: put pushd behind a TLS proxy and pass --url https://your.host (or set [http] public_url); nothing was sent to Telegram"
        )));
    }
    let url = format!("{base}/webhooks/{}", a.name);
    let setup = onboard::webhook_setup(&a.name, cfg, &url);
    let registration = channel.register_webhook(Some(&url)).await.map(step);
    let mut summary = format!("{kind} webhook {url}: console setup shown");
    if let Some(r) = &registration {
        summary.push_str(&format!("; {} {}", r.call, step_summary(r)));
    }
    let failure = registration
        .as_ref()
        .filter(|r| !r.ok)
        .map(|r| format!("{kind} did not set the webhook: {}", error_line(r)));
    tracing::info!(channel = %a.name, ok = failure.is_none(), "channel webhook: {summary}");
    let data = ChannelWebhookData {
        channel: a.name,
        kind: kind.to_string(),
        url: Some(url),
        base_from: base_from.into(),
        warnings,
        setup: Some(setup),
        registration,
        summary,
    };
    Ok(reply(data, failure.map(|m| ("webhook_not_set", m))))
}

/// `--delete`: only Telegram's webhook is registered through an API.
async fn delete(
    channel: &ChannelRef,
    a: ChannelWebhookArgs,
    kind: Platform,
) -> CommandResult<Reply> {
    if a.url.is_some() {
        return Err(CommandError::Invalid(
            "--delete removes the webhook and takes no --url".into(),
        ));
    }
    let Some(probe) = channel.register_webhook(None).await else {
        return Err(CommandError::Invalid(format!(
            "--delete removes a webhook through the platform's API, which only Telegram has; a {kind} webhook is removed in the platform's console (`pushd channel webhook {}` says where)",
            a.name
        )));
    };
    let registration = step(probe);
    let summary = format!(
        "{kind} {} {}",
        registration.call,
        step_summary(&registration)
    );
    let failure = (!registration.ok).then(|| {
        format!(
            "{kind} did not delete the webhook: {}",
            error_line(&registration)
        )
    });
    tracing::info!(channel = %a.name, ok = failure.is_none(), "channel webhook: {summary}");
    let data = ChannelWebhookData {
        channel: a.name,
        kind: kind.to_string(),
        registration: Some(registration),
        summary,
        ..Default::default()
    };
    Ok(reply(data, failure.map(|m| ("webhook_not_set", m))))
}

/// The base URL platforms reach pushd at, where it came from, and what is
/// wrong with it for a platform.
fn public_base(
    flag: Option<&str>,
    config: &Config,
    process: &ProcessInfo,
) -> CommandResult<(String, &'static str, Vec<String>)> {
    let mut warnings = Vec::new();
    let (base, from) = match (flag, &config.http.public_url) {
        (Some(u), _) => (
            parse_public_url(u).map_err(|e| CommandError::Invalid(format!("--url: {e}")))?,
            "--url",
        ),
        (None, Some(u)) => (u.clone(), "http.public_url"),
        (None, None) => {
            let listen = process
                .http_addr
                .get()
                .map(|a| a.to_string())
                .unwrap_or_else(|| config.http.listen.clone());
            warnings.push("No public URL is configured, so this is pushd's listen address, which platforms cannot reach: they need a public https URL. Put pushd behind a TLS proxy and pass --url https://your.host, or set [http] public_url in config.toml.".to_string());
            (format!("http://{listen}"), "http.listen")
        }
    };
    if from != "http.listen" && base.starts_with("http://") {
        warnings.push(format!(
            "{base} is plain http: Meta, Slack and Telegram deliver webhooks only to https (WeChat also takes http on port 80)."
        ));
    }
    if !config.http.enabled {
        warnings.push("The HTTP listener is off ([http] enabled = false): no webhook can arrive until it is turned on and pushd restarted.".into());
    }
    Ok((base, from, warnings))
}

/// One test message through the adapter's real `send`.
async fn test_message(channel: &ChannelRef, to: &str) -> ChannelStep {
    let platform = channel.platform();
    let recipient = Recipient {
        member_id: 0,
        channel_user_id: to.to_string(),
        // Negative: never a delivery's id (custom receivers see `msg_-<ms>`).
        delivery_id: -now_ms(),
        attempt: 1,
    };
    let outbound = Outbound::Message {
        message: Message {
            text: format!(
                "Test message from pushd (channel {}): this channel can reach you.",
                channel.name()
            ),
            ..Message::default()
        },
        tag: None,
    };
    let call = format!("send a text message to {to}");
    match channel.send(&recipient, &outbound).await {
        Ok(ok) => ChannelStep {
            call,
            ok: true,
            answer: Some(format!("accepted, message id {}", ok.provider_message_id)),
            notes: onboard::sent_notes(platform),
            error: None,
        },
        Err(e) => {
            let advice = onboard::advice(platform, &e);
            failed_step(call, e, advice)
        }
    }
}

/// A probe as a step of the reply.
fn step(probe: Probe) -> ChannelStep {
    match probe.result {
        Ok(answer) => ChannelStep {
            call: probe.call,
            ok: true,
            answer: Some(answer.summary),
            notes: answer.notes,
            error: None,
        },
        Err(f) => failed_step(probe.call, f.error, f.advice),
    }
}

fn failed_step(call: String, e: SendError, advice: String) -> ChannelStep {
    ChannelStep {
        call,
        ok: false,
        answer: None,
        notes: Vec::new(),
        error: Some(ChannelStepError {
            class: e.class.to_string(),
            code: e.code,
            message: e.message,
            advice,
        }),
    }
}

/// `ok: <answer>` or `failed: <class> <code>`, for the summary.
fn step_summary(s: &ChannelStep) -> String {
    match (&s.answer, &s.error) {
        (Some(a), _) if s.ok => format!("ok: {a}"),
        (_, Some(_)) => format!("failed: {}", error_line(s)),
        _ => "ok".into(),
    }
}

fn error_line(s: &ChannelStep) -> String {
    s.error
        .as_ref()
        .map(|e| format!("{} {}: {}", e.class, e.code, e.message))
        .unwrap_or_default()
}

/// The reply: `ok` with `data`, or `ok: false` with `data` and the error.
fn reply(data: impl Serialize, failure: Option<(&str, String)>) -> Reply {
    let mut response = match failure {
        None => return Reply::One(Response::ok(data)),
        Some((code, message)) => Response::err(code, message),
    };
    response.data = serde_json::to_value(data).ok();
    Reply::One(response)
}

fn find(channels: &Channels, name: &str) -> CommandResult<ChannelRef> {
    channels.get(name).ok_or_else(|| not_found(channels, name))
}

fn not_found(channels: &Channels, name: &str) -> CommandError {
    let known: Vec<String> = channels.all().keys().cloned().collect();
    CommandError::NotFound(format!(
        "no channel {name:?} is configured (channels: {}); add a [channels.{name}] section to config.toml and run `pushd reload`",
        known.join(", ")
    ))
}

/// `channel.list`: each configured channel instance with its kind, its rate
/// (configured, the platform's default, and what it sent over the last
/// minute), its last send error and the webhook URL to register with the
/// platform. Channels come from config.toml: a short list, not paged.
pub fn list(h: &Handles) -> ChannelListData {
    let cfg = h.config.get();
    let adapters = h.channels.all();
    // The URL `channel webhook` would give (public_url, else the listener).
    let base = public_base(None, &cfg, &h.process)
        .ok()
        .map(|(b, _, _)| b)
        .filter(|_| cfg.http.enabled);
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
                webhook_url: base
                    .as_ref()
                    .filter(|_| c.kind != Platform::Simulator)
                    .map(|b| format!("{b}/webhooks/{name}")),
            }
        })
        .collect();
    ChannelListData { channels }
}
