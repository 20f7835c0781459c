//! WhatsApp Cloud API mock: `POST /{version}/{WA_PHONE_NUMBER_ID}/messages`
//! with `Authorization: Bearer {WA_TOKEN}`.
//!
//! | behaviour | answer |
//! |---|---|
//! | Succeed | 200 `{messaging_product, contacts[{input,wa_id}], messages[{id:"wamid.mock<seq>"}]}` |
//! | Block | 400, code 131050 (user stopped marketing messages; WhatsApp reports real blocks by never delivering) |
//! | InvalidRecipient | 400, code 131026 "Message Undeliverable" |
//! | OutsideWindow | 400, code 131047 "Re-engagement message" |
//! | RateLimit | 429, code 130429 "Rate limit hit" (no Retry-After: Meta sends none) |
//! | ServerError | 500, code 2, `is_transient: true` |
//! | BadToken / wrong token | 401, code 190 |
//!
//! A malformed body gets 400 code 100 "(#100) Invalid parameter" with the
//! problem in `error_data.details`.
//!
//! The credential check `GET /{version}/{phone_number_id}` answers
//! `{display_phone_number, verified_name, id}`; an unknown id 400 code 100
//! subcode 33 "Unsupported get request. Object with ID '…' does not exist, …".
//!
//! | account fault | check and sends answer |
//! |---|---|
//! | ExpiredToken | 401, code 190 subcode 463 "Error validating access token: Session has expired on …" |
//! | MissingPermission | 403, code 10 "(#10) Application does not have permission for this action" |

use super::{AccountFault, Api, Failure, Incoming, Reply, Shared, bearer, creds, graph_error};
use serde_json::{Value, json};

pub struct WhatsAppApi;

impl Api for WhatsAppApi {
    fn recipient(&self, req: &Incoming) -> Option<String> {
        req.body()
            .get("to")
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    fn check(&self, mock: &Shared, req: &Incoming) -> Result<(), Reply> {
        let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        if req.method == "GET" && parts.len() == 2 && parts[0].starts_with('v') {
            return Err(phone_number(mock, req, parts[1]));
        }
        let fault = mock.state().account_fault;
        if let Some(reply) = fault.and_then(account_fault) {
            return Err(reply);
        }
        let route_ok = req.method == "POST"
            && parts.len() == 3
            && parts[0].starts_with('v')
            && parts[1] == creds::WA_PHONE_NUMBER_ID
            && parts[2] == "messages";
        if !route_ok {
            return Err(graph_error(
                400,
                100,
                Some(33),
                &format!(
                    "Unsupported post request. Object with ID '{}' does not exist, cannot be loaded due to missing permissions, or does not support this operation.",
                    parts.get(1).unwrap_or(&"")
                ),
                None,
            ));
        }
        if bearer(req) != Some(creds::WA_TOKEN) {
            return Err(bad_token());
        }
        check_body(req.body()).map_err(|details| {
            graph_error(400, 100, None, "(#100) Invalid parameter", Some(&details))
        })
    }

    fn success(&self, req: &Incoming, recipient: &str) -> Value {
        json!({
            "messaging_product": "whatsapp",
            "contacts": [{ "input": recipient, "wa_id": recipient }],
            "messages": [{ "id": format!("wamid.mock{}", req.seq) }],
        })
    }

    fn failure(&self, failure: Failure, _req: &Incoming, _recipient: &str) -> Reply {
        match failure {
            Failure::Block => graph_error(
                400,
                131050,
                None,
                "(#131050) Unable to deliver the marketing message",
                Some(
                    "Unable to deliver the marketing message. This can happen because the user has chosen to stop receiving marketing messages from this business.",
                ),
            ),
            Failure::InvalidRecipient => graph_error(
                400,
                131026,
                None,
                "(#131026) Message Undeliverable",
                Some(
                    "Message failed to send because the recipient's phone number is not a WhatsApp number, has not accepted the latest Terms of Service, or uses an outdated WhatsApp version.",
                ),
            ),
            Failure::OutsideWindow => graph_error(
                400,
                131047,
                None,
                "(#131047) Re-engagement message",
                Some(
                    "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
                ),
            ),
            Failure::RateLimit(_) => graph_error(
                429,
                130429,
                None,
                "(#130429) Rate limit hit",
                Some("Cloud API message throughput has been reached."),
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

/// `GET /{version}/{id}`: the phone number's node.
fn phone_number(mock: &Shared, req: &Incoming, id: &str) -> Reply {
    if bearer(req) != Some(creds::WA_TOKEN) {
        return bad_token();
    }
    if let Some(reply) = mock.state().account_fault.and_then(account_fault) {
        return reply;
    }
    if id != creds::WA_PHONE_NUMBER_ID {
        return graph_error(
            400,
            100,
            Some(33),
            &format!(
                "Unsupported get request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api"
            ),
            None,
        );
    }
    Reply::json(
        200,
        json!({ "display_phone_number": "+1 555-078-3881", "verified_name": "pushd Mock Shop", "id": id }),
    )
}

fn account_fault(fault: AccountFault) -> Option<Reply> {
    Some(match fault {
        AccountFault::ExpiredToken => graph_error(
            401,
            190,
            Some(463),
            "Error validating access token: Session has expired on Tuesday, 03-Dec-24 09:00:00 PST. The current time is Wednesday, 04-Dec-24 02:00:00 PST.",
            None,
        ),
        AccountFault::MissingPermission => graph_error(
            403,
            10,
            None,
            "(#10) Application does not have permission for this action",
            None,
        ),
        _ => return None,
    })
}

fn bad_token() -> Reply {
    graph_error(
        401,
        190,
        None,
        "Invalid OAuth access token - Cannot parse access token",
        None,
    )
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// The shape rules of the Cloud API messages endpoint that adapters can get wrong.
fn check_body(b: &Value) -> Result<(), String> {
    if str_at(b, "/messaging_product") != Some("whatsapp") {
        return Err("messaging_product must be \"whatsapp\"".into());
    }
    if str_at(b, "/to").is_none_or(str::is_empty) {
        return Err("to is required".into());
    }
    match str_at(b, "/type") {
        Some("text") => {
            let body = str_at(b, "/text/body").unwrap_or("");
            if body.is_empty() || body.chars().count() > 4096 {
                return Err("text.body must be 1-4096 characters".into());
            }
        }
        Some("image") => {
            if str_at(b, "/image/link").is_none() {
                return Err("image.link is required".into());
            }
        }
        Some("template") => {
            if str_at(b, "/template/name").is_none()
                || str_at(b, "/template/language/code").is_none()
            {
                return Err("template.name and template.language.code are required".into());
            }
        }
        Some("interactive") => check_interactive(b)?,
        other => return Err(format!("unsupported message type {other:?}")),
    }
    Ok(())
}

fn check_interactive(b: &Value) -> Result<(), String> {
    let body = str_at(b, "/interactive/body/text").unwrap_or("");
    if body.is_empty() || body.chars().count() > 1024 {
        return Err("interactive.body.text must be 1-1024 characters".into());
    }
    match str_at(b, "/interactive/type") {
        Some("button") => {
            let buttons = b
                .pointer("/interactive/action/buttons")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if buttons.is_empty() || buttons.len() > 3 {
                return Err("interactive.action.buttons must have 1-3 buttons".into());
            }
            let mut ids = std::collections::HashSet::new();
            for btn in &buttons {
                let title = str_at(btn, "/reply/title").unwrap_or("");
                let id = str_at(btn, "/reply/id").unwrap_or("");
                if str_at(btn, "/type") != Some("reply")
                    || title.is_empty()
                    || title.chars().count() > 20
                    || id.is_empty()
                    || id.chars().count() > 256
                    || !ids.insert(id.to_string())
                {
                    return Err(format!("invalid reply button {btn}"));
                }
            }
        }
        Some("cta_url") => {
            let text = str_at(b, "/interactive/action/parameters/display_text").unwrap_or("");
            if str_at(b, "/interactive/action/name") != Some("cta_url")
                || text.is_empty()
                || text.chars().count() > 20
                || str_at(b, "/interactive/action/parameters/url").is_none()
            {
                return Err("invalid cta_url action".into());
            }
        }
        other => return Err(format!("unsupported interactive type {other:?}")),
    }
    Ok(())
}
