use super::*;
use crate::support::mocks::{Behavior, MockPlatform, creds};
use pushd::model::{ErrorClass, Message, Platform};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn send_message_with_token_in_path() {
    let mock = MockPlatform::start(Platform::Telegram).await;
    let ch = channel(&mock, "");
    let ok = ch
        .send(&to("123456789"), &text("Your order shipped"))
        .await
        .expect("sent");
    let r = &mock.sends()[0];
    assert_eq!(r.path, format!("/bot{}/sendMessage", creds::TG_TOKEN));
    assert_eq!(
        r.body(),
        &json!({ "chat_id": 123456789, "text": "Your order shipped" })
    );
    assert_eq!(ok.provider_message_id, format!("123456789:{}", r.seq));
    assert_eq!(ch.default_rate_per_second(), Some(30.0));
}

#[tokio::test]
async fn inline_keyboard_with_callbacks_and_links() {
    let mock = MockPlatform::start(Platform::Telegram).await;
    let ch = channel(&mock, "");
    let m = Message {
        text: "Did this solve your problem?".into(),
        buttons: vec![
            button("Yes", "resolved:yes"),
            link("Help", "https://example.com/help"),
        ],
        quick_replies: vec![button("Later", "later"), button("Stop", "stop")],
        image_url: None,
    };
    ch.send(&to("42"), &message(m)).await.expect("sent");
    assert_eq!(
        mock.sends()[0].body()["reply_markup"],
        json!({ "inline_keyboard": [
            [ { "text": "Yes", "callback_data": "resolved:yes" } ],
            [ { "text": "Help", "url": "https://example.com/help" } ],
            [ { "text": "Later", "callback_data": "later" }, { "text": "Stop", "callback_data": "stop" } ],
        ] })
    );
}

#[tokio::test]
async fn image_goes_out_as_send_photo_with_caption() {
    let mock = MockPlatform::start(Platform::Telegram).await;
    let ch = channel(&mock, "");
    let m = Message {
        text: "New arrivals".into(),
        image_url: Some("https://example.com/p.jpg".into()),
        ..Message::default()
    };
    let ok = ch.send(&to("@mychannel"), &message(m)).await.expect("sent");
    let r = &mock.sends()[0];
    assert_eq!(r.path, format!("/bot{}/sendPhoto", creds::TG_TOKEN));
    assert_eq!(
        r.body(),
        &json!({ "chat_id": "@mychannel", "photo": "https://example.com/p.jpg", "caption": "New arrivals" })
    );
    assert_eq!(ok.provider_message_id, format!("@mychannel:{}", r.seq));
}

#[tokio::test]
async fn documented_errors_are_classified() {
    let mock = MockPlatform::start(Platform::Telegram).await;
    let ch = channel(&mock, "");
    assert_classes(
        &mock,
        &ch,
        &text("hello"),
        &[
            (
                Behavior::Block,
                ErrorClass::Blocked,
                "403",
                "bot was blocked by the user",
            ),
            (
                Behavior::OutsideWindow,
                ErrorClass::OutsideWindow,
                "403",
                "can't initiate conversation",
            ),
            (
                Behavior::InvalidRecipient,
                ErrorClass::InvalidRecipient,
                "400",
                "chat not found",
            ),
            (
                Behavior::rate_limit(9),
                ErrorClass::RateLimited,
                "429",
                "retry after 9",
            ),
            (
                Behavior::ServerError,
                ErrorClass::Transient,
                "500",
                "Internal Server Error",
            ),
            (Behavior::BadToken, ErrorClass::Auth, "401", "Unauthorized"),
        ],
    )
    .await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let mock = MockPlatform::start(Platform::Telegram).await;
    let ch = channel(&mock, "");
    let err = send_err(&ch, &mock, "55", Behavior::rate_limit(9), &text("hi")).await;
    assert_eq!(err.retry_after, Some(Duration::from_secs(9)));
}

#[tokio::test]
async fn unreadable_replies_and_timeouts_are_transient() {
    assert_transport_failures(Platform::Telegram, &text("hello")).await;
}

#[tokio::test]
async fn token_never_in_errors_or_logs() {
    assert_secrets_stay_secret(Platform::Telegram, &text("hello")).await;
}

#[tokio::test]
async fn validation_names_the_limit() {
    let mock = MockPlatform::start(Platform::Telegram).await;
    let ch = channel(&mock, "");
    let m = Message {
        text: "pick".into(),
        buttons: vec![button("ok", &"d".repeat(65))],
        ..Message::default()
    };
    let e = ch.validate(&message(m)).unwrap_err().to_string();
    assert!(
        e.contains("callback_data") && e.contains("65 bytes") && e.contains("64"),
        "{e}"
    );
    assert!(
        ch.validate(&text(&"x".repeat(4097)))
            .unwrap_err()
            .to_string()
            .contains("4096")
    );
    let caption = Message {
        text: "x".repeat(1025),
        image_url: Some("https://example.com/p.jpg".into()),
        ..Message::default()
    };
    assert!(
        ch.validate(&message(caption))
            .unwrap_err()
            .to_string()
            .contains("1024")
    );
    let e = ch.validate(&template()).unwrap_err().to_string();
    assert!(
        e.contains("Telegram has no pre-approved message templates"),
        "{e}"
    );
    let err = ch
        .send(&to("1"), &template())
        .await
        .expect_err("no templates");
    assert_eq!(err.class, ErrorClass::Rejected);
    assert!(mock.requests().is_empty());
}
