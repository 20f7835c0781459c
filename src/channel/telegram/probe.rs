//! `pushd channel test` and `pushd channel webhook` on Telegram: `getMe`
//! (whose bot the token is; sends nothing), `setWebhook` with the URL, the
//! `secret_token` and the update types pushd reads, and `deleteWebhook`;
//! and what the Bot API's errors ask the operator to do
//! (core.telegram.org/bots/api; github.com/TelegramBotAPI/errors).

use super::Telegram;
use crate::channel::onboard::Probe;
use crate::model::{ErrorClass, Platform, SendError};
use serde_json::{Value, json};

/// The update types `receipts/telegram.rs` reads; Telegram sends no others.
pub(crate) const ALLOWED_UPDATES: &[&str] = &["message", "callback_query", "my_chat_member"];

impl Telegram {
    pub(super) async fn get_me(&self) -> Probe {
        let call = "getMe";
        match self.api("getMe", &json!({})).await {
            Ok((_, json)) => {
                let bot = &json["result"];
                let text = |k: &str| bot.get(k).and_then(Value::as_str).unwrap_or("?");
                let id = bot.get("id").map(Value::to_string).unwrap_or_default();
                Probe::ok(
                    call,
                    format!(
                        "bot @{} \"{}\" (id {id})",
                        text("username"),
                        text("first_name")
                    ),
                    Vec::new(),
                )
            }
            Err(e) => Probe::failed(call, Platform::Telegram, self.scrubber.scrub(e)),
        }
    }

    pub(super) async fn set_webhook(&self, url: &str) -> Probe {
        let call = format!(
            "setWebhook url={url} allowed_updates={} secret_token={}",
            ALLOWED_UPDATES.join(","),
            if self.secret_token.is_some() {
                "(from config)"
            } else {
                "(none)"
            }
        );
        let mut body = json!({ "url": url, "allowed_updates": ALLOWED_UPDATES });
        let mut notes = Vec::new();
        match &self.secret_token {
            Some(secret) if !valid_secret(secret.expose()) => {
                let e = SendError::new(
                    ErrorClass::Rejected,
                    "secret_token",
                    "secret_token has characters or a length Telegram refuses",
                );
                let advice = format!("Telegram takes a secret_token of 1-256 characters from A-Z, a-z, 0-9, _ and -: change `secret_token` of [channels.{}], run `pushd reload`, and set the webhook again.", self.name);
                return Probe::failed_with(call, e, advice);
            }
            Some(secret) => body["secret_token"] = json!(secret.expose()),
            None => notes.push("No secret_token is configured (insecure_webhooks): anyone who learns the URL can post updates that look like Telegram's.".into()),
        }
        match self.api("setWebhook", &body).await {
            Ok((_, json)) => Probe::ok(call, description(&json, "webhook set"), notes),
            Err(e) => Probe::failed(call, Platform::Telegram, self.scrubber.scrub(e)),
        }
    }

    pub(super) async fn delete_webhook(&self) -> Probe {
        let call = "deleteWebhook";
        match self.api("deleteWebhook", &json!({})).await {
            Ok((_, json)) => Probe::ok(call, description(&json, "webhook deleted"), Vec::new()),
            Err(e) => Probe::failed(call, Platform::Telegram, self.scrubber.scrub(e)),
        }
    }
}

/// Telegram's own words for a successful call ("Webhook was set").
fn description(json: &Value, otherwise: &str) -> String {
    json.get("description")
        .and_then(Value::as_str)
        .unwrap_or(otherwise)
        .to_string()
}

/// setWebhook's rule: "1-256 characters. Only characters A-Z, a-z, 0-9, _
/// and - are allowed."
fn valid_secret(s: &str) -> bool {
    (1..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What to do about a Bot API error, by `error_code` and description.
pub(crate) fn advice(err: &SendError) -> Option<String> {
    let d = err.message.to_ascii_lowercase();
    let text = match err.code.as_str() {
        "401" => {
            "Telegram does not know this bot token: it is mistyped, or was revoked (/revoke in @BotFather). Copy the token @BotFather shows under /mybots → your bot → API Token into `token` (or `token_env`) and run `pushd reload`."
        }
        "404" => {
            "The bot token is malformed: it looks like 123456789:AA… (the bot's id, a colon, then 35 characters). Copy it again from @BotFather and run `pushd reload`."
        }
        "403" if d.contains("can't initiate conversation") => {
            "This user never opened a chat with the bot: ask them to open t.me/<your bot> and press Start, then test again."
        }
        "403" if d.contains("bots can't send messages to bots") => {
            "This id is another bot's: bots cannot write to bots. Use a person's chat id."
        }
        "403" => {
            "The user blocked the bot, or deleted their account (or the bot was removed from that group): test with a chat that has the bot."
        }
        "400" if d.contains("chat not found") => {
            "Telegram knows no chat with this id for this bot: the user must start the bot first, and the id is the numeric chat id of a message they sent (`pushd events` shows it), not their @username."
        }
        "400" if d.contains("https url must be provided") => {
            "Telegram delivers webhooks only to https URLs: pass --url https://your.host (or set [http] public_url) with pushd behind a TLS proxy."
        }
        "400" if d.contains("ports 80, 88, 443 or 8443") => {
            "Telegram delivers webhooks only to ports 443, 80, 88 or 8443: serve the public URL on one of them (a TLS proxy on 443 in front of pushd)."
        }
        "400" if d.contains("failed to resolve host") => {
            "Telegram cannot resolve the webhook URL's host name: use a public DNS name that points at this server."
        }
        "400" if d.contains("secret token") => {
            "Telegram takes a secret_token of 1-256 characters from A-Z, a-z, 0-9, _ and -: change `secret_token` and run `pushd reload`."
        }
        "429" => "Telegram asked pushd to slow down: wait the retry_after it gave and test again.",
        _ => return None,
    };
    Some(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_rule_and_advice() {
        assert!(valid_secret("mock-tg-secret_09"));
        assert!(!valid_secret("has space") && !valid_secret("") && !valid_secret(&"a".repeat(257)));
        let e = SendError::new(ErrorClass::Auth, "401", "Unauthorized");
        assert!(advice(&e).unwrap().contains("@BotFather"));
        let e = SendError::new(
            ErrorClass::Rejected,
            "400",
            "Bad Request: bad webhook: An HTTPS URL must be provided for webhook",
        );
        assert!(advice(&e).unwrap().contains("https"));
    }
}
