use super::*;
use crate::support::mocks::{Behavior, MockOptions, MockPlatform, creds};
use pushd::model::{ErrorClass, Message, Platform};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn fetches_a_token_then_sends_text() {
    let mock = MockPlatform::start(Platform::Wechat).await;
    let ch = channel(&mock, "");
    let ok = ch.send(&to("oOPENID1"), &text("你好")).await.expect("sent");

    let all = mock.requests();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].method, "GET");
    assert_eq!(all[0].path, "/cgi-bin/token");
    assert_eq!(
        all[0].query.get("grant_type").map(String::as_str),
        Some("client_credential")
    );
    assert_eq!(
        all[0].query.get("appid").map(String::as_str),
        Some(creds::WX_APP_ID)
    );
    assert_eq!(
        all[0].query.get("secret").map(String::as_str),
        Some(creds::WX_APP_SECRET)
    );
    let send = &all[1];
    assert_eq!(send.path, "/cgi-bin/message/custom/send");
    assert_eq!(
        send.query.get("access_token").map(String::as_str),
        Some("wxtok-mock-1")
    );
    assert_eq!(
        send.body(),
        &json!({ "touser": "oOPENID1", "msgtype": "text", "text": { "content": "你好" } })
    );
    // No message id comes back for customer-service messages.
    assert_eq!(ok.provider_message_id, "wx-4242");
    assert_eq!(ch.default_rate_per_second(), Some(5.0));
}

#[tokio::test]
async fn token_is_cached_until_it_is_due() {
    let mock = MockPlatform::start(Platform::Wechat).await;
    let ch = channel(&mock, "");
    for user in ["o1", "o2", "o3"] {
        ch.send(&to(user), &text("hi")).await.expect("sent");
    }
    assert_eq!(mock.tokens_issued(), 1);

    // A token that expires at once is fetched again for every send.
    let mock = MockPlatform::start_with(
        Platform::Wechat,
        MockOptions {
            token_expires_in: 0,
            ..MockOptions::default()
        },
    )
    .await;
    let ch = channel(&mock, "");
    for user in ["o1", "o2"] {
        ch.send(&to(user), &text("hi")).await.expect("sent");
    }
    assert_eq!(mock.tokens_issued(), 2);
}

#[tokio::test]
async fn concurrent_sends_share_one_token_fetch() {
    let mock = MockPlatform::start_with(
        Platform::Wechat,
        MockOptions {
            token_latency: Duration::from_millis(100),
            ..MockOptions::default()
        },
    )
    .await;
    let ch = channel(&mock, "");
    let users: Vec<String> = (0..10).map(|i| format!("oConcurrent{i}")).collect();
    let sends = users.iter().map(|u| {
        let ch = ch.clone();
        async move { ch.send(&to(u), &text("hi")).await }
    });
    for result in futures::future::join_all(sends).await {
        result.expect("sent");
    }
    assert_eq!(mock.tokens_issued(), 1);
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    mock.assert_each_recipient_once(&names);
}

#[tokio::test]
async fn expired_token_is_refreshed_once_and_the_message_resent() {
    let mock = MockPlatform::start(Platform::Wechat).await;
    let ch = channel(&mock, "");
    ch.send(&to("o1"), &text("first")).await.expect("sent");
    mock.expire_access_tokens();
    ch.send(&to("o2"), &text("second"))
        .await
        .expect("refreshed and resent");
    assert_eq!(mock.tokens_issued(), 2);
    let to_o2 = mock.requests_for("o2");
    assert_eq!(to_o2.len(), 2, "one refused send, one resend");
    assert_eq!(to_o2[0].query["access_token"], "wxtok-mock-1");
    assert_eq!(to_o2[1].query["access_token"], "wxtok-mock-2");
}

#[tokio::test]
async fn rejected_token_refreshes_once_then_is_auth() {
    let mock = MockPlatform::start(Platform::Wechat).await;
    let ch = channel(&mock, "");
    // 40001 once: the adapter refreshes and resends.
    mock.script("o1", Behavior::fail_first(1, Behavior::BadToken));
    ch.send(&to("o1"), &text("hi"))
        .await
        .expect("second try succeeds");
    assert_eq!(mock.tokens_issued(), 2);
    // 40001 every time: one refresh, one resend, then Auth.
    let err = send_err(&ch, &mock, "o2", Behavior::BadToken, &text("hi")).await;
    assert_eq!(err.class, ErrorClass::Auth);
    assert_eq!(err.code, "40001");
    assert_eq!(mock.requests_for("o2").len(), 2);
    assert_eq!(mock.tokens_issued(), 3);
}

#[tokio::test]
async fn wrong_app_secret_is_auth_without_leaking_it() {
    let mock = MockPlatform::start(Platform::Wechat).await;
    let toml = mock
        .channel_toml("ch")
        .replace(creds::WX_APP_SECRET, "wrongsecretvalue123");
    let ch = build(&toml, "ch").expect("builds");
    let err = ch
        .send(&to("o1"), &text("hi"))
        .await
        .expect_err("bad secret");
    assert_eq!(err.class, ErrorClass::Auth);
    assert_eq!(err.code, "40125");
    assert!(err.message.contains("invalid appsecret"), "{err:?}");
    assert!(!err.message.contains("wrongsecretvalue123"));
    assert!(mock.sends().is_empty());
}

#[tokio::test]
async fn menu_and_news_messages() {
    let mock = MockPlatform::start(Platform::Wechat).await;
    let ch = channel(&mock, "");
    let menu = Message {
        text: "您对本次服务是否满意呢?".into(),
        buttons: vec![button("满意", "101")],
        quick_replies: vec![button("不满意", "102")],
        ..Message::default()
    };
    ch.send(&to("o1"), &message(menu)).await.expect("sent");
    let news = Message {
        text: "New arrivals".into(),
        image_url: Some("https://example.com/n.jpg".into()),
        buttons: vec![link("Shop", "https://example.com/shop")],
        ..Message::default()
    };
    ch.send(&to("o2"), &message(news)).await.expect("sent");
    let linked = Message {
        text: "Read more".into(),
        buttons: vec![link("Docs", "https://example.com/docs")],
        ..Message::default()
    };
    ch.send(&to("o3"), &message(linked)).await.expect("sent");

    let sent = mock.sends();
    assert_eq!(
        sent[0].body(),
        &json!({ "touser": "o1", "msgtype": "msgmenu", "msgmenu": {
            "head_content": "您对本次服务是否满意呢?",
            "list": [ { "id": "101", "content": "满意" }, { "id": "102", "content": "不满意" } ],
            "tail_content": "",
        } })
    );
    assert_eq!(
        sent[1].body()["news"],
        json!({ "articles": [{ "title": "New arrivals", "url": "https://example.com/shop", "picurl": "https://example.com/n.jpg" }] })
    );
    assert_eq!(
        sent[2].body()["text"]["content"],
        "Read more\n<a href=\"https://example.com/docs\">Docs</a>"
    );
}

#[tokio::test]
async fn documented_errors_are_classified() {
    let mock = MockPlatform::start(Platform::Wechat).await;
    let ch = channel(&mock, "");
    assert_classes(
        &mock,
        &ch,
        &text("hello"),
        &[
            (
                Behavior::OutsideWindow,
                ErrorClass::OutsideWindow,
                "45015",
                "out of time limit",
            ),
            (
                Behavior::Block,
                ErrorClass::Blocked,
                "43004",
                "require subscribe",
            ),
            (
                Behavior::InvalidRecipient,
                ErrorClass::InvalidRecipient,
                "40003",
                "invalid openid",
            ),
            (
                Behavior::rate_limit(1),
                ErrorClass::RateLimited,
                "45011",
                "minute-quota",
            ),
            (
                Behavior::ServerError,
                ErrorClass::Transient,
                "-1",
                "system error",
            ),
        ],
    )
    .await;
}

/// 45009 is the account's daily quota: the error says the whole channel is
/// out of quota until midnight China time (for the dispatcher to hold the
/// channel), unlike 45011, the per-minute limit, which is a short retry.
#[tokio::test]
async fn daily_quota_is_flagged_as_the_channels_until_midnight_china_time() {
    let mock = MockPlatform::start(Platform::Wechat).await;
    let ch = channel(&mock, "");
    let minute = send_err(&ch, &mock, "o1", Behavior::rate_limit(1), &text("hi")).await;
    assert_eq!(
        (minute.class, minute.code.as_str()),
        (ErrorClass::RateLimited, "45011")
    );
    assert_eq!(minute.channel_quota_reset_at, None, "{minute:?}");

    ch.send(&to("o2"), &text("hi")).await.expect("sent");
    mock.use_up_daily_quota();
    let before = chrono::Utc::now().timestamp_millis();
    let err = ch
        .send(&to("o3"), &text("hi"))
        .await
        .expect_err("quota used up");
    let after = chrono::Utc::now().timestamp_millis();
    assert_eq!(
        (err.class, err.code.as_str()),
        (ErrorClass::RateLimited, "45009")
    );
    assert!(
        err.message.contains("reach max api daily quota limit"),
        "{err:?}"
    );
    assert!(err.message.contains("China time"), "{err:?}");
    let reset = err
        .channel_quota_reset_at
        .unwrap_or_else(|| panic!("45009 must flag the channel's quota: {err:?}"));
    // Midnight in Beijing (UTC+8), within the next day.
    assert_eq!((reset / 1000 + 8 * 3600) % 86_400, 0, "{reset}");
    assert!(reset > before && reset <= after + 86_400_000, "{reset}");
    // The wait is until then, not a few seconds.
    let wait = err.retry_after.expect("retry-after").as_millis() as i64;
    assert!(
        (reset - after - 1000..=reset - before).contains(&wait),
        "{wait}"
    );
    assert_eq!(mock.requests_for("o3").len(), 1, "no resend within the day");
    assert_no_secret(&err, &mock);
}

#[tokio::test]
async fn unreadable_replies_and_timeouts_are_transient() {
    assert_transport_failures(Platform::Wechat, &text("hello")).await;
}

#[tokio::test]
async fn secrets_never_in_errors_or_logs() {
    assert_secrets_stay_secret(Platform::Wechat, &text("hello")).await;
}

#[tokio::test]
async fn validation_names_the_limit() {
    let mock = MockPlatform::start(Platform::Wechat).await;
    let ch = channel(&mock, "");
    let e = ch
        .validate(&text(&"字".repeat(700)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("2100 bytes") && e.contains("2048"), "{e}");
    let menu = Message {
        text: "pick".into(),
        buttons: (0..11)
            .map(|i| button(&format!("b{i}"), &format!("{i}")))
            .collect(),
        ..Message::default()
    };
    assert!(
        ch.validate(&message(menu))
            .unwrap_err()
            .to_string()
            .contains("limit is 10")
    );
    let mixed = Message {
        text: "pick".into(),
        image_url: Some("https://example.com/i.png".into()),
        buttons: vec![button("ok", "1")],
        ..Message::default()
    };
    assert!(
        ch.validate(&message(mixed))
            .unwrap_err()
            .to_string()
            .contains("news article")
    );
    assert!(
        ch.validate(&template())
            .unwrap_err()
            .to_string()
            .contains("no template messages")
    );
}
