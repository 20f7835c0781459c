//! What WhatsApp, Messenger and Instagram share: Meta's `GET` verification
//! handshake and the `X-Hub-Signature-256` check on `POST`s.

use axum::http::Method;

use super::signature::{self, META_HEADER};
use super::webhook::{header, query_get, query_pairs, secret};
use super::{WebhookError, WebhookOutcome, WebhookRequest};
use crate::config::ChannelConfig;
use crate::model::Millis;

/// What a Meta webhook request turned out to be.
pub(crate) enum MetaRequest {
    /// A verified `GET` handshake: answer with this.
    Handshake(WebhookOutcome),
    /// A `POST` whose signature checked out (or may be skipped): parse it.
    Payload,
}

/// Answers the handshake or checks the signature; the caller parses the body
/// only on [`MetaRequest::Payload`].
pub(crate) fn verify(
    cfg: &ChannelConfig,
    req: &WebhookRequest<'_>,
) -> Result<MetaRequest, WebhookError> {
    if *req.method == Method::GET {
        return handshake(cfg, req).map(MetaRequest::Handshake);
    }
    if *req.method != Method::POST {
        return Err(WebhookError::MethodNotAllowed);
    }
    if let Some(app_secret) = secret(cfg, cfg.secrets.app_secret.as_ref(), "app_secret")? {
        signature::verify_meta(app_secret.as_bytes(), header(req, META_HEADER)?, req.body)?;
    }
    Ok(MetaRequest::Payload)
}

/// `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`: echo the
/// challenge when the token is ours.
fn handshake(
    cfg: &ChannelConfig,
    req: &WebhookRequest<'_>,
) -> Result<WebhookOutcome, WebhookError> {
    let q = query_pairs(req)?;
    let mode = query_get(&q, "hub.mode");
    let challenge = query_get(&q, "hub.challenge");
    let (Some(mode), Some(challenge)) = (mode, challenge) else {
        return Err(WebhookError::BadRequest(
            "a GET here must be Meta's verification handshake: hub.mode and hub.challenge are required".into(),
        ));
    };
    if mode != "subscribe" {
        return Err(WebhookError::BadRequest(format!(
            "hub.mode is {mode:?}; only \"subscribe\" is a verification handshake"
        )));
    }
    let presented = query_get(&q, "hub.verify_token").unwrap_or("");
    match cfg.secrets.verify_token.as_ref() {
        Some(token) if signature::secret_eq(presented, token.expose()) => {}
        Some(_) => {
            return Err(WebhookError::Forbidden(
                "hub.verify_token does not match the channel's verify_token (the Verify Token entered in the Meta app's webhook settings)".into(),
            ));
        }
        None if cfg.insecure_webhooks => {}
        None => {
            return Err(WebhookError::Forbidden(
                "this channel has no `verify_token` configured, so Meta's handshake cannot be answered; set `verify_token` (or `verify_token_env`) to the Verify Token entered in the Meta app".into(),
            ));
        }
    }
    Ok(WebhookOutcome::Challenge(challenge.to_string()))
}

/// Meta timestamps are ms since the epoch, but some documented examples
/// (messaging_postbacks) show seconds; anything below year 5138 in seconds is
/// taken as seconds.
pub(crate) fn meta_ms(n: i64) -> Millis {
    if n.unsigned_abs() < 100_000_000_000 {
        n.saturating_mul(1000)
    } else {
        n
    }
}

#[cfg(test)]
mod tests {
    use super::super::webhook::fixtures::*;
    use super::super::webhook::testing::*;
    use super::*;
    use crate::model::Platform;

    const META: [Platform; 3] = [Platform::Whatsapp, Platform::Messenger, Platform::Instagram];

    #[test]
    fn handshake_echoes_challenge_for_the_right_token() {
        for kind in META {
            let cfg = config_with(kind, "my-verify-token");
            let out = run(
                kind,
                &cfg,
                &Req::get(meta_verify_query("my-verify-token", "1158201444")),
            );
            assert_eq!(
                out,
                Ok(WebhookOutcome::Challenge("1158201444".into())),
                "{kind}"
            );
        }
    }

    #[test]
    fn handshake_with_wrong_or_missing_token_is_403() {
        for kind in META {
            let cfg = config_with(kind, "my-verify-token");
            for q in [
                meta_verify_query("not-it", "1158201444"),
                "hub.mode=subscribe&hub.challenge=1158201444".to_string(),
            ] {
                let out = run(kind, &cfg, &Req::get(q));
                assert!(
                    matches!(out, Err(WebhookError::Forbidden(_))),
                    "{kind}: {out:?}"
                );
            }
            // No verify_token configured, not insecure: refuse rather than echo.
            let mut strict = cfg.clone();
            strict.secrets.verify_token = None;
            let out = run(kind, &strict, &Req::get(meta_verify_query("x", "1")));
            assert!(
                matches!(out, Err(WebhookError::Forbidden(_))),
                "{kind}: {out:?}"
            );
            // No verify_token, insecure: accepted.
            let mut lax = strict.clone();
            lax.insecure_webhooks = true;
            let out = run(kind, &lax, &Req::get(meta_verify_query("x", "1")));
            assert_eq!(out, Ok(WebhookOutcome::Challenge("1".into())));
        }
    }

    #[test]
    fn handshake_needs_mode_and_challenge() {
        let cfg = config_with(Platform::Whatsapp, "t");
        for q in [
            "",
            "hub.verify_token=t&hub.challenge=1",
            "hub.mode=subscribe&hub.verify_token=t",
            "hub.mode=unsubscribe&hub.verify_token=t&hub.challenge=1",
        ] {
            let out = run(Platform::Whatsapp, &cfg, &Req::get(q));
            assert!(is_bad_request(&out), "{q}: {out:?}");
        }
    }

    #[test]
    fn other_methods_are_405() {
        let cfg = config_with(Platform::Messenger, "t");
        for m in [Method::PUT, Method::DELETE, Method::PATCH] {
            let out = run(Platform::Messenger, &cfg, &Req::post("{}").method(m));
            assert_eq!(out, Err(WebhookError::MethodNotAllowed));
        }
    }

    #[test]
    fn post_signature_valid_invalid_missing() {
        for (kind, body) in [
            (
                Platform::Whatsapp,
                whatsapp_status("wamid.A", "read", 1749416400),
            ),
            (
                Platform::Messenger,
                messenger_read("1254477777772919", 1458668856253),
            ),
            (
                Platform::Instagram,
                instagram_seen("IGSID", "mid.A", 1569262486134),
            ),
        ] {
            let cfg = config_with(kind, "app-secret");
            let with = |sig: &str| Req::post(body.clone()).header("X-Hub-Signature-256", sig);
            let ok = run(kind, &cfg, &with(&sign_meta("app-secret", body.as_bytes())));
            assert_eq!(events_of(ok).len(), 1, "{kind}");
            let wrong = run(kind, &cfg, &with(&sign_meta("other", body.as_bytes())));
            assert!(
                matches!(wrong, Err(WebhookError::Unauthorized(_))),
                "{kind}"
            );
            let missing = run(kind, &cfg, &Req::post(body.clone()));
            assert!(
                matches!(missing, Err(WebhookError::Unauthorized(_))),
                "{kind}"
            );
            let malformed = run(kind, &cfg, &with("sha1=0123"));
            assert!(
                matches!(malformed, Err(WebhookError::Unauthorized(_))),
                "{kind}"
            );
        }
    }

    #[test]
    fn insecure_skips_only_when_the_secret_is_absent() {
        let body = messenger_read("1254477777772919", 1458668856253);
        let cfg = config(Platform::Messenger);
        assert!(cfg.insecure_webhooks && cfg.secrets.app_secret.is_none());
        assert_eq!(
            events_of(run(Platform::Messenger, &cfg, &Req::post(body.clone()))).len(),
            1
        );
        let mut with_secret = config_with(Platform::Messenger, "app-secret");
        with_secret.insecure_webhooks = true;
        let out = run(Platform::Messenger, &with_secret, &Req::post(body));
        assert!(matches!(out, Err(WebhookError::Unauthorized(_))), "{out:?}");
    }

    #[test]
    fn meta_ms_takes_seconds_or_ms() {
        assert_eq!(meta_ms(1527459824), 1_527_459_824_000);
        assert_eq!(meta_ms(1458668856253), 1_458_668_856_253);
        assert_eq!(meta_ms(i64::MIN), i64::MIN);
    }
}
