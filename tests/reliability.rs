//! Reliability through the real binary: crashes, SIGTERM, platform outages,
//! storage faults and floods — nothing lost, nothing sent twice, the daemon
//! responsive and its memory bounded. Set `PUSHD_SOAK=1` for longer runs.

use crate::dispatch::{assert_consistent, push_hello, wait_status};
use crate::e2e::{HELLO, custom_daemon, runtime};
use crate::support::mocks::Behavior;
use crate::support::mocks::creds::WEBHOOK_SECRET;
use crate::support::webhooks::*;
use crate::support::*;
use crate::webhooks::http;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn soak() -> bool {
    std::env::var("PUSHD_SOAK").is_ok_and(|v| v != "0")
}

/// Resident memory of a process in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A small deterministic PRNG for crash moments (reproducible from the seed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// How many requests the mock's script for a recipient allows: one per
/// scripted failure the dispatcher retries, then the one that succeeds.
/// Anything more is a recipient sent to twice.
fn allowed_requests(behavior: &Behavior) -> usize {
    match behavior {
        Behavior::FailFirst { times, .. } => *times as usize + 1,
        _ => 1,
    }
}

#[test]
fn repeated_kill_9_never_loses_or_duplicates_a_recipient() {
    let rt = runtime();
    let users_n = if soak() { 3000 } else { 600 };
    let iterations = if soak() { 200 } else { 20 };
    let (mut d, mock, users) = custom_daemon(
        &rt,
        users_n,
        "rate_per_minute = 9000\nconcurrency = 8\nmax_attempts = 5",
    );
    // Transient errors the mock itself causes (retried), and slow answers so
    // that requests are in flight when the daemon dies.
    let mut scripts = std::collections::HashMap::new();
    for (i, u) in users.iter().enumerate() {
        let behavior = if i % 10 == 3 {
            Behavior::fail_first(1, Behavior::ServerError)
        } else if i % 7 == 0 {
            Behavior::SlowSucceed { millis: 150 }
        } else {
            Behavior::Succeed
        };
        mock.script(u, behavior.clone());
        scripts.insert(u.clone(), behavior);
    }
    push_hello(&d, "crashy", &[]);
    let mut rng = Lcg(0x5eed);
    // Rows caught `sending` by each kill (read while the daemon is dead):
    // exactly these must end failed/interrupted. (A kill during the next
    // start may catch the same rows again before they are settled.)
    let sending_ids = format!(
        "SELECT CAST(d.id AS TEXT) FROM deliveries d WHERE {} = 1",
        pushd::store::deliveries::STATE_SQL
    );
    let mut caught = Vec::new();
    let mut caught_ids = std::collections::BTreeSet::new();
    for _ in 0..iterations {
        // A random moment: the crash itself is the event under test.
        std::thread::sleep(Duration::from_millis(30 + rng.next(250)));
        d.crash();
        let ids = strings(&d.db(), &sending_ids);
        caught.push(ids.len());
        caught_ids.extend(ids);
        d.spawn();
    }
    let done = wait_status(&d, "crashy", "completed", Duration::from_secs(120));
    assert_consistent(&d, done["id"].as_i64().unwrap());
    let mid_push = caught.iter().filter(|n| **n > 0).count();
    eprintln!("{mid_push} of {iterations} kills caught sends in flight: {caught:?}");
    assert!(
        mid_push > 0,
        "no kill landed while sends were in flight ({caught:?}): the test proved nothing"
    );
    let seen = mock.count_by_recipient();
    for u in &users {
        let n = seen.get(u).copied().unwrap_or(0);
        let allowed = allowed_requests(&scripts[u]);
        assert!(
            n <= allowed,
            "{u} requested {n} times, its mock script ({:?}) allows {allowed}",
            scripts[u]
        );
    }
    let db = d.db();
    let sent = count(&db, "SELECT count(*) FROM deliveries WHERE state = 2");
    let failed = count(&db, "SELECT count(*) FROM deliveries WHERE state = 3");
    let interrupted = count(
        &db,
        "SELECT count(*) FROM deliveries WHERE error_class = 'interrupted'",
    );
    assert_eq!(
        sent + failed,
        users_n as i64,
        "every recipient ends sent or failed"
    );
    assert_eq!(
        failed, interrupted,
        "the only failures are sends cut by a crash"
    );
    let interrupted_ids: std::collections::BTreeSet<String> = strings(
        &db,
        "SELECT CAST(id AS TEXT) FROM deliveries WHERE error_class = 'interrupted'",
    )
    .into_iter()
    .collect();
    assert_eq!(
        interrupted_ids, caught_ids,
        "exactly the rows the kills caught `sending` end interrupted"
    );
    // Every recipient recorded as sent was really requested, and got the
    // platform's success (the last request its script allows).
    let sent_users = strings(
        &db,
        "SELECT m.channel_user_id FROM deliveries d JOIN members m ON m.id = d.member_id WHERE d.state = 2",
    );
    for u in sent_users {
        assert_eq!(
            seen.get(&u).copied().unwrap_or(0),
            allowed_requests(&scripts[&u]),
            "{u} recorded as sent"
        );
    }
    // The report's counters equal a recount.
    let r = d.cli_json(&["report", "crashy"])["data"].clone();
    assert_eq!(r["sent_success"].as_i64().unwrap(), sent);
    assert_eq!(r["sent_fail"].as_i64().unwrap(), failed);
}

/// A daemon stopped with a push whose first chunk of 4096 members (of
/// `n`) is frozen and 100 of them sent, as a crash after the first chunk
/// leaves it: the daemon, its mock, the users, the push id and the users
/// already sent to.
fn half_frozen_push(
    rt: &tokio::runtime::Runtime,
    n: usize,
) -> (
    crate::support::TestDaemon,
    crate::support::mocks::MockPlatform,
    Vec<String>,
    i64,
    std::collections::HashSet<String>,
) {
    let (mut d, mock, users) = custom_daemon(rt, n, "rate_per_minute = 0\nconcurrency = 32");
    let at = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let id = push_hello(&d, "big", &["--at", &at])["id"]
        .as_i64()
        .unwrap();
    d.stop();
    let now = chrono::Utc::now().timestamp_millis();
    d.db()
        .execute_batch(&format!(
            "BEGIN;
             UPDATE pushes SET status = 'running', start_at = {now}, started_at = {now},
                    resolved_through = (SELECT max(id) FROM (SELECT id FROM members ORDER BY id LIMIT 4096))
              WHERE id = {id};
             INSERT INTO deliveries (push_id, member_id, state)
               SELECT {id}, id, 0 FROM members ORDER BY id LIMIT 4096;
             UPDATE deliveries SET state = 2, channel = 'hook', attempts = 1, sending_at = {now}, sent_at = {now}
              WHERE push_id = {id} AND member_id IN (SELECT id FROM members ORDER BY id LIMIT 100);
             INSERT INTO push_counts (push_id, state, rd, ia, n) VALUES ({id}, 0, 0, 0, 3996), ({id}, 2, 0, 0, 100);
             COMMIT;"
        ))
        .unwrap();
    let sent_before = strings(
        &d.db(),
        "SELECT channel_user_id FROM members ORDER BY id LIMIT 100",
    )
    .into_iter()
    .collect();
    (d, mock, users, id, sent_before)
}

/// A large audience is frozen in chunks while the first members are sent. A
/// daemon that died after freezing (and partly sending) the first chunk
/// carries on after the last frozen member: every member gets exactly one
/// delivery, and those sent before the crash are not requested again.
#[test]
fn a_crash_half_way_through_freezing_resumes_after_the_last_chunk() {
    let rt = runtime();
    let n = 10_000;
    let (mut d, mock, users, id, sent_before) = half_frozen_push(&rt, n);
    d.spawn();
    let done = wait_status(&d, "big", "completed", Duration::from_secs(120));
    assert_eq!(done["recipients"], n);
    assert_eq!(done["sent"], n);
    assert_consistent(&d, id);
    let seen = mock.count_by_recipient();
    for u in &users {
        let want = if sent_before.contains(u) { 0 } else { 1 };
        assert_eq!(seen.get(u).copied().unwrap_or(0), want, "{u}");
    }
}

/// Half frozen as an SQL audience, then restarted with that audience given
/// a Lua filter: starting the freeze over would forget who was sent to, so
/// the push pauses with a clear reason and nothing is changed or sent.
#[test]
fn a_half_frozen_audience_redefined_with_a_filter_pauses_the_push() {
    let rt = runtime();
    let (mut d, mock, _, id, _) = half_frozen_push(&rt, 5000);
    d.write_script(
        "10.lua",
        &HELLO.replace(
            "audience \"all\" { }",
            "audience \"all\" { filter = function(m) return true end }",
        ),
    );
    d.spawn();
    let p = wait_status(&d, "big", "paused", Duration::from_secs(60));
    let reason = p["status_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("partly frozen"), "{p}");
    assert!(reason.contains("\"all\""), "{p}");
    let db = d.db();
    assert_eq!(
        count(
            &db,
            &format!("SELECT count(*) FROM deliveries WHERE push_id = {id}")
        ),
        4096
    );
    assert_eq!(
        count(
            &db,
            &format!("SELECT count(*) FROM deliveries WHERE push_id = {id} AND state = 2")
        ),
        100
    );
    assert_eq!(mock.sends().len(), 0, "nothing sent");
}

/// The crash window is bounded: with every request hanging, the daemon marks
/// `concurrency` sends in flight plus `concurrency` more waiting for a slot,
/// and no further; a crash then interrupts exactly those, and the rest are
/// sent once after the restart.
#[test]
fn a_crash_interrupts_at_most_twice_concurrency_sends() {
    let rt = runtime();
    let (mut d, mock, users) = custom_daemon(&rt, 30, "rate_per_minute = 0\nconcurrency = 4");
    mock.set_default(Behavior::Hang);
    push_hello(&d, "window", &[]);
    let in_flight = || sending(&d.db());
    wait_for("the crash window to fill", Duration::from_secs(30), || {
        (mock.sends().len() >= 4 && in_flight() >= 8).then_some(())
    });
    assert_eq!(mock.sends().len(), 4, "requests in flight = concurrency");
    d.crash();
    mock.set_default(Behavior::Succeed);
    d.spawn();
    let done = wait_status(&d, "window", "completed", Duration::from_secs(60));
    assert_consistent(&d, done["id"].as_i64().unwrap());
    let interrupted = count(
        &d.db(),
        "SELECT count(*) FROM deliveries WHERE error_class = 'interrupted'",
    );
    assert_eq!(interrupted, 8, "in flight (4) + marked and waiting (4)");
    let sent = count(&d.db(), "SELECT count(*) FROM deliveries WHERE state = 2");
    assert_eq!(sent, users.len() as i64 - 8);
    let seen = mock.count_by_recipient();
    assert!(
        seen.values().all(|n| *n == 1),
        "nobody requested twice: {seen:?}"
    );
}

#[test]
fn sigterm_finishes_in_flight_sends_then_restart_resumes() {
    let rt = runtime();
    let (mut d, mock, users) = custom_daemon(&rt, 40, "rate_per_minute = 0\nconcurrency = 5");
    mock.set_default(Behavior::SlowSucceed { millis: 400 });
    push_hello(&d, "term", &[]);
    wait_for("sends in flight", Duration::from_secs(20), || {
        (mock.sends().len() >= 5).then_some(())
    });
    let in_flight_before = mock.sends().len();
    assert_eq!(d.stop(), Some(0), "SIGTERM exits 0");
    assert!(!d.socket.exists(), "socket removed");
    let db = d.db();
    assert_eq!(sending(&db), 0, "in-flight sends were recorded before exit");
    let sent = count(&db, "SELECT count(*) FROM deliveries WHERE state = 2");
    assert!(
        sent >= in_flight_before as i64,
        "the {in_flight_before} requests in flight finished and were recorded ({sent})"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM pushes WHERE status = 'running'"),
        1,
        "still running: it resumes"
    );
    drop(db);
    mock.set_default(Behavior::Succeed);
    d.spawn();
    wait_status(&d, "term", "completed", Duration::from_secs(30));
    let seen = mock.count_by_recipient();
    for u in &users {
        assert_eq!(seen.get(u), Some(&1), "{u}");
    }
}

#[test]
fn platform_outage_backs_off_and_completes() {
    let rt = runtime();
    let (d, mock, users) = custom_daemon(
        &rt,
        20,
        "rate_per_minute = 0\nmax_attempts = 50\nconcurrency = 4",
    );
    // 503 for a while...
    mock.set_default(Behavior::ServerError);
    push_hello(&d, "outage", &[]);
    wait_for("retries during the outage", Duration::from_secs(30), || {
        (mock.sends().len() >= 60).then_some(())
    });
    assert_eq!(
        count(&d.db(), "SELECT count(*) FROM deliveries WHERE state = 3"),
        0,
        "nobody failed yet"
    );
    // ...then the platform hangs (requests time out after 2s)...
    mock.set_default(Behavior::Hang);
    let hung_at = mock.sends().len();
    wait_for(
        "requests to a hanging platform",
        Duration::from_secs(30),
        || (mock.sends().len() >= hung_at + 4).then_some(()),
    );
    // ...then recovers.
    mock.set_default(Behavior::Succeed);
    wait_status(&d, "outage", "completed", Duration::from_secs(60));
    let db = d.db();
    assert_eq!(
        count(&db, "SELECT count(*) FROM deliveries WHERE state = 2"),
        users.len() as i64,
        "nothing lost"
    );
    assert!(
        count(&db, "SELECT max(attempts) FROM deliveries") > 2,
        "it backed off and retried"
    );
    let metrics = http(&rt, "GET", &format!("{}/metrics", d.http_base()), &[], "").1;
    assert!(
        metrics.contains("pushd_retries_total{channel=\"hook\"}"),
        "{metrics}"
    );
}

fn db_bytes(d: &TestDaemon) -> i64 {
    d.db()
        .query_row(
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn full_database_holds_sends_with_a_clear_error_and_recovers() {
    let rt = runtime();
    let (d, mock, _) = custom_daemon(&rt, 10, "rate_per_minute = 0");
    // Fill the database to most of a 2 MiB quota with members.
    let mut n = 10;
    while db_bytes(&d) < 1_600_000 {
        let mut csv = String::from("channel,channel_user_id,name\n");
        for i in 0..1000 {
            csv.push_str(&format!("hook,fill{n}_{i},{}\n", "x".repeat(200)));
        }
        n += 1;
        let p = d.path("fill.csv");
        std::fs::write(&p, csv).unwrap();
        assert_eq!(
            d.cli_json(&["members", "import", p.to_str().unwrap()])["ok"],
            true
        );
    }
    let members = count(&d.db(), "SELECT count(*) FROM members");
    let original = std::fs::read_to_string(&d.config_path).unwrap();
    std::fs::write(
        &d.config_path,
        format!("{original}\n[daemon]\nmax_database_mb = 2\n")
            .replace("[daemon]\ndata_dir = \"data\"\n", ""),
    )
    .unwrap();
    let v = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(v["data"]["config"]["ok"], true, "{v}");
    // Freezing the whole audience needs more room than the quota leaves.
    push_hello(&d, "full", &[]);
    let s = wait_for("a storage alert", Duration::from_secs(30), || {
        let s = d.status();
        s["alerts"]
            .to_string()
            .contains("storage fault")
            .then_some(s)
    });
    assert!(s["alerts"].to_string().contains("full"), "{s}");
    // The first chunks of the audience fit and were sent; the rest waits for
    // room, and nothing beyond what was frozen was requested.
    let requested = mock.sends().len() as i64;
    let frozen = count(&d.db(), "SELECT count(*) FROM deliveries");
    assert!(
        frozen < members,
        "the quota stopped the freeze ({frozen} of {members})"
    );
    assert!(
        requested <= frozen,
        "requested {requested}, frozen {frozen}"
    );
    let text = stdout(&d.cli(&["status"]));
    assert!(text.contains("storage fault"), "{text}");
    // Space returns (the quota is raised): the push completes.
    std::fs::write(&d.config_path, &original).unwrap();
    let v = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(v["data"]["config"]["ok"], true, "{v}");
    wait_status(&d, "full", "completed", Duration::from_secs(60));
    assert!(!d.status()["alerts"].to_string().contains("storage"));
    assert_eq!(
        count(&d.db(), "SELECT count(*) FROM deliveries WHERE state = 2"),
        members
    );
    assert_eq!(
        mock.sends().len() as i64,
        members,
        "each member requested once"
    );
}

#[test]
fn a_thousand_socket_clients_and_a_slow_loris() {
    let cfg = base_config("[control]\nidle_timeout = \"2s\"\n");
    let d = TestDaemon::start(&cfg);
    // A slow-loris client: half a request, then silence.
    let mut loris = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    loris.write_all(b"{\"cmd\":\"sta").unwrap();
    let rss_before = rss_kib(d.pid());
    let handles: Vec<_> = (0..1000)
        .map(|_| {
            let socket = d.socket.clone();
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let mut c = Conn::open(&socket);
                    c.call(r#"{"cmd":"status"}"#)["ok"] == true
                })
                .unwrap()
        })
        .collect();
    let ok = handles
        .into_iter()
        .filter_map(|h| h.join().ok())
        .filter(|ok| *ok)
        .count();
    assert_eq!(ok, 1000, "every client got its answer");
    // The slow-loris connection is closed with a timeout error.
    loris
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reply = String::new();
    let _ = loris.read_to_string(&mut reply);
    assert!(reply.contains("timeout"), "{reply}");
    let rss_after = rss_kib(d.pid());
    assert!(
        rss_after < rss_before + 100 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert_eq!(d.status()["pid"].as_u64().unwrap() as u32, d.pid());
}

#[test]
fn webhook_burst_and_http_slow_loris() {
    let rt = runtime();
    let (d, _mock, _) = custom_daemon(&rt, 1, "");
    let base = d.http_base();
    let addr = base.trim_start_matches("http://").to_string();
    // A slow client that never finishes its headers is cut off at the
    // head deadline (`http.request_timeout`, 10 s by default). A thread
    // waits for the server to end the connection, so the burst below runs
    // meanwhile and the moment of the cut is known.
    let slow = std::thread::spawn({
        let addr = addr.clone();
        move || {
            let mut slow = std::net::TcpStream::connect(&addr).unwrap();
            slow.write_all(b"POST /webhooks/hook HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            let opened = Instant::now();
            // Far past the deadline: a read that times out means the
            // server never cut the client off.
            slow.set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            let mut buf = Vec::new();
            let read = slow.read_to_end(&mut buf).map(|_| buf);
            (read, opened.elapsed())
        }
    });
    let rss_before = rss_kib(d.pid());
    let started = Instant::now();
    // 50k events: 500 signed batches of 100, 16 at a time.
    let total = if soak() { 200_000 } else { 50_000 };
    let per = 100;
    let batches: Vec<String> = (0..total / per)
        .map(|b| {
            let events: Vec<String> = (0..per)
                .map(|i| {
                    custom_message(
                        &format!("burst-{b}-{i}"),
                        &format!("user{}", (b * per + i) % 2000),
                        Some("hi"),
                        None,
                        None,
                        chrono::Utc::now().timestamp(),
                    )
                })
                .collect();
            custom_batch(&events)
        })
        .collect();
    let statuses: Vec<u16> = rt.block_on(async {
        let client = reqwest::Client::new();
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
        let mut tasks = Vec::new();
        for (i, body) in batches.into_iter().enumerate() {
            let (client, sem, url) = (client.clone(), sem.clone(), format!("{base}/webhooks/hook"));
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire().await.unwrap();
                let ts = chrono::Utc::now().timestamp();
                let mut req = client.post(url);
                for (k, v) in standard_webhook_headers(
                    WEBHOOK_SECRET,
                    &format!("wh-burst-{i}"),
                    ts,
                    body.as_bytes(),
                ) {
                    req = req.header(k, v);
                }
                req.body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap_or(0));
        }
        out
    });
    assert!(
        statuses.iter().all(|s| *s == 200),
        "{:?}",
        statuses
            .iter()
            .filter(|s| **s != 200)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert_eq!(count(&d.db(), "SELECT count(*) FROM events"), total as i64);
    assert_eq!(
        count(
            &d.db(),
            "SELECT count(*) FROM members WHERE channel_user_id LIKE 'user%'"
        ),
        2000
    );
    eprintln!("{total} webhook events in {:?}", started.elapsed());
    // The slow client was disconnected (or answered 408) at the deadline,
    // and the daemon is fine.
    let (read, after) = slow.join().expect("slow client thread");
    let buf = read.unwrap_or_else(|e| {
        panic!("the server never cut off a client that sent half a head ({e} after {after:?})")
    });
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    // (Well before hyper's own 30 s default, which would otherwise pass.)
    assert!(
        after >= Duration::from_millis(9_500) && after < Duration::from_secs(20),
        "cut off after {after:?}; the head deadline is 10s"
    );
    let (status, _) = http(&rt, "GET", &format!("{base}/healthz"), &[], "");
    assert_eq!(status, 200);
    let rss_after = rss_kib(d.pid());
    assert!(
        rss_after < rss_before + 200 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB"
    );
}

#[test]
fn a_webhook_body_that_never_finishes_is_cut_off() {
    let rt = runtime();
    let d = TestDaemon::start(
        r#"[daemon]
data_dir = "data"
[http]
listen = "127.0.0.1:0"
request_timeout = "1s"
[channels.wa]
kind = "whatsapp"
phone_number_id = "1"
token = "t"
app_secret = "s"
verify_token = "v"
"#,
    );
    let base = d.http_base();
    let addr = base.trim_start_matches("http://").to_string();
    // The head arrives in time, the body never does.
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    let started = Instant::now();
    slow.write_all(
        b"POST /webhooks/wa HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"object\":",
    )
    .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match slow.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&head);
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?} after {took:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "answered after {took:?}, the deadline is 1s"
    );
    // Nothing was recorded, and the daemon answers as before.
    assert_eq!(count(&d.db(), "SELECT count(*) FROM events"), 0);
    let (status, _) = http(&rt, "GET", &format!("{base}/healthz"), &[], "");
    assert_eq!(status, 200);
}

#[test]
fn socket_group_and_mode_as_configured() {
    let root = preconditions::is_root();
    let group = if root { "nogroup" } else { "" };
    let extra = if root {
        format!("[control]\nmode = \"0640\"\ngroup = \"{group}\"\n")
    } else {
        "[control]\nmode = \"0640\"\n".to_string()
    };
    let d = TestDaemon::start(&base_config(&extra));
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o640);
    if root {
        assert_eq!(meta.gid(), 65534, "socket group is nogroup");
    } else {
        preconditions::skipped(
            "reliability::socket_group_and_mode_as_configured",
            "giving the socket to another group",
            "not root: cannot chown to a group we are not in",
        );
    }
    // An unknown group is a clear startup error.
    let bad = TestDaemon::prepare(&base_config("[control]\ngroup = \"no-such-group-pushd\"\n"));
    let mut child = bad.spawn_raw();
    assert!(!wait_exit(&mut child, Duration::from_secs(30)).success());
    assert!(bad.log().contains("no-such-group-pushd"), "{}", bad.log());
}

/// Mounts a small tmpfs (needs root); None where this machine forbids it.
fn mount_tmpfs(dir: &std::path::Path, size: &str) -> Option<()> {
    std::fs::create_dir_all(dir).ok()?;
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .ok()?
        .success();
    ok.then_some(())
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn full_disk_on_a_real_filesystem_holds_and_recovers() {
    let rt = runtime();
    let mock = rt.block_on(crate::support::mocks::MockPlatform::start(
        pushd::model::Platform::Custom,
    ));
    let cfg = base_config(&format!(
        "[dispatch]\nrate_per_minute = 1200\nconcurrency = 2\n{}",
        mock.channel_toml("hook")
    ));
    let mut d = TestDaemon::prepare(&cfg);
    let data = d.path("data");
    if mount_tmpfs(&data, "8m").is_none() {
        // Not root, or no mount in this sandbox. Without root the WAL limit
        // test (`the_wal_hitting_a_file_size_limit_holds_sends_and_recovers`)
        // still fills a file for real.
        preconditions::skipped(
            "reliability::full_disk_on_a_real_filesystem_holds_and_recovers",
            "filling a real 8 MB tmpfs",
            "cannot mount a tmpfs here (needs root)",
        );
        return;
    }
    let _unmount = Unmount(data.clone());
    d.write_script("10.lua", crate::e2e::HELLO);
    d.spawn();
    let users: Vec<(String, String)> = (1..=200)
        .map(|i| ("hook".to_string(), format!("u{i}")))
        .collect();
    crate::e2e::import_members(&d, &users);
    push_hello(&d, "disk", &[]);
    wait_for("some sends", Duration::from_secs(30), || {
        (mock.sends().len() >= 10).then_some(())
    });

    // The disk fills up mid-push.
    let filler = data.join("filler");
    let free = {
        let out = std::process::Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&data)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let _ = std::fs::write(&filler, vec![0u8; free as usize]);
    wait_for("a full-disk alert", Duration::from_secs(60), || {
        let s = d.status();
        s["alerts"]
            .to_string()
            .contains("storage fault")
            .then_some(())
    });
    std::fs::remove_file(&filler).unwrap();
    let done = wait_status(&d, "disk", "completed", Duration::from_secs(60));
    assert_consistent(&d, done["id"].as_i64().unwrap());
    // Nothing reported as sent that the platform did not get, nobody twice.
    let seen = mock.count_by_recipient();
    for (_, u) in &users {
        assert!(seen.get(u).copied().unwrap_or(0) <= 1, "{u} sent twice");
    }
    let sent = count(&d.db(), "SELECT count(*) FROM deliveries WHERE state = 2");
    assert!(sent as usize <= seen.len());
    assert!(!d.status()["alerts"].to_string().contains("storage"));
    d.stop();
}

/// Starts `d` with a file size limit (RLIMIT_FSIZE) of `limit` bytes on the
/// daemon: a write past it fails with EFBIG, as a full disk fails with
/// ENOSPC (SIGXFSZ is ignored so the write fails rather than killing the
/// process). Needs no privilege; the limit can be raised later with
/// [`raise_file_size_limit`].
fn spawn_with_file_size_limit(d: &mut TestDaemon, limit: u64) {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&d.log_path)
        .expect("log file");
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["serve", "--config"])
        .arg(&d.config_path)
        // Info only: the log is a file under the same limit.
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log);
    // SAFETY: the closure only makes async-signal-safe calls (getrlimit,
    // setrlimit, signal) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            lim.rlim_cur = limit.min(lim.rlim_max);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    d.child = Some(cmd.spawn().expect("spawn pushd serve"));
    d.wait_ready();
}

/// Lifts the file size limit of a running process (up to its hard limit,
/// which needs no privilege for our own child).
fn raise_file_size_limit(pid: u32) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit(2) on our own child with valid pointers.
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_FSIZE, std::ptr::null(), &mut lim) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: as above.
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_FSIZE, &lim, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Out of space without root and without `max_page_count`: the daemon runs
/// under a 1 MiB file size limit while the test holds a read transaction
/// open, so the WAL cannot be recycled and grows into the limit mid-push.
/// Sends hold with a storage alert, every request that left was committed
/// first, and once the limit is lifted the push completes with everyone
/// sent exactly once.
#[test]
fn the_wal_hitting_a_file_size_limit_holds_sends_and_recovers() {
    const LIMIT: u64 = 1 << 20;
    let rt = runtime();
    let mock = rt.block_on(crate::support::mocks::MockPlatform::start(
        pushd::model::Platform::Custom,
    ));
    let cfg = base_config(&format!(
        "[dispatch]\nrate_per_minute = 1200\nconcurrency = 2\n{}",
        mock.channel_toml("hook")
    ));
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script("10.lua", crate::e2e::HELLO);
    spawn_with_file_size_limit(&mut d, LIMIT);
    let users: Vec<(String, String)> = (1..=300)
        .map(|i| ("hook".to_string(), format!("u{i}")))
        .collect();
    crate::e2e::import_members(&d, &users);
    // A reader the WAL must keep every frame for (it cannot start over
    // while a transaction still reads an older snapshot).
    let reader = d.db();
    reader
        .execute_batch("BEGIN; SELECT count(*) FROM members;")
        .unwrap();
    let wal = d.path("data/pushd.db-wal");
    push_hello(&d, "wal", &[]);
    let s = wait_for("a storage alert", Duration::from_secs(60), || {
        let s = d.status();
        s["alerts"]
            .to_string()
            .contains("storage fault")
            .then_some(s)
    });
    assert!(s["alerts"].to_string().contains("free disk space"), "{s}");
    // It was the WAL that ran into the limit, not the database file.
    let (wal_len, db_len) = (file_len(&wal), file_len(&d.db_path));
    assert!(
        wal_len > LIMIT - 2 * 4120 && wal_len <= LIMIT,
        "WAL is {wal_len} bytes, the limit {LIMIT}"
    );
    assert!(db_len < LIMIT / 2, "database file is {db_len} bytes");
    // Every request that reached the platform was committed `sending`
    // (or its outcome recorded) before it left; nothing unsent is `sent`.
    let db = d.db();
    let committed: std::collections::HashSet<String> = strings(
        &db,
        &format!(
            "SELECT m.channel_user_id FROM deliveries d JOIN members m ON m.id = d.member_id
              WHERE {} IN (1, 2, 3)",
            pushd::store::deliveries::STATE_SQL
        ),
    )
    .into_iter()
    .collect();
    let requested = mock.count_by_recipient();
    for u in requested.keys() {
        assert!(committed.contains(u), "{u} requested but never committed");
    }
    let sent = count(&db, "SELECT count(*) FROM deliveries WHERE state = 2");
    assert!(
        sent as usize <= requested.len(),
        "{sent} sent, {requested:?}"
    );
    assert!(
        sent < users.len() as i64,
        "the limit was hit mid-push ({sent} of {} sent)",
        users.len()
    );
    eprintln!(
        "held at {sent} of {} sent, WAL {wal_len} bytes, database {db_len} bytes: {}",
        users.len(),
        s["alerts"]
    );
    drop(db);
    // Space returns: the push completes, everyone sent once.
    raise_file_size_limit(d.pid());
    let done = wait_status(&d, "wal", "completed", Duration::from_secs(90));
    assert!(!d.status()["alerts"].to_string().contains("storage"));
    reader.execute_batch("COMMIT").unwrap();
    assert_consistent(&d, done["id"].as_i64().unwrap());
    assert_eq!(
        count(&d.db(), "SELECT count(*) FROM deliveries WHERE state = 2"),
        users.len() as i64
    );
    let everyone: Vec<&str> = users.iter().map(|(_, u)| u.as_str()).collect();
    mock.assert_each_recipient_once(&everyone);
    assert!(d.log().contains("storage recovered"), "{}", d.log());
    d.stop();
}
