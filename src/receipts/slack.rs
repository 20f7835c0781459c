//! Slack webhooks: the Events API (JSON) and interactivity (form body
//! `payload=<json>`), both signed with the app's signing secret
//! (`X-Slack-Signature: v0=…` over `v0:{ts}:{body}`, `X-Slack-Request-Timestamp`
//! within five minutes). Slack has no delivery or read receipts.
//!
//! | body | becomes |
//! |---|---|
//! | `{"type":"url_verification","challenge":…}` | [`WebhookOutcome::Challenge`] |
//! | `event_callback` with `event.type = message` from a person | [`InboundEvent::Message`]: `id = event_id`, `user = event.user`, `context_id = "<channel>:<thread_ts>"` for thread replies |
//! | interactivity `block_actions` | [`InboundEvent::Message`]: `payload` = `actions[0].value` (or the selected option's value, or `action_id`), `text` = the button's label, `context_id = "<channel>:<message_ts>"` |
//!
//! `"<channel>:<ts>"` is the adapter's provider message id. Bot messages
//! (`bot_id`, `subtype: bot_message`), edits and deletions (`message_changed`,
//! `message_deleted`) and other subtypes except `thread_broadcast` and
//! `file_share` are skipped, as are other event and interaction types and
//! slash commands. Sources: CHANNELS.md §5.4–5.5.

use super::signature::{self, SLACK_SIGNATURE_HEADER, SLACK_TIMESTAMP_HEADER};
use super::webhook::{Json, bad, events, expect_post, header, parse_json, secret};
use super::{WebhookError, WebhookOutcome, WebhookRequest};
use crate::config::ChannelConfig;
use crate::model::{InboundEvent, Millis};

pub fn handle(
    cfg: &ChannelConfig,
    req: &WebhookRequest<'_>,
) -> Result<WebhookOutcome, WebhookError> {
    expect_post(req)?;
    if let Some(s) = secret(cfg, cfg.secrets.signing_secret.as_ref(), "signing_secret")? {
        signature::verify_slack(
            s.as_bytes(),
            header(req, SLACK_TIMESTAMP_HEADER)?,
            header(req, SLACK_SIGNATURE_HEADER)?,
            req.body,
            req.now,
        )?;
    }
    parse(req.body, req.now)
}

/// Parses a (verified) Events API or interactivity body.
pub fn parse(body: &[u8], now: Millis) -> Result<WebhookOutcome, WebhookError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        return parse_event_api(body);
    }
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|e| {
        bad(format!(
            "the body is neither an Events API JSON object nor a form-encoded interactivity payload ({e})"
        ))
    })?;
    match form.iter().find(|(k, _)| k == "payload") {
        Some((_, json)) => parse_interaction(json.as_bytes(), now).map(events),
        // Slash commands are form bodies too; they are not replies to a push.
        None if form.iter().any(|(k, _)| k == "command") => Ok(events(Vec::new())),
        None => Err(bad(
            "the form body has no `payload` field (expected an interactivity request)",
        )),
    }
}

fn parse_event_api(body: &[u8]) -> Result<WebhookOutcome, WebhookError> {
    let doc = parse_json(body)?;
    let root = Json::root(&doc);
    match root.req_str("type")? {
        "url_verification" => Ok(WebhookOutcome::Challenge(
            root.req_str("challenge")?.to_string(),
        )),
        "event_callback" => {
            let event = root.req("event")?;
            if event.req_str("type")? != "message" {
                return Ok(events(Vec::new()));
            }
            let id = root.req_str("event_id")?.to_string();
            Ok(events(message(&event, id)?.into_iter().collect()))
        }
        // app_rate_limited and future envelope types.
        _ => Ok(events(Vec::new())),
    }
}

fn message(e: &Json<'_>, id: String) -> Result<Option<InboundEvent>, WebhookError> {
    let person = matches!(
        e.opt_str("subtype")?,
        None | Some("thread_broadcast" | "file_share")
    );
    if !person || e.get("bot_id").is_some() {
        return Ok(None);
    }
    let user = e.req_str("user")?.to_string();
    let channel = e.req_str("channel")?;
    let ts = e.req_str("ts")?;
    let at = ts_ms(ts).ok_or_else(|| {
        bad(format!(
            "`{}.ts` is not a Slack timestamp: {ts:?}",
            e.path()
        ))
    })?;
    let context_id = match e.opt_str("thread_ts")? {
        Some(t) if t != ts => Some(format!("{channel}:{t}")),
        _ => None,
    };
    Ok(Some(InboundEvent::Message {
        user,
        id,
        name: None,
        text: e.opt_str("text")?.map(str::to_string),
        payload: None,
        context_id,
        at,
    }))
}

fn parse_interaction(json: &[u8], now: Millis) -> Result<Vec<InboundEvent>, WebhookError> {
    let doc = parse_json(json).map_err(|e| match e {
        WebhookError::BadRequest(m) => bad(format!("the `payload` form field: {m}")),
        other => other,
    })?;
    let p = Json::root(&doc);
    if p.req_str("type")? != "block_actions" {
        // view_submission, shortcuts, message actions: not a click on a push.
        return Ok(Vec::new());
    }
    let user = p.req("user")?.req_str("id")?.to_string();
    let actions = p.req("actions")?.items()?;
    let Some(action) = actions.first() else {
        return Err(bad("`actions` is empty"));
    };
    let option = action.get("selected_option");
    let value = match (action.opt_str("value")?, &option) {
        (Some(v), _) => v.to_string(),
        (None, Some(o)) => o.req_str("value")?.to_string(),
        (None, None) => action.req_str("action_id")?.to_string(),
    };
    let label_of = |j: &Json<'_>| -> Result<Option<String>, WebhookError> {
        Ok(match j.get("text") {
            Some(t) => t.opt_str("text")?.map(str::to_string),
            None => None,
        })
    };
    let text = match &option {
        Some(o) => label_of(o)?,
        None => label_of(action)?,
    };
    let at = match action.opt_str("action_ts")? {
        Some(ts) => ts_ms(ts).unwrap_or(now),
        None => now,
    };
    let id = match p.opt_str("trigger_id")? {
        Some(t) => t.to_string(),
        None => format!("{user}:{at}"),
    };
    Ok(vec![InboundEvent::Message {
        user,
        id,
        name: None,
        text,
        payload: Some(value),
        context_id: message_ref(&p)?,
        at,
    }])
}

/// `"<channel>:<ts>"` of the message the clicked block sits in.
fn message_ref(p: &Json<'_>) -> Result<Option<String>, WebhookError> {
    if let Some(c) = p.get("container")
        && let (Some(ch), Some(ts)) = (c.opt_str("channel_id")?, c.opt_str("message_ts")?)
    {
        return Ok(Some(format!("{ch}:{ts}")));
    }
    let channel = match p.get("channel") {
        Some(c) => c.opt_str("id")?,
        None => None,
    };
    let ts = match p.get("message") {
        Some(m) => m.opt_str("ts")?,
        None => None,
    };
    Ok(channel.zip(ts).map(|(c, t)| format!("{c}:{t}")))
}

/// Slack's `"1355517523.000005"` (seconds.micros) in ms.
fn ts_ms(ts: &str) -> Option<Millis> {
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let ms: i64 = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0, |acc, b| acc * 10 + i64::from(b - b'0'));
    secs.parse::<i64>().ok()?.checked_mul(1000)?.checked_add(ms)
}

#[cfg(test)]
mod tests {
    use super::super::webhook::fixtures::*;
    use super::super::webhook::testing::*;
    use super::*;
    use crate::model::Platform;
    use proptest::prelude::*;

    const SL: Platform = Platform::Slack;
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

    fn signed(body: &str) -> Req {
        let ts = NOW / 1000;
        Req::post(body.to_string()).headers(&slack_headers(SECRET, ts, body.as_bytes()))
    }

    fn run_signed(body: &str) -> Result<WebhookOutcome, WebhookError> {
        run(SL, &config_with(SL, SECRET), &signed(body))
    }

    #[test]
    fn url_verification_is_a_challenge() {
        let out = run_signed(&slack_url_verification(
            "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        ));
        assert_eq!(
            out,
            Ok(WebhookOutcome::Challenge(
                "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P".into()
            ))
        );
    }

    #[test]
    fn im_message_event() {
        let body = slack_message(
            "Ev0PV52K21",
            "U2147483697",
            "D0PNCRP9N",
            "hi",
            "1355517523.000005",
        );
        assert_eq!(
            events_of(run_signed(&body)),
            vec![InboundEvent::Message {
                user: "U2147483697".into(),
                id: "Ev0PV52K21".into(),
                name: None,
                text: Some("hi".into()),
                payload: None,
                context_id: None,
                at: 1_355_517_523_000,
            }]
        );
    }

    #[test]
    fn thread_reply_points_at_the_parent() {
        let mut v: serde_json::Value = serde_json::from_str(&slack_message(
            "Ev1",
            "U1",
            "D1",
            "yes",
            "1718000100.000200",
        ))
        .unwrap();
        v["event"]["thread_ts"] = "1718000000.000100".into();
        let ev = events_of(run_signed(&v.to_string()));
        assert!(
            matches!(&ev[0], InboundEvent::Message { context_id: Some(c), .. } if c == "D1:1718000000.000100")
        );
    }

    #[test]
    fn bot_messages_and_edits_are_skipped() {
        for patch in [
            serde_json::json!({"subtype": "bot_message", "bot_id": "B19LU7CSY"}),
            serde_json::json!({"bot_id": "B19LU7CSY"}),
            serde_json::json!({"subtype": "message_changed"}),
            serde_json::json!({"subtype": "message_deleted"}),
        ] {
            let mut v: serde_json::Value =
                serde_json::from_str(&slack_message("Ev1", "U1", "D1", "x", "1.0")).unwrap();
            for (k, val) in patch.as_object().unwrap() {
                v["event"][k] = val.clone();
            }
            assert_eq!(events_of(run_signed(&v.to_string())), vec![], "{patch}");
        }
        let reaction = r#"{"type":"event_callback","event_id":"Ev2","event":{"type":"reaction_added","user":"U1"}}"#;
        assert_eq!(events_of(run_signed(reaction)), vec![]);
    }

    #[test]
    fn block_actions_button_click() {
        let body = slack_block_actions(
            "U2CERLKJA",
            "C123ABC456",
            "1503435956.000247",
            "approve",
            "req_123",
        );
        assert!(body.starts_with("payload="), "interactivity is a form body");
        let ev = events_of(run_signed(&body));
        assert_eq!(
            ev,
            vec![InboundEvent::Message {
                user: "U2CERLKJA".into(),
                id: "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c".into(),
                name: None,
                text: Some("Approve".into()),
                payload: Some("req_123".into()),
                context_id: Some("C123ABC456:1503435956.000247".into()),
                at: 1_548_426_417_840,
            }]
        );
    }

    #[test]
    fn block_actions_without_value_uses_action_id() {
        let body = slack_block_actions("U1", "C1", "1.000001", "approve", "");
        let json = form_payload(&body);
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["actions"][0].as_object_mut().unwrap().remove("value");
        let body = slack_form(&v.to_string());
        let ev = events_of(run_signed(&body));
        assert!(matches!(&ev[0], InboundEvent::Message { payload: Some(p), .. } if p == "approve"));
    }

    #[test]
    fn signature_valid_wrong_missing_stale() {
        let body = slack_message("Ev1", "U1", "D1", "x", "1.0");
        let cfg = config_with(SL, SECRET);
        let ts = NOW / 1000;
        assert_eq!(events_of(run(SL, &cfg, &signed(&body))).len(), 1);
        let wrong =
            Req::post(body.clone()).headers(&slack_headers("another-secret", ts, body.as_bytes()));
        assert!(matches!(
            run(SL, &cfg, &wrong),
            Err(WebhookError::Unauthorized(_))
        ));
        assert!(matches!(
            run(SL, &cfg, &Req::post(body.clone())),
            Err(WebhookError::Unauthorized(_))
        ));
        let stale =
            Req::post(body.clone()).headers(&slack_headers(SECRET, ts - 301, body.as_bytes()));
        match run(SL, &cfg, &stale) {
            Err(WebhookError::Unauthorized(m)) => assert!(m.contains("301 s"), "{m}"),
            other => panic!("{other:?}"),
        }
        let future =
            Req::post(body.clone()).headers(&slack_headers(SECRET, ts + 301, body.as_bytes()));
        assert!(matches!(
            run(SL, &cfg, &future),
            Err(WebhookError::Unauthorized(_))
        ));
        let edge =
            Req::post(body.clone()).headers(&slack_headers(SECRET, ts - 300, body.as_bytes()));
        assert!(run(SL, &cfg, &edge).is_ok());
    }

    #[test]
    fn garbage_is_401_unsigned_and_400_signed() {
        let cfg = config_with(SL, SECRET);
        assert!(matches!(
            run(SL, &cfg, &Req::post("{garbage")),
            Err(WebhookError::Unauthorized(_))
        ));
        for (body, needle) in [
            ("{garbage", "not valid JSON"),
            ("a=1&b=2", "no `payload`"),
            ("payload=%7Bnot", "`payload` form field"),
            (
                r#"{"type":"event_callback","event":{"type":"message","user":"U","channel":"D","ts":"1.0"}}"#,
                "event_id",
            ),
            (
                r#"{"type":"event_callback","event_id":"E","event":{"type":"message","channel":"D","ts":"1.0"}}"#,
                "event.user",
            ),
            (
                r#"{"type":"event_callback","event_id":"E","event":{"type":"message","user":"U","channel":"D","ts":"soon"}}"#,
                "Slack timestamp",
            ),
            (r#"{"type":"url_verification"}"#, "challenge"),
            (
                "payload=%7B%22type%22%3A%22block_actions%22%2C%22user%22%3A%7B%22id%22%3A%22U%22%7D%2C%22actions%22%3A%5B%5D%7D",
                "`actions` is empty",
            ),
        ] {
            match run_signed(body) {
                Err(WebhookError::BadRequest(m)) => assert!(m.contains(needle), "{body}: {m}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn slash_commands_and_other_interactions_are_skipped() {
        let cmd = "token=x&team_id=T1&command=%2Fwebhook-collect&text=&user_id=U1";
        assert_eq!(events_of(run_signed(cmd)), vec![]);
        let view = slack_form(r#"{"type":"view_submission","user":{"id":"U1"}}"#);
        assert_eq!(events_of(run_signed(&view)), vec![]);
    }

    #[test]
    fn slack_timestamps() {
        assert_eq!(ts_ms("1355517523.000005"), Some(1_355_517_523_000));
        assert_eq!(ts_ms("1548426417.840180"), Some(1_548_426_417_840));
        assert_eq!(ts_ms("1548426417.8"), Some(1_548_426_417_800));
        assert_eq!(ts_ms("1548426417"), Some(1_548_426_417_000));
        assert_eq!(ts_ms(""), None);
        assert_eq!(ts_ms("-1.0"), None);
        assert_eq!(ts_ms("99999999999999999999.0"), None);
    }

    proptest! {
        #![proptest_config(proptest_config())]

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let out = run(SL, &config(SL), &Req::post(body));
            prop_assert!(is_clean(&out));
        }

        #[test]
        fn mutated_real_payloads_never_panic(which in 0usize..3, choices in proptest::collection::vec(any::<u32>(), 1..12)) {
            let base = [
                slack_message("Ev1", "U1", "D1", "hi", "1355517523.000005"),
                slack_url_verification("abc"),
                form_payload(&slack_block_actions("U1", "C1", "1.000001", "approve", "req_123")),
            ];
            let mut v: serde_json::Value = serde_json::from_str(&base[which]).unwrap();
            mutate_json(&mut v, &mut choices.into_iter());
            let body = if which == 2 { slack_form(&v.to_string()) } else { v.to_string() };
            let out = run_signed(&body);
            prop_assert!(is_clean(&out), "{out:?}");
        }
    }
}
