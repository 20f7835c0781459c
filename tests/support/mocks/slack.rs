//! Slack `chat.postMessage` mock: `POST /chat.postMessage` with
//! `Authorization: Bearer {SLACK_TOKEN}` and a JSON body.
//!
//! | behaviour | answer |
//! |---|---|
//! | Succeed | 200 `{"ok":true,"channel":<C… as given, U… becomes the DM D…>,"ts":"1718000000.<seq>","message":{...}}` |
//! | Block | 200 `{"ok":false,"error":"is_archived"}` |
//! | InvalidRecipient | 200 `{"ok":false,"error":"channel_not_found"}` |
//! | OutsideWindow | Slack has no messaging window: same as Block |
//! | RateLimit | 429 with `Retry-After: N`, `{"ok":false,"error":"ratelimited"}` |
//! | ServerError | 503 `{"ok":false,"error":"service_unavailable"}` |
//! | BadToken / wrong token | 200 `{"ok":false,"error":"invalid_auth"}` (no token: `not_authed`) |
//!
//! `POST /auth.test` answers the bot's identity with the token's scopes in
//! `X-OAuth-Scopes` (`chat:write,im:history,users:read`).
//!
//! | account fault | answer |
//! |---|---|
//! | ExpiredToken | auth.test and sends: `{"ok":false,"error":"token_revoked"}` (bot tokens expire only with rotation) |
//! | MissingPermission | auth.test: scopes without `chat:write`; sends: `{"ok":false,"error":"missing_scope","needed":"chat:write","provided":…}` |

use super::{AccountFault, Api, Failure, Incoming, Reply, Shared, bearer, creds};

/// The scopes a token without `chat:write` has.
const SCOPES_WITHOUT_WRITE: &str = "incoming-webhook,im:history";
use serde_json::{Value, json};

pub struct SlackApi;

fn error(name: &str) -> Reply {
    Reply::json(200, json!({ "ok": false, "error": name }))
}

impl Api for SlackApi {
    fn recipient(&self, req: &Incoming) -> Option<String> {
        req.body()
            .get("channel")
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    fn check(&self, mock: &Shared, req: &Incoming) -> Result<(), Reply> {
        let fault = mock.state().account_fault;
        if req.method == "POST" && req.path == "/auth.test" {
            return Err(auth_test(req, fault));
        }
        if bearer(req) == Some(creds::SLACK_TOKEN) {
            match fault {
                Some(AccountFault::ExpiredToken) => return Err(error("token_revoked")),
                Some(AccountFault::MissingPermission) => {
                    return Err(Reply::json(
                        200,
                        json!({ "ok": false, "error": "missing_scope", "needed": "chat:write", "provided": SCOPES_WITHOUT_WRITE }),
                    ));
                }
                _ => {}
            }
        }
        if req.method != "POST" || req.path != "/chat.postMessage" {
            return Err(Reply::json(
                404,
                json!({ "ok": false, "error": "unknown_method" }),
            ));
        }
        match bearer(req) {
            None => return Err(error("not_authed")),
            Some(t) if t != creds::SLACK_TOKEN => return Err(error("invalid_auth")),
            Some(_) => {}
        }
        if !req
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
        {
            return Err(error("invalid_arguments"));
        }
        let b = req.body();
        if self.recipient(req).is_none_or(|c| c.is_empty()) {
            return Err(error("channel_not_found"));
        }
        let text = b.get("text").and_then(Value::as_str).unwrap_or("");
        let blocks = b.get("blocks").and_then(Value::as_array);
        if text.is_empty() && blocks.is_none() {
            return Err(error("no_text"));
        }
        for block in blocks.cloned().unwrap_or_default() {
            if !valid_block(&block) {
                return Err(error("invalid_blocks"));
            }
        }
        Ok(())
    }

    fn success(&self, req: &Incoming, recipient: &str) -> Value {
        let channel = match recipient.strip_prefix('U') {
            Some(rest) => format!("D{rest}"),
            None => recipient.to_string(),
        };
        let ts = format!("1718000000.{:06}", req.seq);
        json!({
            "ok": true,
            "channel": channel,
            "ts": ts,
            "message": {
                "type": "message", "subtype": "bot_message", "bot_id": "B0MOCK",
                "text": req.body().get("text").cloned().unwrap_or(Value::Null), "ts": ts,
            },
        })
    }

    fn failure(&self, failure: Failure, _req: &Incoming, _recipient: &str) -> Reply {
        match failure {
            Failure::Block | Failure::OutsideWindow => error("is_archived"),
            Failure::InvalidRecipient => error("channel_not_found"),
            Failure::RateLimit(secs) => {
                Reply::json(429, json!({ "ok": false, "error": "ratelimited" }))
                    .with_header("retry-after", secs.to_string())
            }
            Failure::ServerError => {
                Reply::json(503, json!({ "ok": false, "error": "service_unavailable" }))
            }
            Failure::BadToken => error("invalid_auth"),
        }
    }
}

/// `auth.test`: who the token is, with its scopes in `X-OAuth-Scopes`.
fn auth_test(req: &Incoming, fault: Option<AccountFault>) -> Reply {
    match bearer(req) {
        None => return error("not_authed"),
        Some(t) if t != creds::SLACK_TOKEN => return error("invalid_auth"),
        Some(_) => {}
    }
    let scopes = match fault {
        Some(AccountFault::ExpiredToken) => return error("token_revoked"),
        Some(AccountFault::MissingPermission) => SCOPES_WITHOUT_WRITE,
        _ => "chat:write,im:history,users:read",
    };
    Reply::json(
        200,
        json!({
            "ok": true, "url": "https://pushd-mock.slack.com/", "team": "pushd Mock Workspace",
            "user": "pushd_bot", "team_id": "T0MOCK", "user_id": "U0MOCKBOT", "bot_id": "B0MOCK",
        }),
    )
    .with_header("x-oauth-scopes", scopes.to_string())
}

fn valid_block(block: &Value) -> bool {
    match block.get("type").and_then(Value::as_str) {
        Some("section") => block
            .pointer("/text/text")
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty() && t.chars().count() <= 3000),
        Some("image") => {
            block.get("image_url").and_then(Value::as_str).is_some()
                && block.get("alt_text").and_then(Value::as_str).is_some()
        }
        Some("actions") => {
            let elements = block
                .get("elements")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut ids = std::collections::HashSet::new();
            !elements.is_empty()
                && elements.len() <= 25
                && elements.iter().all(|e| {
                    let text = e
                        .pointer("/text/text")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    e.get("type").and_then(Value::as_str) == Some("button")
                        && e.pointer("/text/type").and_then(Value::as_str) == Some("plain_text")
                        && !text.is_empty()
                        && text.chars().count() <= 75
                        && e.get("action_id")
                            .and_then(Value::as_str)
                            .is_some_and(|id| ids.insert(id.to_string()))
                })
        }
        _ => false,
    }
}
