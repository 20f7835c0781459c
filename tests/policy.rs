//! The delivery policy across pushes (`[policy]`) through the real binary:
//! frequency caps that hold when two pushes run at once and roll over at
//! each member's local midnight, quiet hours that hold recipients and
//! release them when they end, the per-push bypass (audited), and reloads
//! of the policy (a malformed one keeps the old).

use crate::dispatch::{assert_consistent, push_hello, show, wait_status};
use crate::support::*;
use chrono::{Timelike, Utc};
use serde_json::Value;
use std::time::Duration;

const SCRIPTS: &str = r#"
audience "all" { where = { channel = "sim" } }
template "hello" { en = { text = "Hello {{name}}" } }
"#;

/// A simulator that never fails, so "sent" is every message that went out.
const SIM: &str = "[channels.sim]\nkind = \"simulator\"\nlatency = \"5ms\"\nreceipt_delay = \"50ms\"\n\
    block_rate = 0.0\ninvalid_rate = 0.0\ntransient_rate = 0.0\nrate_limit_rate = 0.0\n";

fn config(policy: &str, seed_members: u64) -> String {
    base_config(&format!(
        "[dispatch]\nrate_per_minute = 0\n{SIM}seed_members = {seed_members}\n[policy]\n{policy}\n"
    ))
}

fn daemon_with(config: &str, env: &[(&str, String)]) -> TestDaemon {
    let mut d = TestDaemon::prepare(config);
    d.write_script("10_test.lua", SCRIPTS);
    d.spawn_with_env(env);
    d
}

/// Imports simulator members `u0..u{n}` in `timezone`.
fn import_members(d: &TestDaemon, prefix: &str, n: usize, timezone: &str) {
    let mut csv = String::from("channel,channel_user_id,name,timezone\n");
    for i in 0..n {
        csv.push_str(&format!("sim,{prefix}{i},M{i},{timezone}\n"));
    }
    let path = d.path(&format!("{prefix}.csv"));
    std::fs::write(&path, csv).unwrap();
    let v = d.cli_json(&["members", "import", path.to_str().unwrap()]);
    assert_eq!(v["ok"], true, "{v}");
}

/// Sent messages per member over every push.
fn sent_per_member(d: &TestDaemon) -> Vec<(i64, i64)> {
    let db = d.db();
    let mut stmt = db
        .prepare(
            "SELECT m.id, (SELECT count(*) FROM deliveries d WHERE d.member_id = m.id AND d.state = 2)
             FROM members m WHERE m.subscribed ORDER BY m.id",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn id(p: &Value) -> i64 {
    p["id"].as_i64().expect("push id")
}

fn report(d: &TestDaemon, push: &str) -> Value {
    let v = d.cli_json(&["report", push]);
    assert_eq!(v["ok"], true, "{v}");
    v["data"].clone()
}

#[test]
fn two_pushes_at_once_with_a_daily_cap_send_each_member_exactly_once() {
    // Both pushes scheduled for the same instant and sharing a global rate
    // (100/s): their claims interleave over the same members.
    let slow = config("max_per_member = { day = 1 }", 300)
        .replace("rate_per_minute = 0", "rate_per_minute = 6000");
    let d = daemon_with(&slow, &[]);
    let at = (Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let a = push_hello(&d, "first", &["--at", &at]);
    let b = push_hello(&d, "second", &["--at", &at]);
    wait_status(&d, "first", "completed", Duration::from_secs(60));
    wait_status(&d, "second", "completed", Duration::from_secs(60));
    assert_consistent(&d, id(&a));
    assert_consistent(&d, id(&b));
    let per_member = sent_per_member(&d);
    assert!(per_member.len() > 100, "{per_member:?}");
    let wrong: Vec<_> = per_member.iter().filter(|(_, n)| *n != 1).collect();
    assert!(
        wrong.is_empty(),
        "members not sent exactly one message: {wrong:?}"
    );
    // Everyone the one push reached, the other skipped as capped.
    let (ra, rb) = (report(&d, "first"), report(&d, "second"));
    let capped = ra["capped"].as_u64().unwrap() + rb["capped"].as_u64().unwrap();
    let sent = ra["sent_success"].as_u64().unwrap() + rb["sent_success"].as_u64().unwrap();
    assert_eq!(capped, sent, "{ra}\n{rb}");
    assert_eq!(sent, per_member.len() as u64);
    let db = d.db();
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM deliveries WHERE state = 4 AND skip_reason = 'capped'"
        ),
        capped as i64
    );
    // One count per message, nothing counted for the capped.
    assert_eq!(count(&db, "SELECT count(*) FROM member_sends"), sent as i64);
    // (Both walk the members in id order at the same pace, so one of them
    // is usually a step ahead and wins every member; without the check in
    // the claim, every member got two messages.)
    let loser = if rb["capped"].as_u64() > Some(0) {
        "second"
    } else {
        "first"
    };
    let text = stdout(&d.cli(&["report", loser]));
    assert!(text.contains("capped by [policy]"), "{text}");
}

#[test]
fn caps_roll_over_at_the_members_local_midnight() {
    // The daemon's clock starts 6 s before midnight in Tokyo.
    let now = Utc::now();
    let tokyo: chrono_tz::Tz = "Asia/Tokyo".parse().unwrap();
    let local = now.with_timezone(&tokyo);
    let midnight = (local.date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_local_timezone(tokyo)
        .unwrap()
        .timestamp_millis();
    let offset = midnight - 6_000 - now.timestamp_millis();
    let env = [("PUSHD_TEST_CLOCK_OFFSET_MS", offset.to_string())];
    let d = daemon_with(&config("max_per_member = { day = 1, week = 5 }", 0), &env);
    import_members(&d, "tokyo", 20, "Asia/Tokyo");
    import_members(&d, "london", 10, "Europe/London");
    let daemon_now = || Utc::now().timestamp_millis() + offset;
    push_hello(&d, "before-midnight", &[]);
    wait_status(&d, "before-midnight", "completed", Duration::from_secs(30));
    push_hello(&d, "again-before-midnight", &[]);
    wait_status(
        &d,
        "again-before-midnight",
        "completed",
        Duration::from_secs(30),
    );
    assert!(
        daemon_now() < midnight,
        "the machine is too slow for this test: both pushes should end before midnight in Tokyo"
    );
    assert_eq!(report(&d, "before-midnight")["sent_success"], 30);
    assert_eq!(report(&d, "again-before-midnight")["capped"], 30);
    // After midnight in Tokyo, Tokyo members may be messaged again; in
    // London it is still the same afternoon.
    wait_for("midnight in Tokyo", Duration::from_secs(20), || {
        (daemon_now() > midnight + 200).then_some(())
    });
    push_hello(&d, "after-midnight", &[]);
    wait_status(&d, "after-midnight", "completed", Duration::from_secs(30));
    let r = report(&d, "after-midnight");
    assert_eq!(
        (r["sent_success"].as_u64(), r["capped"].as_u64()),
        (Some(20), Some(10)),
        "{r}"
    );
    let db = d.db();
    let tokyo_sent = count(
        &db,
        &format!(
            "SELECT count(*) FROM deliveries d JOIN members m ON m.id = d.member_id
             WHERE m.timezone = 'Asia/Tokyo' AND d.state = 2 AND d.sent_at >= {midnight}"
        ),
    );
    assert_eq!(tokyo_sent, 20, "the second message went out after midnight");
}

/// "HH:MM" of `t` in UTC.
fn hhmm(t: chrono::DateTime<Utc>) -> String {
    t.format("%H:%M").to_string()
}

/// Quiet hours (UTC) that began an hour ago and end at the next minute
/// boundary at least 5 s away; returns (quiet_hours, when they end in ms).
fn quiet_until_next_minute() -> (String, i64) {
    let now = Utc::now();
    let mut end = now
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap()
        + chrono::Duration::minutes(1);
    if (end - now).num_seconds() < 5 {
        end += chrono::Duration::minutes(1);
    }
    let start = now - chrono::Duration::hours(1);
    (
        format!("{}-{}", hhmm(start), hhmm(end)),
        end.timestamp_millis(),
    )
}

#[test]
fn quiet_hours_hold_recipients_and_release_them_when_they_end() {
    let (quiet, ends) = quiet_until_next_minute();
    let d = daemon_with(
        &config(
            &format!("quiet_hours = \"{quiet}\"\ndefault_timezone = \"UTC\""),
            0,
        ),
        &[],
    );
    // Members without a timezone keep the default (UTC).
    import_members(&d, "u", 15, "");
    let created = d.cli_json(&[
        "push",
        "create",
        "--audience",
        "all",
        "--template",
        "hello",
        "--name",
        "held",
    ]);
    assert_eq!(created["ok"], true, "{created}");
    let warning = created["data"]["warnings"].to_string();
    assert!(warning.contains("sending starts at"), "{created}");
    // Held, not dropped: status says how many, until when.
    let p = wait_for("the recipients to be held", Duration::from_secs(20), || {
        let p = show(&d, "held");
        (p["held"] == 15).then_some(p)
    });
    let until = chrono::DateTime::from_timestamp_millis(ends).unwrap();
    let until = until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(p["held_until"], until.as_str(), "{p}");
    assert_eq!(p["resumes_at"], until.as_str(), "{p}");
    assert!(p["eta_secs"].as_u64().unwrap() >= 1, "{p}");
    let status = stdout(&d.cli(&["status"]));
    assert!(
        status.contains("15 held") && status.contains(&quiet),
        "{status}"
    );
    // The panel says the same: the policy in force, and who is held until when.
    let panel = crate::panel::PanelClient::sign_in(&d, true);
    let pushes = panel.get("/").text();
    assert!(
        pushes.contains(&format!(
            "Delivery policy: no frequency cap, all pushes together; quiet hours {quiet}"
        )),
        "{pushes}"
    );
    let page = panel.get("/pushes/held").text();
    assert!(
        page.contains(&format!(
            r#"data-field="held">15, sending resumes {until}<"#
        )),
        "{page}"
    );
    assert_eq!(
        count(&d.db(), "SELECT count(*) FROM deliveries WHERE state = 2"),
        0
    );
    // Released when the quiet hours end, not before.
    let done = wait_status(&d, "held", "completed", Duration::from_secs(90));
    assert_eq!(done["sent"], 15, "{done}");
    let first_sent = count(
        &d.db(),
        "SELECT min(sent_at) FROM deliveries WHERE state = 2",
    );
    assert!(
        first_sent >= ends,
        "sent at {first_sent}, before quiet hours ended at {ends}"
    );
}

#[test]
fn a_closed_send_window_gives_an_eta_that_says_when_sending_starts() {
    let d = daemon_with(&config("", 0), &[]);
    import_members(&d, "u", 10, "UTC");
    let from = Utc::now() + chrono::Duration::hours(6);
    let to = from + chrono::Duration::hours(2);
    let created = d.cli_json(&[
        "push",
        "create",
        "--audience",
        "all",
        "--template",
        "hello",
        "--name",
        "windowed",
        "--window-from",
        &hhmm(from),
        "--window-to",
        &hhmm(to),
    ]);
    assert_eq!(created["ok"], true, "{created}");
    let eta = created["data"]["push"]["eta_secs"].as_u64().unwrap();
    assert!(eta > 5 * 3600, "the ETA counts the wait: {created}");
    let text = stdout(&d.cli(&[
        "push",
        "create",
        "--audience",
        "all",
        "--template",
        "hello",
        "--name",
        "windowed-2",
        "--window-from",
        &hhmm(from),
        "--window-to",
        &hhmm(to),
    ]));
    assert!(text.contains("sending starts at"), "{text}");
    assert!(!text.contains("estimated duration: 1s"), "{text}");
    let p = wait_for(
        "the window to hold everyone",
        Duration::from_secs(20),
        || {
            let p = show(&d, "windowed");
            (p["held"] == 10).then_some(p)
        },
    );
    assert!(p["eta_secs"].as_u64().unwrap() > 5 * 3600, "{p}");
    assert!(p["resumes_at"].is_string(), "{p}");
}

#[test]
fn bypass_ignores_quiet_hours_and_caps_and_is_audited() {
    // Quiet all around now, and one message a day.
    let now = Utc::now();
    let quiet = format!(
        "{}-{}",
        hhmm(now - chrono::Duration::hours(1)),
        hhmm(now + chrono::Duration::hours(2))
    );
    let d = daemon_with(
        &config(
            &format!("quiet_hours = \"{quiet}\"\nmax_per_member = {{ day = 1 }}"),
            0,
        ),
        &[],
    );
    import_members(&d, "u", 8, "UTC");
    let bad = d.cli_json(&[
        "push",
        "create",
        "--audience",
        "all",
        "--template",
        "hello",
        "--name",
        "x",
        "--policy",
        "ignore",
    ]);
    assert_eq!(bad["ok"], false, "{bad}");
    assert!(
        bad["error"]["message"].to_string().contains("bypass"),
        "{bad}"
    );
    assert_eq!(
        count(&d.db(), "SELECT count(*) FROM pushes"),
        0,
        "nothing created"
    );
    for name in ["otp-1", "otp-2"] {
        push_hello(&d, name, &["--policy", "bypass"]);
        let done = wait_status(&d, name, "completed", Duration::from_secs(30));
        assert_eq!(done["sent"], 8, "{done}");
        assert_eq!(done["policy"], "bypass", "{done}");
    }
    // Their sends count toward the caps of pushes that keep the policy.
    assert_eq!(count(&d.db(), "SELECT count(*) FROM member_sends"), 16);
    push_hello(&d, "marketing", &[]);
    let p = wait_for("marketing to be held", Duration::from_secs(20), || {
        let p = show(&d, "marketing");
        (p["held"] == 8).then_some(p)
    });
    assert_eq!(p["sent"], 0, "{p}");
    let audit = d.cli_json(&["audit", "--action", "push.policy_bypass"]);
    let entries = audit["data"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{audit}");
    for e in entries {
        assert!(e["uid"].is_number(), "the peer is recorded: {e}");
        assert!(e["detail"].to_string().contains("quiet hours"), "{e}");
    }
}

#[test]
fn a_reloaded_policy_applies_from_then_on_and_a_malformed_one_keeps_the_old() {
    let d = daemon_with(&config("max_per_member = { day = 2 }", 0), &[]);
    import_members(&d, "u", 6, "UTC");
    push_hello(&d, "one", &[]);
    wait_status(&d, "one", "completed", Duration::from_secs(30));
    assert_eq!(d.status()["policy"]["max_per_day"], 2);
    // A malformed policy: a clear error naming the key, the old one stays.
    std::fs::write(&d.config_path, config("quiet_hours = \"late-early\"", 0)).unwrap();
    // (Over the socket: the CLI itself cannot read that config.)
    let v = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(v["data"]["config"]["ok"], false, "{v}");
    let error = v["data"]["config"]["errors"].to_string();
    assert!(
        error.contains("policy.quiet_hours") && error.contains("21:00-08:00"),
        "{error}"
    );
    let status = d.status();
    assert_eq!(status["policy"]["max_per_day"], 2, "{status}");
    assert!(status["policy"]["quiet_hours"].is_null(), "{status}");
    // (The CLI cannot read the broken file either: over the socket.)
    let created = d.request(
        r#"{"cmd":"push.create","args":{"audience":"all","template":"hello","name":"two"}}"#,
    );
    assert_eq!(created["ok"], true, "{created}");
    let two = wait_for("push two to complete", Duration::from_secs(30), || {
        let v = d.request(r#"{"cmd":"push.show","args":{"push":"two"}}"#);
        (v["data"]["push"]["status"] == "completed").then(|| v["data"]["push"].clone())
    });
    assert_eq!(two["sent"], 6, "the old cap (2 a day) still applies: {two}");
    // A good edit applies to the sends from then on.
    std::fs::write(
        &d.config_path,
        config("max_per_member = { day = 3, week = 3 }", 0),
    )
    .unwrap();
    let v = d.cli_json(&["reload"]);
    assert_eq!(v["data"]["config"]["ok"], true, "{v}");
    assert_eq!(d.status()["policy"]["max_per_week"], 3);
    push_hello(&d, "three", &[]);
    push_hello(&d, "four", &[]);
    wait_status(&d, "three", "completed", Duration::from_secs(30));
    wait_status(&d, "four", "completed", Duration::from_secs(30));
    let (r3, r4) = (report(&d, "three"), report(&d, "four"));
    assert_eq!(
        r3["sent_success"].as_u64().unwrap() + r4["sent_success"].as_u64().unwrap(),
        6
    );
    assert_eq!(
        r3["capped"].as_u64().unwrap() + r4["capped"].as_u64().unwrap(),
        6
    );
    let audit = d.cli_json(&["audit", "--action", "reload.config"]);
    assert!(
        audit["data"]["entries"].to_string().contains("policy"),
        "{audit}"
    );
}

#[test]
fn kill_9_mid_push_never_lets_a_member_past_the_cap() {
    let slow = config("max_per_member = { day = 1 }", 400)
        .replace("latency = \"5ms\"", "latency = \"40ms\"");
    let mut d = daemon_with(&slow, &[]);
    push_hello(&d, "a", &[]);
    push_hello(&d, "b", &[]);
    wait_for("some sends", Duration::from_secs(30), || {
        (count(&d.db(), "SELECT count(*) FROM deliveries WHERE state = 2") > 50).then_some(())
    });
    d.crash();
    d.spawn();
    wait_status(&d, "a", "completed", Duration::from_secs(60));
    wait_status(&d, "b", "completed", Duration::from_secs(60));
    let db = d.db();
    // A message that may have left (sent, or interrupted by the crash) is
    // counted, and no member has more than one.
    let over = count(
        &db,
        "SELECT count(*) FROM (SELECT member_id FROM deliveries
           WHERE state = 2 OR (state = 3 AND error_class = 'interrupted')
           GROUP BY member_id HAVING count(*) > 1)",
    );
    assert_eq!(over, 0, "a member got two messages across the crash");
    let went = count(
        &db,
        "SELECT count(*) FROM deliveries WHERE state = 2 OR (state = 3 AND error_class = 'interrupted')",
    );
    assert_eq!(count(&db, "SELECT count(*) FROM member_sends"), went);
    let subscribed = count(&db, "SELECT count(*) FROM members WHERE subscribed");
    assert_eq!(
        went, subscribed,
        "every member got its one message, or its interrupted one"
    );
}

#[test]
fn a_script_push_may_bypass_the_policy_and_a_bad_value_is_a_load_error() {
    let now = Utc::now();
    let quiet = format!(
        "{}-{}",
        hhmm(now - chrono::Duration::hours(1)),
        hhmm(now + chrono::Duration::hours(2))
    );
    let d = daemon_with(&config(&format!("quiet_hours = \"{quiet}\""), 0), &[]);
    import_members(&d, "u", 5, "UTC");
    // A bad value never goes live, and says where and what to write.
    d.write_script(
        "20_bad.lua",
        "push \"otp\" { audience = \"all\", template = \"hello\", start_at = \"now\", policy = \"skip\" }\n",
    );
    let s = wait_for(
        "the bad script to be refused",
        Duration::from_secs(20),
        || {
            let s = d.status();
            (s["last_script_reload"]["ok"] == false).then_some(s)
        },
    );
    let errors = s["last_script_reload"]["errors"].to_string();
    assert!(
        errors.contains("20_bad.lua:1") && errors.contains("bypass"),
        "{errors}"
    );
    assert_eq!(count(&d.db(), "SELECT count(*) FROM pushes"), 0);
    d.write_script(
        "20_bad.lua",
        "push \"otp\" { audience = \"all\", template = \"hello\", start_at = \"now\", policy = \"bypass\" }\n",
    );
    // Sent at once, in quiet hours.
    let done = wait_status(&d, "otp", "completed", Duration::from_secs(30));
    assert_eq!(
        (done["sent"].as_u64(), done["policy"].as_str()),
        (Some(5), Some("bypass")),
        "{done}"
    );
    let audit = d.cli_json(&["audit", "--action", "push.policy_bypass"]);
    let entries = audit["data"]["entries"].to_string();
    assert!(
        entries.contains("otp") && entries.contains("20_bad.lua:1"),
        "{audit}"
    );
}
