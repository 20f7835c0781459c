//! Upgrades: a database left by an older pushd opens in this one, migrates,
//! and keeps every row.
//!
//! - `every_earlier_schema_version_upgrades_keeping_every_row` builds a
//!   database at each earlier schema version from the migrations as they
//!   shipped (`MIGRATIONS[..k]`), fills it with rows valid at that version
//!   (members, tags, a saved audience, pushes completed / paused /
//!   cancelled, deliveries in every state, a claim, events, audit), and
//!   starts the real daemon on it.
//! - `fixtures_of_past_releases_open_with_their_reports_intact` starts the
//!   daemon on every database under `tests/fixtures/` (made by a release's
//!   own binary) and compares the reports with the ones that release
//!   recorded beside it. A release that changes the schema adds its own:
//!   `PUSHD_UPDATE_FIXTURES=1 cargo test --test integration upgrade::fixtures`
//!   writes `tests/fixtures/schema-vN.db` and `.json` for this binary.

use crate::dispatch::{assert_consistent, create_push, wait_status};
use crate::support::*;
use pushd::store::schema::{MIGRATIONS, VERSION};
use rusqlite::Connection;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A config whose channel is the simulator the fixtures' members are on,
/// keeping inbound events for 100 years (a fixture's events must not be
/// pruned for age when a later release opens it).
fn config() -> String {
    base_config(
        "[dispatch]\nrate_per_minute = 0\n[receipts]\nevent_retention = \"36500d\"\n[channels.sim]\nkind = \"simulator\"\nlatency = \"0ms\"\nreceipt_delay = \"10ms\"\nread_rate = 0.5\ninteract_rate = 0.3\n",
    )
}

const SCRIPTS: &str = r#"
audience "all" { where = { channel = "sim" } }
template "hello" { en = { text = "Hello {{name}}" } }
"#;

/// Starts a daemon on a copy of `db`.
fn daemon_on(db: &Path) -> TestDaemon {
    let mut d = TestDaemon::prepare(&config());
    d.write_script("10.lua", SCRIPTS);
    std::fs::create_dir_all(d.path("data")).unwrap();
    std::fs::copy(db, &d.db_path).unwrap();
    d.spawn();
    d
}

fn report(d: &TestDaemon, push: &str) -> Value {
    let v = d.cli_json(&["report", push]);
    assert_eq!(v["ok"], true, "{v}");
    v["data"].clone()
}

/// The report fields DESIGN.md makes the contract, for comparison.
fn contract(r: &Value) -> Value {
    let keys = [
        "push",
        "status",
        "start_at",
        "finished_at",
        "recipients",
        "sent_success",
        "sent_fail",
        "read_and_interacted",
        "read_only",
        "interacted_only",
        "not_read_or_interacted",
        "skipped",
        "cancelled",
        "retry_of",
    ];
    Value::Object(
        keys.iter()
            .map(|k| (k.to_string(), r[*k].clone()))
            .collect(),
    )
}

/// Every row of `table` (its columns at the old version), as text, in id
/// order (tables without an id: in text order).
fn rows(db: &Connection, table: &str, columns: &[String]) -> Vec<String> {
    // Blobs (the link key) as hex: JSON cannot hold them.
    let list: Vec<String> = columns
        .iter()
        .map(|c| format!("CASE WHEN typeof({c}) = 'blob' THEN hex({c}) ELSE {c} END"))
        .collect();
    let list = list.join(", ");
    let order = if columns.iter().any(|c| c == "id") {
        "id"
    } else {
        "1"
    };
    strings(
        db,
        &format!("SELECT json_array({list}) FROM {table} ORDER BY {order}"),
    )
}

fn columns(db: &Connection, table: &str) -> Vec<String> {
    strings(
        db,
        &format!("SELECT name FROM pragma_table_info('{table}')"),
    )
}

fn tables(db: &Connection) -> Vec<String> {
    strings(
        db,
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
}

/// Rows valid at schema `version`: six members, a saved audience, a
/// completed push with one delivery per outcome, a paused push caught with
/// sends in flight, a cancelled push, events, a script generation, audit.
fn fill(db: &Connection, version: usize, t0: i64) {
    db.execute_batch(&format!(
        r#"
INSERT INTO members (id, channel, channel_user_id, name, locale, timezone, tags, attributes, subscribed, last_interaction_at, created_at, updated_at) VALUES
 (1, 'sim', 'sim-1', 'Ann', 'en', 'Asia/Tokyo', 'vip;new', '{{"spend":120}}', 1, {t0}, {t0}, {t0}),
 (2, 'sim', 'sim-2', 'Bo', 'zh', 'UTC', 'vip', '{{}}', 1, NULL, {t0}, {t0}),
 (3, 'sim', 'sim-3', 'Cy', 'en', 'UTC', '', '{{}}', 1, NULL, {t0}, {t0}),
 (4, 'sim', 'sim-4', 'Di', 'en', 'UTC', '', '{{"x":[1,2]}}', 1, NULL, {t0}, {t0}),
 (5, 'sim', 'sim-5', 'Ed', 'en', 'UTC', '', '{{}}', 1, NULL, {t0}, {t0}),
 (6, 'sim', 'sim-6', 'Fay', 'en', 'UTC', '', '{{}}', 0, NULL, {t0}, {t0});
INSERT INTO member_tags (tag, member_id) VALUES ('vip', 1), ('new', 1), ('vip', 2);
INSERT INTO pushes (id, name, origin, audience, template, status, status_reason, start_at, generation, script_hash, resolved, created_at, started_at, finished_at, updated_at) VALUES
 (1, 'done', 'cli', 'all', 'hello', 'completed', NULL, {t0}, 1, 'abc', 1, {t0}, {t0}, {t1}, {t1}),
 (2, 'halted', 'cli', 'all', 'hello', 'paused', 'paused by uid 0', {t0}, 1, 'abc', 1, {t0}, {t0}, NULL, {t0}),
 (3, 'stopped', 'script', 'all', 'hello', 'cancelled', NULL, {t0}, 1, 'abc', 1, {t0}, {t0}, {t1}, {t1});
INSERT INTO audiences (id, name, source_push_id, only_class, created_at, created_by) VALUES (1, 'done-retry', 1, NULL, {t1}, 0);
INSERT INTO audience_members (audience_id, member_id) VALUES (1, 5);
INSERT INTO deliveries (id, push_id, member_id, state, channel, attempts, provider_message_id, error_class, error_code, error_message, skip_reason, sending_at, sent_at, failed_at, delivered_at, read_at, interacted_at, updated_at) VALUES
 (1, 1, 1, 2, 'sim', 1, 'p1', NULL, NULL, NULL, NULL, {t0}, {t0}, NULL, {t0}, {t1}, {t1}, {t1}),
 (2, 1, 2, 2, 'sim', 1, 'p2', NULL, NULL, NULL, NULL, {t0}, {t0}, NULL, {t0}, {t1}, NULL, {t1}),
 (3, 1, 3, 2, 'sim', 1, 'p3', NULL, NULL, NULL, NULL, {t0}, {t0}, NULL, NULL, NULL, {t1}, {t1}),
 (4, 1, 4, 2, 'sim', 1, 'p4', NULL, NULL, NULL, NULL, {t0}, {t0}, NULL, {t0}, NULL, NULL, {t1}),
 (5, 1, 5, 3, 'sim', 1, NULL, 'blocked', '403', 'bot was blocked', NULL, {t0}, NULL, {t0}, NULL, NULL, NULL, {t1}),
 (6, 1, 6, 4, NULL, 0, NULL, NULL, NULL, NULL, 'unsubscribed', NULL, NULL, NULL, NULL, NULL, NULL, {t1}),
 (7, 2, 1, 0, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, {t0}),
 (8, 2, 2, 1, 'sim', 1, NULL, NULL, NULL, NULL, NULL, {t0}, NULL, NULL, NULL, NULL, NULL, {t0}),
 (9, 2, 3, {claimed_state}, NULL, 0, NULL, NULL, NULL, NULL, NULL, {claimed_at}, NULL, NULL, NULL, NULL, NULL, {t0}),
 (10, 2, 4, 3, 'sim', 3, NULL, 'transient', '503', 'busy', NULL, {t0}, NULL, {t0}, NULL, NULL, NULL, {t0}),
 (11, 3, 1, 2, 'sim', 1, 'p11', NULL, NULL, NULL, NULL, {t0}, {t0}, NULL, NULL, NULL, NULL, {t1}),
 (12, 3, 2, 5, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, {t1}),
 (13, 3, 3, 5, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, {t1});
INSERT INTO push_counts (push_id, state, rd, ia, n)
 SELECT push_id, CASE WHEN state <= 1 THEN 0 ELSE state END, read_at IS NOT NULL, interacted_at IS NOT NULL, count(*)
   FROM deliveries GROUP BY 1, 2, 3, 4;
INSERT INTO events (at, channel, kind, dedupe_key, member_id, delivery_id, push_id, summary, raw) VALUES
 ({t0}, 'sim', 'status_read', 'p1', 1, 1, 1, 'read', '{{}}'),
 ({t1}, 'sim', 'message', 'm-1', 1, 1, 1, 'hi there', '{{"text":"hi there"}}'),
 ({t1}, 'sim', 'status_read', 'early-1', NULL, NULL, NULL, 'read before its send', '{{}}');
INSERT INTO script_generations (hash, loaded_at, ok, files, error) VALUES ('abc', {t0}, 1, '["10.lua"]', NULL);
INSERT INTO audit (at, uid, action, target, ok, detail) VALUES ({t0}, 0, 'push.create', 'done', 1, NULL), ({t1}, 1000, 'push.pause', 'halted', 1, NULL);
"#,
        t1 = t0 + 60_000,
        // From version 3 a first attempt in flight is a fresh row inside a claim.
        claimed_state = if version >= 3 { 0 } else { 1 },
        claimed_at = if version >= 3 {
            "NULL".to_string()
        } else {
            t0.to_string()
        },
    ))
    .unwrap_or_else(|e| panic!("fill at version {version}: {e}"));
    if version >= 3 {
        db.execute_batch(&format!(
            "INSERT INTO claims (push_id, first_id, last_id, at) VALUES (2, 9, 9, {t0});"
        ))
        .unwrap();
    }
    if version >= 4 {
        db.execute_batch("UPDATE pushes SET resolved_through = 6;")
            .unwrap();
    }
    if version >= 6 {
        db.execute_batch("UPDATE audiences SET outcome = 'sent_fail', filter = '{}';")
            .unwrap();
    }
}

/// An hour ago, in whole seconds: recent enough that no retention prunes it.
fn t0() -> i64 {
    (pushd::model::now_ms() - 3_600_000) / 1000 * 1000
}

/// A database at schema `version`, made from the migrations as they shipped.
fn database_at(dir: &Path, version: usize) -> PathBuf {
    let path = dir.join(format!("v{version}.db"));
    let db = Connection::open(&path).unwrap();
    for sql in &MIGRATIONS[..version] {
        db.execute_batch(sql).unwrap();
    }
    db.pragma_update(None, "user_version", version as i64)
        .unwrap();
    fill(&db, version, t0());
    path
}

#[test]
fn every_earlier_schema_version_upgrades_keeping_every_row() {
    let dir = tempfile::tempdir().unwrap();
    for version in 1..=VERSION as usize {
        let path = database_at(dir.path(), version);
        let before = Connection::open(&path).unwrap();
        let old: BTreeMap<String, (Vec<String>, Vec<String>)> = tables(&before)
            .into_iter()
            .map(|t| {
                let cols = columns(&before, &t);
                let r = rows(&before, &t, &cols);
                (t, (cols, r))
            })
            .collect();
        drop(before);
        let mut d = daemon_on(&path);
        let db = d.db();
        assert_eq!(count(&db, "PRAGMA user_version"), VERSION, "v{version}");
        // The dispatcher settles what a crash left in flight as it starts.
        wait_for(
            "the sends in flight settled",
            Duration::from_secs(20),
            || {
                (count(&db, "SELECT count(*) FROM deliveries WHERE state = 1") == 0
                    && count(&db, "SELECT count(*) FROM claims") == 0)
                    .then_some(())
            },
        );
        // Every row is still there with the values it had. The daemon's
        // start adds to the audit trail and script generations, and ends
        // the sends a crash left in flight (deliveries 8 and 9, claims, and
        // their counters).
        for (table, (cols, old_rows)) in &old {
            let now = rows(&db, table, cols);
            match table.as_str() {
                // Rows the daemon adds (its link key is made at start).
                "audit" | "script_generations" | "link_key" => {
                    assert_eq!(&now[..old_rows.len()], &old_rows[..], "v{version} {table}")
                }
                "claims" => assert!(now.is_empty(), "v{version}: claims settled"),
                // Two sends moved to failed: checked against a recount below.
                "push_counts" => {}
                "deliveries" => {
                    assert_eq!(now.len(), old_rows.len(), "v{version} deliveries");
                    for (i, (a, b)) in old_rows.iter().zip(&now).enumerate() {
                        if i != 7 && i != 8 {
                            assert_eq!(a, b, "v{version} delivery {}", i + 1);
                        }
                    }
                }
                _ => assert_eq!(&now, old_rows, "v{version} {table}"),
            }
        }
        assert_eq!(
            strings(
                &db,
                "SELECT id || ':' || state || ':' || error_class FROM deliveries WHERE id IN (8, 9) ORDER BY id"
            ),
            ["8:3:interrupted", "9:3:interrupted"],
            "v{version}: sends caught in flight end interrupted"
        );
        // The reports read the migrated counters.
        let t0: i64 = count(&db, "SELECT start_at FROM pushes WHERE id = 1");
        let done = report(&d, "done");
        assert_eq!(
            contract(&done),
            json!({
                "push": "done", "status": "completed",
                "start_at": pushd::model::fmt_ms(t0), "finished_at": pushd::model::fmt_ms(t0 + 60_000),
                "recipients": 5, "sent_success": 4, "sent_fail": 1,
                "read_and_interacted": 1, "read_only": 1, "interacted_only": 1,
                "not_read_or_interacted": 1, "skipped": 1, "cancelled": 0, "retry_of": null
            }),
            "v{version}"
        );
        let halted = report(&d, "halted");
        assert_eq!(
            (
                &halted["status"],
                &halted["recipients"],
                &halted["sent_fail"],
                &halted["remaining"]
            ),
            (&json!("paused"), &json!(4), &json!(3), &json!(1)),
            "v{version}: {halted}"
        );
        let stopped = report(&d, "stopped");
        assert_eq!(
            (
                &stopped["recipients"],
                &stopped["sent_success"],
                &stopped["cancelled"]
            ),
            (&json!(1), &json!(1), &json!(2)),
            "v{version}: {stopped}"
        );
        for push in 1..=3 {
            assert_consistent_counters(&db, push, version);
        }
        drop(db);
        // And it works on: the paused push resumes and completes.
        let v = d.cli_json(&["push", "resume", "halted"]);
        assert_eq!(v["ok"], true, "{v}");
        let p = wait_status(&d, "halted", "completed", Duration::from_secs(30));
        assert_consistent(&d, p["id"].as_i64().unwrap());
        assert_eq!(report(&d, "halted")["sent_success"], 1, "v{version}");
        d.stop();
    }
}

fn assert_consistent_counters(db: &Connection, push: i64, version: usize) {
    let mismatched = count(
        db,
        &format!(
            "SELECT count(*) FROM (
               SELECT CASE WHEN state <= 1 THEN 0 ELSE state END, read_at IS NOT NULL, interacted_at IS NOT NULL, count(*)
                 FROM deliveries WHERE push_id = {push} GROUP BY 1, 2, 3
               EXCEPT SELECT state, rd, ia, n FROM push_counts WHERE push_id = {push} AND n != 0)"
        ),
    );
    assert_eq!(mismatched, 0, "v{version} push {push}: counters");
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every fixture (a database a release made, and what it recorded about
/// it) opens in this binary: migrated, every table at least as long, the
/// reports equal. One for this schema version must exist.
#[test]
fn fixtures_of_past_releases_open_with_their_reports_intact() {
    if std::env::var("PUSHD_UPDATE_FIXTURES").is_ok_and(|v| v == "1") {
        make_fixture();
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(fixtures_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "db") {
            found.push(path);
        }
    }
    found.sort();
    let current = fixtures_dir().join(format!("schema-v{VERSION}.db"));
    assert!(
        found.contains(&current),
        "no fixture for schema version {VERSION}: run `PUSHD_UPDATE_FIXTURES=1 cargo test --test integration upgrade::fixtures` and commit tests/fixtures/schema-v{VERSION}.*"
    );
    for db_path in found {
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(db_path.with_extension("json")).unwrap())
                .unwrap();
        let name = db_path.display().to_string();
        let d = daemon_on(&db_path);
        let db = d.db();
        assert_eq!(count(&db, "PRAGMA user_version"), VERSION, "{name}");
        for (table, n) in expected["tables"].as_object().unwrap() {
            let now = count(&db, &format!("SELECT count(*) FROM {table}"));
            assert!(
                now >= n.as_i64().unwrap(),
                "{name}: {table} has {now} rows, the fixture {n}"
            );
        }
        for (push, r) in expected["reports"].as_object().unwrap() {
            assert_eq!(contract(&report(&d, push)), *r, "{name}: report of {push}");
        }
    }
}

/// Makes this binary's fixture: a few simulator members, a completed push
/// with reads and interactions, a retry audience, a paused push with
/// recipients left; then folded into one small file.
fn make_fixture() {
    let mut d = TestDaemon::prepare(&base_config(
        "[dispatch]\nrate_per_minute = 0\n[channels.sim]\nkind = \"simulator\"\nseed_members = 12\nlatency = \"0ms\"\nreceipt_delay = \"10ms\"\nread_rate = 0.5\ninteract_rate = 0.3\nblock_rate = 0.3\ninvalid_rate = 0.1\n",
    ));
    d.write_script("10.lua", SCRIPTS);
    d.spawn();
    create_push(
        &d,
        &[
            "--audience",
            "all",
            "--template",
            "hello",
            "--name",
            "first",
        ],
    );
    wait_status(&d, "first", "completed", Duration::from_secs(30));
    // The receipts (reads, interactions) land shortly after the sends.
    wait_for("receipts", Duration::from_secs(30), || {
        (count(
            &d.db(),
            "SELECT count(*) FROM deliveries WHERE read_at IS NOT NULL",
        ) > 0)
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        d.cli_json(&["retry-audience", "first", "--name", "first-retry"])["ok"],
        true
    );
    create_push(
        &d,
        &[
            "--audience",
            "all",
            "--template",
            "hello",
            "--name",
            "later",
            "--at",
            "2099-01-01T00:00:00Z",
        ],
    );
    let mut reports = serde_json::Map::new();
    for push in ["first", "later"] {
        reports.insert(push.into(), contract(&report(&d, push)));
    }
    assert_eq!(d.stop(), Some(0));
    let db = Connection::open(&d.db_path).unwrap();
    db.execute_batch("PRAGMA journal_mode = DELETE; PRAGMA page_size = 1024; VACUUM;")
        .unwrap();
    let table_counts: serde_json::Map<String, Value> = tables(&db)
        .into_iter()
        .map(|t| {
            let n = count(&db, &format!("SELECT count(*) FROM {t}"));
            (t, json!(n))
        })
        .collect();
    drop(db);
    std::fs::create_dir_all(fixtures_dir()).unwrap();
    let out = fixtures_dir().join(format!("schema-v{VERSION}.db"));
    std::fs::copy(&d.db_path, &out).unwrap();
    let meta = json!({
        "made_by": format!("pushd {}", env!("CARGO_PKG_VERSION")),
        "schema_version": VERSION,
        "how": "PUSHD_UPDATE_FIXTURES=1 cargo test --test integration upgrade::fixtures",
        "tables": table_counts,
        "reports": reports,
    });
    std::fs::write(
        out.with_extension("json"),
        serde_json::to_string_pretty(&meta).unwrap() + "\n",
    )
    .unwrap();
    eprintln!(
        "wrote {} ({} bytes)",
        out.display(),
        std::fs::metadata(&out).unwrap().len()
    );
}
