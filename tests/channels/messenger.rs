//! Messenger and Instagram (the same Send API, different limits).

use super::*;
use crate::support::mocks::{Behavior, MockPlatform, creds};
use pushd::model::{ErrorClass, Message, Outbound, Platform};
use serde_json::json;

#[tokio::test]
async fn text_with_page_token_and_response_type() {
    let mock = MockPlatform::start(Platform::Messenger).await;
    let ch = channel(&mock, "");
    let ok = ch
        .send(&to("PSID1"), &text("hello, world"))
        .await
        .expect("sent");
    let r = &mock.sends()[0];
    assert_eq!(r.path, format!("/v21.0/{}/messages", creds::PAGE_ID));
    assert_eq!(
        r.query.get("access_token").map(String::as_str),
        Some(creds::PAGE_TOKEN)
    );
    assert_eq!(
        r.body(),
        &json!({ "recipient": { "id": "PSID1" }, "messaging_type": "RESPONSE", "message": { "text": "hello, world" } })
    );
    assert_eq!(ok.provider_message_id, format!("m_mock{}", r.seq));
    assert_eq!(ch.default_rate_per_second(), Some(300.0));
}

#[tokio::test]
async fn page_id_defaults_to_me() {
    let mock = MockPlatform::start(Platform::Messenger).await;
    let toml = mock
        .channel_toml("ch")
        .replace(&format!("page_id = \"{}\"\n", creds::PAGE_ID), "");
    let ch = build(&toml, "ch").expect("builds");
    ch.send(&to("PSID1"), &text("hi")).await.expect("sent");
    assert_eq!(mock.sends()[0].path, "/v21.0/me/messages");
}

#[tokio::test]
async fn tag_switches_to_message_tag() {
    let mock = MockPlatform::start(Platform::Messenger).await;
    let ch = channel(&mock, "");
    let tagged = Outbound::Message {
        message: Message {
            text: "Your booking changed".into(),
            ..Message::default()
        },
        tag: Some("CONFIRMED_EVENT_UPDATE".into()),
    };
    ch.send(&to("PSID2"), &tagged).await.expect("sent");
    let b = mock.sends()[0].body().clone();
    assert_eq!(b["messaging_type"], "MESSAGE_TAG");
    assert_eq!(b["tag"], "CONFIRMED_EVENT_UPDATE");
}

#[tokio::test]
async fn postback_buttons_and_quick_replies() {
    let mock = MockPlatform::start(Platform::Messenger).await;
    let ch = channel(&mock, "");
    let m = Message {
        text: "What next?".into(),
        buttons: vec![button("Shop", "SHOP"), link("Site", "https://example.com")],
        quick_replies: vec![button("Red", "COLOR_RED")],
        image_url: None,
    };
    ch.send(&to("PSID3"), &message(m)).await.expect("sent");
    assert_eq!(
        mock.sends()[0].body()["message"],
        json!({
            "attachment": { "type": "template", "payload": {
                "template_type": "button",
                "text": "What next?",
                "buttons": [
                    { "type": "postback", "title": "Shop", "payload": "SHOP" },
                    { "type": "web_url", "url": "https://example.com", "title": "Site" },
                ],
            } },
            "quick_replies": [ { "content_type": "text", "title": "Red", "payload": "COLOR_RED" } ],
        })
    );
}

#[tokio::test]
async fn images_as_attachment_or_generic_template() {
    let mock = MockPlatform::start(Platform::Messenger).await;
    let ch = channel(&mock, "");
    let bare = Message {
        image_url: Some("https://example.com/a.png".into()),
        ..Message::default()
    };
    ch.send(&to("PSID4"), &message(bare)).await.expect("sent");
    let with_text = Message {
        text: "New hats".into(),
        image_url: Some("https://example.com/h.png".into()),
        buttons: vec![button("Buy", "BUY")],
        ..Message::default()
    };
    ch.send(&to("PSID5"), &message(with_text))
        .await
        .expect("sent");
    let sent = mock.sends();
    assert_eq!(
        sent[0].body()["message"],
        json!({ "attachment": { "type": "image", "payload": { "url": "https://example.com/a.png", "is_reusable": true } } })
    );
    assert_eq!(
        sent[1].body()["message"]["attachment"]["payload"],
        json!({ "template_type": "generic", "elements": [{
            "title": "New hats", "image_url": "https://example.com/h.png",
            "buttons": [{ "type": "postback", "title": "Buy", "payload": "BUY" }],
        }] })
    );
}

#[tokio::test]
async fn documented_errors_are_classified() {
    let mock = MockPlatform::start(Platform::Messenger).await;
    let ch = channel(&mock, "");
    assert_classes(
        &mock,
        &ch,
        &text("hello"),
        &[
            (
                Behavior::Block,
                ErrorClass::Blocked,
                "551/1545041",
                "isn't available",
            ),
            (
                Behavior::OutsideWindow,
                ErrorClass::OutsideWindow,
                "10/2018278",
                "outside of allowed window",
            ),
            (
                Behavior::InvalidRecipient,
                ErrorClass::InvalidRecipient,
                "100/2018001",
                "No matching user",
            ),
            (
                Behavior::rate_limit(1),
                ErrorClass::RateLimited,
                "613",
                "exceeded the rate limit",
            ),
            (
                Behavior::ServerError,
                ErrorClass::Transient,
                "2",
                "unexpected error",
            ),
            (
                Behavior::BadToken,
                ErrorClass::Auth,
                "190",
                "Invalid OAuth access token",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn unreadable_replies_and_timeouts_are_transient() {
    assert_transport_failures(Platform::Messenger, &text("hello")).await;
}

#[tokio::test]
async fn token_never_in_errors_or_logs() {
    assert_secrets_stay_secret(Platform::Messenger, &text("hello")).await;
}

#[tokio::test]
async fn validation_names_the_limit() {
    let mock = MockPlatform::start(Platform::Messenger).await;
    let ch = channel(&mock, "");
    let qr = Message {
        text: "pick".into(),
        quick_replies: (0..14).map(|i| button(&format!("q{i}"), "P")).collect(),
        ..Message::default()
    };
    let e = ch.validate(&message(qr)).unwrap_err().to_string();
    assert!(
        e.contains("14 quick replies") && e.contains("limit is 13"),
        "{e}"
    );
    let long = Message {
        text: "pick".into(),
        quick_replies: vec![button("twenty-one characters", "P")],
        ..Message::default()
    };
    assert!(
        ch.validate(&message(long))
            .unwrap_err()
            .to_string()
            .contains("limit is 20")
    );
    let buttons = Message {
        text: "pick".into(),
        buttons: (0..4).map(|i| button(&format!("b{i}"), "P")).collect(),
        ..Message::default()
    };
    assert!(
        ch.validate(&message(buttons))
            .unwrap_err()
            .to_string()
            .contains("limit is 3")
    );
    assert!(
        ch.validate(&text(&"x".repeat(2001)))
            .unwrap_err()
            .to_string()
            .contains("2000")
    );
    assert!(ch.validate(&text(&"x".repeat(2000))).is_ok());
    let e = ch.validate(&template()).unwrap_err().to_string();
    assert!(
        e.contains("no pre-approved message templates") && e.contains("tag"),
        "{e}"
    );
    let bad_tag = Outbound::Message {
        message: Message {
            text: "x".into(),
            ..Message::default()
        },
        tag: Some("PROMO".into()),
    };
    assert!(
        ch.validate(&bad_tag)
            .unwrap_err()
            .to_string()
            .contains("ACCOUNT_UPDATE")
    );
}

#[tokio::test]
async fn instagram_uses_the_send_api_with_its_limits() {
    let mock = MockPlatform::start(Platform::Instagram).await;
    let ch = channel(&mock, "");
    assert_eq!(ch.platform(), Platform::Instagram);
    let ok = ch.send(&to("IGSID1"), &text("hi")).await.expect("sent");
    let r = &mock.sends()[0];
    assert_eq!(
        r.body(),
        &json!({ "recipient": { "id": "IGSID1" }, "message": { "text": "hi" } })
    );
    assert_eq!(ok.provider_message_id, format!("m_mock{}", r.seq));

    let e = ch
        .validate(&text(&"x".repeat(1000)))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("Instagram:") && e.contains("999"), "{e}");
    assert!(ch.validate(&text(&"x".repeat(999))).is_ok());
    let tagged = Outbound::Message {
        message: Message {
            text: "x".into(),
            ..Message::default()
        },
        tag: Some("ACCOUNT_UPDATE".into()),
    };
    assert!(
        ch.validate(&tagged)
            .unwrap_err()
            .to_string()
            .contains("HUMAN_AGENT")
    );

    let err = send_err(&ch, &mock, "IGSID2", Behavior::OutsideWindow, &text("hi")).await;
    assert_eq!(err.class, ErrorClass::OutsideWindow);
}
