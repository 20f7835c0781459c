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

#[test]
fn non_admin_peer_may_read_but_not_change_state() {
    // Root runs the client as `nobody`; a non-root run refuses its own uid.
    let root = unsafe { libc::geteuid() } == 0;
    let extra = if root {
        "[control]\nmode = \"0666\"\n"
    } else {
        "[control]\nmode = \"0666\"\nowner_is_admin = false\n"
    };
    let d = TestDaemon::start(&base_config(extra));
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(d.path("data"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let members = d.path("members.csv");
    std::fs::write(&members, "channel,channel_user_id\nsim,u1\n").unwrap();
    std::fs::set_permissions(&members, std::fs::Permissions::from_mode(0o644)).unwrap();

    let run = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.arg("--socket").arg(&d.socket).args(args);
        if root {
            cmd.uid(65534).gid(65534);
        }
        cmd.output().unwrap()
    };
    let out = run(&["--json", "status"]);
    assert!(
        out.status.success(),
        "status must be allowed: {}",
        stderr(&out)
    );
    let out = run(&["--json", "members", "import", members.to_str().unwrap()]);
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "forbidden", "{v}");
    assert_eq!(count(&d.db(), "SELECT count(*) FROM members"), 0);
    let refused_uid: i64 = if root {
        65534
    } else {
        i64::from(unsafe { libc::geteuid() })
    };
    // The refusal is logged; the allowed admin path is audited with the peer uid.
    assert!(d.log().contains("refused state change"), "{}", d.log());
    let out = d.cli(&["members", "import", members.to_str().unwrap()]);
    if root {
        assert!(out.status.success(), "{}", stderr(&out));
        let uid: i64 = d
            .db()
            .query_row(
                "SELECT uid FROM audit WHERE action = 'members.import'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(uid, 0);
    } else {
        assert!(!out.status.success());
        let _ = refused_uid;
    }
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
