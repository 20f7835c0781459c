//! Hot reload of scripts and config through the real daemon: good changes
//! go live, bad ones never do (the previous generation keeps serving) and
//! `status` shows why with file:line.

use crate::support::*;
use std::time::{Duration, Instant};

const GOOD: &str = r#"
audience "all" { where = { channel = "sim" } }
template "hello" { en = { text = "Hello {{name}}" } }
"#;

fn daemon() -> TestDaemon {
    daemon_with("")
}

/// [`daemon`] with more `[scripts]` keys (`scripts` is the last table
/// `base_config` opens, so the keys land in it).
fn daemon_with(scripts: &str) -> TestDaemon {
    let mut cfg = base_config(&format!(
        "{scripts}\n[dispatch]\nrate_per_minute = 0\n[channels.sim]\nkind = \"simulator\"\nseed_members = 20\nlatency = \"1ms\"\n",
    ));
    if scripts.contains("debounce") {
        // Ours replaces base_config's (TOML refuses a key twice).
        cfg = cfg.replacen("debounce = \"100ms\"\n", "", 1);
    }
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script("10_base.lua", GOOD);
    d.spawn();
    d
}

fn generation(d: &TestDaemon) -> i64 {
    d.status()["scripts"]["generation"]
        .as_i64()
        .expect("a live generation")
}

fn script_attempts(d: &TestDaemon) -> i64 {
    count(&d.db(), "SELECT count(*) FROM script_generations")
}

fn wait_attempts(d: &TestDaemon, n: i64) -> serde_json::Value {
    wait_for(
        &format!("{n} script load attempts"),
        Duration::from_secs(20),
        || {
            let s = d.status();
            (s["last_script_reload"]["attempt"].as_i64().unwrap_or(0) >= n).then_some(s)
        },
    )
}

#[test]
fn reload_on_write_rename_new_and_deleted_files() {
    let d = daemon();
    let g1 = generation(&d);
    // Plain write of a new file.
    d.write_script(
        "20_extra.lua",
        "template \"bye\" { en = { text = \"Bye {{name}}\" } }\n",
    );
    let s = wait_attempts(&d, 2);
    assert!(
        s["scripts"]["templates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "bye"),
        "{s}"
    );
    let g2 = s["scripts"]["generation"].as_i64().unwrap();
    assert!(g2 > g1);
    // Atomic save: write a temp file, rename over the original.
    let tmp = d.path("scripts/.20_extra.lua.tmp");
    std::fs::write(&tmp, "template \"bye2\" { en = { text = \"Bye\" } }\n").unwrap();
    std::fs::rename(&tmp, d.path("scripts/20_extra.lua")).unwrap();
    let s = wait_attempts(&d, 3);
    let templates = s["scripts"]["templates"].as_array().unwrap().clone();
    assert!(
        templates.iter().any(|t| t == "bye2") && !templates.iter().any(|t| t == "bye"),
        "{s}"
    );
    // Deleting a file reloads without it.
    std::fs::remove_file(d.path("scripts/20_extra.lua")).unwrap();
    let s = wait_attempts(&d, 4);
    assert_eq!(s["scripts"]["files"].as_array().unwrap().len(), 1, "{s}");
    // Editor swap files never trigger a reload (only noise is written here;
    // a real edit afterwards proves the watcher is alive and that the swap
    // file did not produce an attempt of its own).
    std::fs::write(d.path("scripts/.10_base.lua.swp"), "garbage").unwrap();
    std::fs::write(d.path("scripts/10_base.lua~"), "garbage").unwrap();
    d.write_script("30_last.lua", "template \"z\" { en = { text = \"z\" } }\n");
    let s = wait_attempts(&d, 5);
    assert_eq!(script_attempts(&d), 5, "swap/backup files caused a reload");
    assert_eq!(s["last_script_reload"]["ok"], true);
    // Every attempt is audited with the scripts' hash.
    assert!(
        count(
            &d.db(),
            "SELECT count(*) FROM audit WHERE action = 'reload.scripts' AND ok = 1 AND detail LIKE '%hash%'"
        ) >= 5
    );
}

fn assert_bad_edit_keeps_generation(file: &str, text: &str, needles: &[&str]) {
    let d = daemon();
    let g1 = generation(&d);
    d.write_script(file, text);
    let s = wait_attempts(&d, 2);
    assert_eq!(s["last_script_reload"]["ok"], false, "{s}");
    let errors = s["last_script_reload"]["errors"].to_string();
    for n in needles {
        assert!(errors.contains(n), "expected {n:?} in {errors}");
    }
    // The old generation keeps serving.
    assert_eq!(s["scripts"]["generation"].as_i64().unwrap(), g1);
    let preview = d.cli_json(&["audience", "preview", "all", "--template", "hello"]);
    assert_eq!(preview["data"]["size"], 20, "{preview}");
    // The human status shows the error too.
    let text = stdout(&d.cli(&["status"]));
    assert!(
        text.contains("FAILED") && text.contains(needles[0]),
        "{text}"
    );
    assert!(
        count(
            &d.db(),
            "SELECT count(*) FROM audit WHERE action = 'reload.scripts' AND ok = 0"
        ) >= 1
    );
}

#[test]
fn syntax_error_keeps_old_generation() {
    assert_bad_edit_keeps_generation(
        "20_bad.lua",
        "template \"x\" {\n  en = { text = \"a\" \n",
        &["20_bad.lua:"],
    );
}

#[test]
fn runtime_error_at_load_keeps_old_generation() {
    assert_bad_edit_keeps_generation(
        "20_bad.lua",
        "local x = nil\n\nlocal y = x.field\n",
        &["20_bad.lua:3"],
    );
}

#[test]
fn missing_template_reference_keeps_old_generation() {
    assert_bad_edit_keeps_generation(
        "20_bad.lua",
        "\npush \"p\" { audience = \"all\", template = \"nope\", start_at = \"now\" }\n",
        &["20_bad.lua:2", "nope"],
    );
}

#[test]
fn unknown_placeholder_keeps_old_generation() {
    assert_bad_edit_keeps_generation(
        "20_bad.lua",
        "template \"t\" {\n  en = { text = \"Hi {{nmae}}\" },\n}\n",
        &["20_bad.lua:", "nmae"],
    );
}

/// CPU time (user, in clock ticks) of each of `pid`'s threads whose name
/// starts with `prefix`.
fn thread_cpu_ticks(pid: u32, prefix: &str) -> Vec<u64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
        .filter_map(|stat| {
            // "tid (name) state ppid …": the name may hold spaces, so split
            // at its closing parenthesis; utime is the 12th field after it.
            let (head, rest) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1;
            if !name.starts_with(prefix) {
                return None;
            }
            rest.split_whitespace().nth(11)?.parse().ok()
        })
        .collect()
}

/// An endless filter runs until the wall-clock limit stops it (the
/// instruction budget here is too large to trip first), and `status`
/// answers while it spins; a memory bomb in a render fails that sample
/// only. With one Lua state, anything `status` needed from the script
/// host would wait out the whole loop.
#[test]
fn runaway_filter_and_memory_bomb_fail_clearly_while_status_answers() {
    let d = daemon_with(
        "instruction_limit = 1000000000000\ncall_timeout = \"6s\"\nstates = 1\nmemory_limit_mb = 16",
    );
    d.write_script(
        "20_hostile.lua",
        r#"
audience "spin" { where = { channel = "sim" }, filter = function(m) while true do end end }
template "bomb" { render = function(m, ctx)
  if m.name == "__sample__" or m.id == 0 then return { text = "ok" } end
  local t = {} local s = string.rep("x", 1024)
  while true do t[#t + 1] = s .. #t end
end }
"#,
    );
    // The filter only runs when asked for and the bomb spares the sample
    // member, so the load itself must succeed.
    let s = wait_attempts(&d, 2);
    assert_eq!(s["last_script_reload"]["ok"], true, "{s}");
    let lua = format!("lua-g{}-", s["scripts"]["generation"]);

    let cpu_before: u64 = thread_cpu_ticks(d.pid(), &lua).iter().sum();
    let (config, started) = (d.config_path.clone(), Instant::now());
    let preview = std::thread::spawn(move || {
        let out = std::process::Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args([
                "--json",
                "audience",
                "preview",
                "spin",
                "--template",
                "hello",
            ])
            .output()
            .expect("run pushd audience preview");
        (out, started.elapsed())
    });
    // The filter is spinning once its Lua thread has burnt a quarter
    // second of CPU since the preview was asked for.
    wait_for("the filter to spin", Duration::from_secs(20), || {
        let spent: u64 = thread_cpu_ticks(d.pid(), &lua).iter().sum();
        (spent >= cpu_before + 25).then_some(())
    });
    assert!(
        !preview.is_finished(),
        "the preview ended before status was asked"
    );
    let asked = Instant::now();
    let status = d.status();
    let answered_in = asked.elapsed();
    assert!(
        !preview.is_finished(),
        "status must be answered while the filter still runs (took {answered_in:?})"
    );
    assert!(
        answered_in < Duration::from_secs(2),
        "status took {answered_in:?}"
    );
    assert_eq!(status["members"], 20);
    let text = stdout(&d.cli(&["status"]));
    assert!(text.contains("members:"), "{text}");
    assert!(
        !preview.is_finished(),
        "the human status came after the filter ended"
    );

    let (out, took) = preview.join().expect("preview thread");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("preview did not print JSON ({e}): {}", stderr(&out)));
    assert_eq!(v["ok"], false, "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("took longer than 6s"), "{msg}");
    assert!(msg.contains("20_hostile.lua:2"), "{msg}");
    assert!(
        took >= Duration::from_secs(6),
        "stopped after {took:?}, the limit is 6s"
    );

    // The same (only) state renders the next request; the bomb fails its
    // samples with the memory limit and nothing else.
    let v = d.cli_json(&["audience", "preview", "all", "--template", "bomb"]);
    assert_eq!(v["ok"], true, "{v}");
    let samples = v["data"]["samples"].as_array().expect("samples");
    assert!(!samples.is_empty(), "{v}");
    for sample in samples {
        let err = sample["error"].as_str().unwrap_or_default();
        assert!(err.contains("memory limit of 16 MB exceeded"), "{v}");
        assert!(err.contains("20_hostile.lua:"), "{v}");
    }
    let v = d.cli_json(&["audience", "preview", "all", "--template", "hello"]);
    assert_eq!(
        v["data"]["samples"][0]["routed"]["outbound"]["text"], "Hello Ben",
        "{v}"
    );
    assert_eq!(d.status()["members"], 20);
}

#[test]
fn pushd_check_exit_codes() {
    let d = TestDaemon::prepare(&base_config("[channels.sim]\nkind = \"simulator\"\n"));
    d.write_script("10_base.lua", GOOD);
    let out = d.cli(&["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    d.write_script("20_bad.lua", "\n\ntemplate \"t\" { en = { text = \"{{bogus}}\" } }\npush \"p\" { audience = \"none\", template = \"t\", start_at = \"now\" }\n");
    let out = d.cli(&["check"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("20_bad.lua:3") && err.contains("bogus"),
        "{err}"
    );
    assert!(err.contains("none"), "{err}");
    std::fs::write(&d.config_path, "[dispatch]\nrate = 5\n").unwrap();
    let out = d.cli(&["check"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("rate"), "{}", stderr(&out));
}

#[test]
fn config_reload_good_and_bad() {
    let d = daemon();
    assert_eq!(d.status()["rate_per_minute"], 0);
    let original = std::fs::read_to_string(&d.config_path).unwrap();
    // Good edit: takes effect; a restart-only setting is reported as such.
    let edited = original.replace("rate_per_minute = 0", "rate_per_minute = 250")
        + "[control]\nsocket = \"/tmp/elsewhere.sock\"\n";
    std::fs::write(&d.config_path, &edited).unwrap();
    let v = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(v["data"]["config"]["ok"], true, "{v}");
    assert_eq!(
        v["data"]["config"]["restart_required"][0], "control.socket",
        "{v}"
    );
    assert_eq!(d.status()["rate_per_minute"], 250);
    assert!(
        d.socket.exists(),
        "socket must stay where it is until a restart"
    );
    // Bad edit: rejected with the key and line, old config stays.
    std::fs::write(
        &d.config_path,
        original.replace("rate_per_minute = 0", "rate_per_minute = \"fast\""),
    )
    .unwrap();
    let v = d.request(r#"{"cmd":"reload"}"#);
    assert_eq!(v["data"]["config"]["ok"], false, "{v}");
    let errors = v["data"]["config"]["errors"].to_string();
    assert!(
        errors.contains("rate_per_minute") && errors.contains("line"),
        "{errors}"
    );
    assert_eq!(d.status()["rate_per_minute"], 250);
    let s = d.status();
    assert_eq!(s["last_config_reload"]["ok"], false);
    // A save is picked up without asking, too.
    std::fs::write(
        &d.config_path,
        original.replace("rate_per_minute = 0", "rate_per_minute = 42"),
    )
    .unwrap();
    wait_for("config file reload", Duration::from_secs(20), || {
        (d.status()["rate_per_minute"] == 42).then_some(())
    });
    // (SIGHUP: `sighup_alone_reloads_config_and_scripts`.)
    assert!(
        count(
            &d.db(),
            "SELECT count(*) FROM audit WHERE action = 'reload.config' AND ok = 0"
        ) >= 1
    );
}

#[test]
fn a_first_load_that_fails_says_no_scripts_are_live_until_fixed() {
    let cfg = base_config("[channels.sim]\nkind = \"simulator\"\n");
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script(
        "10_base.lua",
        "template \"hello\" { en = { text = \"Hi\" } \n",
    );
    d.spawn();
    let s = d.status();
    assert!(s["scripts"].is_null(), "nothing live: {s}");
    let alerts = s["alerts"].to_string();
    assert!(alerts.contains("no scripts are live"), "{s}");
    assert!(
        d.log().contains("no scripts are live"),
        "the serve log says so"
    );
    d.write_script("10_base.lua", GOOD);
    let s = wait_for("the fixed scripts to load", Duration::from_secs(20), || {
        let s = d.status();
        s["scripts"]["generation"].is_i64().then_some(s)
    });
    assert_eq!(s["alerts"], serde_json::json!([]), "alert cleared: {s}");
}

/// SIGHUP reloads config and scripts on its own. The watcher cannot help:
/// its debounce is an hour, and the edits go through hard links in another
/// folder, which a watch on the config's and scripts' folders never sees.
#[test]
fn sighup_alone_reloads_config_and_scripts() {
    let d = daemon_with("debounce = \"1h\"");
    let g1 = generation(&d);
    assert_eq!(d.status()["rate_per_minute"], 0);
    let elsewhere = d.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let config_link = elsewhere.join("config.toml");
    let script_link = elsewhere.join("base.lua");
    std::fs::hard_link(&d.config_path, &config_link).unwrap();
    std::fs::hard_link(d.path("scripts/10_base.lua"), &script_link).unwrap();
    let original = std::fs::read_to_string(&config_link).unwrap();
    std::fs::write(
        &config_link,
        original.replace("rate_per_minute = 0", "rate_per_minute = 43"),
    )
    .unwrap();
    std::fs::write(
        &script_link,
        format!("{GOOD}template \"after_hup\" {{ en = {{ text = \"Hi\" }} }}\n"),
    )
    .unwrap();
    // The edits are on disk where the daemon reads them.
    assert!(
        std::fs::read_to_string(&d.config_path)
            .unwrap()
            .contains("rate_per_minute = 43")
    );
    d.signal(libc::SIGHUP);
    let s = wait_for("the SIGHUP reload", Duration::from_secs(20), || {
        let s = d.status();
        (s["rate_per_minute"] == 43 && s["scripts"]["generation"].as_i64() > Some(g1)).then_some(s)
    });
    assert!(
        s["scripts"]["templates"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "after_hup")),
        "{s}"
    );
    assert_eq!(s["last_config_reload"]["ok"], true, "{s}");
    assert_eq!(s["last_script_reload"]["ok"], true, "{s}");
    // One reload of each, both from the signal.
    assert_eq!(
        count(
            &d.db(),
            "SELECT count(*) FROM audit WHERE action = 'reload.config'"
        ),
        1
    );
    assert_eq!(script_attempts(&d), 2, "the start and the SIGHUP");
}
