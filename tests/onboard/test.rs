//! `pushd channel test NAME [--to USER]` on every platform: the harmless
//! call each makes, what it answers, each typical failure with the
//! platform's own words and what to do, and exactly one test message.

use super::*;
use crate::support::mocks::{AccountFault, Behavior, creds};

#[test]
fn whatsapp_check_names_the_number_and_explains_each_failure() {
    let o = Onboard::start(
        &[
            Ch("wa", Platform::Whatsapp, ""),
            Ch(
                "wa_wrong",
                Platform::Whatsapp,
                "phone_number_id = \"999000111\"",
            ),
        ],
        "",
    );
    let answer = assert_check_ok(&o, "wa");
    assert_eq!(
        answer,
        "phone number +1 555-078-3881 \"pushd Mock Shop\" (phone number id 106540352242922)"
    );
    let calls = o.mock("wa").requests();
    assert_eq!(calls.len(), 1, "one harmless call: {calls:?}");
    assert_eq!(calls[0].method, "GET");
    assert_eq!(
        calls[0].path,
        format!("/v21.0/{}", creds::WA_PHONE_NUMBER_ID)
    );
    assert_eq!(
        calls[0].query["fields"],
        "display_phone_number,verified_name"
    );
    let bearer = format!("Bearer {}", creds::WA_TOKEN);
    assert_eq!(calls[0].header("authorization"), Some(bearer.as_str()));
    assert!(o.mock("wa").sends().is_empty(), "a check sends nothing");
    let out = o.text(&["channel", "test", "wa"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("ok: phone number +1 555-078-3881 \"pushd Mock Shop\""),
        "{}",
        stdout(&out)
    );

    o.mock("wa")
        .set_account_fault(Some(AccountFault::ExpiredToken));
    assert_check_failed(
        &o,
        "wa",
        "auth",
        "190/463",
        "Error validating access token: Session has expired on Tuesday, 03-Dec-24",
        "The access token has expired. Temporary tokens from the app's WhatsApp → API Setup page last 24 hours",
    );
    o.mock("wa")
        .set_account_fault(Some(AccountFault::MissingPermission));
    assert_check_failed(
        &o,
        "wa",
        "auth",
        "10",
        "(#10) Application does not have permission for this action",
        "it needs whatsapp_business_messaging (to send) and whatsapp_business_management",
    );
    let out = o.text(&["channel", "test", "wa"]);
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(text.contains("FAILED: auth 10"), "{text}");
    assert!(
        text.contains("what to do: The token lacks a permission"),
        "{text}"
    );
    assert!(
        stderr(&out).contains("channel_test_failed"),
        "{}",
        stderr(&out)
    );

    assert_check_failed(
        &o,
        "wa_wrong",
        "auth",
        "100/33",
        "Unsupported get request. Object with ID '999000111' does not exist",
        "WhatsApp knows no phone number \"999000111\" that this token can see",
    );
}

#[test]
fn to_sends_exactly_one_test_message_through_the_real_send() {
    let o = Onboard::start(&[Ch("wa", Platform::Whatsapp, "")], "");
    let (ok, v) = o.json(&["channel", "test", "wa", "--to", "15550001111"]);
    assert!(ok, "{v}");
    let sends = o.mock("wa").sends();
    assert_eq!(sends.len(), 1, "exactly one message: {sends:?}");
    assert_eq!(sends[0].body()["to"], "15550001111");
    assert_eq!(
        sends[0].body()["text"]["body"],
        "Test message from pushd (channel wa): this channel can reach you."
    );
    let send = &v["data"]["send"];
    assert_eq!(send["ok"], true, "{v}");
    assert_eq!(
        send["answer"],
        format!("accepted, message id wamid.mock{}", sends[0].seq)
    );
    assert!(
        send["notes"][0]
            .as_str()
            .unwrap_or_default()
            .contains("131047"),
        "WhatsApp's asynchronous window failure is explained: {v}"
    );

    // A recipient WhatsApp refuses: one attempt, no retry, the advice.
    o.mock("wa").script("15550002222", Behavior::OutsideWindow);
    let (ok, v) = o.json(&["channel", "test", "wa", "--to", "15550002222"]);
    assert!(!ok, "{v}");
    assert_eq!(v["data"]["check"]["ok"], true, "{v}");
    let e = &v["data"]["send"]["error"];
    assert_eq!(e["class"], "outside_window", "{v}");
    assert_eq!(e["code"], "131047", "{v}");
    assert!(
        e["advice"]
            .as_str()
            .unwrap_or_default()
            .contains("More than 24 hours have passed"),
        "{v}"
    );
    assert_eq!(o.mock("wa").requests_for("15550002222").len(), 1);

    // A failed check sends nothing.
    o.mock("wa")
        .set_account_fault(Some(AccountFault::ExpiredToken));
    let (ok, v) = o.json(&["channel", "test", "wa", "--to", "15550003333"]);
    assert!(!ok, "{v}");
    assert!(v["data"]["send"].is_null(), "{v}");
    assert!(
        v["data"]["check"]["notes"][0]
            .as_str()
            .unwrap_or_default()
            .contains("No test message was sent"),
        "{v}"
    );
    assert!(o.mock("wa").requests_for("15550003333").is_empty());
    assert_eq!(o.mock("wa").sends().len(), 2);
}

#[test]
fn messenger_and_instagram_check_the_page_behind_the_token() {
    let o = Onboard::start(
        &[
            Ch("fb", Platform::Messenger, ""),
            Ch("fb_other", Platform::Messenger, "page_id = \"999\""),
            Ch("ig", Platform::Instagram, ""),
        ],
        "",
    );
    assert_eq!(
        assert_check_ok(&o, "fb"),
        "Page \"pushd Mock Page\" (id 1122334455667788)"
    );
    let call = &o.mock("fb").requests()[0];
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        ("GET", "/v21.0/me")
    );
    assert_eq!(call.query["fields"], "id,name,category");
    assert_eq!(call.query["access_token"], creds::PAGE_TOKEN);

    assert_check_failed(
        &o,
        "fb_other",
        "auth",
        "page_id_mismatch",
        "the token belongs to the Page \"pushd Mock Page\" (id 1122334455667788), not to page_id 999",
        "Either set `page_id = \"1122334455667788\"`",
    );
    o.mock("fb")
        .set_account_fault(Some(AccountFault::ExpiredToken));
    assert_check_failed(
        &o,
        "fb",
        "auth",
        "190/463",
        "Session has expired",
        "The access token has expired. Generate a Page access token",
    );
    o.mock("fb")
        .set_account_fault(Some(AccountFault::UserToken));
    assert_check_failed(
        &o,
        "fb",
        "auth",
        "100",
        "(#100) Tried accessing nonexisting field (category) on node type (User)",
        "This is a user access token; sends need the Page access token",
    );
    // A token without pages_messaging passes the check; the test message names the permission.
    o.mock("fb")
        .set_account_fault(Some(AccountFault::MissingPermission));
    let (ok, v) = o.json(&["channel", "test", "fb", "--to", "24680"]);
    assert!(!ok, "{v}");
    assert_eq!(v["data"]["check"]["ok"], true, "{v}");
    let e = &v["data"]["send"]["error"];
    assert_eq!(
        (e["class"].as_str(), e["code"].as_str()),
        (Some("auth"), Some("230")),
        "{v}"
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("(#230) Requires pages_messaging permission"),
        "{v}"
    );
    assert!(
        e["advice"]
            .as_str()
            .unwrap_or_default()
            .contains("a Page access token with pages_messaging"),
        "{v}"
    );

    let (ok, v) = o.json(&["channel", "test", "ig"]);
    assert!(ok, "{v}");
    assert!(
        v["data"]["check"]["notes"][0]
            .as_str()
            .unwrap_or_default()
            .contains("instagram_manage_messages"),
        "{v}"
    );
    o.mock("ig").script("13579", Behavior::OutsideWindow);
    let (ok, v) = o.json(&["channel", "test", "ig", "--to", "13579"]);
    assert!(!ok, "{v}");
    let e = &v["data"]["send"]["error"];
    assert_eq!(
        (e["class"].as_str(), e["code"].as_str()),
        (Some("outside_window"), Some("10/2018278")),
        "{v}"
    );
    assert!(
        e["advice"]
            .as_str()
            .unwrap_or_default()
            .contains("only the HUMAN_AGENT tag"),
        "{v}"
    );
}

#[test]
fn telegram_check_is_get_me_and_failures_say_what_to_do() {
    let o = Onboard::start(
        &[
            Ch("tg", Platform::Telegram, ""),
            Ch(
                "tg_wrong",
                Platform::Telegram,
                "token = \"123456789:AAwrongTokenXXXXXXXXXXXXXXXXXXXXXXXX\"",
            ),
        ],
        "",
    );
    assert_eq!(
        assert_check_ok(&o, "tg"),
        "bot @pushd_mock_bot \"pushd mock\" (id 123456789)"
    );
    assert_eq!(
        o.mock("tg").requests()[0].path,
        format!("/bot{}/getMe", creds::TG_TOKEN)
    );
    assert_check_failed(
        &o,
        "tg_wrong",
        "auth",
        "401",
        "Unauthorized",
        "Telegram does not know this bot token",
    );
    o.mock("tg").script("4242", Behavior::Block);
    let (ok, v) = o.json(&["channel", "test", "tg", "--to", "4242"]);
    assert!(!ok, "{v}");
    let e = &v["data"]["send"]["error"];
    assert_eq!(
        (e["class"].as_str(), e["code"].as_str()),
        (Some("blocked"), Some("403")),
        "{v}"
    );
    assert_eq!(
        e["message"], "Forbidden: bot was blocked by the user",
        "{v}"
    );
    assert!(
        e["advice"]
            .as_str()
            .unwrap_or_default()
            .starts_with("The user blocked the bot"),
        "{v}"
    );
    o.mock("tg").script("4343", Behavior::InvalidRecipient);
    let (_, v) = o.json(&["channel", "test", "tg", "--to", "4343"]);
    let e = &v["data"]["send"]["error"];
    assert_eq!(e["class"], "invalid_recipient", "{v}");
    assert!(
        e["advice"]
            .as_str()
            .unwrap_or_default()
            .contains("start the bot first"),
        "{v}"
    );
    let (ok, v) = o.json(&["channel", "test", "tg", "--to", "4444"]);
    assert!(ok, "{v}");
    assert_eq!(o.mock("tg").requests_for("4444").len(), 1);
}

#[test]
fn slack_check_is_auth_test_with_the_send_scope() {
    let o = Onboard::start(
        &[
            Ch("sl", Platform::Slack, ""),
            Ch(
                "sl_wrong",
                Platform::Slack,
                "token = \"xoxb-not-a-real-token\"",
            ),
        ],
        "",
    );
    assert_eq!(
        assert_check_ok(&o, "sl"),
        "@pushd_bot (user U0MOCKBOT) in workspace \"pushd Mock Workspace\" https://pushd-mock.slack.com/"
    );
    assert_eq!(o.mock("sl").requests()[0].path, "/auth.test");
    assert_check_failed(
        &o,
        "sl_wrong",
        "auth",
        "invalid_auth",
        "invalid_auth: Some aspect of authentication cannot be validated",
        "copy the Bot User OAuth Token (xoxb-…)",
    );
    o.mock("sl")
        .set_account_fault(Some(AccountFault::ExpiredToken));
    assert_check_failed(
        &o,
        "sl",
        "auth",
        "token_revoked",
        "token_revoked",
        "reinstall it (OAuth & Permissions → Install to Workspace)",
    );
    o.mock("sl")
        .set_account_fault(Some(AccountFault::MissingPermission));
    assert_check_failed(
        &o,
        "sl",
        "auth",
        "missing_scope",
        "(needed: chat:write; provided: incoming-webhook,im:history)",
        "Add the chat:write scope under OAuth & Permissions",
    );
    o.mock("sl").set_account_fault(None);
    let (ok, v) = o.json(&["channel", "test", "sl", "--to", "U0123"]);
    assert!(ok, "{v}");
    let sends = o.mock("sl").sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(
        v["data"]["send"]["answer"],
        format!("accepted, message id D0123:1718000000.{:06}", sends[0].seq)
    );
}

/// A send refused for a missing scope names the scope Slack says it needs
/// (the adapter keeps `needed`/`provided` from the reply).
#[tokio::test]
async fn slack_missing_scope_on_send_names_the_needed_scope() {
    use crate::channels::{channel, text, to};
    let mock = MockPlatform::start(Platform::Slack).await;
    mock.set_account_fault(Some(AccountFault::MissingPermission));
    let err = channel(&mock, "")
        .send(&to("U1"), &text("hi"))
        .await
        .expect_err("a token without chat:write cannot post");
    assert_eq!(err.class, pushd::model::ErrorClass::Auth);
    assert_eq!(err.code, "missing_scope");
    assert_eq!(
        err.message,
        "missing_scope: The token lacks a scope this method needs (needed: chat:write; provided: incoming-webhook,im:history)"
    );
}

#[test]
fn wechat_check_fetches_an_access_token() {
    let o = Onboard::start(
        &[
            Ch("wx", Platform::Wechat, ""),
            Ch(
                "wx_secret",
                Platform::Wechat,
                "app_secret = \"not-the-secret-0001\"",
            ),
            Ch(
                "wx_appid",
                Platform::Wechat,
                "app_id = \"wx0000wrongappid\"",
            ),
        ],
        "",
    );
    assert_eq!(
        assert_check_ok(&o, "wx"),
        "WeChat issued an access token for AppID wx0mockappid0005"
    );
    let call = &o.mock("wx").requests()[0];
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        ("GET", "/cgi-bin/token")
    );
    assert_eq!(call.query["appid"], creds::WX_APP_ID);
    assert_check_failed(
        &o,
        "wx_secret",
        "auth",
        "40125",
        "cannot get an access token: invalid appsecret",
        "WeChat refused the AppSecret",
    );
    assert_check_failed(
        &o,
        "wx_appid",
        "auth",
        "40013",
        "invalid appid",
        "WeChat knows no such AppID",
    );
    o.mock("wx")
        .set_account_fault(Some(AccountFault::IpNotWhitelisted));
    assert_check_failed(
        &o,
        "wx",
        "auth",
        "40164",
        "invalid ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist",
        "WeChat refuses calls from 203.0.113.7: add it to the IP whitelist",
    );
    // The account may fetch tokens but not send customer-service messages.
    o.mock("wx")
        .set_account_fault(Some(AccountFault::MissingPermission));
    let (ok, v) = o.json(&["channel", "test", "wx", "--to", "oOPENID1"]);
    assert!(!ok, "{v}");
    let e = &v["data"]["send"]["error"];
    assert_eq!(
        (e["class"].as_str(), e["code"].as_str()),
        (Some("auth"), Some("48001")),
        "{v}"
    );
    assert!(
        e["advice"]
            .as_str()
            .unwrap_or_default()
            .contains("verified (认证) service account"),
        "{v}"
    );
    o.mock("wx").set_account_fault(None);
    o.mock("wx").script("oOPENID2", Behavior::OutsideWindow);
    let (_, v) = o.json(&["channel", "test", "wx", "--to", "oOPENID2"]);
    let e = &v["data"]["send"]["error"];
    assert_eq!(
        (e["class"].as_str(), e["code"].as_str()),
        (Some("outside_window"), Some("45015")),
        "{v}"
    );
    assert!(
        e["advice"]
            .as_str()
            .unwrap_or_default()
            .contains("48 hours"),
        "{v}"
    );
}

#[test]
fn custom_and_webchat_check_is_a_signed_ping() {
    let o = Onboard::start(
        &[
            Ch("hook", Platform::Custom, ""),
            Ch("web", Platform::Webchat, ""),
            Ch(
                "hook_key",
                Platform::Custom,
                "webhook_secret = \"whsec_YW5vdGhlciBrZXkgdGhhbiB0aGUgbW9jaydz\"",
            ),
            Ch("hook_url", Platform::Custom, "url = \"{base}/nope\""),
        ],
        "",
    );
    assert_eq!(
        assert_check_ok(&o, "hook"),
        "the endpoint accepted the ping"
    );
    assert_eq!(assert_check_ok(&o, "web"), "the endpoint accepted the ping");
    let ping = &o.mock("hook").requests()[0];
    assert_eq!(ping.body()["type"], "ping");
    assert!(
        ping.header("webhook-signature")
            .is_some_and(|s| s.starts_with("v1,"))
    );
    assert!(o.mock("hook").sends().is_empty(), "a ping is not a message");

    assert_check_failed(
        &o,
        "hook_key",
        "auth",
        "auth",
        "HTTP 401: invalid webhook signature",
        "`webhook_secret` must equal the receiver's signing secret",
    );
    assert_check_failed(
        &o,
        "hook_url",
        "rejected",
        "not_found",
        "HTTP 404: no such endpoint",
        "Nothing answers at this URL",
    );
    o.mock("hook")
        .set_account_fault(Some(AccountFault::PingUnsupported));
    assert_check_failed(
        &o,
        "hook",
        "rejected",
        "invalid_request",
        "HTTP 400: unknown type",
        "A receiver answers 2xx to {\"type\":\"ping\"} without sending anything",
    );
    o.mock("hook").set_account_fault(None);
    let (ok, v) = o.json(&["channel", "test", "hook", "--to", "visitor-7"]);
    assert!(ok, "{v}");
    let sends = o.mock("hook").sends();
    assert_eq!(sends.len(), 1, "{sends:?}");
    let id = sends[0].body()["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        id.starts_with("msg_-"),
        "a test message never reuses a delivery's id: {id}"
    );
}

#[test]
fn simulator_needs_no_account_and_bad_input_changes_nothing() {
    let o = Onboard::start(&[Ch("wa", Platform::Whatsapp, "")], "");
    // The simulator is not configured here: an unknown channel lists the known ones.
    let (ok, v) = o.json(&["channel", "test", "sim"]);
    assert!(!ok);
    assert_eq!(v["error"]["code"], "not_found", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no channel \"sim\" is configured (channels: wa)"),
        "{v}"
    );
    let (ok, v) = o.json(&["channel", "test", "wa", "--to", " "]);
    assert!(!ok);
    assert_eq!(v["error"]["code"], "invalid_args", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("--to is empty"),
        "{v}"
    );
    assert!(
        o.mock("wa").requests().is_empty(),
        "bad input reached the platform"
    );

    let d = TestDaemon::start(&base_config("[channels.sim]\nkind = \"simulator\"\n"));
    let out = d.cli(&["channel", "test", "sim", "--to", "u1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("ok: the simulator needs no account"),
        "{text}"
    );
    assert!(text.contains("ok: accepted, message id"), "{text}");
}
