//! The signed webhook channel (kinds `custom` and `webchat`).

use super::*;
use crate::support::mocks::{Behavior, MockPlatform};
use pushd::model::{ErrorClass, Message, Outbound, Platform};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn message_send_is_signed_and_shaped_as_documented() {
    let mock = MockPlatform::start(Platform::Custom).await;
    let ch = channel(&mock, "");
    let m = Message {
        text: "Hi Ann".into(),
        buttons: vec![button("Shop", "SHOP"), link("Site", "https://example.com")],
        quick_replies: vec![button("Stop", "STOP")],
        image_url: None,
    };
    // The mock verifies the signature and the timestamp window itself.
    let ok = ch.send(&to("user-1"), &message(m)).await.expect("sent");
    let r = &mock.sends()[0];
    assert_eq!(r.path, "/hook");
    assert_eq!(r.header("webhook-id"), Some("msg_4242"));
    assert!(
        r.header("webhook-signature")
            .is_some_and(|s| s.starts_with("v1,"))
    );
    assert_eq!(
        r.body(),
        &json!({
            "type": "message.send",
            "id": "msg_4242",
            "to": "user-1",
            "message": {
                "text": "Hi Ann",
                "buttons": [ { "title": "Shop", "payload": "SHOP" }, { "title": "Site", "url": "https://example.com" } ],
                "quick_replies": [ { "title": "Stop", "payload": "STOP" } ],
                "image_url": null,
            },
        })
    );
    assert_eq!(ok.provider_message_id, format!("cm_{}", r.seq));
    assert_eq!(ch.default_rate_per_second(), None);
}

#[tokio::test]
async fn template_send_and_webchat_kind() {
    let mock = MockPlatform::start(Platform::Webchat).await;
    let ch = channel(&mock, "");
    assert_eq!(ch.platform(), Platform::Webchat);
    ch.send(&to("visitor-9"), &template()).await.expect("sent");
    assert_eq!(
        mock.sends()[0].body(),
        &json!({
            "type": "template.send",
            "id": "msg_4242",
            "to": "visitor-9",
            "template": { "name": "order_update", "language": "en_US", "params": ["Ann", "#12345"] },
        })
    );
}

#[tokio::test]
async fn webhook_id_is_stable_across_retries() {
    let mock = MockPlatform::start(Platform::Custom).await;
    let ch = channel(&mock, "");
    mock.script("user-2", Behavior::fail_first(1, Behavior::ServerError));
    let first = ch
        .send(&to("user-2"), &text("hi"))
        .await
        .expect_err("5xx first");
    assert_eq!(first.class, ErrorClass::Transient);
    ch.send(&to("user-2"), &text("hi"))
        .await
        .expect("retry succeeds");
    let ids: Vec<_> = mock
        .requests_for("user-2")
        .iter()
        .map(|r| r.header("webhook-id").map(str::to_string))
        .collect();
    assert_eq!(
        ids,
        vec![Some("msg_4242".to_string()), Some("msg_4242".to_string())]
    );
}

#[tokio::test]
async fn wrong_secret_fails_the_signature_check() {
    let mock = MockPlatform::start(Platform::Custom).await;
    let toml = mock.channel_toml("ch").replace(
        crate::support::mocks::creds::WEBHOOK_SECRET,
        "whsec_d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXkh",
    );
    let ch = build(&toml, "ch").expect("builds");
    let err = ch
        .send(&to("user-3"), &text("hi"))
        .await
        .expect_err("bad signature");
    assert_eq!(err.class, ErrorClass::Auth);
    assert_eq!(err.code, "auth");
    assert!(err.message.contains("invalid webhook signature"), "{err:?}");
}

#[tokio::test]
async fn error_codes_from_the_body_and_http_status() {
    let mock = MockPlatform::start(Platform::Custom).await;
    let ch = channel(&mock, "");
    assert_classes(
        &mock,
        &ch,
        &text("hello"),
        &[
            (
                Behavior::Block,
                ErrorClass::Blocked,
                "blocked",
                "blocked this bot",
            ),
            (
                Behavior::InvalidRecipient,
                ErrorClass::InvalidRecipient,
                "invalid_recipient",
                "no such user",
            ),
            (
                Behavior::OutsideWindow,
                ErrorClass::OutsideWindow,
                "outside_window",
                "24 hours",
            ),
            (
                Behavior::rate_limit(7),
                ErrorClass::RateLimited,
                "rate_limited",
                "slow down",
            ),
            (
                Behavior::ServerError,
                ErrorClass::Transient,
                "unavailable",
                "HTTP 503",
            ),
            (Behavior::BadToken, ErrorClass::Auth, "auth", "HTTP 401"),
        ],
    )
    .await;
    let err = send_err(&ch, &mock, "user-rl", Behavior::rate_limit(7), &text("x")).await;
    assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn unreadable_replies_and_timeouts_are_transient() {
    assert_transport_failures(Platform::Custom, &text("hello")).await;
}

#[tokio::test]
async fn secret_never_in_errors_or_logs() {
    assert_secrets_stay_secret(Platform::Custom, &text("hello")).await;
}

#[tokio::test]
async fn unsigned_when_insecure_without_secret() {
    let mock = MockPlatform::start(Platform::Custom).await;
    let toml = format!(
        "[channels.ch]\nkind = \"custom\"\nurl = \"{}\"\ninsecure_webhooks = true\n",
        mock.url()
    );
    let ch = build(&toml, "ch").expect("builds");
    let err = ch
        .send(&to("user-4"), &text("hi"))
        .await
        .expect_err("the mock wants a signature");
    assert_eq!(err.class, ErrorClass::Auth);
    assert!(mock.sends()[0].header("webhook-signature").is_none());
}

#[tokio::test]
async fn empty_message_is_refused_before_sending() {
    let mock = MockPlatform::start(Platform::Custom).await;
    let ch = channel(&mock, "");
    let empty = Outbound::Message {
        message: Message::default(),
        tag: None,
    };
    assert!(
        ch.validate(&empty)
            .unwrap_err()
            .to_string()
            .contains("empty")
    );
    assert!(ch.send(&to("u"), &empty).await.is_err());
    assert!(mock.requests().is_empty());
}
