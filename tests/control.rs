//! The control socket: protocol, limits, authorization, lifecycle.

use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

#[test]
fn status_round_trip_and_json_output() {
    let d = TestDaemon::start(&base_config(""));
    let s = d.status();
    assert_eq!(s["pid"].as_u64().unwrap() as u32, d.pid());
    assert_eq!(s["members"], 0);
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert!(s["database_path"].as_str().unwrap().ends_with("pushd.db"));

    let v = d.cli_json(&["status"]);
    assert_eq!(v["ok"], true);
    assert_eq!(v["data"]["pid"].as_u64().unwrap() as u32, d.pid());

    let out = d.cli(&["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("members:"), "{text}");
    assert!(text.contains(&format!("pid {}", d.pid())), "{text}");
}

#[test]
fn malformed_line_gets_error_and_connection_stays_usable() {
    let d = TestDaemon::start(&base_config(""));
    let mut c = Conn::open(&d.socket);
    let r = c.call("{this is not json");
    assert_eq!(r["ok"], false);
    assert_eq!(r["error"]["code"], "bad_request");
    let r = c.call(r#"{"cmd":"no.such"}"#);
    assert_eq!(r["error"]["code"], "unknown_command");
    let r = c.call(r#"{"cmd":"audit.list","args":{"limit":"ten"}}"#);
    assert_eq!(r["error"]["code"], "invalid_args");
    c.send_raw(&[0xff, 0xfe, b'\n']);
    assert_eq!(c.recv()["error"]["code"], "bad_request");
    let r = c.call(r#"{"cmd":"status"}"#);
    assert_eq!(r["ok"], true, "{r}");
}

#[test]
fn oversized_line_is_refused_and_daemon_is_fine() {
    let d = TestDaemon::start(&base_config("[control]\nmax_line_bytes = 4096\n"));
    let mut c = Conn::open(&d.socket);
    let big = format!("{{\"cmd\":\"status\",\"pad\":\"{}\"}}", "x".repeat(100_000));
    let r = c.call(&big);
    assert_eq!(r["error"]["code"], "line_too_long", "{r}");
    assert_eq!(c.call(r#"{"cmd":"status"}"#)["ok"], true);
    // Memory stayed bounded: a second connection works too.
    assert_eq!(d.request(r#"{"cmd":"status"}"#)["ok"], true);
}

/// A daemon whose socket anyone may connect to, with `control` keys.
fn open_daemon(control: &str) -> TestDaemon {
    let d = TestDaemon::start(&base_config(&format!(
        "[control]\nmode = \"0666\"\n{control}\n"
    )));
    // tempfile makes its folders 0700: let other users reach the socket.
    for dir in [d.dir.path().to_path_buf(), d.path("data")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    d
}

/// A members file with one member, readable by everyone.
fn member_file(d: &TestDaemon, user: &str) -> String {
    let path = d.path(&format!("{user}.csv"));
    std::fs::write(&path, format!("channel,channel_user_id\nsim,{user}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path.to_str().unwrap().to_string()
}

/// Runs the CLI on `d`'s socket as `uid`:`gid` (None: as ourselves).
fn cli_as(d: &TestDaemon, ids: Option<(u32, u32)>, args: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(BIN);
    cmd.arg("--socket").arg(&d.socket).arg("--json").args(args);
    if let Some((uid, gid)) = ids {
        // std drops root's supplementary groups with the uid change.
        cmd.uid(uid).gid(gid);
    }
    let out = cmd.output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "CLI {args:?} as {ids:?} printed no JSON ({e}): {}",
            stderr(&out)
        )
    })
}

fn import_uids(d: &TestDaemon) -> Vec<i64> {
    let db = d.db();
    let mut stmt = db
        .prepare("SELECT uid FROM audit WHERE action = 'members.import' ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .unwrap()
}

/// Other users connect (mode 0666) and read; only the uids, names and
/// groups in `control.admins` change state, each audited with its uid.
/// Root runs the CLI as other uids; without root only our own uid can be
/// tried (see `own_uid_is_judged_by_owner_is_admin_and_admins`).
#[test]
fn non_admin_peer_may_read_but_not_change_state() {
    if !preconditions::is_root() {
        preconditions::skipped(
            "control::non_admin_peer_may_read_but_not_change_state",
            "running the client as other uids",
            "not root: cannot setuid",
        );
        return;
    }
    let d = open_daemon("admins = [4242, \"uid:4343\", \"gid:4444\", \"daemon\"]");
    let nobody = Some((65534, 65534));
    let v = cli_as(&d, nobody, &["status"]);
    assert_eq!(v["ok"], true, "reading is open to anyone who connects: {v}");
    // Refused: nobody, and a uid whose group is not listed either.
    for (ids, user) in [(nobody, "nobody"), (Some((4646, 4646)), "u4646")] {
        let v = cli_as(&d, ids, &["members", "import", &member_file(&d, user)]);
        assert_eq!(v["error"]["code"], "forbidden", "{ids:?}: {v}");
        let (uid, _) = ids.unwrap();
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(&format!("uid {uid} is not in control.admins")),
            "{msg}"
        );
        let v = cli_as(&d, ids, &["reload"]);
        assert_eq!(v["error"]["code"], "forbidden", "{ids:?} reload: {v}");
    }
    assert_eq!(count(&d.db(), "SELECT count(*) FROM members"), 0);
    assert_eq!(
        count(
            &d.db(),
            "SELECT count(*) FROM audit WHERE uid IN (65534, 4646)"
        ),
        0,
        "a refused command changes nothing"
    );
    assert_eq!(
        d.log().matches("refused state change").count(),
        4,
        "{}",
        d.log()
    );
    // Allowed: a listed uid, a "uid:N" entry, a listed primary group, a
    // listed user name (Debian's `daemon` is uid 1).
    for (uid, gid) in [(4242, 4242), (4343, 4343), (4545, 4444), (1, 1)] {
        let file = member_file(&d, &format!("u{uid}"));
        let v = cli_as(&d, Some((uid, gid)), &["members", "import", &file]);
        assert_eq!(v["ok"], true, "uid {uid} gid {gid}: {v}");
    }
    assert_eq!(import_uids(&d), [4242, 4343, 4545, 1]);
    assert_eq!(
        strings(&d.db(), "SELECT channel_user_id FROM members ORDER BY id"),
        ["u4242", "u4343", "u4545", "u1"]
    );
    // Root is always an admin.
    let v = cli_as(&d, None, &["members", "import", &member_file(&d, "root")]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(import_uids(&d), [4242, 4343, 4545, 1, 0]);
}

/// Starts [`open_daemon`]'s daemon as `uid`:`gid` (root only): its folder
/// is handed to that user first.
fn open_daemon_as(control: &str, uid: u32, gid: u32) -> TestDaemon {
    let mut d = TestDaemon::prepare(&base_config(&format!(
        "[control]\nmode = \"0666\"\n{control}\n"
    )));
    std::fs::write(&d.log_path, "").unwrap();
    for path in [
        d.dir.path().to_path_buf(),
        d.config_path.clone(),
        d.path("scripts"),
        d.log_path.clone(),
    ] {
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
    }
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(&d.log_path)
        .unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&d.config_path)
        .env("RUST_LOG", "info,pushd=debug")
        .uid(uid)
        .gid(gid)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn pushd serve as another user");
    d.child = Some(child);
    d.wait_ready();
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// The daemon's own user is an admin through `owner_is_admin`, else only
/// when `control.admins` lists it; a reload changes the verdict. Root runs
/// the daemon and the client as uid 4747 (root itself is always an admin);
/// anyone else uses their own uid.
#[test]
fn own_uid_is_judged_by_owner_is_admin_and_admins() {
    let (d, me, ids) = if preconditions::is_root() {
        let d = open_daemon_as("owner_is_admin = false", 4747, 4747);
        (d, 4747, Some((4747, 4747)))
    } else {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        (open_daemon("owner_is_admin = false"), me, None)
    };
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&d.db_path).unwrap()),
        me,
        "the daemon runs as {me}"
    );
    let file = member_file(&d, "me");
    for args in [&["members", "import", &file][..], &["reload"]] {
        let v = cli_as(&d, ids, args);
        assert_eq!(v["error"]["code"], "forbidden", "{args:?}: {v}");
    }
    assert_eq!(count(&d.db(), "SELECT count(*) FROM members"), 0);
    // Listing our uid lets us in; the audit names us.
    let config = std::fs::read_to_string(&d.config_path).unwrap();
    std::fs::write(
        &d.config_path,
        config.replace(
            "owner_is_admin = false",
            &format!("owner_is_admin = false\nadmins = [\"uid:{me}\"]"),
        ),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    wait_for("the admins list to apply", Duration::from_secs(20), || {
        (cli_as(&d, ids, &["members", "import", &file])["ok"] == true).then_some(())
    });
    assert_eq!(import_uids(&d), [i64::from(me)]);
}

#[test]
fn stale_socket_is_replaced_and_second_daemon_refused() {
    let mut d = TestDaemon::prepare(&base_config(""));
    std::fs::create_dir_all(d.path("data")).unwrap();
    // A socket file nobody listens on: what a crashed daemon leaves behind.
    {
        let l = std::os::unix::net::UnixListener::bind(&d.socket).unwrap();
        drop(l);
    }
    assert!(d.socket.exists());
    d.spawn();
    assert_eq!(d.status()["pid"].as_u64().unwrap() as u32, d.pid());

    let mut second = d.spawn_raw();
    let status = wait_exit(&mut second, Duration::from_secs(30));
    assert!(!status.success());
    assert!(
        d.log().contains("another pushd is already serving"),
        "{}",
        d.log()
    );
    // The first one is unharmed.
    assert_eq!(d.status()["pid"].as_u64().unwrap() as u32, d.pid());
}

#[test]
fn sigterm_exits_zero_and_removes_socket() {
    let mut d = TestDaemon::start(&base_config(""));
    assert!(d.socket.exists());
    assert_eq!(d.stop(), Some(0));
    assert!(!d.socket.exists());
    let stops = count(
        &d.db(),
        "SELECT count(*) FROM audit WHERE action = 'daemon.stop'",
    );
    assert_eq!(stops, 1);
}

#[test]
fn socket_mode_is_as_configured() {
    let d = TestDaemon::start(&base_config("[control]\nmode = \"0600\"\n"));
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn hostile_lines_on_a_live_socket_get_errors_and_change_nothing() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let d = TestDaemon::start(&base_config(""));
    let conn = std::cell::RefCell::new(Conn::open(&d.socket));
    let before = count(&d.db(), "SELECT count(*) FROM audit");
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    // Random bytes without newlines, and JSON with state-changing commands
    // but broken arguments: each gets exactly one error line.
    let junk = prop_oneof![
        proptest::collection::vec(
            any::<u8>().prop_filter("no newline", |b| *b != b'\n'),
            1..300
        ),
        "(push\\.(create|pause|cancel)|members\\.import|audience\\.retry)"
            .prop_map(|c| { format!("{{\"cmd\":\"{c}\",\"args\":{{\"bogus\":1}}}}").into_bytes() }),
    ];
    runner
        .run(&junk, |line| {
            if line.iter().all(u8::is_ascii_whitespace) {
                return Ok(());
            }
            let mut c = conn.borrow_mut();
            c.send_raw(&line);
            c.send_raw(b"\n");
            let reply = c.recv();
            prop_assert_eq!(&reply["ok"], false);
            prop_assert!(reply["error"]["code"].is_string());
            Ok(())
        })
        .unwrap();
    assert_eq!(conn.borrow_mut().call(r#"{"cmd":"status"}"#)["ok"], true);
    assert_eq!(
        count(&d.db(), "SELECT count(*) FROM audit"),
        before,
        "nothing changed state"
    );
    assert_eq!(count(&d.db(), "SELECT count(*) FROM members"), 0);
}

/// A read-only peer's `audience preview` runs the audience's Lua filter on
/// a bounded number of candidates and estimates the rest (marked as an
/// estimate), so it cannot hold the script pool for a whole large
/// audience; under the budget the sizes are exact.
#[test]
fn a_filtered_preview_is_bounded_and_says_when_it_estimates() {
    let mut d = TestDaemon::prepare(&base_config(""));
    d.write_script(
        "10_half.lua",
        r#"audience "half" {
  where = { channel = "sim" },
  filter = function(m) return m.id % 2 == 0 end,
}
template "hi" { en = { text = "Hi {{name}}" } }
"#,
    );
    d.spawn_with_env(&[("PUSHD_PREVIEW_SCAN", "2000".to_string())]);
    let mut csv = String::from("channel,channel_user_id,name\n");
    for i in 0..10_000 {
        csv.push_str(&format!("sim,u{i},M{i}\n"));
    }
    let path = d.path("members.csv");
    std::fs::write(&path, csv).unwrap();
    let v = d.cli_json(&["members", "import", path.to_str().unwrap()]);
    assert_eq!(v["ok"], true, "{v}");
    let v = d.cli_json(&["audience", "preview", "half", "--template", "hi"]);
    assert_eq!(v["data"]["estimated"], true, "{v}");
    // Half of the first 2000 kept: 5000 of 10,000, extrapolated.
    assert_eq!(v["data"]["size"], 5000, "{v}");
    let text = String::from_utf8_lossy(&d.cli(&["audience", "preview", "half"]).stdout).to_string();
    assert!(text.contains("≈5000 (estimated"), "{text}");
    // `status` answers while previews run.
    assert_eq!(d.cli_json(&["status"])["ok"], true);
    d.stop();
    // With a budget above the audience, the filter runs on everyone: exact.
    d.spawn_with_env(&[("PUSHD_PREVIEW_SCAN", "20000".to_string())]);
    let v = d.cli_json(&["audience", "preview", "half", "--template", "hi"]);
    assert_eq!(v["data"]["estimated"], false, "{v}");
    assert_eq!(v["data"]["size"], 5000, "{v}");
}
