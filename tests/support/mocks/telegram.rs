//! Telegram Bot API mock: `POST /bot{TG_TOKEN}/sendMessage` and `/sendPhoto`.
//!
//! | behaviour | answer |
//! |---|---|
//! | Succeed | 200 `{"ok":true,"result":{"message_id":<seq>,"chat":{"id":<chat_id>},...}}` |
//! | Block | 403 "Forbidden: bot was blocked by the user" |
//! | InvalidRecipient | 400 "Bad Request: chat not found" |
//! | OutsideWindow | 403 "Forbidden: bot can't initiate conversation with a user" |
//! | RateLimit | 429 "Too Many Requests: retry after N", `parameters.retry_after: N` |
//! | ServerError | 500 "Internal Server Error" |
//! | BadToken / wrong token | 401 "Unauthorized" |
//!
//! Bodies are verbatim from github.com/TelegramBotAPI/errors. Malformed
//! requests get the Bot API's 400 descriptions.
//!
//! `getMe` answers the bot (`@pushd_mock_bot`); `setWebhook` answers
//! `{"ok":true,"result":true,"description":"Webhook was set"}` for an https
//! `url`, else 400 "Bad Request: bad webhook: An HTTPS URL must be provided
//! for webhook"; `deleteWebhook` "Webhook was deleted". Bot tokens do not
//! expire: the ExpiredToken account fault is a revoked token, 401
//! "Unauthorized" everywhere.

use super::{AccountFault, Api, Failure, Incoming, Reply, Shared, creds};
use serde_json::{Value, json};

pub struct TelegramApi;

fn error(code: u16, description: &str) -> Reply {
    Reply::json(
        code,
        json!({ "ok": false, "error_code": code, "description": description }),
    )
}

impl Api for TelegramApi {
    fn recipient(&self, req: &Incoming) -> Option<String> {
        match req.body().get("chat_id") {
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        }
    }

    fn check(&self, mock: &Shared, req: &Incoming) -> Result<(), Reply> {
        let Some(rest) = req.path.strip_prefix("/bot") else {
            return Err(error(404, "Not Found"));
        };
        let Some((token, method)) = rest.split_once('/') else {
            return Err(error(404, "Not Found"));
        };
        let revoked = mock.state().account_fault == Some(AccountFault::ExpiredToken);
        if token != creds::TG_TOKEN || revoked {
            return Err(error(401, "Unauthorized"));
        }
        match method {
            "getMe" => return Err(Reply::json(200, get_me())),
            "setWebhook" => return Err(set_webhook(req.body())),
            "deleteWebhook" => return Err(done("Webhook was deleted")),
            _ => {}
        }
        let b = req.body();
        if self.recipient(req).is_none_or(|c| c.is_empty()) {
            return Err(error(400, "Bad Request: chat_id is empty"));
        }
        match method {
            "sendMessage" => {
                let text = b.get("text").and_then(Value::as_str).unwrap_or("");
                if text.is_empty() {
                    return Err(error(400, "Bad Request: message text is empty"));
                }
                if text.chars().count() > 4096 {
                    return Err(error(400, "Bad Request: message is too long"));
                }
            }
            "sendPhoto" => {
                if b.get("photo").and_then(Value::as_str).is_none() {
                    return Err(error(400, "Bad Request: there is no photo in the request"));
                }
                let caption = b.get("caption").and_then(Value::as_str).unwrap_or("");
                if caption.chars().count() > 1024 {
                    return Err(error(400, "Bad Request: message caption is too long"));
                }
            }
            _ => return Err(error(404, "Not Found")),
        }
        if let Some(markup) = b.get("reply_markup") {
            let rows = markup
                .get("inline_keyboard")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for row in rows {
                for key in row.as_array().cloned().unwrap_or_default() {
                    let text = key.get("text").and_then(Value::as_str).unwrap_or("");
                    let data = key.get("callback_data").and_then(Value::as_str);
                    let url = key.get("url").and_then(Value::as_str);
                    let ok = !text.is_empty()
                        && match (data, url) {
                            (Some(d), None) => !d.is_empty() && d.len() <= 64,
                            (None, Some(_)) => true,
                            _ => false,
                        };
                    if !ok {
                        return Err(error(400, "Bad Request: BUTTON_DATA_INVALID"));
                    }
                }
            }
        }
        Ok(())
    }

    fn success(&self, req: &Incoming, _recipient: &str) -> Value {
        let chat_id = req.body().get("chat_id").cloned().unwrap_or(Value::Null);
        let mut message = json!({
            "message_id": req.seq,
            "from": { "id": 123456789, "is_bot": true, "first_name": "pushd mock", "username": "pushd_mock_bot" },
            "chat": { "id": chat_id, "first_name": "Test", "type": "private" },
            "date": 1718000000,
        });
        if let Some(text) = req.body().get("text") {
            message["text"] = text.clone();
        }
        if let Some(caption) = req.body().get("caption") {
            message["caption"] = caption.clone();
        }
        json!({ "ok": true, "result": message })
    }

    fn failure(&self, failure: Failure, _req: &Incoming, _recipient: &str) -> Reply {
        match failure {
            Failure::Block => error(403, "Forbidden: bot was blocked by the user"),
            Failure::InvalidRecipient => error(400, "Bad Request: chat not found"),
            Failure::OutsideWindow => error(
                403,
                "Forbidden: bot can't initiate conversation with a user",
            ),
            Failure::RateLimit(secs) => Reply::json(
                429,
                json!({
                    "ok": false,
                    "error_code": 429,
                    "description": format!("Too Many Requests: retry after {secs}"),
                    "parameters": { "retry_after": secs },
                }),
            ),
            Failure::ServerError => error(500, "Internal Server Error"),
            Failure::BadToken => error(401, "Unauthorized"),
        }
    }
}

fn get_me() -> Value {
    json!({ "ok": true, "result": {
        "id": 123456789, "is_bot": true, "first_name": "pushd mock", "username": "pushd_mock_bot",
        "can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false,
    } })
}

fn done(description: &str) -> Reply {
    Reply::json(
        200,
        json!({ "ok": true, "result": true, "description": description }),
    )
}

fn set_webhook(b: &Value) -> Reply {
    match b.get("url").and_then(Value::as_str) {
        Some(url) if url.starts_with("https://") => done("Webhook was set"),
        Some("") => done("Webhook was deleted"),
        _ => error(
            400,
            "Bad Request: bad webhook: An HTTPS URL must be provided for webhook",
        ),
    }
}
