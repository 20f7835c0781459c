//! `pushd channel test` on WhatsApp: the phone number's own node,
//! `GET /{version}/{phone_number_id}?fields=display_phone_number,verified_name`,
//! which needs the token and the access to the WhatsApp account that sends
//! need and sends nothing; and what WhatsApp's error codes ask the operator
//! to do (developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes).

use super::{WhatsApp, classify};
use crate::channel::http;
use crate::channel::meta::{self, parse_code, token_advice};
use crate::channel::onboard::Probe;
use crate::model::{ErrorClass, Platform, SendError};
use serde_json::Value;

const FIELDS: &str = "display_phone_number,verified_name";

const TOKEN_HOWTO: &str = "Temporary tokens from the app's WhatsApp → API Setup page last 24 hours; for production create a system user (Business Settings → Users → System users), assign it the app and the WhatsApp account, and generate a token that never expires with whatsapp_business_messaging and whatsapp_business_management.";

const PERMISSION: &str = "The token lacks a permission: it needs whatsapp_business_messaging (to send) and whatsapp_business_management (to read the phone number). Generate a new token with both (Business Settings → Users → System users → Generate new token), make sure that system user has the WhatsApp account assigned, put it in `token` (or `token_env`) and run `pushd reload`.";

impl WhatsApp {
    pub(super) async fn check_phone_number(&self) -> Probe {
        // The phone number's node is the parent of its messages endpoint.
        let mut url = self.url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop();
        }
        let id = url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or_default()
            .to_string();
        let call = format!("GET {}?fields={FIELDS}", url.path());
        url.query_pairs_mut().append_pair("fields", FIELDS);
        let request = self
            .http
            .client
            .get(url)
            .header(reqwest::header::AUTHORIZATION, self.auth.clone());
        let result = http::execute(request, self.http.timeout)
            .await
            .and_then(|reply| meta::read_reply(&reply, classify));
        match result {
            Ok(json) => Probe::ok(call, describe(&json, &id), Vec::new()),
            Err(e) if unknown_number(&e) => {
                // The configured id is wrong (or out of the token's reach):
                // an operator has to fix the config, as for bad credentials.
                let e = SendError {
                    class: ErrorClass::Auth,
                    ..self.scrubber.scrub(e)
                };
                Probe::failed_with(call, e, wrong_number(&id))
            }
            Err(e) => Probe::failed(call, Platform::Whatsapp, self.scrubber.scrub(e)),
        }
    }
}

/// `+1 555-078-3881 "Acme Shoes" (phone number id 106540352242922)`.
fn describe(json: &Value, id: &str) -> String {
    let text = |k: &str| json.get(k).and_then(Value::as_str).unwrap_or("?");
    format!(
        "phone number {} \"{}\" (phone number id {id})",
        text("display_phone_number"),
        text("verified_name")
    )
}

/// Meta's "Unsupported get request. Object with ID '…' does not exist,
/// cannot be loaded due to missing permissions, …" (code 100, subcode 33).
fn unknown_number(e: &SendError) -> bool {
    parse_code(&e.code) == Some((100, Some(33))) || e.message.contains("Unsupported get request")
}

fn wrong_number(id: &str) -> String {
    format!(
        "WhatsApp knows no phone number {id:?} that this token can see. `phone_number_id` must be the Phone number ID from the app's WhatsApp → API Setup page (a long number, not the phone number itself and not the WhatsApp Business Account ID). If it is right, the token's system user lacks access to that WhatsApp account: assign it in Business Settings → Users → System users. Then run `pushd reload`."
    )
}

/// What to do about a WhatsApp error, by Meta's code.
pub(crate) fn advice(err: &SendError) -> Option<String> {
    let (code, subcode) = parse_code(&err.code)?;
    let text = match code {
        190 => return Some(token_advice(subcode, TOKEN_HOWTO)),
        3 | 10 | 131005 | 200..=299 => PERMISSION,
        100 if subcode == Some(33) => {
            "`phone_number_id` is not a phone number this token can see: check it against the app's WhatsApp → API Setup page, and that the token's system user has the WhatsApp account assigned."
        }
        131030 => {
            "This number is not on the test number's allowed list: add it under WhatsApp → API Setup → To (up to 5 numbers), or send from a registered business number."
        }
        131047 => {
            "More than 24 hours have passed since this user last wrote to the business number, so WhatsApp takes only an approved template: have them write first, or route them to a template (`kind = \"template\"`)."
        }
        131026 => {
            "WhatsApp cannot deliver to this number: it is not on WhatsApp, has not accepted the latest terms, or runs an old app version. Check the number (digits with country code, no +)."
        }
        131050 => {
            "This user chose to stop marketing messages from this business; test with another number."
        }
        131031 => {
            "The WhatsApp Business Account is restricted or disabled: see WhatsApp Manager → Account quality."
        }
        131042 => {
            "There is a problem with the WhatsApp Business Account's payment method: fix it in WhatsApp Manager (or Business Settings → Payments)."
        }
        133010 => {
            "The phone number is not registered with the Cloud API: register it (POST /{phone_number_id}/register with a two-step verification PIN) and test again."
        }
        130429 | 131048 | 131056 => {
            "WhatsApp rate-limited this number (throughput, spam or per-user pair limit): wait a minute and test again."
        }
        _ => return None,
    };
    Some(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_by_code() {
        let e = |code: &str| SendError::new(ErrorClass::Auth, code, "m");
        assert!(
            advice(&e("190/463"))
                .unwrap()
                .starts_with("The access token has expired.")
        );
        assert!(
            advice(&e("10"))
                .unwrap()
                .contains("whatsapp_business_messaging")
        );
        assert!(advice(&e("131030")).unwrap().contains("allowed list"));
        assert!(advice(&e("99999")).is_none());
        assert!(advice(&e("timeout")).is_none());
    }
}
