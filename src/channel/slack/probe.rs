//! `pushd channel test` on Slack: `auth.test` (whose token it is; needs no
//! scope and sends nothing), with the token's scopes from the
//! `X-OAuth-Scopes` header checked for `chat:write`; and what Slack's error
//! strings ask the operator to do (docs.slack.dev/reference/methods/auth.test,
//! …/chat.postMessage).

use super::{Slack, classify, describe_reply};
use crate::channel::http;
use crate::channel::onboard::Probe;
use crate::model::{ErrorClass, Platform, SendError};
use serde_json::Value;

/// The scope chat.postMessage needs.
const SEND_SCOPE: &str = "chat:write";

impl Slack {
    pub(super) async fn auth_test(&self) -> Probe {
        let call = "auth.test";
        let request = self
            .http
            .client
            .post(self.http.url("/auth.test"))
            .bearer_auth(self.token.expose())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body("");
        let failed = |e: SendError| Probe::failed(call, Platform::Slack, self.scrubber.scrub(e));
        let reply = match http::execute(request, self.http.timeout).await {
            Ok(reply) => reply,
            Err(e) => return failed(e),
        };
        let Some(json) = reply.json() else {
            return failed(reply.not_json());
        };
        match json.get("ok").and_then(Value::as_bool) {
            Some(true) => {}
            Some(false) => {
                let error = json
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown_error");
                return failed(SendError::new(
                    classify(error),
                    error,
                    describe_reply(error, &json),
                ));
            }
            None => return failed(reply.status_error()),
        }
        let scopes = reply
            .headers
            .get("x-oauth-scopes")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut notes = Vec::new();
        match &scopes {
            Some(s) if !s.split(',').any(|scope| scope.trim() == SEND_SCOPE) => {
                return failed(SendError::new(
                    ErrorClass::Auth,
                    "missing_scope",
                    format!(
                        "missing_scope: the token lacks a scope chat.postMessage needs (needed: {SEND_SCOPE}; provided: {s})"
                    ),
                ));
            }
            Some(_) => {}
            None => notes.push(format!(
                "Slack did not list the token's scopes; a test message (--to) checks {SEND_SCOPE}."
            )),
        }
        let text = |k: &str| json.get(k).and_then(Value::as_str).unwrap_or("?");
        if json.get("bot_id").is_none() {
            notes.push("This is a user token (no bot_id): messages would be posted as that person. Use the app's Bot User OAuth Token (xoxb-…).".into());
        }
        Probe::ok(
            call,
            format!(
                "@{} (user {}) in workspace \"{}\" {}",
                text("user"),
                text("user_id"),
                text("team"),
                text("url")
            ),
            notes,
        )
    }
}

/// The scope a `missing_scope` error names (`needed: chat:write`).
fn needed_scope(message: &str) -> Option<&str> {
    let rest = &message[message.find("needed: ")? + "needed: ".len()..];
    let end = rest.find([';', ')']).unwrap_or(rest.len());
    Some(rest[..end].trim()).filter(|s| !s.is_empty())
}

/// What to do about a Slack error string.
pub(crate) fn advice(err: &SendError) -> Option<String> {
    let text = match err.code.as_str() {
        "missing_scope" => {
            let scope = needed_scope(&err.message).unwrap_or(SEND_SCOPE);
            return Some(format!(
                "Add the {scope} scope under OAuth & Permissions → Scopes → Bot Token Scopes, reinstall the app to the workspace (Slack asks to), copy the new Bot User OAuth Token into `token` (or `token_env`) and run `pushd reload`."
            ));
        }
        "invalid_auth" => {
            "Slack does not accept this token: copy the Bot User OAuth Token (xoxb-…) from your app's OAuth & Permissions page into `token` (or `token_env`) and run `pushd reload`."
        }
        "not_authed" => {
            "No token reached Slack: set `token` (or `token_env`) and run `pushd reload`."
        }
        "token_revoked" => {
            "The token was revoked, or the app was uninstalled from the workspace: reinstall it (OAuth & Permissions → Install to Workspace), copy the new Bot User OAuth Token into `token` and run `pushd reload`."
        }
        "token_expired" => {
            "The token expired because token rotation is on for this app: turn rotation off (OAuth & Permissions), reinstall, and give pushd the new token."
        }
        "account_inactive" => {
            "The token belongs to a deactivated user or a deleted workspace: install the app again in a live workspace and use its token."
        }
        "not_allowed_token_type" => {
            "This kind of token cannot post messages: use the Bot User OAuth Token (xoxb-…), not an app-level (xapp-) token."
        }
        "channel_not_found" => {
            "The bot cannot see a conversation with this id: use a member id (U…) to write to them directly, or the id of a channel (C…) the bot was invited to."
        }
        "not_in_channel" => {
            "The bot is not in that channel: /invite @your-bot there, then test again."
        }
        "is_archived" => {
            "That channel is archived: unarchive it or test with another conversation."
        }
        "messages_tab_disabled" => {
            "Members cannot receive messages from this app: turn on App Home → Show Tabs → Messages Tab in the app's settings."
        }
        "ratelimited" | "rate_limited" => {
            "Slack asked pushd to slow down: wait a minute and test again."
        }
        _ => return None,
    };
    Some(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_scope_names_the_scope() {
        assert_eq!(
            needed_scope("missing_scope: x (needed: im:write; provided: a,b)"),
            Some("im:write")
        );
        assert_eq!(needed_scope("no scope here"), None);
        let e = SendError::new(
            ErrorClass::Auth,
            "missing_scope",
            "missing_scope: x (needed: chat:write; provided: incoming-webhook)",
        );
        assert!(advice(&e).unwrap().starts_with("Add the chat:write scope"));
    }
}
