//! `pushd channel test` on Messenger and Instagram: `GET /{version}/me`
//! with the Page access token, which names the Page the token belongs to
//! (compared with `page_id` when one is set) and sends nothing; and what the
//! Messenger Platform's error codes ask the operator to do
//! (developers.facebook.com/documentation/business-messaging/messenger-platform/error-codes).

use super::{Flavor, Messenger, WINDOW_SUBCODES, classify};
use crate::channel::meta::{self, parse_code, token_advice};
use crate::channel::onboard::Probe;
use crate::channel::{Channel, http};
use crate::model::{ErrorClass, SendError};
use serde_json::Value;

/// `category` exists on Pages only: a user token fails on it with
/// "(#100) Tried accessing nonexisting field (category) on node type (User)",
/// which tells a user token from a Page token.
const FIELDS: &str = "id,name,category";

const USER_TOKEN: &str = "This is a user access token; sends need the Page access token. Get it from the Meta app dashboard (Messenger → Settings → Access Tokens, Generate for your Page), or GET /me/accounts with this user token, put it in `token` (or `token_env`) and run `pushd reload`.";

impl Messenger {
    pub(super) async fn check_page(&self) -> Probe {
        let mut url = self.url.clone();
        let configured = url
            .path_segments()
            .and_then(|s| s.rev().nth(1))
            .unwrap_or("me")
            .to_string();
        // `/{version}/{page}/messages` → `/{version}/me`.
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop().pop().push("me");
        }
        let call = format!("GET {}?fields={FIELDS}", url.path());
        let request = self
            .http
            .client
            .get(url)
            .query(&[("fields", FIELDS), ("access_token", self.token.expose())]);
        let result = http::execute(request, self.http.timeout)
            .await
            .and_then(|reply| meta::read_reply(&reply, classify));
        let platform = self.platform();
        let json = match result {
            Ok(json) => json,
            Err(e) if user_token(&e) => {
                let e = SendError {
                    class: ErrorClass::Auth,
                    ..self.scrubber.scrub(e)
                };
                return Probe::failed_with(call, e, USER_TOKEN.into());
            }
            Err(e) => return Probe::failed(call, platform, self.scrubber.scrub(e)),
        };
        let text = |k: &str| {
            json.get(k)
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string()
        };
        let (id, name) = (text("id"), text("name"));
        if configured != "me" && id != configured {
            let e = SendError::new(
                ErrorClass::Auth,
                "page_id_mismatch",
                format!(
                    "the token belongs to the Page {name:?} (id {id}), not to page_id {configured}"
                ),
            );
            let advice = format!(
                "Either set `page_id = \"{id}\"` (or remove page_id to send as the token's Page), or use the Page access token of Page {configured}; then run `pushd reload`."
            );
            return Probe::failed_with(call, e, advice);
        }
        let mut notes = Vec::new();
        if self.flavor == Flavor::Instagram {
            notes.push("Instagram messages go through the Instagram professional account connected to this Page; the token also needs instagram_basic and instagram_manage_messages (a test message with --to checks that).".into());
        }
        Probe::ok(call, format!("Page \"{name}\" (id {id})"), notes)
    }
}

fn user_token(e: &SendError) -> bool {
    e.message.contains("nonexisting field") && e.message.contains("(User)")
}

fn token_howto(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Messenger => {
            "Generate a Page access token in the Meta app dashboard (Messenger → Settings → Access Tokens) with pages_messaging; one made by a system user (Business Settings → Users → System users) does not expire."
        }
        Flavor::Instagram => {
            "Generate a Page access token for the Page connected to the Instagram account (Meta app dashboard → Messenger → Instagram settings) with instagram_basic, instagram_manage_messages and pages_messaging; one made by a system user does not expire."
        }
    }
}

/// What to do about a Messenger or Instagram error, by Meta's code.
pub(crate) fn advice(flavor: Flavor, err: &SendError) -> Option<String> {
    let (code, subcode) = parse_code(&err.code)?;
    if code == 551 || subcode == Some(1545041) {
        return Some("This person isn't available: they blocked the Page, turned off its messages, or deactivated their account. Test with another account.".into());
    }
    if subcode.is_some_and(|s| WINDOW_SUBCODES.contains(&s)) {
        let tags = match flavor {
            Flavor::Messenger => {
                "a message tag (route `tag = \"ACCOUNT_UPDATE\"`, `CONFIRMED_EVENT_UPDATE`, `POST_PURCHASE_UPDATE`; never for promotions)"
            }
            Flavor::Instagram => "the HUMAN_AGENT tag (up to 7 days, for replies by a person)",
        };
        return Some(format!(
            "This user has not written to the {} in the last 24 hours: have them write first; outside the window only {tags} gets through.",
            if flavor == Flavor::Messenger {
                "Page"
            } else {
                "Instagram account"
            }
        ));
    }
    if subcode == Some(2018001) {
        return Some("No user with this id talks to this Page: ids (PSIDs) are per Page and app, so use the sender id of a message this Page received (`pushd events` shows them).".into());
    }
    let text = match code {
        190 => return Some(token_advice(subcode, token_howto(flavor))),
        100 if user_token(err) => USER_TOKEN,
        100 if subcode == Some(33) => {
            "`page_id` is not a Page this token can reach: use the Page's id from its About page (or remove page_id to send as the token's Page), then run `pushd reload`."
        }
        3 | 10 | 200..=299 => match flavor {
            Flavor::Messenger => {
                "The token lacks a permission: a Page access token with pages_messaging (and the app's Messenger product set up for the Page) is needed. Generate a new one, put it in `token` (or `token_env`) and run `pushd reload`."
            }
            Flavor::Instagram => {
                "The token lacks a permission: Instagram messaging needs a Page access token with instagram_basic, instagram_manage_messages and pages_messaging, and the Instagram account's \"Allow access to messages\" setting on. Generate a new one, put it in `token` (or `token_env`) and run `pushd reload`."
            }
        },
        4 | 17 | 32 | 613 => "Meta rate-limited this Page: wait a minute and test again.",
        _ => return None,
    };
    Some(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_by_code() {
        let e = |code: &str, m: &str| SendError::new(ErrorClass::Auth, code, m);
        let window = advice(Flavor::Instagram, &e("10/2018278", "outside")).unwrap();
        assert!(window.contains("HUMAN_AGENT"), "{window}");
        let perm = advice(
            Flavor::Messenger,
            &e("230", "(#230) Requires pages_messaging permission"),
        )
        .unwrap();
        assert!(perm.contains("pages_messaging"), "{perm}");
        let user = e(
            "100",
            "(#100) Tried accessing nonexisting field (category) on node type (User)",
        );
        assert_eq!(
            advice(Flavor::Messenger, &user).as_deref(),
            Some(USER_TOKEN)
        );
        assert!(advice(Flavor::Messenger, &e("1", "x")).is_none());
    }
}
