//! `pushd channel test` on custom platforms and web chat: a signed ping,
//! `{"type":"ping","id":"ping_<unix ms>"}`, posted to `url` with the same
//! Standard Webhooks signature as sends (the receiver answers 2xx and sends
//! nothing; see the contract at the top of `custom.rs`); and what its
//! answers ask the operator to do.

use super::Custom;
use crate::channel::onboard::Probe;
use crate::model::{ErrorClass, SendError, now_ms};
use serde_json::json;

impl Custom {
    pub(super) async fn ping(&self) -> Probe {
        let id = format!("ping_{}", now_ms());
        let mut endpoint = self.url.clone();
        // A query may carry a receiver's key; the call shown names the endpoint only.
        endpoint.set_query(None);
        let call = format!(
            "POST {endpoint} {{\"type\":\"ping\"}} ({})",
            if self.key.is_some() {
                "signed with webhook_secret"
            } else {
                "unsigned"
            }
        );
        let mut notes = Vec::new();
        if self.key.is_none() {
            notes.push("No webhook_secret is configured (insecure_webhooks): pushd's requests are unsigned, so the receiver cannot tell them from anyone else's.".into());
        }
        match self.post(&id, &json!({ "type": "ping", "id": id })).await {
            Ok(_) => Probe::ok(call, "the endpoint accepted the ping", notes),
            Err(e) if e.class == ErrorClass::Rejected && !not_found(&e) => {
                let advice = format!(
                    "The endpoint refused the ping ({}). A receiver answers 2xx to {{\"type\":\"ping\"}} without sending anything (the contract is at the top of src/channel/custom.rs); if it does not know pings yet, a test message with --to checks the channel instead.",
                    e.code
                );
                Probe::failed_with(call, self.scrubber.scrub(e), advice)
            }
            Err(e) => Probe::failed(call, self.platform, self.scrubber.scrub(e)),
        }
    }
}

fn not_found(e: &SendError) -> bool {
    matches!(e.code.as_str(), "http_404" | "not_found")
}

/// What to do about a custom endpoint's answer.
pub(crate) fn advice(err: &SendError) -> Option<String> {
    if not_found(err) {
        return Some("Nothing answers at this URL: check `url` in this channel's config section (scheme, host, port and path) and run `pushd reload`.".into());
    }
    (err.class == ErrorClass::Auth).then(|| {
        "The receiver refused pushd's signature: `webhook_secret` must equal the receiver's signing secret (whsec_… as Standard Webhooks libraries make it), and both clocks must agree within 5 minutes. Fix it, run `pushd reload`, and test again.".to_string()
    })
}
