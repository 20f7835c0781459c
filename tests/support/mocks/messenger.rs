//! Messenger (and Instagram, `instagram: true`) Send API mock:
//! `POST /{version}/{PAGE_ID or me}/messages?access_token={PAGE_TOKEN}`.
//!
//! | behaviour | answer |
//! |---|---|
//! | Succeed | 200 `{"recipient_id", "message_id":"m_mock<seq>"}` |
//! | Block | 400, code 551 / 1545041 "This person isn't available right now." |
//! | InvalidRecipient | 400, code 100 / 2018001 "No matching user found" |
//! | OutsideWindow | 400, code 10 / 2018278 "This message is sent outside of allowed window." |
//! | RateLimit | 400, code 613 "Calls to this api have exceeded the rate limit." |
//! | ServerError | 500, code 2 "An unexpected error has occurred..." |
//! | BadToken / wrong token | 400, code 190 "Invalid OAuth access token" |
//!
//! A malformed body gets 400 code 100 with the problem in the message.
//!
//! The credential check `GET /{version}/me?access_token=…` answers the Page
//! `{id: PAGE_ID, name, category}`.
//!
//! | account fault | answer |
//! |---|---|
//! | ExpiredToken | check and sends: 400, code 190 subcode 463 "Error validating access token: Session has expired on …" |
//! | MissingPermission | sends: 403, code 230 "(#230) Requires pages_messaging permission to manage the object" (the check needs no permission) |
//! | UserToken | check: 400, code 100 "(#100) Tried accessing nonexisting field (category) on node type (User)" |

use super::{AccountFault, Api, Failure, Incoming, Reply, Shared, creds, graph_error};
use serde_json::{Value, json};

pub struct MessengerApi {
    pub instagram: bool,
}

impl Api for MessengerApi {
    fn recipient(&self, req: &Incoming) -> Option<String> {
        req.body()
            .pointer("/recipient/id")
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    fn check(&self, mock: &Shared, req: &Incoming) -> Result<(), Reply> {
        let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        let fault = mock.state().account_fault;
        if req.method == "GET" && parts.len() == 2 && parts[0].starts_with('v') && parts[1] == "me"
        {
            return Err(page(req, fault));
        }
        if req.query.get("access_token").map(String::as_str) == Some(creds::PAGE_TOKEN) {
            match fault {
                Some(AccountFault::ExpiredToken) => return Err(expired_token()),
                Some(AccountFault::MissingPermission) => {
                    return Err(graph_error(
                        403,
                        230,
                        None,
                        "(#230) Requires pages_messaging permission to manage the object",
                        None,
                    ));
                }
                _ => {}
            }
        }
        let route_ok = req.method == "POST"
            && parts.len() == 3
            && parts[0].starts_with('v')
            && (parts[1] == creds::PAGE_ID || parts[1] == "me")
            && parts[2] == "messages";
        if !route_ok {
            return Err(graph_error(
                400,
                100,
                Some(33),
                "Unsupported post request.",
                None,
            ));
        }
        if req.query.get("access_token").map(String::as_str) != Some(creds::PAGE_TOKEN) {
            return Err(bad_token());
        }
        self.check_body(req.body())
            .map_err(|m| graph_error(400, 100, None, &format!("(#100) {m}"), None))
    }

    fn success(&self, req: &Incoming, recipient: &str) -> Value {
        json!({ "recipient_id": recipient, "message_id": format!("m_mock{}", req.seq) })
    }

    fn failure(&self, failure: Failure, _req: &Incoming, _recipient: &str) -> Reply {
        match failure {
            Failure::Block => graph_error(
                400,
                551,
                Some(1545041),
                "(#551) This person isn't available right now.",
                None,
            ),
            Failure::InvalidRecipient => graph_error(
                400,
                100,
                Some(2018001),
                "(#100) No matching user found",
                None,
            ),
            Failure::OutsideWindow => graph_error(
                400,
                10,
                Some(2018278),
                "(#10) This message is sent outside of allowed window. Learn more about the new policy here: https://developers.facebook.com/docs/messenger-platform/policy-overview",
                None,
            ),
            Failure::RateLimit(_) => graph_error(
                400,
                613,
                None,
                "(#613) Calls to this api have exceeded the rate limit.",
                None,
            ),
            Failure::ServerError => graph_error(
                500,
                2,
                None,
                "An unexpected error has occurred. Please retry your request later.",
                None,
            ),
            Failure::BadToken => bad_token(),
        }
    }
}

/// `GET /{version}/me`: the Page the token belongs to.
fn page(req: &Incoming, fault: Option<AccountFault>) -> Reply {
    if req.query.get("access_token").map(String::as_str) != Some(creds::PAGE_TOKEN) {
        return bad_token();
    }
    match fault {
        Some(AccountFault::ExpiredToken) => expired_token(),
        Some(AccountFault::UserToken) => graph_error(
            400,
            100,
            None,
            "(#100) Tried accessing nonexisting field (category) on node type (User)",
            None,
        ),
        _ => Reply::json(
            200,
            json!({ "id": creds::PAGE_ID, "name": "pushd Mock Page", "category": "Shopping & retail" }),
        ),
    }
}

fn expired_token() -> Reply {
    graph_error(
        400,
        190,
        Some(463),
        "Error validating access token: Session has expired on Tuesday, 03-Dec-24 09:00:00 PST. The current time is Wednesday, 04-Dec-24 02:00:00 PST.",
        None,
    )
}

fn bad_token() -> Reply {
    graph_error(
        400,
        190,
        None,
        "Invalid OAuth access token - Cannot parse access token",
        None,
    )
}

impl MessengerApi {
    fn check_body(&self, b: &Value) -> Result<(), String> {
        if b.pointer("/recipient/id")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err("param recipient must be non-empty.".into());
        }
        match b.get("messaging_type").and_then(Value::as_str) {
            Some("RESPONSE") | Some("UPDATE") => {}
            Some("MESSAGE_TAG") => {
                if b.get("tag").and_then(Value::as_str).is_none() {
                    return Err("param tag is required with MESSAGE_TAG".into());
                }
            }
            None if self.instagram => {}
            other => return Err(format!("param messaging_type {other:?} is invalid")),
        }
        let Some(message) = b.get("message") else {
            return Err("param message must be non-empty.".into());
        };
        let text_max = if self.instagram { 999 } else { 2000 };
        match (message.get("text"), message.get("attachment")) {
            (Some(t), None) => {
                let t = t.as_str().unwrap_or("");
                if t.is_empty() || t.chars().count() > text_max {
                    return Err(format!(
                        "param message[text] must be 1-{text_max} characters"
                    ));
                }
            }
            (None, Some(a)) => check_attachment(a)?,
            _ => return Err("message must have exactly one of text or attachment".into()),
        }
        if let Some(qr) = message.get("quick_replies") {
            let qr = qr.as_array().cloned().unwrap_or_default();
            if qr.is_empty() || qr.len() > 13 {
                return Err("param message[quick_replies] must have 1-13 elements".into());
            }
            for q in qr {
                let title = q.get("title").and_then(Value::as_str).unwrap_or("");
                if q.get("content_type").and_then(Value::as_str) != Some("text")
                    || title.is_empty()
                    || title.chars().count() > 20
                    || q.get("payload").is_none()
                {
                    return Err(format!("invalid quick reply {q}"));
                }
            }
        }
        Ok(())
    }
}

fn check_attachment(a: &Value) -> Result<(), String> {
    match a.get("type").and_then(Value::as_str) {
        Some("image") => {
            if a.pointer("/payload/url").and_then(Value::as_str).is_none() {
                return Err("param message[attachment][payload][url] is required".into());
            }
        }
        Some("template") => {
            let p = a.get("payload").cloned().unwrap_or(Value::Null);
            let buttons = |v: &Value| -> Result<(), String> {
                let Some(list) = v.get("buttons") else {
                    return Ok(());
                };
                let list = list.as_array().cloned().unwrap_or_default();
                if list.is_empty() || list.len() > 3 {
                    return Err("buttons must have 1-3 elements".into());
                }
                for btn in list {
                    let title = btn.get("title").and_then(Value::as_str).unwrap_or("");
                    let ok = match btn.get("type").and_then(Value::as_str) {
                        Some("postback") => btn.get("payload").is_some(),
                        Some("web_url") => btn.get("url").is_some(),
                        _ => false,
                    };
                    if !ok || title.is_empty() || title.chars().count() > 20 {
                        return Err(format!("invalid button {btn}"));
                    }
                }
                Ok(())
            };
            match p.get("template_type").and_then(Value::as_str) {
                Some("button") => {
                    let text = p.get("text").and_then(Value::as_str).unwrap_or("");
                    if text.is_empty() || text.chars().count() > 640 || p.get("buttons").is_none() {
                        return Err("button template needs text (1-640) and buttons".into());
                    }
                    buttons(&p)?;
                }
                Some("generic") => {
                    let elements = p
                        .get("elements")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    if elements.is_empty() || elements.len() > 10 {
                        return Err("generic template needs 1-10 elements".into());
                    }
                    for e in elements {
                        let title = e.get("title").and_then(Value::as_str).unwrap_or("");
                        if title.is_empty() || title.chars().count() > 80 {
                            return Err("element title must be 1-80 characters".into());
                        }
                        buttons(&e)?;
                    }
                }
                other => return Err(format!("unsupported template_type {other:?}")),
            }
        }
        other => return Err(format!("unsupported attachment type {other:?}")),
    }
    Ok(())
}
