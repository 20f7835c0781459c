//! The recipients explorer over the socket and CLI: each outcome lists
//! exactly the report's recipients with their timelines, filters and keyset
//! pages, clear errors for bad outcomes and foreign cursors, CSV, and
//! audiences saved from an outcome (lineage, unsubscribed members left out).

use crate::analytics::{Constructed, constructed_push};
use crate::dispatch::{create_push, push_hello, wait_status};
use crate::support::mocks::creds::WEBHOOK_SECRET;
use crate::support::webhooks::*;
use crate::support::*;
use crate::webhooks::http;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// The channel user ids of a `recipients --json` reply's page.
fn users(v: &Value) -> Vec<String> {
    v["data"]["recipients"]
        .as_array()
        .unwrap_or_else(|| panic!("no recipients in {v}"))
        .iter()
        .map(|r| r["channel_user_id"].as_str().unwrap().to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_outcome_lists_exactly_the_reports_recipients_with_timelines() {
    let Constructed {
        rt: _rt,
        mock: _mock,
        d,
    } = constructed_push();
    let report = d.cli_json(&["report", "exact"])["data"].clone();
    let expected: [(&str, &[&str]); 7] = [
        ("read_and_interacted", &["u1", "u2"]),
        ("read_only", &["u3", "u4", "u5"]),
        ("interacted_only", &["u6"]),
        ("not_read_or_interacted", &["u7", "u8"]),
        ("sent_fail", &["u9", "u10"]),
        ("skipped", &["u11"]),
        ("cancelled", &[]),
    ];
    for (outcome, who) in expected {
        let v = d.cli_json(&["recipients", "exact", "--outcome", outcome]);
        assert_eq!(v["ok"], true, "{outcome}: {v}");
        let got: BTreeSet<String> = users(&v).into_iter().collect();
        assert_eq!(got, set(who), "{outcome}");
        assert_eq!(v["data"]["total"], report[outcome], "{outcome} total");
        for r in v["data"]["recipients"].as_array().unwrap() {
            assert_eq!(r["outcome"], outcome, "{r}");
        }
    }

    // Timelines: times of each step, the interaction's payload, the error.
    let all = d.cli_json(&["recipients", "exact", "--limit", "100"]);
    let by = |u: &str| -> Value {
        all["data"]["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["channel_user_id"] == u)
            .cloned()
            .unwrap_or_else(|| panic!("{u} missing"))
    };
    let u1 = by("u1");
    for step in ["queued", "sent", "read", "interacted"] {
        assert!(u1["timeline"][step].is_string(), "u1 {step}: {u1}");
    }
    assert!(
        u1["timeline"]["interaction"]
            .as_str()
            .unwrap_or("")
            .contains("YES"),
        "{u1}"
    );
    assert_eq!(u1["attempts"], 1);
    let u10 = by("u10");
    assert_eq!(u10["error"]["code"], "bounced", "{u10}");
    assert_eq!(u10["error"]["message"], "mailbox gone");
    assert!(u10["timeline"]["failed"].is_string());
    assert_eq!(by("u9")["error"]["class"], "blocked");
    assert_eq!(by("u11")["skip_reason"], "unsubscribed");
    assert!(by("u7")["timeline"]["read"].is_null());

    // Error filters, channel and locale (not countable without a scan).
    let v = d.cli_json(&[
        "recipients",
        "exact",
        "--error-class",
        "blocked",
        "--outcome",
        "sent_fail",
    ]);
    assert_eq!(users(&v), vec!["u9"]);
    assert_eq!(v["data"]["total"], 1);
    let v = d.cli_json(&["recipients", "exact", "--error-code", "bounced"]);
    assert_eq!(users(&v), vec!["u10"]);
    let v = d.cli_json(&["recipients", "exact", "--channel", "hook", "--limit", "100"]);
    assert_eq!(users(&v).len(), 11);
    assert!(v["data"]["total"].is_null(), "{v}");
    let v = d.cli_json(&["recipients", "exact", "--channel", "elsewhere"]);
    assert!(users(&v).is_empty());
    let v = d.cli_json(&["recipients", "exact", "--locale", "fr"]);
    assert!(users(&v).is_empty());

    // Keyset pages: three at a time, in delivery order, each once.
    let mut seen = Vec::new();
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut args = vec!["recipients", "exact", "--limit", "3"];
        if let Some(a) = &after {
            args.extend(["--after", a.as_str()]);
        }
        let v = d.cli_json(&args);
        assert!(users(&v).len() <= 3);
        seen.extend(users(&v));
        for r in v["data"]["recipients"].as_array().unwrap() {
            ids.push(r["delivery_id"].as_i64().unwrap());
        }
        match v["data"]["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 11, "{seen:?}");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 11);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    // Bad input: a clear error naming the valid outcomes; foreign or
    // forged cursors.
    let v = d.cli_json(&["recipients", "exact", "--outcome", "opened"]);
    assert_eq!(v["ok"], false);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("opened") && msg.contains("read_only") && msg.contains("sent_fail"),
        "{msg}"
    );
    push_hello(&d, "other", &[]);
    wait_status(&d, "other", "completed", Duration::from_secs(30));
    let other = d.cli_json(&["recipients", "other", "--limit", "1"]);
    let foreign = other["data"]["next"].as_str().unwrap().to_string();
    let v = d.cli_json(&["recipients", "exact", "--after", &foreign]);
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another push"),
        "{v}"
    );
    let v = d.cli_json(&["recipients", "exact", "--after", "not-a-cursor"]);
    assert_eq!(v["error"]["code"], "invalid_args", "{v}");

    // CSV: every matching recipient, all pages.
    let csv = stdout(&d.cli(&[
        "recipients",
        "exact",
        "--format",
        "csv",
        "--outcome",
        "read_only",
    ]));
    let mut rdr = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 3, "{csv}");
    let csv = stdout(&d.cli(&["recipients", "exact", "--format", "csv"]));
    assert_eq!(csv.lines().count(), 12, "header + 11: {csv}");
}

#[test]
fn an_audience_from_an_outcome_has_lineage_and_leaves_out_the_unsubscribed() {
    let Constructed { rt, mock, d } = constructed_push();
    let v = d.cli_json(&[
        "audience",
        "from-push",
        "exact",
        "--outcome",
        "not_read_or_interacted",
        "--name",
        "nudge",
    ]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["data"]["audience"]["members"], 2);
    assert_eq!(v["data"]["audience"]["outcome"], "not_read_or_interacted");
    assert_eq!(v["data"]["source_push"], "exact");
    let lineage = strings(
        &d.db(),
        "SELECT p.name || ':' || a.outcome FROM audiences a JOIN pushes p ON p.id = a.source_push_id WHERE a.name = 'nudge'",
    );
    assert_eq!(lineage, vec!["exact:not_read_or_interacted".to_string()]);

    // u8 opts out: a new audience from the same outcome leaves u8 out.
    let stop = custom_message(
        "stop-u8",
        "u8",
        Some("STOP"),
        None,
        None,
        chrono::Utc::now().timestamp(),
    );
    let (status, _) = http(
        &rt,
        "POST",
        &format!("{}/webhooks/hook", d.http_base()),
        &standard_webhook_headers(
            WEBHOOK_SECRET,
            "wh-stop-u8",
            chrono::Utc::now().timestamp(),
            stop.as_bytes(),
        ),
        &stop,
    );
    assert_eq!(status, 200);
    let v = d.cli_json(&[
        "audience",
        "from-push",
        "exact",
        "--outcome",
        "not_read_or_interacted",
        "--name",
        "nudge2",
    ]);
    assert_eq!(v["data"]["audience"]["members"], 1, "{v}");

    // Pushing to it sends to exactly that member.
    let before = mock.requests_for("u7").len();
    create_push(
        &d,
        &[
            "--audience",
            "nudge2",
            "--template",
            "hello",
            "--name",
            "followup",
        ],
    );
    wait_status(&d, "followup", "completed", Duration::from_secs(30));
    let r = d.cli_json(&["report", "followup"])["data"].clone();
    assert_eq!(r["recipients"], 1, "{r}");
    assert_eq!(mock.requests_for("u7").len(), before + 1);
    assert!(
        mock.requests_for("u8").len() <= 1,
        "u8 only ever got the first push"
    );

    // Bad input changes nothing.
    let v = d.cli_json(&[
        "audience",
        "from-push",
        "exact",
        "--outcome",
        "opened",
        "--name",
        "x",
    ]);
    assert_eq!(v["ok"], false);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not_read_or_interacted")
    );
    let v = d.cli_json(&[
        "audience",
        "from-push",
        "exact",
        "--outcome",
        "read_only",
        "--name",
        "nudge",
    ]);
    assert_eq!(v["ok"], false, "a used name");
    let v = d.cli_json(&[
        "audience",
        "from-push",
        "nope",
        "--outcome",
        "read_only",
        "--name",
        "y",
    ]);
    assert_eq!(v["error"]["code"], "not_found", "{v}");
    let names = strings(&d.db(), "SELECT name FROM audiences ORDER BY name");
    assert_eq!(names, vec!["nudge".to_string(), "nudge2".to_string()]);
}
