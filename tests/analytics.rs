//! The report of a push whose outcomes are constructed exactly: counts,
//! percentages, before/after completion, failures, CSV export, the HTML pie,
//! and the retry audience with its lineage.

use crate::dispatch::{create_push, push_hello, wait_status};
use crate::e2e::{HELLO, import_members, runtime};
use crate::support::mocks::creds::WEBHOOK_SECRET;
use crate::support::mocks::{Behavior, MockPlatform};
use crate::support::webhooks::*;
use crate::support::*;
use crate::webhooks::http;
use pushd::model::Platform;
use serde_json::Value;
use std::time::Duration;

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A finished push "exact" over 11 members of the custom channel "hook",
/// with receipts that construct every outcome: u1, u2 read & interacted
/// (u1 replied "YES"); u3–u5 read only; u6 interacted only; u7, u8 neither;
/// u9 blocked and u10 bounced ("mailbox gone"): sent fail; u11 skipped
/// (unsubscribed).
pub struct Constructed {
    pub rt: tokio::runtime::Runtime,
    pub mock: MockPlatform,
    pub d: TestDaemon,
}

pub fn constructed_push() -> Constructed {
    let rt = runtime();
    let mock = rt.block_on(MockPlatform::start(Platform::Custom));
    let cfg = base_config(&format!(
        "[dispatch]\nrate_per_minute = 0\nmax_attempts = 2\nbackoff_base = \"20ms\"\n{}",
        mock.channel_toml("hook")
    ));
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script("10.lua", HELLO);
    d.spawn();
    let users: Vec<(String, String)> = (1..=11)
        .map(|i| ("hook".to_string(), format!("u{i}")))
        .collect();
    import_members(&d, &users);
    // u11 is unsubscribed: skipped, outside the pie.
    let p = d.path("unsub.csv");
    std::fs::write(&p, "channel,channel_user_id,subscribed\nhook,u11,false\n").unwrap();
    d.cli_json(&["members", "import", p.to_str().unwrap()]);
    mock.script("u9", Behavior::Block);

    // Before it starts: scheduled, not final.
    let at = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    push_hello(&d, "exact", &["--at", &at]);
    let before = d.cli_json(&["report", "exact"])["data"].clone();
    assert_eq!(before["status"], "scheduled");
    assert_eq!(before["final"], false);
    assert!(before["note"].as_str().unwrap().contains("not final"));
    let done = wait_status(&d, "exact", "completed", Duration::from_secs(60));
    assert!(done["finished_at"].is_string());

    // Receipts that construct every slice.
    let provider = |u: &str| d.provider_message_id(u);
    let mut evs = Vec::new();
    for u in ["u1", "u2", "u3", "u4", "u5"] {
        evs.push(custom_status(&provider(u), "read", now_s()));
    }
    for (i, u) in ["u1", "u2", "u6"].iter().enumerate() {
        evs.push(custom_message(
            &format!("click-{i}"),
            u,
            None,
            Some("YES"),
            Some(&provider(u)),
            now_s(),
        ));
    }
    for u in ["u7", "u8"] {
        evs.push(custom_status(&provider(u), "delivered", now_s()));
    }
    evs.push(custom_failed(
        &provider("u10"),
        "bounced",
        "mailbox gone",
        now_s(),
    ));
    let body = custom_batch(&evs);
    let (status, text) = http(
        &rt,
        "POST",
        &format!("{}/webhooks/hook", d.http_base()),
        &standard_webhook_headers(WEBHOOK_SECRET, "wh-exact", now_s(), body.as_bytes()),
        &body,
    );
    assert_eq!(status, 200, "{text}");
    Constructed { rt, mock, d }
}

#[test]
fn constructed_push_report_failures_export_html_and_retry_audience() {
    let Constructed { rt, mock, d } = constructed_push();

    let r = d.cli_json(&["report", "exact"])["data"].clone();
    let expect = [
        ("recipients", 10),
        ("sent_success", 8),
        ("sent_fail", 2),
        ("read_and_interacted", 2),
        ("read_only", 3),
        ("interacted_only", 1),
        ("not_read_or_interacted", 2),
        ("skipped", 1),
        ("cancelled", 0),
    ];
    for (k, v) in expect {
        assert_eq!(r[k], v, "{k}: {r}");
    }
    let pct = |k: &str| r["percent"][k].as_f64().unwrap();
    assert_eq!(pct("sent_success"), 80.0);
    assert_eq!(pct("sent_fail"), 20.0);
    assert_eq!(pct("read_and_interacted"), 20.0);
    assert_eq!(pct("read_only"), 30.0);
    assert_eq!(pct("interacted_only"), 10.0);
    assert_eq!(pct("not_read_or_interacted"), 20.0);
    let five: f64 = [
        "read_and_interacted",
        "read_only",
        "interacted_only",
        "not_read_or_interacted",
        "sent_fail",
    ]
    .iter()
    .map(|k| pct(k))
    .sum();
    assert_eq!(five, 100.0);
    assert_eq!(r["final"], true);
    assert!(r["as_of"].is_string() && r["start_at"].is_string() && r["finished_at"].is_string());

    // Table and CSV formats.
    let table = stdout(&d.cli(&["report", "exact"]));
    assert!(
        table.contains("Read & Interacted") && table.contains("30.0%"),
        "{table}"
    );
    let csv = stdout(&d.cli(&["report", "exact", "--format", "csv"]));
    assert!(csv.contains("read_only,3,30.00"), "{csv}");

    // Failures grouped by class and code, with the platform's message.
    let f = d.cli_json(&["failures", "exact"])["data"].clone();
    let groups = f["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{f}");
    let codes: Vec<(&str, &str, u64)> = groups
        .iter()
        .map(|g| {
            (
                g["class"].as_str().unwrap(),
                g["code"].as_str().unwrap(),
                g["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(codes.contains(&("blocked", "blocked", 1)), "{codes:?}");
    assert!(codes.iter().any(|c| c.1 == "bounced"), "{codes:?}");
    assert!(f.to_string().contains("mailbox gone"));
    assert!(f.to_string().contains("hook") && f.to_string().contains("u9"));

    // The detailed export: one row per recipient (skipped included).
    let out = d.path("exact.csv");
    let o = d.cli(&["export", "exact", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut rdr = csv::Reader::from_path(&out).unwrap();
    let headers = rdr.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 11);
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let by_user = |u: &str| {
        rows.iter()
            .find(|r| &r[col("channel_user_id")] == u)
            .unwrap()
            .clone()
    };
    let u9 = by_user("u9");
    assert_eq!(
        (&u9[col("state")], &u9[col("error_class")]),
        ("failed", "blocked")
    );
    let u1 = by_user("u1");
    assert_eq!(&u1[col("state")], "sent");
    assert!(!u1[col("read_at")].is_empty() && !u1[col("interacted_at")].is_empty());
    assert_eq!(&by_user("u11")[col("state")], "skipped");
    assert_eq!(&by_user("u11")[col("skip_reason")], "unsubscribed");

    // The HTML page: a self-contained SVG pie whose slice angles match the percentages.
    let html_path = d.path("exact.html");
    let o = d.cli(&[
        "report",
        "exact",
        "--format",
        "html",
        "-o",
        html_path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("<svg"));
    // Self-contained: no external scripts, styles or images.
    for external in ["<script", "<link", "src=\"", "@import"] {
        assert!(!html.contains(external), "{external} in the page");
    }
    let slices: Vec<(String, f64, f64)> = html
        .split("<path class=\"slice\" ")
        .skip(1)
        .map(|p| {
            let attr = |name: &str| -> String {
                let start = p.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                p[start..].split('"').next().unwrap().to_string()
            };
            (
                attr("data-slice"),
                attr("data-start").parse().unwrap(),
                attr("data-end").parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(slices.len(), 5, "{slices:?}");
    let expected = [
        ("read_and_interacted", 0.0, 72.0),
        ("read_only", 72.0, 180.0),
        ("interacted_only", 180.0, 216.0),
        ("not_read_or_interacted", 216.0, 288.0),
        ("sent_fail", 288.0, 360.0),
    ];
    for ((name, s, e), (en, es, ee)) in slices.iter().zip(expected) {
        assert_eq!(name, en);
        assert!(
            (s - es).abs() < 0.01 && (e - ee).abs() < 0.01,
            "{name}: {s}..{e}"
        );
    }
    assert!(html.contains("Read Only <b>30.0%</b>"), "legend in %");
    assert!(html.contains("mailbox gone"), "failure summary in the page");

    // Retry audience: the failed recipients (u9, u10), minus members who
    // unsubscribed since (u10 opts out first), linked to the push.
    let stop = custom_message("stop-1", "u10", Some("STOP"), None, None, now_s());
    let (status, _) = http(
        &rt,
        "POST",
        &format!("{}/webhooks/hook", d.http_base()),
        &standard_webhook_headers(WEBHOOK_SECRET, "wh-stop", now_s(), stop.as_bytes()),
        &stop,
    );
    assert_eq!(status, 200);
    let v = d.cli_json(&["retry-audience", "exact", "--name", "exact-retry"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["data"]["audience"]["members"], 1);
    assert_eq!(v["data"]["source_push"], "exact");
    let members = strings(
        &d.db(),
        "SELECT m.channel_user_id FROM audience_members am JOIN audiences a ON a.id = am.audience_id JOIN members m ON m.id = am.member_id WHERE a.name = 'exact-retry'",
    );
    assert_eq!(members, vec!["u9".to_string()]);
    // --only transient: none of these failures is transient.
    let v = d.cli_json(&[
        "retry-audience",
        "exact",
        "--name",
        "exact-transient",
        "--only",
        "transient",
    ]);
    assert_eq!(v["data"]["audience"]["members"], 0, "{v}");
    // A name can't be reused.
    let v = d.cli_json(&["retry-audience", "exact", "--name", "exact-retry"]);
    assert_eq!(v["ok"], false);
    // Pushing the retry audience: its report says what it retries.
    mock.script("u9", Behavior::Succeed);
    create_push(
        &d,
        &[
            "--audience",
            "exact-retry",
            "--template",
            "hello",
            "--name",
            "exact-again",
        ],
    );
    wait_status(&d, "exact-again", "completed", Duration::from_secs(30));
    let r2: Value = d.cli_json(&["report", "exact-again"])["data"].clone();
    assert_eq!(r2["retry_of"], "exact", "{r2}");
    assert_eq!(r2["sent_success"], 1);
    assert!(stdout(&d.cli(&["report", "exact-again"])).contains("retry of exact"));
    assert_eq!(
        mock.requests_for("u9").len(),
        2,
        "once in the push, once in the retry"
    );
}
