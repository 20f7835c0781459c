//! The database file as an operator handles it, through the real binary:
//! an online backup taken while a push runs and restored into a new data
//! folder; a corrupt, newer-schema or unwritable database refused at start
//! with a clear message and left untouched; a database that stops taking
//! writes while the daemon runs holds sends and recovers.

use crate::dispatch::{assert_consistent, create_push, wait_status};
use crate::e2e::runtime;
use crate::support::mocks::{Behavior, MockPlatform};
use crate::support::*;
use pushd::model::Platform;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SCRIPTS: &str = r#"
audience "hooked" { where = { channel = "hook" } }
template "hello" { en = { text = "Hello {{name}}" } }
"#;

/// A daemon sending to a custom-webhook mock (`hook`), `n` members u1..un,
/// at most `concurrency` requests in flight, requests that may hang a minute.
fn hook_daemon(mock: &MockPlatform, concurrency: u32) -> TestDaemon {
    let cfg = base_config(&format!(
        "[dispatch]\nrate_per_minute = 0\nconcurrency = {concurrency}\n{}timeout = \"60s\"\n",
        mock.channel_toml("hook")
    ));
    let d = TestDaemon::prepare(&cfg);
    d.write_script("10.lua", SCRIPTS);
    d
}

/// Imports `rows` members of channel `channel` named `{prefix}{i}` in one CSV.
fn import(d: &TestDaemon, channel: &str, prefix: &str, range: std::ops::Range<usize>) {
    let mut csv = String::from("channel,channel_user_id,name,attributes\n");
    for i in range {
        csv.push_str(&format!(
            "{channel},{prefix}{i},Member {i},\"{{\"\"note\"\":\"\"{}\"\"}}\"\n",
            "n".repeat(120)
        ));
    }
    let p = d.path(&format!("import-{prefix}-{}.csv", std::process::id()));
    std::fs::write(&p, csv).unwrap();
    let v = d.cli_json(&["members", "import", p.to_str().unwrap()]);
    assert_eq!(v["ok"], true, "{v}");
}

/// The file's bytes (compared whole: byte for byte is the point).
fn sha(path: &Path) -> Bytes {
    Bytes(std::fs::read(path).unwrap())
}

/// File content that compares without printing megabytes on a mismatch.
#[derive(PartialEq)]
struct Bytes(Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes", self.0.len())
    }
}

/// `push_counts` of push 1 equal a recount of its deliveries in `db`.
fn counters_match(db: &rusqlite::Connection, push: i64) {
    let mismatched = count(
        db,
        &format!(
            "SELECT count(*) FROM (
               SELECT CASE WHEN state <= 1 THEN 0 ELSE state END, read_at IS NOT NULL, interacted_at IS NOT NULL, count(*)
                 FROM deliveries WHERE push_id = {push} GROUP BY 1, 2, 3
               EXCEPT SELECT state, rd, ia, n FROM push_counts WHERE push_id = {push} AND n != 0)"
        ),
    );
    assert_eq!(mismatched, 0, "push_counts differ from a recount");
}

/// A backup taken while a push is half sent (some requests still hanging
/// at the platform) and while other writes go on: the copy is one
/// consistent snapshot, the writer is not held up, and restored into a new
/// data folder the push resumes — the sends caught in flight end
/// `interrupted`, everyone else is sent, and nobody is requested twice.
#[test]
fn backup_during_a_push_restores_into_a_new_data_dir_without_sending_anyone_twice() {
    let rt = runtime();
    let mock = rt.block_on(MockPlatform::start(Platform::Custom));
    let mut d = hook_daemon(&mock, 4);
    d.spawn();
    // A database of some size, so the copy takes more than one step.
    for chunk in 0..10 {
        import(&d, "other", "o", chunk * 10_000..(chunk + 1) * 10_000);
    }
    // A reader holding its snapshot from here on: no checkpoint can copy
    // later commits into the database file, so they live only in the WAL
    // (a copy of the file alone, not through SQLite, would miss them).
    let old_reader = d.db();
    old_reader
        .execute_batch("BEGIN; SELECT count(*) FROM members;")
        .unwrap();
    let users: Vec<String> = (1..=200).map(|i| format!("u{i}")).collect();
    let hook: Vec<(String, String)> = users
        .iter()
        .map(|u| ("hook".to_string(), u.clone()))
        .collect();
    crate::e2e::import_members(&d, &hook);
    // The first 50 are answered; from u51 on the platform holds every
    // request, so with 4 requests in flight the push stops sending there.
    for u in &users[50..] {
        mock.script(u, Behavior::Hang);
    }
    create_push(
        &d,
        &[
            "--audience",
            "hooked",
            "--template",
            "hello",
            "--name",
            "half",
        ],
    );
    let answered = |seen: &std::collections::BTreeMap<String, usize>| {
        users[..50].iter().filter(|u| seen.contains_key(*u)).count() as i64
    };
    let hanging: Vec<String> = wait_for("4 requests hanging", Duration::from_secs(30), || {
        let seen = mock.count_by_recipient();
        let hanging: Vec<String> = users[50..]
            .iter()
            .filter(|u| seen.contains_key(*u))
            .cloned()
            .collect();
        let sent = count(&d.db(), "SELECT count(*) FROM deliveries WHERE state = 2");
        (hanging.len() == 4 && sent == answered(&seen)).then_some(hanging)
    });
    let sent_before = answered(&mock.count_by_recipient());
    assert!(
        sent_before >= 40,
        "{sent_before} sent before the platform hung"
    );
    // Writes keep coming while the backup runs: small imports in a loop.
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::<(Instant, Duration)>::new()));
    let writer = {
        let (stop, latencies) = (stop.clone(), latencies.clone());
        let (config, dir) = (d.config_path.clone(), d.dir.path().to_path_buf());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let p = dir.join(format!("w{i}.csv"));
                std::fs::write(&p, format!("channel,channel_user_id\nother,w{i}\n")).unwrap();
                let t = Instant::now();
                let out = std::process::Command::new(BIN)
                    .arg("--config")
                    .arg(&config)
                    .args(["members", "import"])
                    .arg(&p)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{}", stderr(&out));
                latencies.lock().unwrap().push((t, t.elapsed()));
                i += 1;
            }
        })
    };
    wait_for("writes under way", Duration::from_secs(30), || {
        (latencies.lock().unwrap().len() >= 3).then_some(())
    });
    let backup = d.path("backup/pushd-copy.db");
    std::fs::create_dir_all(backup.parent().unwrap()).unwrap();
    let members_before = count(&d.db(), "SELECT count(*) FROM members");
    let started = Instant::now();
    let v = d.cli_json(&["backup", backup.to_str().unwrap()]);
    let took = started.elapsed();
    let members_after = count(&d.db(), "SELECT count(*) FROM members");
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let report = &v["data"];
    assert_eq!(report["bytes"].as_u64(), Some(file_len(&backup)));
    assert!(
        report["bytes"].as_u64().unwrap() > 8 << 20,
        "a copy of several steps: {report}"
    );
    let during: Vec<Duration> = latencies
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at >= started && *at < started + took)
        .map(|(_, l)| *l)
        .collect();
    let slowest = during.iter().max().copied().unwrap_or_default();
    eprintln!(
        "backup of {} bytes took {} ms in the daemon ({took:?} with the CLI); {} writes committed meanwhile, the slowest in {slowest:?}",
        report["bytes"],
        report["elapsed_ms"],
        during.len()
    );
    assert!(
        slowest < Duration::from_secs(2),
        "a write waited {slowest:?} during the backup"
    );
    // The audit names the backup and who asked.
    assert_eq!(
        count(
            &d.db(),
            "SELECT count(*) FROM audit WHERE action = 'store.backup' AND ok = 1"
        ),
        1
    );

    old_reader.execute_batch("COMMIT").unwrap();
    drop(old_reader);
    // The copy is one consistent snapshot: intact, counters equal a
    // recount, the members of one moment, the push half sent.
    let copy = rusqlite::Connection::open(&backup).unwrap();
    let check: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    counters_match(&copy, 1);
    let copied_members = count(&copy, "SELECT count(*) FROM members");
    assert!(
        (members_before..=members_after).contains(&copied_members),
        "{members_before} <= {copied_members} <= {members_after}"
    );
    assert_eq!(
        count(&copy, "SELECT count(*) FROM deliveries WHERE state = 2"),
        sent_before
    );
    assert_eq!(
        count(&copy, "SELECT status = 'running' FROM pushes WHERE id = 1"),
        1
    );
    drop(copy);

    // The machine is lost; the backup is restored into a new data folder
    // (docs/OPERATIONS.md: stop, copy into place, start).
    d.crash();
    for u in &users[50..] {
        mock.script(u, Behavior::Succeed);
    }
    let mut restored = hook_daemon(&mock, 4);
    std::fs::create_dir_all(restored.path("data")).unwrap();
    std::fs::copy(&backup, &restored.db_path).unwrap();
    restored.spawn();
    let done = wait_status(&restored, "half", "completed", Duration::from_secs(60));
    assert_consistent(&restored, done["id"].as_i64().unwrap());
    let db = restored.db();
    let interrupted = strings(
        &db,
        "SELECT m.channel_user_id FROM deliveries d JOIN members m ON m.id = d.member_id
          WHERE d.error_class = 'interrupted' ORDER BY d.id",
    );
    let seen = mock.count_by_recipient();
    for u in &users {
        let n = seen.get(u).copied().unwrap_or(0);
        assert!(n <= 1, "{u} requested {n} times");
    }
    // The four hanging at the platform were `sending` in the copy: they end
    // interrupted, never resent.
    for u in &hanging {
        assert!(
            interrupted.contains(u),
            "{u} not interrupted: {interrupted:?}"
        );
    }
    let sent = count(&db, "SELECT count(*) FROM deliveries WHERE state = 2");
    assert_eq!(sent + interrupted.len() as i64, 200);
    for u in strings(
        &db,
        "SELECT m.channel_user_id FROM deliveries d JOIN members m ON m.id = d.member_id WHERE d.state = 2",
    ) {
        assert_eq!(seen.get(&u), Some(&1), "{u} recorded sent");
    }
    eprintln!(
        "restored: {sent} sent, {} interrupted: {interrupted:?}",
        interrupted.len()
    );
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// A stopped daemon's database with members and a finished push, its
/// backup, and the daemon folder (stopped).
fn stopped_daemon_with_data() -> (TestDaemon, PathBuf) {
    let cfg = base_config(
        "[dispatch]\nrate_per_minute = 0\n[channels.sim]\nkind = \"simulator\"\nseed_members = 2000\nlatency = \"0ms\"\n",
    );
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script(
        "10.lua",
        "audience \"all\" { }\ntemplate \"hello\" { en = { text = \"Hello {{name}}\" } }\n",
    );
    d.spawn();
    create_push(
        &d,
        &["--audience", "all", "--template", "hello", "--name", "p"],
    );
    wait_status(&d, "p", "completed", Duration::from_secs(60));
    let backup = d.path("good-copy.db");
    let v = d.cli_json(&["backup", backup.to_str().unwrap()]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(d.stop(), Some(0));
    assert!(
        !d.path("data/pushd.db-wal").exists(),
        "a stopped daemon leaves one self-contained file"
    );
    (d, backup)
}

/// Spawns the daemon expecting it to refuse to start; returns its log.
fn refused_start(d: &TestDaemon) -> String {
    std::fs::write(&d.log_path, "").unwrap();
    let mut child = d.spawn_raw();
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert!(!status.success(), "started: {}", d.log());
    assert!(!d.socket.exists(), "the socket is not left behind");
    d.log()
}

/// Overwrites pages `pages` (1-based) of the database file with junk.
fn overwrite_pages(path: &Path, pages: std::ops::Range<u64>) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    for p in pages {
        f.seek(SeekFrom::Start((p - 1) * 4096)).unwrap();
        let junk: Vec<u8> = (0..4096u32).map(|i| (i * 7 + p as u32) as u8).collect();
        f.write_all(&junk).unwrap();
    }
    f.sync_all().unwrap();
}

/// Pages overwritten in the middle of the file (the quick check finds the
/// broken B-tree pages) and a header overwritten (not a database at all):
/// each refused with a message naming the file, saying it is corrupt and
/// how to restore with `pushd backup`'s copy; the file is left as found.
/// Following that advice, the daemon starts on the restored copy.
#[test]
fn a_corrupt_database_is_refused_naming_the_file_and_the_backup_command() {
    let (mut d, backup) = stopped_daemon_with_data();
    let good = std::fs::read(&d.db_path).unwrap();
    // Pages of the deliveries table, from its root page on (pages the file
    // lists as free would be overwritten harmlessly).
    let root = count(
        &d.db(),
        "SELECT rootpage FROM sqlite_schema WHERE name = 'deliveries'",
    ) as u64;
    let db = d.db_path.display().to_string();
    for (what, range) in [("pages of a table", root..root + 4), ("the header", 1..2)] {
        std::fs::write(&d.db_path, &good).unwrap();
        overwrite_pages(&d.db_path, range);
        let before = sha(&d.db_path);
        let log = refused_start(&d);
        for needle in [db.as_str(), "is corrupt", "pushd backup", "-wal"] {
            assert!(log.contains(needle), "{what}: {needle:?} not in {log}");
        }
        assert_eq!(sha(&d.db_path), before, "{what}: the file was changed");
    }
    // The advice works: the backup copied into place starts and has the data.
    let _ = std::fs::remove_file(d.path("data/pushd.db-wal"));
    let _ = std::fs::remove_file(d.path("data/pushd.db-shm"));
    std::fs::copy(&backup, &d.db_path).unwrap();
    d.spawn();
    assert_eq!(d.cli_json(&["report", "p"])["data"]["recipients"], 1900);
}

/// A database written by a newer pushd (a higher schema version) is refused
/// before anything is written to it: byte for byte the same afterwards.
#[test]
fn a_database_from_a_newer_pushd_is_refused_and_left_byte_for_byte() {
    let (d, _) = stopped_daemon_with_data();
    let newer = pushd::store::schema::VERSION + 1;
    {
        // As a newer pushd might leave it: a rollback journal, not WAL (so
        // a daemon that switched it to WAL before refusing would show).
        let c = d.db();
        c.pragma_update(None, "journal_mode", "DELETE").unwrap();
        c.pragma_update(None, "user_version", newer).unwrap();
    }
    assert!(!d.path("data/pushd.db-wal").exists());
    let before = sha(&d.db_path);
    let log = refused_start(&d);
    assert!(
        log.contains(&format!("schema version {newer}"))
            && log.contains("newer than this pushd")
            && log.contains(&d.db_path.display().to_string()),
        "{log}"
    );
    assert_eq!(sha(&d.db_path), before, "the newer database was changed");
    let v: i64 = d
        .db()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, newer);
}

/// Runs `pushd serve` for `d` as `uid` (root only), expecting a refusal.
fn refused_start_as(d: &TestDaemon, uid: u32) -> String {
    std::fs::write(&d.log_path, "").unwrap();
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(&d.log_path)
        .unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&d.config_path)
        .uid(uid)
        .gid(uid)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert!(!status.success(), "started: {}", d.log());
    d.log()
}

/// A database file or data folder the daemon cannot write is a clear error
/// at start (naming the file or folder and the uid), and nothing changes.
/// Root ignores permission bits, so as root the daemon runs as uid 4747.
#[test]
fn a_read_only_database_or_data_dir_at_start_is_a_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    let (d, _) = stopped_daemon_with_data();
    let uid = if preconditions::is_root() {
        for p in [
            d.dir.path().to_path_buf(),
            d.config_path.clone(),
            d.path("scripts"),
            d.path("data"),
            d.db_path.clone(),
        ] {
            std::os::unix::fs::chown(&p, Some(4747), Some(4747)).unwrap();
        }
        4747
    } else {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    };
    let start = |d: &TestDaemon| {
        if preconditions::is_root() {
            refused_start_as(d, uid)
        } else {
            refused_start(d)
        }
    };
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    let before = sha(&d.db_path);

    mode(&d.db_path, 0o444).unwrap();
    let log = start(&d);
    assert!(
        log.contains(&format!("{} is read-only", d.db_path.display()))
            && log.contains(&format!("uid {uid}")),
        "{log}"
    );
    mode(&d.db_path, 0o644).unwrap();

    let data = d.path("data");
    mode(&data, 0o555).unwrap();
    let log = start(&d);
    mode(&data, 0o755).unwrap();
    assert!(
        log.contains(&format!("folder {} is not writable", data.display()))
            && log.contains(&format!("uid {uid}")),
        "{log}"
    );
    assert_eq!(sha(&d.db_path), before);
}

/// `chattr +i` (root; a file system that has the flag): from then on the
/// kernel refuses every write to the files, through the daemon's open
/// descriptors too — as a read-only remount does. (A `chmod` would change
/// nothing for a running daemon: its descriptors keep their access.)
fn immutable(paths: &[PathBuf], on: bool) -> bool {
    paths.iter().all(|p| {
        std::process::Command::new("chattr")
            .arg(if on { "+i" } else { "-i" })
            .arg(p)
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// The database and its WAL become unwritable mid-push: sends hold with a
/// storage alert that says which file refuses writes, every request that
/// reached the platform was committed first, and once the files take
/// writes again the push completes with everyone sent exactly once.
#[test]
fn a_database_made_read_only_while_running_holds_sends_and_recovers() {
    const TEST: &str = "storage::a_database_made_read_only_while_running_holds_sends_and_recovers";
    let rt = runtime();
    let mock = rt.block_on(MockPlatform::start(Platform::Custom));
    let cfg = base_config(&format!(
        "[dispatch]\nrate_per_minute = 1200\nconcurrency = 2\n{}",
        mock.channel_toml("hook")
    ));
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script("10.lua", SCRIPTS);
    d.spawn();
    let users: Vec<(String, String)> = (1..=150)
        .map(|i| ("hook".to_string(), format!("u{i}")))
        .collect();
    crate::e2e::import_members(&d, &users);
    let files = [d.db_path.clone(), d.path("data/pushd.db-wal")];
    let scratch = [d.path("data/chattr-probe")];
    std::fs::write(&scratch[0], "").unwrap();
    if !preconditions::is_root() || !immutable(&scratch, true) || !immutable(&scratch, false) {
        preconditions::skipped(
            TEST,
            "making the database immutable under the running daemon",
            "needs root and a file system with chattr +i (ext4, xfs, btrfs)",
        );
        return;
    }
    create_push(
        &d,
        &[
            "--audience",
            "hooked",
            "--template",
            "hello",
            "--name",
            "ro",
        ],
    );
    wait_for("some sends", Duration::from_secs(30), || {
        (mock.sends().len() >= 20).then_some(())
    });
    assert!(immutable(&files, true));
    struct Mutable([PathBuf; 2]);
    impl Drop for Mutable {
        fn drop(&mut self) {
            immutable(&self.0, false);
        }
    }
    let guard = Mutable(files.clone());
    let s = wait_for("a storage alert", Duration::from_secs(30), || {
        let s = d.status();
        s["alerts"]
            .to_string()
            .contains("storage fault")
            .then_some(s)
    });
    let alert = s["alerts"].to_string();
    assert!(
        alert.contains("does not open for writing") && alert.contains("pushd.db"),
        "the alert says which file refuses writes: {alert}"
    );
    // Held: the requests stop (the ones in flight end), and every request
    // that reached the platform was committed before it left.
    let held = wait_for("sends to stop", Duration::from_secs(30), || {
        let n = mock.sends().len();
        std::thread::sleep(Duration::from_millis(600));
        (mock.sends().len() == n).then_some(n)
    });
    assert!(held < users.len(), "held at {held}");
    let committed: std::collections::HashSet<String> = strings(
        &d.db(),
        &format!(
            "SELECT m.channel_user_id FROM deliveries d JOIN members m ON m.id = d.member_id
              WHERE {} IN (1, 2, 3)",
            pushd::store::deliveries::STATE_SQL
        ),
    )
    .into_iter()
    .collect();
    for u in mock.count_by_recipient().keys() {
        assert!(committed.contains(u), "{u} requested but never committed");
    }
    let text = stdout(&d.cli(&["status"]));
    assert!(text.contains("storage fault"), "{text}");
    eprintln!("held at {held} of {} requests: {alert}", users.len());
    drop(guard);
    let done = wait_status(&d, "ro", "completed", Duration::from_secs(60));
    assert_consistent(&d, done["id"].as_i64().unwrap());
    assert!(!d.status()["alerts"].to_string().contains("storage"));
    let everyone: Vec<&str> = users.iter().map(|(_, u)| u.as_str()).collect();
    mock.assert_each_recipient_once(&everyone);
    assert!(d.log().contains("storage recovered"), "{}", d.log());
    d.stop();
}
