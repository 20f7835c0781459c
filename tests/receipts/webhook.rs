use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use pushd::config::{ChannelConfig, Secret};
use pushd::model::{InboundEvent, Millis, Platform, StatusUpdate};
use pushd::receipts::parse_webhook as handle;
use pushd::receipts::{WebhookError, WebhookOutcome, WebhookRequest};

use crate::support::webhooks::*;

const NOW_S: i64 = 1_749_416_400;
const NOW: Millis = NOW_S * 1000;

/// A channel as config.toml would give it, with every webhook secret set.
fn channel(kind: &str, secret: &str) -> ChannelConfig {
    let mut cfg: ChannelConfig =
        toml::from_str(&format!("kind = \"{kind}\"\n")).expect("channel config");
    let s = Some(Secret::new(secret));
    cfg.secrets.app_secret = s.clone();
    cfg.secrets.verify_token = s.clone();
    cfg.secrets.signing_secret = s.clone();
    cfg.secrets.secret_token = s.clone();
    cfg.secrets.webhook_secret = s;
    cfg
}

fn send(
    platform: Platform,
    cfg: &ChannelConfig,
    method: Method,
    query: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Result<WebhookOutcome, WebhookError> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    handle(
        platform,
        cfg,
        &WebhookRequest {
            method: &method,
            headers: &map,
            query,
            body: body.as_bytes(),
            now: NOW,
        },
    )
}

fn events(out: Result<WebhookOutcome, WebhookError>) -> Vec<InboundEvent> {
    match out {
        Ok(WebhookOutcome::Events { events, .. }) => events,
        other => panic!("expected events, got {other:?}"),
    }
}

#[test]
fn every_platform_accepts_its_signed_fixture_and_refuses_it_unsigned() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let wa = whatsapp_status("wamid.X", "read", NOW_S);
    let fb = messenger_read("PSID", NOW - 1000);
    let ig = instagram_seen("IGSID", "mid.X", NOW);
    let tg = telegram_callback(123456789, 42, "resolved:yes");
    let sl = slack_block_actions("U1", "C1", "1718000000.000100", "approve", "req_1");
    let wx = wechat_template_finish("OPENID", "200163836", "success", NOW_S);
    let cu = custom_status("out-1", "delivered", NOW_S);
    type Headers = Vec<(&'static str, String)>;
    let cases: Vec<(Platform, &str, &str, Headers, &str)> = vec![
        (
            Platform::Whatsapp,
            "whatsapp",
            "",
            meta_headers(secret, wa.as_bytes()),
            &wa,
        ),
        (
            Platform::Messenger,
            "messenger",
            "",
            meta_headers(secret, fb.as_bytes()),
            &fb,
        ),
        (
            Platform::Instagram,
            "instagram",
            "",
            meta_headers(secret, ig.as_bytes()),
            &ig,
        ),
        (
            Platform::Telegram,
            "telegram",
            "",
            telegram_headers(secret),
            &tg,
        ),
        (
            Platform::Slack,
            "slack",
            "",
            slack_headers(secret, NOW_S, sl.as_bytes()),
            &sl,
        ),
        (
            Platform::Custom,
            "custom",
            "",
            standard_webhook_headers(secret, "msg_1", NOW_S, cu.as_bytes()),
            &cu,
        ),
        (
            Platform::Webchat,
            "webchat",
            "",
            standard_webhook_headers(secret, "msg_2", NOW_S, cu.as_bytes()),
            &cu,
        ),
    ];
    for (platform, kind, query, headers, body) in cases {
        let cfg = channel(kind, secret);
        let ev = events(send(platform, &cfg, Method::POST, query, &headers, body));
        assert_eq!(ev.len(), 1, "{kind}: {ev:?}");
        let unsigned = send(platform, &cfg, Method::POST, query, &[], body);
        assert!(
            matches!(unsigned, Err(WebhookError::Unauthorized(_))),
            "{kind}: {unsigned:?}"
        );
    }
    let cfg = channel("wechat", secret);
    let ev = events(send(
        Platform::Wechat,
        &cfg,
        Method::POST,
        &wechat_query(secret, NOW_S, "n1"),
        &[],
        &wx,
    ));
    assert_eq!(
        ev,
        vec![InboundEvent::Status {
            provider_message_id: "200163836".into(),
            update: StatusUpdate::Delivered,
            user: Some("OPENID".into()),
            at: NOW,
        }]
    );
    let unsigned = send(Platform::Wechat, &cfg, Method::POST, "", &[], &wx);
    assert!(matches!(unsigned, Err(WebhookError::Unauthorized(_))));
}

#[test]
fn handshakes() {
    let cfg = channel("whatsapp", "verify-me");
    assert_eq!(
        send(
            Platform::Whatsapp,
            &cfg,
            Method::GET,
            &meta_verify_query("verify-me", "42"),
            &[],
            ""
        ),
        Ok(WebhookOutcome::Challenge("42".into()))
    );
    assert!(matches!(
        send(
            Platform::Whatsapp,
            &cfg,
            Method::GET,
            &meta_verify_query("guess", "42"),
            &[],
            ""
        ),
        Err(WebhookError::Forbidden(_))
    ));
    let cfg = channel("wechat", "tok");
    assert_eq!(
        send(
            Platform::Wechat,
            &cfg,
            Method::GET,
            &wechat_echo_query("tok", NOW_S, "n", "echo!"),
            &[],
            ""
        ),
        Ok(WebhookOutcome::Challenge("echo!".into()))
    );
    let cfg = channel("slack", "sig");
    let body = slack_url_verification("3eZbrw1aBm");
    assert_eq!(
        send(
            Platform::Slack,
            &cfg,
            Method::POST,
            "",
            &slack_headers("sig", NOW_S, body.as_bytes()),
            &body
        ),
        Ok(WebhookOutcome::Challenge("3eZbrw1aBm".into()))
    );
}

#[test]
fn a_push_round_trip_of_provider_ids() {
    // The ids a channel adapter would have stored come back in the receipts.
    let secret = "s";
    let tg = channel("telegram", secret);
    let ev = events(send(
        Platform::Telegram,
        &tg,
        Method::POST,
        "",
        &telegram_headers(secret),
        &telegram_callback(555, 77, "BUY"),
    ));
    assert!(
        matches!(&ev[0], InboundEvent::Message { context_id: Some(c), payload: Some(p), user, .. }
        if c == "555:77" && p == "BUY" && user == "555")
    );
    let sl = channel("slack", secret);
    let body = slack_block_actions("U9", "D9", "1718000000.000100", "shop", "SHOP");
    let ev = events(send(
        Platform::Slack,
        &sl,
        Method::POST,
        "",
        &slack_headers(secret, NOW_S, body.as_bytes()),
        &body,
    ));
    assert!(
        matches!(&ev[0], InboundEvent::Message { context_id: Some(c), payload: Some(p), .. }
        if c == "D9:1718000000.000100" && p == "SHOP")
    );
    let wa = channel("whatsapp", secret);
    let body = whatsapp_button_reply(
        "16505551234",
        "wamid.IN",
        "wamid.OUT",
        "SHOP",
        "Shop",
        NOW_S,
    );
    let ev = events(send(
        Platform::Whatsapp,
        &wa,
        Method::POST,
        "",
        &meta_headers(secret, body.as_bytes()),
        &body,
    ));
    assert!(
        matches!(&ev[0], InboundEvent::Message { context_id: Some(c), .. } if c == "wamid.OUT")
    );
}

#[test]
fn simulator_channels_refuse_webhooks() {
    let cfg: ChannelConfig = toml::from_str("kind = \"simulator\"\n").unwrap();
    assert_eq!(
        send(Platform::Simulator, &cfg, Method::POST, "", &[], "{}"),
        Err(WebhookError::BadRequest(
            "simulator channels take no webhooks".into()
        ))
    );
}
