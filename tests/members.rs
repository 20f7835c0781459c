//! `pushd members import`: CSV and JSON lines, upsert, invalid rows.

use crate::support::*;

fn import(d: &TestDaemon, name: &str, body: &str, extra: &[&str]) -> (bool, serde_json::Value) {
    let p = d.path(name);
    std::fs::write(&p, body).unwrap();
    let mut args = vec!["--json", "members", "import", p.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = d.cli(&args);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", stdout(&out), stderr(&out)));
    (out.status.success(), v)
}

#[test]
fn good_csv_then_upsert() {
    let d = TestDaemon::start(&base_config(""));
    let csv = "channel,channel_user_id,name,locale,timezone,tags,attributes,subscribed\n\
               sim,u1,Ann,en,Europe/London,vip;newsletter,\"{\"\"spend\"\":120}\",true\n\
               sim,u2,Bo,zh-CN,Asia/Shanghai,,,false\n\
               wa,8613800000000,\"Chen, Li\",zh,Asia/Hong_Kong,vip,{},1\n";
    let (ok, v) = import(&d, "m.csv", csv, &[]);
    assert!(ok, "{v}");
    assert_eq!(v["data"]["inserted"], 3);
    assert_eq!(v["data"]["updated"], 0);
    let db = d.db();
    assert_eq!(count(&db, "SELECT count(*) FROM members"), 3);
    assert_eq!(
        count(&db, "SELECT count(*) FROM member_tags WHERE tag = 'vip'"),
        2
    );
    assert_eq!(
        count(
            &db,
            "SELECT subscribed FROM members WHERE channel_user_id = 'u2'"
        ),
        0
    );
    let name: String = db
        .query_row("SELECT name FROM members WHERE channel = 'wa'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(name, "Chen, Li");
    let spend: i64 = db
        .query_row(
            "SELECT json_extract(attributes, '$.spend') FROM members WHERE channel_user_id = 'u1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(spend, 120);

    // Upsert: u1 changes tags only (other columns absent keep their values), u3 is new.
    let (ok, v) = import(
        &d,
        "m2.csv",
        "channel,channel_user_id,tags\nsim,u1,churn-risk\nsim,u3,\n",
        &[],
    );
    assert!(ok, "{v}");
    assert_eq!(v["data"]["inserted"], 1);
    assert_eq!(v["data"]["updated"], 1);
    let db = d.db();
    assert_eq!(count(&db, "SELECT count(*) FROM members"), 4);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM member_tags WHERE member_id = (SELECT id FROM members WHERE channel_user_id='u1')"
        ),
        1
    );
    let (name, tags): (String, String) = db
        .query_row(
            "SELECT name, tags FROM members WHERE channel_user_id = 'u1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((name.as_str(), tags.as_str()), ("Ann", "churn-risk"));
    // Audited with the peer uid.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit WHERE action = 'members.import' AND ok = 1"
        ),
        2
    );
}

#[test]
fn json_lines_import() {
    let d = TestDaemon::start(&base_config(""));
    let body = r#"{"channel":"tg","channel_user_id":"123","name":"Dee","tags":["a","b"],"attributes":{"x":1},"subscribed":true}
{"channel":"tg","channel_user_id":"456","locale":"es","timezone":"America/Mexico_City"}
"#;
    let (ok, v) = import(&d, "m.jsonl", body, &[]);
    assert!(ok, "{v}");
    assert_eq!(v["data"]["inserted"], 2);
    assert_eq!(count(&d.db(), "SELECT count(*) FROM member_tags"), 2);
}

#[test]
fn invalid_rows_abort_unless_skip_invalid() {
    let d = TestDaemon::start(&base_config(""));
    let csv = "channel,channel_user_id,locale,timezone,attributes,subscribed\n\
               sim,ok1,en,UTC,{},true\n\
               sim,,en,UTC,{},true\n\
               sim,bad-tz,en,Mars/Olympus,{},true\n\
               sim,bad-json,en,UTC,{oops,true\n\
               sim,ok2,en,UTC,{},maybe\n\
               sim,ok3,en,UTC,{},false\n";
    let (ok, v) = import(&d, "mixed.csv", csv, &[]);
    assert!(!ok);
    assert_eq!(v["error"]["code"], "invalid_rows", "{v}");
    assert_eq!(v["data"]["rejected"], 4);
    assert_eq!(v["data"]["inserted"], 0);
    let errors = v["data"]["errors"].as_array().unwrap();
    let lines: Vec<u64> = errors.iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, vec![3, 4, 5, 6]);
    assert!(
        errors[0]["reason"]
            .as_str()
            .unwrap()
            .contains("channel_user_id")
    );
    assert!(
        errors[1]["reason"]
            .as_str()
            .unwrap()
            .contains("Mars/Olympus")
    );
    assert!(errors[2]["reason"].as_str().unwrap().contains("attributes"));
    assert!(errors[3]["reason"].as_str().unwrap().contains("subscribed"));
    assert_eq!(count(&d.db(), "SELECT count(*) FROM members"), 0);

    let (ok, v) = import(&d, "mixed.csv", csv, &["--skip-invalid"]);
    assert!(ok, "{v}");
    assert_eq!(v["data"]["inserted"], 2);
    assert_eq!(v["data"]["rejected"], 4);
    assert_eq!(count(&d.db(), "SELECT count(*) FROM members"), 2);

    // Human output lists line numbers.
    let p = d.path("bad.jsonl");
    std::fs::write(&p, "{\"channel\":\"sim\"}\nnot json\n").unwrap();
    let out = d.cli(&["members", "import", p.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = stdout(&out) + &stderr(&out);
    assert!(text.contains("line 1") && text.contains("line 2"), "{text}");
}

#[test]
fn bad_header_is_refused_with_line_one() {
    let d = TestDaemon::start(&base_config(""));
    let (ok, v) = import(&d, "h.csv", "channel,user\nsim,u1\n", &[]);
    assert!(!ok);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("line 1") && msg.contains("user"), "{msg}");
    assert_eq!(count(&d.db(), "SELECT count(*) FROM members"), 0);
}

/// JSON lines mixing bad UTF-8, bad JSON and good rows: each bad line is
/// reported with its own number, every good row is imported (with
/// `--skip-invalid`) and none is lost behind a bad one.
#[test]
fn json_lines_with_bad_utf8_lose_no_row_and_keep_line_numbers() {
    let d = TestDaemon::start(&base_config(""));
    let mut body: Vec<u8> = Vec::new();
    let row = |u: &str| format!("{{\"channel\":\"sim\",\"channel_user_id\":\"{u}\"}}\n");
    body.extend_from_slice(row("u1").as_bytes()); // line 1
    body.extend_from_slice(b"{\"channel\":\"sim\",\"channel_user_id\":\"caf\xe9\"}\n"); // 2: Latin-1
    body.extend_from_slice(row("u2").as_bytes()); // 3: right after the bad bytes
    body.extend_from_slice(b"{\"channel\":\"sim\",\"channel_user_id\":\n"); // 4: bad JSON
    body.extend_from_slice(b"\xff\xfe\xfd\n"); // 5
    body.extend_from_slice(b"\xff\n"); // 6: two bad lines in a row
    body.extend_from_slice(row("u3").as_bytes()); // 7
    body.extend_from_slice(b"{\"channel\":\"sim\"}\n"); // 8: no channel_user_id
    body.extend_from_slice(row("u4").as_bytes()); // 9
    let p = d.path("mixed.jsonl");
    std::fs::write(&p, &body).unwrap();

    let run = |extra: &[&str]| {
        let mut args = vec!["--json", "members", "import", p.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = d.cli(&args);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {} {}", stdout(&out), stderr(&out)));
        (out.status.success(), v)
    };
    let (ok, v) = run(&[]);
    assert!(!ok, "{v}");
    let errors = v["data"]["errors"].as_array().unwrap();
    let lines: Vec<u64> = errors.iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [2, 4, 5, 6, 8], "{v}");
    let reason = |i: usize| errors[i]["reason"].as_str().unwrap().to_string();
    assert!(reason(0).contains("not UTF-8"), "{}", reason(0));
    assert!(reason(1).contains("JSON"), "{}", reason(1));
    assert!(reason(4).contains("channel_user_id"), "{}", reason(4));
    assert_eq!(count(&d.db(), "SELECT count(*) FROM members"), 0);

    let (ok, v) = run(&["--skip-invalid"]);
    assert!(ok, "{v}");
    assert_eq!(v["data"]["rejected"], 5, "{v}");
    assert_eq!(v["data"]["inserted"], 4, "{v}");
    assert_eq!(
        strings(
            &d.db(),
            "SELECT channel_user_id FROM members ORDER BY channel_user_id"
        ),
        ["u1", "u2", "u3", "u4"]
    );
}
