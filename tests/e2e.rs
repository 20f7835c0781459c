//! End to end: the real daemon sending to mock platforms over loopback HTTP.

use crate::dispatch::{assert_consistent, push_hello, wait_status};
use crate::support::mocks::{Behavior, MockPlatform};
use crate::support::*;
use pushd::model::Platform;
use std::collections::BTreeMap;
use std::time::Duration;

/// A tokio runtime that keeps mock servers running while the test thread
/// drives the daemon synchronously.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

pub const HELLO: &str = r#"
audience "all" { }
template "hello" { en = { text = "Hello {{name}}", buttons = { { title = "Yes", payload = "YES" } } } }
"#;

/// Imports members: (channel, channel_user_id) pairs.
pub fn import_members(d: &TestDaemon, members: &[(String, String)]) {
    let mut csv = String::from("channel,channel_user_id,name\n");
    for (ch, user) in members {
        csv.push_str(&format!("{ch},{user},User {user}\n"));
    }
    let p = d.path("members.csv");
    std::fs::write(&p, csv).unwrap();
    let v = d.cli_json(&["members", "import", p.to_str().unwrap()]);
    assert_eq!(v["ok"], true, "{v}");
}

fn outcome(
    d: &TestDaemon,
    channel: &str,
    user: &str,
) -> (i64, i64, Option<String>, Option<String>) {
    d.db()
        .query_row(
            "SELECT d.state, d.attempts, d.error_class, d.provider_message_id FROM deliveries d
             JOIN members m ON m.id = d.member_id WHERE m.channel = ?1 AND m.channel_user_id = ?2",
            [channel, user],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap_or_else(|e| panic!("no delivery for {channel}:{user}: {e}"))
}

#[test]
fn push_across_every_platform_ends_with_the_right_outcomes() {
    let rt = runtime();
    let kinds = [
        ("wa", Platform::Whatsapp),
        ("fb", Platform::Messenger),
        ("ig", Platform::Instagram),
        ("tg", Platform::Telegram),
        ("sl", Platform::Slack),
        ("wx", Platform::Wechat),
        ("web", Platform::Webchat),
        ("hook", Platform::Custom),
    ];
    let mut channels = String::new();
    let mut mocks = BTreeMap::new();
    let mut members = Vec::new();
    for (i, (name, platform)) in kinds.iter().enumerate() {
        let mock = rt.block_on(MockPlatform::start(*platform));
        channels.push_str(&mock.channel_toml(name));
        channels.push('\n');
        // Numeric ids suit every platform (Telegram chat ids are numbers).
        let base = 1000 * (i as u64 + 1);
        let ok = format!("{}", base + 1);
        let blocked = format!("{}", base + 2);
        let flaky = format!("{}", base + 3);
        let invalid = format!("{}", base + 4);
        mock.script(&blocked, Behavior::Block);
        mock.script(&flaky, Behavior::fail_first(1, Behavior::ServerError));
        mock.script(&invalid, Behavior::InvalidRecipient);
        for u in [&ok, &blocked, &flaky, &invalid] {
            members.push((name.to_string(), u.clone()));
        }
        mocks.insert(name.to_string(), (mock, ok, blocked, flaky, invalid));
    }
    let cfg = base_config(&format!(
        "[dispatch]\nrate_per_minute = 0\nbackoff_base = \"50ms\"\nbackoff_max = \"100ms\"\nmax_attempts = 3\n{channels}"
    ));
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script("10.lua", HELLO);
    d.spawn();
    import_members(&d, &members);
    let p = push_hello(&d, "all-platforms", &[]);
    let done = wait_status(&d, "all-platforms", "completed", Duration::from_secs(60));
    assert_eq!(done["recipients"], 32);
    assert_consistent(&d, p["id"].as_i64().unwrap());

    for (name, (mock, ok, blocked, flaky, invalid)) in &mocks {
        let (state, attempts, _, pid) = outcome(&d, name, ok);
        assert_eq!((state, attempts), (2, 1), "{name} ok");
        assert!(
            pid.is_some_and(|p| !p.is_empty()),
            "{name}: provider id recorded"
        );
        // Every platform tells the two apart (CHANNELS.md, "unreachable /
        // blocked"): a block is not an unknown user, and the retry audience
        // and the failures report depend on the difference.
        let (state, attempts, class, _) = outcome(&d, name, blocked);
        assert_eq!(
            (state, attempts, class.as_deref()),
            (3, 1, Some("blocked")),
            "{name} blocked"
        );
        let (state, attempts, _, _) = outcome(&d, name, flaky);
        assert_eq!(
            (state, attempts),
            (2, 2),
            "{name}: transient error retried, then sent"
        );
        let (state, attempts, class, _) = outcome(&d, name, invalid);
        assert_eq!(
            (state, attempts, class.as_deref()),
            (3, 1, Some("invalid_recipient")),
            "{name} invalid"
        );
        // The platform saw each recipient once, the flaky one twice (its own 5xx).
        let seen = mock.count_by_recipient();
        assert_eq!(seen.get(ok), Some(&1), "{name}: {seen:?}");
        assert_eq!(seen.get(blocked), Some(&1), "{name}: {seen:?}");
        assert_eq!(seen.get(invalid), Some(&1), "{name}: {seen:?}");
        assert_eq!(seen.get(flaky), Some(&2), "{name}: {seen:?}");
    }
    // No configured secret leaks into the log, the status, the audit or an export.
    let export = d.path("export.csv");
    let out = d.cli(&["export", "all-platforms", "-o", export.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut haystack = d.log();
    haystack.push_str(&d.status().to_string());
    haystack.push_str(&d.cli_json(&["audit", "--limit", "1000"]).to_string());
    haystack.push_str(&std::fs::read_to_string(&export).unwrap());
    haystack.push_str(&d.cli_json(&["failures", "all-platforms"]).to_string());
    for (mock, ..) in mocks.values() {
        for secret in mock.secrets() {
            assert!(!haystack.contains(secret), "secret {secret} leaked");
        }
    }
}

/// A custom-webhook daemon with `n` members u1..un and the given dispatch settings.
pub fn custom_daemon(
    rt: &tokio::runtime::Runtime,
    n: usize,
    dispatch: &str,
) -> (TestDaemon, MockPlatform, Vec<String>) {
    let mock = rt.block_on(MockPlatform::start(Platform::Custom));
    let cfg = base_config(&format!(
        "[dispatch]\nbackoff_base = \"50ms\"\nbackoff_max = \"200ms\"\n{dispatch}\n{}\ntimeout = \"2s\"\n",
        mock.channel_toml("hook")
    ));
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script("10.lua", HELLO);
    d.spawn();
    let users: Vec<String> = (1..=n).map(|i| format!("u{i}")).collect();
    import_members(
        &d,
        &users
            .iter()
            .map(|u| ("hook".to_string(), u.clone()))
            .collect::<Vec<_>>(),
    );
    (d, mock, users)
}

#[test]
fn retry_after_is_honoured_and_permanent_errors_are_not_retried() {
    let rt = runtime();
    let (d, mock, _) = custom_daemon(&rt, 4, "rate_per_minute = 0\nmax_attempts = 4");
    mock.script("u1", Behavior::fail_first(1, Behavior::rate_limit(1)));
    mock.script("u2", Behavior::Block);
    mock.script("u3", Behavior::ServerError); // never recovers
    push_hello(&d, "r", &[]);
    wait_status(&d, "r", "completed", Duration::from_secs(60));
    let u1 = mock.requests_for("u1");
    assert_eq!(u1.len(), 2);
    let gap = u1[1].at.duration_since(u1[0].at);
    assert!(
        gap >= Duration::from_millis(1000),
        "retry came after {gap:?}, Retry-After said 1s"
    );
    assert_eq!(outcome(&d, "hook", "u1").0, 2);
    assert_eq!(mock.requests_for("u2").len(), 1, "permanent error retried");
    assert_eq!(outcome(&d, "hook", "u2").2.as_deref(), Some("blocked"));
    // Transient until max_attempts, then failed with the platform's code.
    assert_eq!(mock.requests_for("u3").len(), 4);
    let (state, attempts, class, _) = outcome(&d, "hook", "u3");
    assert_eq!(
        (state, attempts, class.as_deref()),
        (3, 4, Some("transient"))
    );
    let code: String = d
        .db()
        .query_row("SELECT error_code FROM deliveries d JOIN members m ON m.id = d.member_id WHERE m.channel_user_id = 'u3'", [], |r| r.get(0))
        .unwrap();
    assert!(!code.is_empty());
}

#[test]
fn bad_credentials_pause_the_push_instead_of_failing_everyone() {
    let rt = runtime();
    let (d, mock, users) = custom_daemon(&rt, 20, "rate_per_minute = 0\nconcurrency = 1");
    mock.set_default(Behavior::BadToken);
    push_hello(&d, "auth", &[]);
    let p = wait_status(&d, "auth", "paused", Duration::from_secs(30));
    assert!(
        p["status_reason"].as_str().unwrap().contains("credentials"),
        "{p}"
    );
    let db = d.db();
    assert_eq!(
        count(&db, "SELECT count(*) FROM deliveries WHERE state = 3"),
        0,
        "nobody failed"
    );
    assert!(d.status()["pushes"].to_string().contains("credentials"));
    // Fix the token (here: the platform accepts again) and resume: all sent.
    mock.set_default(Behavior::Succeed);
    let v = d.cli_json(&["push", "resume", "auth"]);
    assert_eq!(v["ok"], true, "{v}");
    wait_status(&d, "auth", "completed", Duration::from_secs(30));
    assert_eq!(
        count(&d.db(), "SELECT count(*) FROM deliveries WHERE state = 2"),
        users.len() as i64
    );
}

#[test]
fn kill_9_mid_push_then_restart_never_sends_twice() {
    let rt = runtime();
    let (mut d, mock, users) = custom_daemon(&rt, 60, "rate_per_minute = 1200\nconcurrency = 4");
    // Some requests never answer: they are in flight when the daemon dies.
    for u in ["u3", "u7", "u11"] {
        mock.script(u, Behavior::Hang);
    }
    push_hello(&d, "crash", &[]);
    wait_for("a few sends", Duration::from_secs(30), || {
        (mock.sends().len() >= 15).then_some(())
    });
    d.crash();
    for u in ["u3", "u7", "u11"] {
        mock.script(u, Behavior::Succeed);
    }
    d.spawn();
    let done = wait_status(&d, "crash", "completed", Duration::from_secs(60));
    assert_consistent(&d, done["id"].as_i64().unwrap());
    let seen = mock.count_by_recipient();
    for u in &users {
        assert!(
            seen.get(u).copied().unwrap_or(0) <= 1,
            "{u} was requested {:?} times",
            seen.get(u)
        );
    }
    // The ones hanging at the crash are failed/interrupted, never resent.
    for u in ["u3", "u7", "u11"] {
        let (state, _, class, _) = outcome(&d, "hook", u);
        assert_eq!((state, class.as_deref()), (3, Some("interrupted")), "{u}");
    }
    // Everyone else was sent exactly once.
    let sent = count(&d.db(), "SELECT count(*) FROM deliveries WHERE state = 2");
    let interrupted = count(
        &d.db(),
        "SELECT count(*) FROM deliveries WHERE error_class = 'interrupted'",
    );
    assert_eq!(sent + interrupted, users.len() as i64);
}

/// Telegram says how long to wait in the body (`parameters.retry_after`),
/// Slack in a `Retry-After` header. Backoff here is at most 100 ms, so only
/// the platform's delay can hold the retry back: the gap between the two
/// requests at the mock proves the dispatcher waited, not only that the
/// adapter read the number.
#[test]
fn telegram_and_slack_retry_after_holds_the_retry() {
    const WAIT: u64 = 2;
    let rt = runtime();
    let tg = rt.block_on(MockPlatform::start(Platform::Telegram));
    let sl = rt.block_on(MockPlatform::start(Platform::Slack));
    let limited = [(&tg, "tg", "7001"), (&sl, "sl", "U0LIMITED")];
    for (mock, _, user) in limited {
        mock.script(user, Behavior::fail_first(1, Behavior::rate_limit(WAIT)));
    }
    let cfg = base_config(&format!(
        "[dispatch]\nrate_per_minute = 0\nbackoff_base = \"50ms\"\nbackoff_max = \"100ms\"\nmax_attempts = 3\n{}\n{}",
        tg.channel_toml("tg"),
        sl.channel_toml("sl")
    ));
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script("10.lua", HELLO);
    d.spawn();
    let members: Vec<(String, String)> = [
        ("tg", "7001"),
        ("tg", "7002"),
        ("sl", "U0LIMITED"),
        ("sl", "U0FINE"),
    ]
    .iter()
    .map(|(c, u)| (c.to_string(), u.to_string()))
    .collect();
    import_members(&d, &members);
    push_hello(&d, "slow-down", &[]);
    wait_status(&d, "slow-down", "completed", Duration::from_secs(60));
    for (mock, channel, user) in limited {
        let reqs = mock.requests_for(user);
        assert_eq!(reqs.len(), 2, "{channel}: rate-limited once, then sent");
        let gap = reqs[1].at.duration_since(reqs[0].at);
        assert!(
            gap >= Duration::from_secs(WAIT),
            "{channel}: the retry came {gap:?} after the 429, the platform said {WAIT}s"
        );
        let (state, attempts, _, _) = outcome(&d, channel, user);
        assert_eq!((state, attempts), (2, 2), "{channel}: sent on the retry");
    }
    // The wait held back only the recipient the platform limited.
    for (mock, channel, user) in [(&tg, "tg", "7002"), (&sl, "sl", "U0FINE")] {
        let reqs = mock.requests_for(user);
        assert_eq!(reqs.len(), 1, "{channel}: {user} sent once");
        assert_eq!(outcome(&d, channel, user).0, 2, "{channel}: {user} sent");
    }
}
