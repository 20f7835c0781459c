//! A/B template variants through the real binary: assignment by a hash of
//! (push, member) that a restart does not change and that splits evenly,
//! the winner chosen from a planted difference in read rates and sent to
//! the rest, the manual winner, the control group, kill -9 in every phase,
//! and a variant that fails validation blocking its generation.

use crate::dispatch::{assert_consistent, create_push, show, wait_status};
use crate::e2e::{import_members, runtime};
use crate::support::mocks::{Behavior, MockPlatform};
use crate::support::*;
use pushd::model::Platform;
use pushd::variants::{Group, Plan};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const SCRIPTS: &str = r#"
audience "all" { }
template "bf" {
  variants = {
    a = { en = { text = "30% off today, {{name}}" } },
    b = { en = { text = "Your VIP price is ready, {{name}}" } },
  },
}
template "plain" { en = { text = "Hello {{name}}" } }
"#;

/// A simulator that never fails and answers fast; `extra` adds keys.
pub fn sim_daemon(members: u64, extra: &str) -> TestDaemon {
    let cfg = base_config(&format!(
        "[dispatch]\nrate_per_minute = 0\n[channels.sim]\nkind = \"simulator\"\nseed_members = {members}\n\
         latency = \"0ms\"\nreceipt_delay = \"20ms\"\nblock_rate = 0.0\ninvalid_rate = 0.0\n\
         transient_rate = 0.0\nrate_limit_rate = 0.0\n{extra}"
    ));
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script("10_ab.lua", SCRIPTS);
    d.spawn();
    d
}

pub fn push_bf(d: &TestDaemon, name: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--audience", "all", "--template", "bf", "--name", name];
    args.extend_from_slice(extra);
    create_push(d, &args)
}

fn report(d: &TestDaemon, push: &str) -> Value {
    let v = d.cli_json(&["report", push]);
    assert_eq!(v["ok"], true, "{v}");
    v["data"].clone()
}

/// member id → variant ("" when none) of a push's deliveries to
/// subscribed members.
fn assigned(d: &TestDaemon, push: i64) -> BTreeMap<i64, String> {
    let db = d.db();
    let mut stmt = db
        .prepare(
            "SELECT member_id, coalesce(variant, '') FROM deliveries
             WHERE push_id = ?1 AND coalesce(skip_reason, '') != 'unsubscribed'",
        )
        .unwrap();
    stmt.query_map([push], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn variant_of(r: &Value, name: &str) -> Value {
    r["variants"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["variant"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no variant {name} in {r}"))
}

fn audit_count(d: &TestDaemon, action: &str) -> i64 {
    count(
        &d.db(),
        &format!("SELECT count(*) FROM audit WHERE action = '{action}' AND ok"),
    )
}

#[test]
fn assignment_is_a_hash_of_push_and_member_split_evenly_and_kept_across_a_restart() {
    let mut d = sim_daemon(10_000, "");
    let p = push_bf(&d, "split", &[]);
    let id = p["id"].as_i64().unwrap();
    // Frozen with the audience: read it while sends are still under way.
    let frozen = format!("SELECT count(*) FROM deliveries WHERE push_id = {id}");
    wait_for("the audience frozen", Duration::from_secs(60), || {
        (count(&d.db(), &frozen) == 10_000).then_some(())
    });
    let before = assigned(&d, id);
    d.crash();
    d.spawn();
    wait_status(&d, "split", "completed", Duration::from_secs(120));
    assert_consistent(&d, id);
    let after = assigned(&d, id);
    assert_eq!(before, after, "a restart changed someone's variant");
    // Exactly the pure function of (push, member): a re-resolution, on any
    // machine, assigns the same.
    let plan = Plan {
        variants: vec!["a".into(), "b".into()],
        test: None,
        holdout: 0.0,
    };
    let mut n: BTreeMap<&str, u64> = BTreeMap::new();
    for (member, v) in &after {
        let want = match plan.group(id, *member) {
            Group::Variant(Some(i)) => plan.variants[i].as_str(),
            other => panic!("member {member}: {other:?}"),
        };
        assert_eq!(v, want, "member {member}");
        *n.entry(v.as_str()).or_default() += 1;
    }
    let total = after.len() as f64;
    for (v, k) in &n {
        let share = *k as f64 / total;
        assert!(
            (share - 0.5).abs() <= 0.02,
            "variant {v} got {k} of {total}: not within ±2% of an even split ({n:?})"
        );
    }
    // Every member got the text of their own variant.
    let db = d.db();
    let wrong = count(
        &db,
        &format!(
            "SELECT count(*) FROM deliveries WHERE push_id = {id} AND state = 2 AND variant IS NULL"
        ),
    );
    assert_eq!(wrong, 0);
    let r = report(&d, "split");
    assert_eq!(r["ab"]["phase"], "split");
    // (A send the kill cut counts as failed: the variant's recipients.)
    assert_eq!(
        variant_of(&r, "a")["recipients"].as_u64(),
        n.get("a").copied()
    );
    assert_eq!(
        variant_of(&r, "b")["recipients"].as_u64(),
        n.get("b").copied()
    );
    assert!(r.get("winner").is_none(), "no test, no winner: {r}");
}

#[test]
fn the_variant_read_more_wins_and_goes_to_the_rest_with_the_control_group_sent_nothing() {
    // Planted: "VIP" messages are read by 60% of members, "% off" by 10%.
    let d = sim_daemon(
        2_000,
        "read_rate_by_text = { \"VIP\" = 0.6, \"% off\" = 0.1 }\n",
    );
    let p = push_bf(
        &d,
        "bf",
        &[
            "--test-share",
            "30%",
            "--test-wait",
            "2s",
            "--test-metric",
            "read",
            "--holdout",
            "5%",
        ],
    );
    let id = p["id"].as_i64().unwrap();
    let done = wait_status(&d, "bf", "completed", Duration::from_secs(120));
    assert_consistent(&d, id);
    assert_eq!(done["ab"]["winner"], "b", "{done}");
    assert_eq!(done["ab"]["decided_by"], "auto");
    let r = report(&d, "bf");
    assert_eq!(r["winner"], "b", "{r}");
    assert_eq!(r["ab"]["metric"], "read");
    assert_eq!(r["ab"]["phase"], "winner");
    let (a, b) = (variant_of(&r, "a"), variant_of(&r, "b"));
    assert!(b["best"].as_bool().unwrap() && !a["best"].as_bool().unwrap());
    // The test share was split evenly, then all of the rest got b.
    let db = d.db();
    let test_a = a["sent_success"].as_i64().unwrap();
    assert!(
        (200..=400).contains(&test_a),
        "variant a went to {test_a}: only its half of a 30% test share should get it"
    );
    let rest_b = b["sent_success"].as_i64().unwrap() - test_a;
    assert!(rest_b > 1_000, "the rest got b: {rest_b}");
    // The significance of a planted 50-point difference.
    assert!(a["diff_to_best"].as_f64().unwrap() < -35.0, "{a}");
    assert_eq!(
        a["tested"], a["sent_success"],
        "a was sent only in the test phase"
    );
    assert!(a["p_value"].as_f64().unwrap() < 0.001, "{a}");
    assert!(
        b["p_value"].is_null(),
        "the best has no p-value against itself"
    );
    // The control group: about 5%, skipped as holdout, never sent.
    let control = r["ab"]["control_group"].as_i64().unwrap();
    assert!((60..=140).contains(&control), "control group {control}");
    let held = count(
        &db,
        &format!(
            "SELECT count(*) FROM deliveries WHERE push_id = {id} AND skip_reason = 'holdout' \
             AND state = 4 AND sent_at IS NULL AND attempts = 0"
        ),
    );
    assert_eq!(held, control);
    let unsubscribed = count(
        &db,
        &format!(
            "SELECT count(*) FROM deliveries WHERE push_id = {id} AND skip_reason = 'unsubscribed'"
        ),
    );
    assert_eq!(
        r["recipients"].as_i64().unwrap() + control + unsubscribed,
        2_000,
        "everyone subscribed is a recipient or in the control group"
    );
    // Decided once, audited with the rates.
    assert_eq!(audit_count(&d, "push.winner"), 1);
    // The export's variant column, and the recipients of one variant.
    let out = d.path("bf.csv");
    let o = d.cli(&["export", "bf", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut rd = csv::Reader::from_path(&out).unwrap();
    let col = rd
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "variant")
        .expect("variant column");
    let mut by: BTreeMap<String, i64> = BTreeMap::new();
    for row in rd.records() {
        *by.entry(row.unwrap()[col].to_string()).or_default() += 1;
    }
    assert_eq!(by.get("holdout").copied(), Some(control), "{by:?}");
    assert_eq!(by.get("a").copied(), Some(test_a));
    let v = d.cli_json(&["recipients", "bf", "--variant", "holdout", "--limit", "500"]);
    assert_eq!(v["ok"], true, "{v}");
    let rows = v["data"]["recipients"].as_array().unwrap();
    assert_eq!(rows.len() as i64, control);
    assert!(rows.iter().all(|r| r["skip_reason"] == "holdout"), "{v}");
    // The table shows both variants and the winner.
    let table = stdout(&d.cli(&["report", "bf"]));
    assert!(
        table.contains("b (winner)") && table.contains("P-VALUE"),
        "{table}"
    );
    assert!(table.contains("control group"), "{table}");
    let html = stdout(&d.cli(&["report", "bf", "--format", "html"]));
    assert_eq!(
        html.matches("class=\"vpie\"").count(),
        2,
        "one pie per variant"
    );
}

#[test]
fn a_manual_winner_waits_for_pick_winner_which_decides_once() {
    let d = sim_daemon(400, "");
    push_bf(
        &d,
        "m",
        &[
            "--test-share",
            "25%",
            "--test-wait",
            "1s",
            "--winner",
            "manual",
        ],
    );
    let waiting = wait_for("the manual test to wait", Duration::from_secs(60), || {
        let p = show(&d, "m");
        (p["ab"]["phase"] == "waiting").then_some(p)
    });
    assert!(waiting["ab"].get("decide_at").is_none(), "{waiting}");
    let text = stdout(&d.cli(&["push", "show", "m"]));
    assert!(text.contains("pick-winner"), "{text}");
    // The rest is held: only the test share went out.
    let sent = waiting["sent"].as_i64().unwrap();
    assert!((60..=140).contains(&sent), "test share sent: {sent}");
    assert_eq!(waiting["status"], "running");
    // Refused: a variant the push does not have.
    let bad = d.cli_json(&["push", "pick-winner", "m", "c"]);
    assert_eq!(bad["ok"], false, "{bad}");
    assert!(
        bad["error"]["message"].as_str().unwrap().contains("a, b"),
        "{bad}"
    );
    assert_eq!(
        show(&d, "m")["sent"].as_i64().unwrap(),
        sent,
        "a refused pick sent nothing"
    );
    let ok = d.cli_json(&["push", "pick-winner", "m", "a"]);
    assert_eq!(ok["ok"], true, "{ok}");
    let done = wait_status(&d, "m", "completed", Duration::from_secs(60));
    assert_eq!(done["remaining"], 0);
    assert_eq!(
        done["sent"], done["recipients"],
        "everyone subscribed was sent"
    );
    assert_eq!(done["ab"]["winner"], "a");
    assert!(
        done["ab"]["decided_by"]
            .as_str()
            .unwrap()
            .starts_with("uid "),
        "{done}"
    );
    let again = d.cli_json(&["push", "pick-winner", "m", "b"]);
    assert_eq!(again["ok"], false, "{again}");
    let id = done["id"].as_i64().unwrap();
    assert_consistent(&d, id);
    let b_rest = count(
        &d.db(),
        &format!("SELECT count(*) FROM deliveries WHERE push_id = {id} AND variant = 'b'"),
    );
    assert!(
        b_rest < 100,
        "only b's half of the test share got b: {b_rest}"
    );
    assert_eq!(audit_count(&d, "push.pick_winner"), 1);
}

#[test]
fn kill_9_in_every_phase_sends_nobody_twice_and_decides_once() {
    let rt = runtime();
    let mock = rt.block_on(MockPlatform::start(Platform::Custom));
    let cfg = base_config(&format!(
        "[dispatch]\nrate_per_minute = 0\nconcurrency = 8\nbackoff_base = \"50ms\"\n{}\ntimeout = \"2s\"\n",
        mock.channel_toml("hook")
    ));
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script(
        "10_ab.lua",
        &SCRIPTS.replace("{{name}}", "{{channel_user_id}}"),
    );
    d.spawn();
    let users: Vec<String> = (1..=300).map(|i| format!("u{i}")).collect();
    for u in &users {
        mock.script(u, Behavior::SlowSucceed { millis: 40 });
    }
    import_members(
        &d,
        &users
            .iter()
            .map(|u| ("hook".to_string(), u.clone()))
            .collect::<Vec<_>>(),
    );
    let p = push_bf(&d, "k", &["--test-share", "40%", "--test-wait", "1500ms"]);
    let id = p["id"].as_i64().unwrap();
    let phase = |d: &TestDaemon| {
        show(d, "k")["ab"]["phase"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    // 1. During the test share.
    wait_for("test sends under way", Duration::from_secs(30), || {
        (mock.requests().len() >= 20).then_some(())
    });
    assert_eq!(phase(&d), "test");
    d.crash();
    d.spawn();
    // 2. During the wait.
    wait_for("the wait", Duration::from_secs(60), || {
        (phase(&d) == "waiting").then_some(())
    });
    let decide_at = show(&d, "k")["ab"]["decide_at"].clone();
    d.crash();
    d.spawn();
    assert_eq!(
        show(&d, "k")["ab"]["decide_at"],
        decide_at,
        "a restart moved the decision"
    );
    // 3. Once decided, while the rest is being sent.
    let rest_started = wait_for("the rest under way", Duration::from_secs(60), || {
        let p = show(&d, "k");
        (p["ab"]["phase"] == "winner").then_some(mock.requests().len())
    });
    d.crash();
    let decided_at: i64 = d
        .db()
        .query_row(
            "SELECT ab_decided_at FROM pushes WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    d.spawn();
    let done = wait_status(&d, "k", "completed", Duration::from_secs(120));
    assert_consistent(&d, id);
    let winner = done["ab"]["winner"].as_str().unwrap().to_string();
    let db = d.db();
    let decided_again: i64 = db
        .query_row(
            "SELECT ab_decided_at FROM pushes WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(decided_at, decided_again, "decided once");
    assert_eq!(audit_count(&d, "push.winner"), 1, "decided once");
    // Nobody was sent twice (a send cut by a kill ends interrupted, never
    // repeated), and the rest got only the winner's text.
    let seen = mock.count_by_recipient();
    for u in &users {
        assert!(seen.get(u).copied().unwrap_or(0) <= 1, "{u} was sent twice");
    }
    assert!(
        rest_started < users.len(),
        "the kill in the rest phase came too late"
    );
    let loser_text = if winner == "a" { "VIP price" } else { "% off" };
    let loser_sends = mock
        .requests()
        .iter()
        .filter(|r| r.raw_body.contains(loser_text))
        .count() as i64;
    let loser = |cond: &str| {
        count(
            &db,
            &format!(
                "SELECT count(*) FROM deliveries WHERE push_id = {id} AND variant != '{winner}' AND {cond}"
            ),
        )
    };
    // (A claimed send the kill cut before it left is attempted but never requested.)
    assert!(
        loser("state = 2") <= loser_sends && loser_sends <= loser("attempts > 0"),
        "the loser's requests are its test share's sends"
    );
    assert_eq!(
        loser(&format!("coalesce(sending_at, 0) >= {decided_at}")),
        0,
        "nobody was sent the loser after the decision"
    );
    let rest_winner = count(
        &db,
        &format!(
            "SELECT count(*) FROM deliveries WHERE push_id = {id} AND variant = '{winner}' AND sending_at >= {decided_at}"
        ),
    );
    assert!(rest_winner > 100, "the rest got the winner: {rest_winner}");
    let interrupted = count(
        &db,
        &format!(
            "SELECT count(*) FROM deliveries WHERE push_id = {id} AND error_class = 'interrupted'"
        ),
    );
    let sent = count(
        &db,
        &format!("SELECT count(*) FROM deliveries WHERE push_id = {id} AND state = 2"),
    );
    assert_eq!(
        sent + interrupted,
        300,
        "every recipient sent or cut by a kill"
    );
}

#[test]
fn a_variant_the_channel_cannot_send_blocks_the_generation_with_file_and_line() {
    let d = sim_daemon(10, "");
    let live = d.status()["scripts"]["generation"].as_i64().unwrap();
    // The simulator takes at most 4096 characters.
    d.write_script(
        "10_ab.lua",
        &SCRIPTS.replace(
            "b = { en = { text = \"Your VIP price is ready, {{name}}\" } },",
            "b = { en = { text = string.rep(\"x\", 5000) } },",
        ),
    );
    let s = wait_for("the reload to fail", Duration::from_secs(20), || {
        let s = d.status();
        (s["last_script_reload"]["ok"] == false).then_some(s)
    });
    let text = s.to_string();
    assert!(text.contains("scripts/10_ab.lua:3"), "{text}");
    assert!(text.contains("variant b"), "{text}");
    assert!(text.contains("4096"), "{text}");
    assert_eq!(
        d.status()["scripts"]["generation"].as_i64(),
        Some(live),
        "the previous generation stays live"
    );
}

#[test]
fn push_create_checks_its_test_options() {
    let d = sim_daemon(10, "");
    let cases: &[(&[&str], &str)] = &[
        (&["--test-share", "0%", "--test-wait", "1h"], "more than 0%"),
        (
            &["--test-share", "20%", "--test-wait", "soon"],
            "--test-wait",
        ),
        (
            &[
                "--test-share",
                "20%",
                "--test-wait",
                "1h",
                "--test-metric",
                "opens",
            ],
            "--test-metric",
        ),
        (&["--holdout", "100%"], "less than 100%"),
        (
            &[
                "--test-share",
                "20%",
                "--test-wait",
                "1h",
                "--test-metric",
                "clicked",
            ],
            "clicked metric needs tracked links",
        ),
    ];
    for (args, words) in cases {
        let mut all = vec!["push", "create", "--audience", "all", "--template", "bf"];
        all.extend_from_slice(args);
        let v = d.cli_json(&all);
        assert_eq!(v["ok"], false, "{args:?}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(words),
            "{args:?}: {v}"
        );
    }
    let v = d.cli_json(&[
        "push",
        "create",
        "--audience",
        "all",
        "--template",
        "plain",
        "--test-share",
        "20%",
        "--test-wait",
        "1h",
    ]);
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs a template with variants"),
        "{v}"
    );
    assert_eq!(
        count(&d.db(), "SELECT count(*) FROM pushes"),
        0,
        "nothing was created"
    );
}

#[test]
fn a_holdout_without_variants_is_a_control_group_sent_nothing() {
    let d = sim_daemon(1_000, "");
    let p = create_push(
        &d,
        &[
            "--audience",
            "all",
            "--template",
            "plain",
            "--name",
            "h",
            "--holdout",
            "10%",
        ],
    );
    let id = p["id"].as_i64().unwrap();
    wait_status(&d, "h", "completed", Duration::from_secs(60));
    assert_consistent(&d, id);
    let r = report(&d, "h");
    assert!(r.get("variants").is_none(), "{r}");
    let control = r["ab"]["control_group"].as_i64().unwrap();
    assert!((50..=150).contains(&control), "control group {control}");
    let sent_to_held = count(
        &d.db(),
        &format!(
            "SELECT count(*) FROM deliveries WHERE push_id = {id} AND skip_reason = 'holdout' AND attempts > 0"
        ),
    );
    assert_eq!(sent_to_held, 0);
    let text = stdout(&d.cli(&["report", "h"]));
    assert!(
        text.contains(&format!("control group: {control} (holdout 10%")),
        "{text}"
    );
}
