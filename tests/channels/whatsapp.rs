use super::*;
use crate::support::mocks::{Behavior, MockPlatform, creds};
use pushd::model::{ErrorClass, Message, Platform};
use serde_json::json;

#[tokio::test]
async fn text_goes_to_the_phone_number_with_bearer_auth() {
    let mock = MockPlatform::start(Platform::Whatsapp).await;
    let ch = channel(&mock, "");
    let ok = ch
        .send(&to("15550001"), &text("Your order shipped"))
        .await
        .expect("sent");

    let sent = mock.sends();
    assert_eq!(sent.len(), 1);
    let r = &sent[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.path,
        format!("/v21.0/{}/messages", creds::WA_PHONE_NUMBER_ID)
    );
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {}", creds::WA_TOKEN).as_str())
    );
    assert_eq!(
        r.body(),
        &json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "15550001",
            "type": "text",
            "text": { "preview_url": false, "body": "Your order shipped" },
        })
    );
    assert_eq!(ok.provider_message_id, format!("wamid.mock{}", r.seq));
    assert_eq!(ch.default_rate_per_second(), Some(80.0));
}

#[tokio::test]
async fn api_version_is_configurable() {
    let mock = MockPlatform::start(Platform::Whatsapp).await;
    let ch = channel(&mock, "api_version = \"v23.0\"\n");
    ch.send(&to("15550001"), &text("hi")).await.expect("sent");
    assert!(mock.sends()[0].path.starts_with("/v23.0/"));
}

#[tokio::test]
async fn reply_buttons_with_image_header() {
    let mock = MockPlatform::start(Platform::Whatsapp).await;
    let ch = channel(&mock, "");
    let m = Message {
        text: "Did this solve your problem?".into(),
        buttons: vec![button("Yes", "resolved_yes")],
        quick_replies: vec![button("No", "resolved_no")],
        image_url: Some("https://example.com/a.png".into()),
    };
    ch.send(&to("15550002"), &message(m)).await.expect("sent");
    assert_eq!(
        mock.sends()[0].body()["interactive"],
        json!({
            "type": "button",
            "header": { "type": "image", "image": { "link": "https://example.com/a.png" } },
            "body": { "text": "Did this solve your problem?" },
            "action": { "buttons": [
                { "type": "reply", "reply": { "id": "resolved_yes", "title": "Yes" } },
                { "type": "reply", "reply": { "id": "resolved_no", "title": "No" } },
            ] },
        })
    );
}

#[tokio::test]
async fn image_with_caption_and_url_button() {
    let mock = MockPlatform::start(Platform::Whatsapp).await;
    let ch = channel(&mock, "");
    let image = Message {
        text: "New arrivals".into(),
        image_url: Some("https://example.com/b.jpg".into()),
        ..Message::default()
    };
    ch.send(&to("15550003"), &message(image))
        .await
        .expect("sent");
    let cta = Message {
        text: "See the dates".into(),
        buttons: vec![link("See Dates", "https://example.com/dates")],
        ..Message::default()
    };
    ch.send(&to("15550004"), &message(cta)).await.expect("sent");

    let sent = mock.sends();
    assert_eq!(sent[0].body()["type"], "image");
    assert_eq!(
        sent[0].body()["image"],
        json!({ "link": "https://example.com/b.jpg", "caption": "New arrivals" })
    );
    assert_eq!(sent[1].body()["interactive"]["type"], "cta_url");
    assert_eq!(
        sent[1].body()["interactive"]["action"],
        json!({ "name": "cta_url", "parameters": { "display_text": "See Dates", "url": "https://example.com/dates" } })
    );
}

#[tokio::test]
async fn template_with_body_parameters() {
    let mock = MockPlatform::start(Platform::Whatsapp).await;
    let ch = channel(&mock, "");
    ch.send(&to("15550005"), &template()).await.expect("sent");
    assert_eq!(
        mock.sends()[0].body()["template"],
        json!({
            "name": "order_update",
            "language": { "code": "en_US" },
            "components": [{ "type": "body", "parameters": [
                { "type": "text", "text": "Ann" },
                { "type": "text", "text": "#12345" },
            ] }],
        })
    );
}

#[tokio::test]
async fn documented_errors_are_classified() {
    let mock = MockPlatform::start(Platform::Whatsapp).await;
    let ch = channel(&mock, "");
    assert_classes(
        &mock,
        &ch,
        &text("hello"),
        &[
            (
                Behavior::OutsideWindow,
                ErrorClass::OutsideWindow,
                "131047",
                "more than 24 hours",
            ),
            (
                Behavior::InvalidRecipient,
                ErrorClass::InvalidRecipient,
                "131026",
                "Message Undeliverable",
            ),
            (
                Behavior::Block,
                ErrorClass::Blocked,
                "131050",
                "stop receiving marketing messages",
            ),
            (
                Behavior::rate_limit(3),
                ErrorClass::RateLimited,
                "130429",
                "Rate limit hit",
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
async fn wrong_token_is_auth() {
    let mock = MockPlatform::start(Platform::Whatsapp).await;
    let toml = mock
        .channel_toml("ch")
        .replace(creds::WA_TOKEN, "EAAGwrongTokenValue");
    let ch = build(&toml, "ch").expect("builds");
    let err = ch
        .send(&to("15550006"), &text("hi"))
        .await
        .expect_err("bad token");
    assert_eq!(err.class, ErrorClass::Auth);
    assert_eq!(err.code, "190");
    assert!(!err.message.contains("EAAGwrongTokenValue"));
}

#[tokio::test]
async fn unreadable_replies_and_timeouts_are_transient() {
    assert_transport_failures(Platform::Whatsapp, &text("hello")).await;
}

#[tokio::test]
async fn token_never_in_errors_or_logs() {
    assert_secrets_stay_secret(Platform::Whatsapp, &text("hello")).await;
}

#[tokio::test]
async fn retries_reach_the_recipient_once_it_recovers() {
    let mock = MockPlatform::start(Platform::Whatsapp).await;
    let ch = channel(&mock, "");
    mock.script("15550007", Behavior::fail_first(2, Behavior::ServerError));
    let outcomes = [
        ch.send(&to("15550007"), &text("hi"))
            .await
            .map_err(|e| e.class),
        ch.send(&to("15550007"), &text("hi"))
            .await
            .map_err(|e| e.class),
    ];
    assert_eq!(outcomes[0], Err(ErrorClass::Transient));
    assert_eq!(outcomes[1], Err(ErrorClass::Transient));
    ch.send(&to("15550007"), &text("hi"))
        .await
        .expect("third attempt succeeds");
    assert_eq!(mock.requests_for("15550007").len(), 3);
}

#[tokio::test]
async fn validation_names_the_limit() {
    let mock = MockPlatform::start(Platform::Whatsapp).await;
    let ch = channel(&mock, "");
    let four = Message {
        text: "pick".into(),
        buttons: (0..4)
            .map(|i| button(&format!("b{i}"), &format!("p{i}")))
            .collect(),
        ..Message::default()
    };
    let e = ch.validate(&message(four.clone())).unwrap_err().to_string();
    assert!(
        e.contains("WhatsApp") && e.contains("4 reply buttons") && e.contains("limit is 3"),
        "{e}"
    );
    let long_title = Message {
        text: "pick".into(),
        buttons: vec![button("a title longer than twenty", "p")],
        ..Message::default()
    };
    let e = ch.validate(&message(long_title)).unwrap_err().to_string();
    assert!(
        e.contains("button title") && e.contains("limit is 20"),
        "{e}"
    );
    let long_body = Message {
        text: "x".repeat(1025),
        buttons: vec![button("ok", "p")],
        ..Message::default()
    };
    assert!(
        ch.validate(&message(long_body))
            .unwrap_err()
            .to_string()
            .contains("1024")
    );
    assert!(
        ch.validate(&text(&"x".repeat(4097)))
            .unwrap_err()
            .to_string()
            .contains("4096")
    );
    assert!(ch.validate(&text(&"x".repeat(4096))).is_ok());
    assert!(ch.validate(&template()).is_ok());

    // An invalid message never reaches the platform.
    let err = ch
        .send(&to("15550008"), &message(four))
        .await
        .expect_err("invalid");
    assert_eq!(err.class, ErrorClass::Rejected);
    assert_eq!(err.code, "invalid_message");
    assert!(mock.requests().is_empty());
}
