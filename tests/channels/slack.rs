use super::*;
use crate::support::mocks::{Behavior, MockPlatform, creds};
use pushd::model::{ErrorClass, Message, Platform};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn post_message_with_bearer_token() {
    let mock = MockPlatform::start(Platform::Slack).await;
    let ch = channel(&mock, "");
    let ok = ch
        .send(&to("C123ABC456"), &text("Your deploy finished."))
        .await
        .expect("sent");
    let r = &mock.sends()[0];
    assert_eq!(r.path, "/chat.postMessage");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {}", creds::SLACK_TOKEN).as_str())
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        r.body(),
        &json!({ "channel": "C123ABC456", "text": "Your deploy finished." })
    );
    assert_eq!(
        ok.provider_message_id,
        format!("C123ABC456:1718000000.{:06}", r.seq)
    );
    assert_eq!(ch.default_rate_per_second(), Some(1.0));
}

#[tokio::test]
async fn dm_to_a_user_id_uses_the_returned_channel() {
    let mock = MockPlatform::start(Platform::Slack).await;
    let ch = channel(&mock, "");
    let ok = ch
        .send(&to("U2147483697"), &text("hi"))
        .await
        .expect("sent");
    assert!(ok.provider_message_id.starts_with("D2147483697:"), "{ok:?}");
}

#[tokio::test]
async fn blocks_with_buttons_and_image_keep_text_fallback() {
    let mock = MockPlatform::start(Platform::Slack).await;
    let ch = channel(&mock, "");
    let m = Message {
        text: "*Approve request?*".into(),
        buttons: vec![
            button("Approve", "req_123"),
            link("Open", "https://example.com/r/123"),
        ],
        quick_replies: vec![button("Later", "later")],
        image_url: Some("https://example.com/chart.png".into()),
    };
    ch.send(&to("C1"), &message(m)).await.expect("sent");
    assert_eq!(
        mock.sends()[0].body(),
        &json!({
            "channel": "C1",
            "text": "*Approve request?*",
            "blocks": [
                { "type": "section", "text": { "type": "mrkdwn", "text": "*Approve request?*" } },
                { "type": "image", "image_url": "https://example.com/chart.png", "alt_text": "image" },
                { "type": "actions", "block_id": "pushd_actions", "elements": [
                    { "type": "button", "action_id": "pushd_0", "text": { "type": "plain_text", "text": "Approve" }, "value": "req_123" },
                    { "type": "button", "action_id": "pushd_1", "text": { "type": "plain_text", "text": "Open" }, "value": "Open", "url": "https://example.com/r/123" },
                    { "type": "button", "action_id": "pushd_2", "text": { "type": "plain_text", "text": "Later" }, "value": "later" },
                ] },
            ],
        })
    );
}

#[tokio::test]
async fn documented_errors_are_classified() {
    let mock = MockPlatform::start(Platform::Slack).await;
    let ch = channel(&mock, "");
    assert_classes(
        &mock,
        &ch,
        &text("hello"),
        &[
            (
                Behavior::Block,
                ErrorClass::Blocked,
                "is_archived",
                "archived",
            ),
            (
                Behavior::InvalidRecipient,
                ErrorClass::InvalidRecipient,
                "channel_not_found",
                "invalid",
            ),
            (
                Behavior::rate_limit(30),
                ErrorClass::RateLimited,
                "ratelimited",
                "429",
            ),
            (
                Behavior::ServerError,
                ErrorClass::Transient,
                "service_unavailable",
                "service_unavailable",
            ),
            (
                Behavior::BadToken,
                ErrorClass::Auth,
                "invalid_auth",
                "authentication",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn http_429_retry_after_is_honoured() {
    let mock = MockPlatform::start(Platform::Slack).await;
    let ch = channel(&mock, "");
    let err = send_err(&ch, &mock, "C9", Behavior::rate_limit(30), &text("hi")).await;
    assert_eq!(err.retry_after, Some(Duration::from_secs(30)));
}

#[tokio::test]
async fn unreadable_replies_and_timeouts_are_transient() {
    assert_transport_failures(Platform::Slack, &text("hello")).await;
}

#[tokio::test]
async fn token_never_in_errors_or_logs() {
    assert_secrets_stay_secret(Platform::Slack, &text("hello")).await;
}

#[tokio::test]
async fn validation_names_the_limit() {
    let mock = MockPlatform::start(Platform::Slack).await;
    let ch = channel(&mock, "");
    let many = Message {
        text: "pick".into(),
        buttons: (0..20).map(|i| button(&format!("b{i}"), "v")).collect(),
        quick_replies: (0..6).map(|i| button(&format!("q{i}"), "v")).collect(),
        ..Message::default()
    };
    let e = ch.validate(&message(many)).unwrap_err().to_string();
    assert!(e.contains("26 buttons") && e.contains("limit is 25"), "{e}");
    let long = Message {
        text: "pick".into(),
        buttons: vec![button(&"b".repeat(76), "v")],
        ..Message::default()
    };
    assert!(
        ch.validate(&message(long))
            .unwrap_err()
            .to_string()
            .contains("limit is 75")
    );
    assert!(
        ch.validate(&template())
            .unwrap_err()
            .to_string()
            .contains("Slack has no pre-approved")
    );
}
