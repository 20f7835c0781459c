//! The dispatcher through the real binary, on the simulator channel:
//! completion, lifecycle controls, scheduling, script pushes created once.

use crate::support::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const SCRIPTS: &str = r#"
audience "all" { where = { channel = "sim" } }
audience "vip" { where = { channel = "sim", tags_all = { "vip" } } }
template "hello" { en = { text = "Hello {{name}}" }, zh = { text = "你好 {{name}}" } }
"#;

/// A daemon with `members` simulator members and the given dispatch settings.
pub fn sim_daemon(members: u64, dispatch: &str, sim: &str) -> TestDaemon {
    let cfg = base_config(&format!(
        "[dispatch]\nbackoff_base = \"50ms\"\nbackoff_max = \"200ms\"\n{dispatch}\n\
         [channels.sim]\nkind = \"simulator\"\nseed_members = {members}\nlatency = \"2ms\"\nreceipt_delay = \"50ms\"\n{sim}\n"
    ));
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script("10_test.lua", SCRIPTS);
    d.spawn();
    d
}

pub fn create_push(d: &TestDaemon, args: &[&str]) -> Value {
    let mut all = vec!["push", "create"];
    all.extend_from_slice(args);
    let v = d.cli_json(&all);
    assert_eq!(v["ok"], true, "push create failed: {v}");
    v["data"]["push"].clone()
}

/// `push create --audience all --template hello --name NAME` plus `extra`.
pub fn push_hello(d: &TestDaemon, name: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--audience", "all", "--template", "hello", "--name", name];
    args.extend_from_slice(extra);
    create_push(d, &args)
}

pub fn show(d: &TestDaemon, push: &str) -> Value {
    let v = d.cli_json(&["push", "show", push]);
    assert_eq!(v["ok"], true, "push show failed: {v}");
    v["data"]["push"].clone()
}

pub fn wait_status(d: &TestDaemon, push: &str, status: &str, timeout: Duration) -> Value {
    wait_for(&format!("push {push} to be {status}"), timeout, || {
        let v = d.cli_json(&["push", "show", push]);
        let p = v["data"]["push"].clone();
        (p["status"] == status).then_some(p)
    })
}

/// Every delivery of the push is in exactly one final state, and the
/// maintained counters equal a recount from the deliveries table.
pub fn assert_consistent(d: &TestDaemon, push_id: i64) {
    let db = d.db();
    let nonfinal = count(
        &db,
        &format!("SELECT count(*) FROM deliveries WHERE push_id = {push_id} AND state IN (0, 1)"),
    );
    assert_eq!(nonfinal, 0, "deliveries left pending/sending");
    let dup = count(
        &db,
        &format!(
            "SELECT count(*) FROM (SELECT member_id FROM deliveries WHERE push_id = {push_id} GROUP BY member_id HAVING count(*) > 1)"
        ),
    );
    assert_eq!(dup, 0, "a member has two deliveries in one push");
    let mismatched = count(
        &db,
        &format!(
            "SELECT count(*) FROM (
               SELECT CASE WHEN state <= 1 THEN 0 ELSE state END, read_at IS NOT NULL AS rd, interacted_at IS NOT NULL AS ia, count(*) AS n
                 FROM deliveries WHERE push_id = {push_id} GROUP BY 1, 2, 3
               EXCEPT SELECT state, rd, ia, n FROM push_counts WHERE push_id = {push_id} AND n != 0)"
        ),
    );
    assert_eq!(mismatched, 0, "push_counts differ from a recount");
    let extra = count(
        &db,
        &format!(
            "SELECT count(*) FROM push_counts pc WHERE push_id = {push_id} AND n != 0 AND NOT EXISTS (
               SELECT 1 FROM deliveries d WHERE d.push_id = pc.push_id AND (CASE WHEN d.state <= 1 THEN 0 ELSE d.state END) = pc.state
                 AND (d.read_at IS NOT NULL) = pc.rd AND (d.interacted_at IS NOT NULL) = pc.ia)"
        ),
    );
    assert_eq!(extra, 0, "push_counts has cells with no deliveries");
}

#[test]
fn push_completes_with_one_final_state_per_recipient() {
    let d = sim_daemon(
        300,
        "rate_per_minute = 0\nconcurrency = 16",
        "block_rate = 0.05\ninvalid_rate = 0.05\ntransient_rate = 0.1\nrate_limit_rate = 0.05\nread_rate = 0.5\ninteract_rate = 0.3",
    );
    let p = push_hello(&d, "p1", &[]);
    assert_eq!(p["name"], "p1");
    let done = wait_status(&d, "p1", "completed", Duration::from_secs(60));
    assert_eq!(done["recipients"], 300 - 15); // 15 seeded members are unsubscribed
    assert_eq!(done["skipped"], 15);
    assert_consistent(&d, done["id"].as_i64().unwrap());
    let db = d.db();
    // Transient failures were retried and then succeeded: nobody failed as transient.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM deliveries WHERE error_class IN ('transient','rate_limited') AND state = 3"
        ),
        0
    );
    assert!(
        count(
            &db,
            "SELECT count(*) FROM deliveries WHERE attempts = 2 AND state = 2"
        ) > 0
    );
    // Permanent ones were not retried.
    assert!(
        count(
            &db,
            "SELECT count(*) FROM deliveries WHERE error_class = 'blocked'"
        ) > 0
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM deliveries WHERE error_class IN ('blocked','invalid_recipient') AND attempts != 1"
        ),
        0
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM pushes WHERE finished_at IS NULL"),
        0
    );
    // Receipts flow back and the report's slices add up.
    let r = wait_for("receipts", Duration::from_secs(30), || {
        let r = d.cli_json(&["report", "p1"])["data"].clone();
        (r["read_only"].as_u64().unwrap_or(0) > 0).then_some(r)
    });
    let slices = [
        "read_and_interacted",
        "read_only",
        "interacted_only",
        "not_read_or_interacted",
    ]
    .iter()
    .map(|k| r[k].as_u64().unwrap())
    .sum::<u64>();
    assert_eq!(slices, r["sent_success"].as_u64().unwrap());
    assert_eq!(
        r["sent_success"].as_u64().unwrap() + r["sent_fail"].as_u64().unwrap(),
        r["recipients"].as_u64().unwrap()
    );
    assert_eq!(r["final"], true);
}

#[test]
fn pause_resume_and_cancel() {
    let d = sim_daemon(200, "rate_per_minute = 1200\nconcurrency = 4", "");
    push_hello(&d, "slow", &[]);
    wait_for("some sends", Duration::from_secs(30), || {
        (show(&d, "slow")["sent"].as_u64().unwrap() >= 5).then_some(())
    });
    let v = d.cli_json(&["push", "pause", "slow"]);
    assert_eq!(v["data"]["push"]["status"], "paused", "{v}");
    // In-flight sends finish; then nothing moves while paused.
    wait_for("in-flight sends to drain", Duration::from_secs(10), || {
        (sending(&d.db()) == 0).then_some(())
    });
    let sent_at_pause = show(&d, "slow")["sent"].as_u64().unwrap();
    let watch_until = Instant::now() + Duration::from_millis(800);
    while Instant::now() < watch_until {
        assert_eq!(
            show(&d, "slow")["sent"].as_u64().unwrap(),
            sent_at_pause,
            "sent while paused"
        );
    }
    assert!(sent_at_pause < 185);
    // Pausing a paused push is a clear conflict.
    let v = d.cli_json(&["push", "pause", "slow"]);
    assert_eq!(v["error"]["code"], "conflict");
    let v = d.cli_json(&["push", "resume", "slow"]);
    assert_eq!(v["data"]["push"]["status"], "running", "{v}");
    wait_for("progress after resume", Duration::from_secs(30), || {
        (show(&d, "slow")["sent"].as_u64().unwrap() > sent_at_pause).then_some(())
    });
    let v = d.cli_json(&["push", "cancel", "slow"]);
    assert_eq!(v["ok"], true, "{v}");
    let p = wait_status(&d, "slow", "cancelled", Duration::from_secs(10));
    wait_for("cancel to settle", Duration::from_secs(10), || {
        (count(
            &d.db(),
            "SELECT count(*) FROM deliveries WHERE state IN (0,1)",
        ) == 0)
            .then_some(())
    });
    let p2 = show(&d, "slow");
    assert!(p2["cancelled"].as_u64().unwrap() > 0, "{p}");
    assert_consistent(&d, p["id"].as_i64().unwrap());
    // Everything is in the audit trail.
    let audit = d.cli_json(&["audit", "--action", "push"]);
    let actions: Vec<String> = audit["data"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    for a in ["push.create", "push.pause", "push.resume", "push.cancel"] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} missing from {actions:?}"
        );
    }
}

#[test]
fn scheduled_push_waits_for_its_start() {
    let d = sim_daemon(20, "rate_per_minute = 0", "");
    let at = chrono::Utc::now() + chrono::Duration::seconds(3);
    let at_text = at.to_rfc3339();
    push_hello(&d, "later", &["--at", &at_text]);
    let p = show(&d, "later");
    assert_eq!(p["status"], "scheduled");
    assert_eq!(count(&d.db(), "SELECT count(*) FROM deliveries"), 0);
    let done = wait_status(&d, "later", "completed", Duration::from_secs(30));
    let started: String = done["started_at"].as_str().unwrap().to_string();
    let started = chrono::DateTime::parse_from_rfc3339(&started).unwrap();
    assert!(
        started.timestamp() >= at.timestamp(),
        "started {started} before {at}"
    );
}

#[test]
fn bad_push_create_arguments_are_refused() {
    let d = sim_daemon(5, "", "");
    for (args, needle) in [
        (vec!["--audience", "nope", "--template", "hello"], "nope"),
        (vec!["--audience", "all", "--template", "nope"], "nope"),
        (
            vec![
                "--audience",
                "all",
                "--template",
                "hello",
                "--at",
                "tomorrow",
            ],
            "RFC 3339",
        ),
        (
            vec!["--audience", "all", "--template", "hello", "--rate", "0"],
            "rate",
        ),
        (
            vec![
                "--audience",
                "all",
                "--template",
                "hello",
                "--batch-size",
                "10",
                "--batch-every",
                "soon",
            ],
            "batch-every",
        ),
    ] {
        let mut all = vec!["--json", "push", "create"];
        all.extend(args.iter());
        let out = d.cli(&all);
        assert!(!out.status.success());
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{v}"
        );
    }
    assert_eq!(count(&d.db(), "SELECT count(*) FROM pushes"), 0);
    // Duplicate names are refused.
    push_hello(&d, "once", &[]);
    let v = d.cli_json(&[
        "push",
        "create",
        "--audience",
        "all",
        "--template",
        "hello",
        "--name",
        "once",
    ]);
    assert_eq!(v["ok"], false);
    assert_eq!(count(&d.db(), "SELECT count(*) FROM pushes"), 1);
}

#[test]
fn long_push_warns_about_eta() {
    let d = sim_daemon(200, "rate_per_minute = 1", "");
    let v = d.cli_json(&[
        "push",
        "create",
        "--audience",
        "all",
        "--template",
        "hello",
        "--name",
        "eta",
        "--at",
        "2099-01-01T00:00:00Z",
    ]);
    let warnings = v["data"]["warnings"].as_array().unwrap();
    assert!(warnings[0].as_str().unwrap().contains("batches"), "{v}");
    assert!(v["data"]["push"]["eta_secs"].as_u64().unwrap() > 3600);
}

#[test]
fn script_push_is_created_once_across_reloads_and_restarts() {
    let mut d = sim_daemon(30, "rate_per_minute = 0", "");
    d.write_script(
        "20_push.lua",
        "push \"scripted\" { audience = \"all\", template = \"hello\", start_at = \"now\" }\n",
    );
    let done = wait_status(&d, "scripted", "completed", Duration::from_secs(30));
    let id = done["id"].as_i64().unwrap();
    let sent_before = count(
        &d.db(),
        "SELECT count(*) FROM deliveries WHERE sending_at IS NOT NULL",
    );
    // A reload (new generation) must not create or send it again.
    let gen_before = d.status()["scripts"]["generation"].as_i64().unwrap();
    d.write_script(
        "30_more.lua",
        "template \"bye\" { en = { text = \"Bye\" } }\n",
    );
    wait_for("a new generation", Duration::from_secs(20), || {
        (d.status()["scripts"]["generation"].as_i64().unwrap() > gen_before).then_some(())
    });
    let v = d.cli_json(&["reload"]);
    assert_eq!(v["data"]["scripts"]["ok"], true, "{v}");
    assert_eq!(count(&d.db(), "SELECT count(*) FROM pushes"), 1);
    // Nor a restart.
    assert_eq!(d.stop(), Some(0));
    d.spawn();
    d.cli_json(&["status"]);
    assert_eq!(count(&d.db(), "SELECT count(*) FROM pushes"), 1);
    let sent_after = count(
        &d.db(),
        "SELECT count(*) FROM deliveries WHERE sending_at IS NOT NULL",
    );
    assert_eq!(sent_before, sent_after);
    assert_eq!(
        count(
            &d.db(),
            &format!("SELECT count(*) FROM deliveries WHERE push_id = {id} AND attempts > 2")
        ),
        0
    );
}

#[test]
fn send_window_defers_recipients_outside_it() {
    let d = sim_daemon(10, "rate_per_minute = 0", "");
    // A one-minute window that is certainly not now (in UTC and every seeded timezone).
    let now = chrono::Utc::now();
    let from = (now + chrono::Duration::hours(12))
        .format("%H:%M")
        .to_string();
    let to = (now + chrono::Duration::hours(12) + chrono::Duration::minutes(1))
        .format("%H:%M")
        .to_string();
    push_hello(
        &d,
        "windowed",
        &["--window-from", &from, "--window-to", &to],
    );
    wait_for("deliveries deferred", Duration::from_secs(20), || {
        let db = d.db();
        let deferred = count(
            &db,
            "SELECT count(*) FROM deliveries WHERE state = 0 AND next_attempt_at IS NOT NULL",
        );
        (deferred > 0).then_some(())
    });
    let db = d.db();
    assert_eq!(
        count(&db, "SELECT count(*) FROM deliveries WHERE state IN (2, 3)"),
        0,
        "nothing sent or failed outside the window"
    );
    assert_eq!(show(&d, "windowed")["status"], "running");
}

#[test]
fn follow_draws_progress_until_the_push_finishes() {
    let d = sim_daemon(50, "rate_per_minute = 3000", "");
    push_hello(&d, "followed", &[]);
    let out = d.cli(&["push", "show", "followed", "--follow"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Sent Success") && text.contains("completed"),
        "{text}"
    );
    assert_eq!(show(&d, "followed")["status"], "completed");
}

#[test]
fn events_log_lists_sends_newest_first() {
    let d = sim_daemon(10, "rate_per_minute = 0", "");
    push_hello(&d, "logged", &[]);
    wait_status(&d, "logged", "completed", Duration::from_secs(30));
    let v = d.cli_json(&["events", "--push", "logged", "--limit", "5"]);
    let events = v["data"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 5, "{v}");
    let times: Vec<i64> = events
        .iter()
        .map(|e| e["at_ms"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    let member = d.cli_json(&["events", "--member", "sim:sim-0001"]);
    assert_eq!(member["ok"], true, "{member}");
    let bad = d.cli_json(&["events", "--member", "nobody"]);
    assert_eq!(bad["ok"], false);
}

#[test]
fn route_skips_and_unknown_channels_end_skipped_with_the_reason() {
    let d = sim_daemon(40, "rate_per_minute = 0", "");
    d.write_script(
        "20_route.lua",
        r#"
route(function(m, msg, ctx)
  if m.tags.vip then return { skip = "vip members get a personal call" } end
  if m.tags["churn-risk"] then return { channel = "gone" } end
  return { channel = m.channel }
end)
"#,
    );
    wait_for("the router to load", Duration::from_secs(20), || {
        let s = d.status();
        (s["scripts"]["files"].as_array().map(|f| f.len()) == Some(2)).then_some(())
    });
    push_hello(&d, "routed", &[]);
    wait_status(&d, "routed", "completed", Duration::from_secs(30));
    let db = d.db();
    let reason = |r: &str| {
        count(
            &db,
            &format!("SELECT count(*) FROM deliveries WHERE state = 4 AND skip_reason = '{r}'"),
        )
    };
    assert_eq!(reason("vip members get a personal call"), 4); // members 10, 20, 30, 40
    assert_eq!(reason("channel \"gone\" is not configured"), 5); // 7, 14, 21, 28, 35
    assert_eq!(reason("unsubscribed"), 2); // 5, 25
    let r = d.cli_json(&["report", "routed"])["data"].clone();
    assert_eq!(r["skipped"], 11, "{r}");
    assert_eq!(r["recipients"], 29, "{r}");
}
