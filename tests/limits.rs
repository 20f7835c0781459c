//! Platform limits the dispatcher keeps, measured at the mock platforms:
//! Telegram's one message per second per chat, across pushes; WeChat's
//! daily API quota (45009), which holds the channel until midnight China
//! time instead of retrying within seconds.

use crate::dispatch::{assert_consistent, create_push, wait_status};
use crate::e2e::{import_members, runtime};
use crate::support::mocks::MockPlatform;
use crate::support::*;
use chrono::Utc;
use pushd::model::Platform;
use std::time::{Duration, Instant};

fn scripts(channel: &str) -> String {
    format!(
        "audience \"all\" {{ where = {{ channel = \"{channel}\" }} }}\ntemplate \"hello\" {{ en = {{ text = \"Hello {{{{name}}}}\" }} }}\n"
    )
}

/// Starts `d` with extra environment variables (the test clock).
fn spawn_with_env(d: &mut TestDaemon, env: &[(&str, String)]) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&d.log_path)
        .unwrap();
    let child = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&d.config_path)
        .env("RUST_LOG", "info,pushd=debug")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    d.child = Some(child);
    d.wait_ready();
}

/// Three pushes to the same five chats at once, at a global rate far above
/// one a second: every chat gets its three messages, each at least a second
/// after the one before (at the mock), and nobody fails for waiting.
#[test]
fn telegram_chats_get_at_most_one_message_a_second_across_pushes() {
    let rt = runtime();
    let mock = rt.block_on(MockPlatform::start(Platform::Telegram));
    let cfg = base_config(&format!(
        "[dispatch]\nrate_per_minute = 60000\nconcurrency = 16\n{}rate_per_second = 1000\n",
        mock.channel_toml("tg")
    ));
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script("10.lua", &scripts("tg"));
    d.spawn();
    let chats: Vec<String> = (1001..=1005).map(|i| i.to_string()).collect();
    import_members(
        &d,
        &chats
            .iter()
            .map(|c| ("tg".to_string(), c.clone()))
            .collect::<Vec<_>>(),
    );
    let pushes = ["a", "b", "c"];
    for p in pushes {
        create_push(
            &d,
            &["--audience", "all", "--template", "hello", "--name", p],
        );
    }
    for p in pushes {
        let done = wait_status(&d, p, "completed", Duration::from_secs(30));
        assert_consistent(&d, done["id"].as_i64().unwrap());
        assert_eq!(done["sent"], 5, "{p}: {done}");
    }
    let mut smallest = Duration::MAX;
    for chat in &chats {
        let at: Vec<Instant> = mock.requests_for(chat).iter().map(|r| r.at).collect();
        assert_eq!(at.len(), 3, "chat {chat}");
        for pair in at.windows(2) {
            let gap = pair[1].duration_since(pair[0]);
            smallest = smallest.min(gap);
            assert!(
                gap >= Duration::from_secs(1),
                "chat {chat} got two messages {gap:?} apart"
            );
        }
    }
    assert_eq!(
        count(&d.db(), "SELECT count(*) FROM deliveries WHERE state != 2"),
        0,
        "nobody failed for waiting"
    );
    eprintln!("smallest gap between two messages to one chat: {smallest:?}");
}

/// The next midnight in China (UTC+8) after `now`, in ms.
fn next_china_midnight(now_ms: i64) -> i64 {
    let day = 86_400_000;
    let shifted = now_ms + 8 * 3_600_000;
    shifted - shifted.rem_euclid(day) + day - 8 * 3_600_000
}

/// The daemon's clock starts five seconds before midnight in China; the
/// WeChat account has used up its daily quota. The first sends get 45009:
/// the channel is held — recipients stay pending with their attempt
/// refunded, `status` names the channel and when it resumes, and no
/// request reaches the platform before midnight — then at midnight the
/// sends resume by themselves and the push completes.
#[test]
fn wechat_daily_quota_holds_the_channel_until_midnight_china_time() {
    let rt = runtime();
    let mock = rt.block_on(MockPlatform::start(Platform::Wechat));
    mock.use_up_daily_quota();
    let cfg = base_config(&format!(
        "[dispatch]\nrate_per_minute = 0\nconcurrency = 2\nmax_attempts = 2\n{}",
        mock.channel_toml("wx")
    ));
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script("10.lua", &scripts("wx"));
    let real = Utc::now().timestamp_millis();
    let midnight = next_china_midnight(real);
    let offset = midnight - 5_000 - real;
    // The daemon's time of a moment the test saw.
    let (ref_instant, ref_ms) = (Instant::now(), Utc::now().timestamp_millis());
    let daemon_ms =
        |at: Instant| ref_ms + offset + at.duration_since(ref_instant).as_millis() as i64;
    spawn_with_env(
        &mut d,
        &[("PUSHD_TEST_CLOCK_OFFSET_MS", offset.to_string())],
    );
    let users: Vec<String> = (1..=6).map(|i| format!("openid-{i}")).collect();
    import_members(
        &d,
        &users
            .iter()
            .map(|u| ("wx".to_string(), u.clone()))
            .collect::<Vec<_>>(),
    );
    create_push(
        &d,
        &["--audience", "all", "--template", "hello", "--name", "q"],
    );
    let resumes = pushd::model::fmt_ms(midnight);
    let alert = wait_for("the quota alert", Duration::from_secs(20), || {
        let a = d.status()["alerts"].to_string();
        a.contains("channel wx").then_some(a)
    });
    assert!(
        alert.contains(&resumes) && alert.contains("45009"),
        "the alert names the channel and when it resumes ({resumes}): {alert}"
    );
    assert!(
        daemon_ms(Instant::now()) < midnight - 1_000,
        "the machine is too slow for this test: the hold should start before midnight in China"
    );
    // The requests that were in flight with the first one end (45009 too).
    wait_for(
        "the requests in flight to end",
        Duration::from_secs(20),
        || (sending(&d.db()) == 0).then_some(()),
    );
    let refused = mock.sends().len();
    // The quota is back at the platform (as it will be at midnight): the
    // daemon still sends nothing before midnight, by its own clock.
    mock.restore_daily_quota();
    assert!((1..=2).contains(&refused), "{refused} requests met 45009");
    let db = d.db();
    let held = strings(
        &db,
        "SELECT state || ':' || attempts || ':' || coalesce(error_code, '-') || ':' || coalesce(next_attempt_at, '-') FROM deliveries ORDER BY id",
    );
    let refused_row = format!("0:0:45009:{midnight}");
    assert_eq!(
        held.iter().filter(|r| **r == refused_row).count(),
        refused,
        "refused recipients pending, attempt refunded, due at midnight: {held:?}"
    );
    assert!(
        held.iter().all(|r| r.starts_with("0:0:")),
        "everyone still pending: {held:?}"
    );
    drop(db);
    let text = stdout(&d.cli(&["status"]));
    assert!(text.contains("channel wx"), "{text}");

    let done = wait_status(&d, "q", "completed", Duration::from_secs(30));
    assert_consistent(&d, done["id"].as_i64().unwrap());
    assert_eq!(done["sent"], 6, "{done}");
    let sends = mock.sends();
    let before: Vec<_> = sends
        .iter()
        .filter(|r| daemon_ms(r.at) < midnight)
        .collect();
    eprintln!(
        "requests at (ms from midnight): {:?}",
        sends
            .iter()
            .map(|r| (daemon_ms(r.at) - midnight, r.recipient.clone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        before.len(),
        refused,
        "no request before midnight but the ones that met 45009"
    );
    assert_eq!(
        sends.len(),
        refused + 6,
        "each recipient sent once after midnight"
    );
    let first_after = sends[refused..]
        .iter()
        .map(|r| daemon_ms(r.at))
        .min()
        .unwrap();
    eprintln!(
        "held {} ms: first send after the hold {} ms past midnight China time",
        midnight - daemon_ms(sends[0].at),
        first_after - midnight
    );
    // Not a short retry: the refused ones did not use up their attempts.
    assert_eq!(
        count(&d.db(), "SELECT max(attempts) FROM deliveries"),
        1,
        "the held attempt was refunded"
    );
    assert!(
        !d.status()["alerts"].to_string().contains("channel wx"),
        "the alert ends with the hold"
    );
}
