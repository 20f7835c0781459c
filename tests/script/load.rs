//! Loading: what a good set of scripts defines, and every kind of mistake
//! reported with the right file:line.

use super::*;
use pushd::model::Outbound;
use pushd::script::PushStart;

const AUDIENCES: &str = r#"
audience "vip" {
  description = "VIPs",
  where = { tags_all = { "vip" }, subscribed = true },
}

audience "spenders" {
  filter = function(m) return (m.attributes.spend or 0) > 100 end,
}
"#;

const TEMPLATES: &str = r#"
template "hello" {
  en = { text = "Hi {{name}}", buttons = { { title = "Go", payload = "GO" } } },
  zh = { text = "你好 {{name}}" },
}
"#;

const PUSHES: &str = r#"
push "p1" { audience = "vip", template = "hello", start_at = "now" }
push "p2" {
  audience = "spenders", template = "hello",
  start_at = "2026-11-27T09:00:00+08:00",
  rate_per_minute = 50,
  batch = { size = 500, every = "1h" },
  send_window = { from = "09:00", to = "21:00" },
}
"#;

#[test]
fn good_scripts_define_audiences_templates_and_pushes_with_locations() {
    let g = load(&[
        ("10_audiences.lua", AUDIENCES),
        ("20_templates.lua", TEMPLATES),
        ("30_pushes.lua", PUSHES),
    ]);
    assert_eq!(
        g.files,
        ["10_audiences.lua", "20_templates.lua", "30_pushes.lua"]
    );
    assert_eq!(g.hash.len(), 64);
    assert!(!g.has_route);

    let vip = &g.audiences["vip"];
    assert_eq!(vip.description.as_deref(), Some("VIPs"));
    assert!(!vip.has_filter);
    assert_eq!(vip.location.to_string(), "scripts/10_audiences.lua:2");
    assert!(
        vip.filter_sql.sql.contains("member_tags"),
        "{}",
        vip.filter_sql.sql
    );
    assert!(g.audiences["spenders"].has_filter);
    assert_eq!(g.audiences["spenders"].filter_sql.sql, "1");

    let hello = &g.templates["hello"];
    assert_eq!(hello.locales, ["en", "zh"]);
    assert!(!hello.has_render);
    assert_eq!(hello.location.to_string(), "scripts/20_templates.lua:2");

    assert_eq!(g.pushes.len(), 2);
    assert_eq!(g.pushes[0].name, "p1");
    assert_eq!(g.pushes[0].start_at, PushStart::Now);
    assert_eq!(g.pushes[0].location.to_string(), "scripts/30_pushes.lua:2");
    let p2 = &g.pushes[1];
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-27T01:00:00Z").unwrap();
    assert_eq!(p2.start_at, PushStart::At(at.timestamp_millis()));
    assert_eq!(p2.rate_per_minute, Some(50));
    let batch = p2.batch.expect("batch");
    assert_eq!((batch.size, batch.every), (500, Duration::from_secs(3600)));
    let w = p2.send_window.expect("send window");
    assert_eq!(
        (w.from.to_string(), w.to.to_string()),
        ("09:00:00".into(), "21:00:00".into())
    );
}

#[test]
fn hash_covers_names_and_contents_in_order() {
    let files = [("a.lua", "x = 1"), ("b.lua", "y = 2")];
    let h1 = load(&files).hash.clone();
    assert_eq!(load(&files).hash, h1, "same scripts, same hash");
    assert_ne!(load(&[("a.lua", "x = 1"), ("b.lua", "y = 3")]).hash, h1);
    assert_ne!(load(&[("a.lua", "x = 1"), ("c.lua", "y = 2")]).hash, h1);
}

#[test]
fn hidden_and_type_stub_files_are_not_loaded() {
    let g = load(&[
        ("10_ok.lua", "audience \"a\" {}"),
        (".#10_ok.lua", "error('editor lock file loaded')"),
        ("pushd.d.lua", "error('type stubs loaded')"),
        ("notes.txt", "not lua"),
    ]);
    assert_eq!(g.files, ["10_ok.lua"]);
}

#[test]
fn syntax_errors_in_several_files_are_all_reported() {
    let errs = load_err(&[
        ("10_a.lua", "audience \"a\" {}\n\nlocal x = = 1\n"),
        ("20_b.lua", "\nfunction f(\n"),
        ("30_c.lua", "audience \"c\" {}"),
    ]);
    assert_error_at(&errs, "scripts/10_a.lua:3", &["unexpected symbol"]);
    assert!(
        errs.iter().any(|e| e
            .location
            .as_ref()
            .is_some_and(|l| l.file == "scripts/20_b.lua")),
        "{}",
        show(&errs)
    );
    assert_eq!(errs.len(), 2, "{}", show(&errs));
}

#[test]
fn runtime_error_at_load_names_file_and_line() {
    let errs = load_err(&[("10_boom.lua", "local t = nil\n\nlocal x = t.field\n")]);
    assert_error_at(
        &errs,
        "scripts/10_boom.lua:3",
        &["attempt to index a nil value"],
    );
}

#[test]
fn error_raised_by_script_keeps_its_line() {
    let errs = load_err(&[("10_e.lua", "\n\nerror('custom failure')\n")]);
    assert_error_at(&errs, "scripts/10_e.lua:3", &["custom failure"]);
}

#[test]
fn push_with_missing_template_or_audience_fails_at_the_push() {
    let errs = load_err(&[
        ("10_a.lua", AUDIENCES),
        (
            "20_p.lua",
            "\npush \"p\" { audience = \"vip\", template = \"nope\", start_at = \"now\" }\npush \"q\" { audience = \"ghosts\", template = \"nope\", start_at = \"now\" }\n",
        ),
    ]);
    assert_error_at(
        &errs,
        "scripts/20_p.lua:2",
        &["template \"nope\" is not defined"],
    );
    assert_error_at(
        &errs,
        "scripts/20_p.lua:3",
        &["audience \"ghosts\" is not defined"],
    );
}

#[test]
fn bad_push_fields_are_reported() {
    let errs = load_err(&[
        ("10_a.lua", AUDIENCES),
        ("20_t.lua", TEMPLATES),
        (
            "30_p.lua",
            r#"push "p" { audience = "vip", template = "hello", start_at = "tomorrow" }
push "q" { audience = "vip", template = "hello", start_at = "now", batch = { size = 0, every = "1x" } }
push "r" { audience = "vip", template = "hello", start_at = "now", send_window = { from = "9am", to = "21:00" } }
push "s" { audience = "vip", template = "hello", start_at = "now", rate = 5 }
push "p" { audience = "vip", template = "hello", start_at = "now" }"#,
        ),
    ]);
    assert_error_at(&errs, "scripts/30_p.lua:1", &["start_at \"tomorrow\""]);
    assert_error_at(&errs, "scripts/30_p.lua:2", &["batch.size"]);
    assert_error_at(&errs, "scripts/30_p.lua:2", &["batch.every"]);
    assert_error_at(&errs, "scripts/30_p.lua:3", &["send_window.from"]);
    assert_error_at(&errs, "scripts/30_p.lua:4", &["unknown key \"rate\""]);
    // The first "p" never got defined, so the last one is no duplicate.
    assert!(
        !errs.iter().any(|e| e.to_string().contains("30_p.lua:5")),
        "{}",
        show(&errs)
    );
}

#[test]
fn unknown_placeholder_fails_at_the_template() {
    let errs = load_err(&[(
        "20_t.lua",
        "\n\ntemplate \"t\" {\n  en = { text = \"Hi {{nme}}\" },\n  zh = { text = \"{{attributes.city}}\", buttons = { { title = \"{{bogus}}\", payload = \"X\" } } },\n}\n",
    )]);
    assert_error_at(
        &errs,
        "scripts/20_t.lua:3",
        &["template \"t\"", "unknown placeholder {{nme}}"],
    );
    assert_error_at(
        &errs,
        "scripts/20_t.lua:3",
        &["unknown placeholder {{bogus}}"],
    );
}

#[test]
fn duplicate_names_fail_at_the_second_definition() {
    let errs = load_err(&[
        (
            "10_a.lua",
            "audience \"a\" {}\ntemplate \"t\" { en = { text = \"x\" } }\n",
        ),
        (
            "20_b.lua",
            "\naudience \"a\" {}\n\ntemplate \"t\" { en = { text = \"y\" } }\nroute(function(m) return { channel = m.channel } end)\nroute(function(m) return { channel = m.channel } end)\n",
        ),
    ]);
    assert_error_at(
        &errs,
        "scripts/20_b.lua:2",
        &["already defined at scripts/10_a.lua:1"],
    );
    assert_error_at(
        &errs,
        "scripts/20_b.lua:4",
        &["already defined at scripts/10_a.lua:2"],
    );
    assert_error_at(
        &errs,
        "scripts/20_b.lua:6",
        &["route is already defined at scripts/20_b.lua:5"],
    );
}

#[test]
fn bad_where_is_a_load_error() {
    let errs = load_err(&[(
        "10_a.lua",
        r#"audience "a" { where = { tagz = { "vip" } } }
audience "b" { where = { platform = "myspace" } }
audience "c" { where = { last_interaction_within = "soon" } }
audience "d" { where = { attributes = { ["bad key"] = 1 } } }
audience "e" { where = { channel = "not_configured" } }
audience "f" { wher = {} }"#,
    )]);
    assert_error_at(&errs, "scripts/10_a.lua:1", &["unknown key \"tagz\""]);
    assert_error_at(
        &errs,
        "scripts/10_a.lua:2",
        &["unknown platform \"myspace\""],
    );
    assert_error_at(&errs, "scripts/10_a.lua:3", &["last_interaction_within"]);
    assert_error_at(&errs, "scripts/10_a.lua:4", &["bad key"]);
    assert_error_at(
        &errs,
        "scripts/10_a.lua:5",
        &["not_configured", "not a configured channel"],
    );
    assert_error_at(&errs, "scripts/10_a.lua:6", &["unknown key \"wher\""]);
}

#[test]
fn malformed_route_result_fails_at_the_router() {
    let errs = load_err(&[
        ("20_t.lua", TEMPLATES),
        (
            "30_r.lua",
            "\nroute(function(m, msg, ctx)\n  return { chanel = m.channel }\nend)\n",
        ),
    ]);
    assert_error_at(
        &errs,
        "scripts/30_r.lua:2",
        &["in route", "unknown key \"chanel\""],
    );
}

#[test]
fn router_runtime_error_is_reported_with_its_line() {
    let errs = load_err(&[
        ("20_t.lua", TEMPLATES),
        (
            "30_r.lua",
            "route(function(m, msg, ctx)\n  local x = nil\n  return { channel = x.y }\nend)\n",
        ),
    ]);
    assert_error_at(
        &errs,
        "scripts/30_r.lua:3",
        &["in route", "attempt to index"],
    );
}

#[test]
fn render_function_failing_for_the_sample_member_is_a_load_error() {
    let errs = load_err(&[(
        "20_t.lua",
        "template \"t\" {\n  render = function(m, ctx)\n    return { text = \"spent \" .. m.attributes.spend }\n  end,\n}\n",
    )]);
    assert_error_at(
        &errs,
        "scripts/20_t.lua:3",
        &[
            "render of template \"t\"",
            "attempt to concatenate",
            "sample member",
        ],
    );
}

#[test]
fn message_a_channel_cannot_express_fails_at_load() {
    let mut env = env();
    env.validate = Arc::new(|channel: &str, out: &Outbound| match out {
        Outbound::Message { message, .. } if channel == "fb" && message.buttons.len() > 1 => {
            Err(format!(
                "messenger allows 1 button here, the message has {}",
                message.buttons.len()
            ))
        }
        _ => Ok(()),
    });
    let files = [(
        "20_t.lua",
        "template \"two\" {\n  en = { text = \"x\", buttons = { { title = \"a\", payload = \"A\" }, { title = \"b\", payload = \"B\" } } },\n}\n",
    )];
    let errs = load_with(&files, &limits(), &env).expect_err("fb cannot send two buttons");
    assert_error_at(
        &errs,
        "scripts/20_t.lua:1",
        &["template \"two\"", "channel \"fb\"", "1 button"],
    );
    // Routed away from fb, the same template is fine.
    let routed = [
        files[0],
        (
            "30_r.lua",
            "route(function(m) if m.platform == 'messenger' then return { skip = 'no fb' } end return { channel = m.channel } end)",
        ),
    ];
    assert!(load_with(&routed, &limits(), &env).is_ok());
}

#[test]
fn template_needs_content_and_valid_locale_tables() {
    let errs = load_err(&[(
        "20_t.lua",
        "template \"empty\" {}\ntemplate \"bad\" { english = { text = \"x\" } }\ntemplate \"nt\" { en = { buttons = {} } }\ntemplate \"btn\" { en = { text = \"x\", buttons = { { title = \"a\" } } } }\n",
    )]);
    assert_error_at(&errs, "scripts/20_t.lua:1", &["needs at least one locale"]);
    assert_error_at(&errs, "scripts/20_t.lua:2", &["unknown key \"english\""]);
    assert_error_at(&errs, "scripts/20_t.lua:3", &["en.text is required"]);
    assert_error_at(
        &errs,
        "scripts/20_t.lua:4",
        &["exactly one of payload or url"],
    );
}

#[test]
fn definitions_are_only_allowed_while_loading() {
    let g = load(&[(
        "10_a.lua",
        "audience \"a\" { filter = function(m) audience \"sneaky\" {} return true end }",
    )]);
    let err = g
        .filter_blocking("a", vec![member(1, "sim", "en")])
        .expect_err("audience() at call time must fail");
    assert!(
        err.to_string().contains("only run while the scripts load"),
        "{err}"
    );
}

#[test]
fn empty_scripts_folder_is_a_valid_empty_generation() {
    let g = load(&[]);
    assert!(g.audiences.is_empty() && g.templates.is_empty() && g.pushes.is_empty());
}

#[test]
fn missing_scripts_folder_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let errs = Generation::load(1, &tmp.path().join("nope"), &limits(), &env()).unwrap_err();
    assert!(
        errs[0]
            .to_string()
            .contains("cannot read the scripts folder"),
        "{}",
        show(&errs)
    );
}

#[test]
fn definition_without_a_body_is_reported() {
    let errs = load_err(&[("10_a.lua", "audience \"forgot\"\n\ntemplate \"t\"\n")]);
    assert_error_at(
        &errs,
        "scripts/10_a.lua:1",
        &["audience \"forgot\" has no body"],
    );
    assert_error_at(&errs, "scripts/10_a.lua:3", &["template \"t\" has no body"]);
}

#[test]
fn platform_versions_are_checked_for_their_shape_and_names() {
    let errs = load_err(&[(
        "20_t.lua",
        "template \"typo\" { en = { text = \"x\" }, whatsap = { en = { text = \"y\" } } }\n\
         template \"flat\" { en = { text = \"x\" }, wechat = { text = \"y\" } }\n\
         template \"bad\" { en = { text = \"x\" }, telegram = { en = { text = \"y\", buttons = { { title = \"b\" } } } } }\n\
         template \"none\" { en = { text = \"x\" }, slack = {} }\n",
    )]);
    assert_error_at(
        &errs,
        "scripts/20_t.lua:1",
        &[
            "unknown key \"whatsap\"",
            "platform versions (whatsapp | messenger | instagram | telegram | slack | wechat | webchat | custom | simulator",
        ],
    );
    assert_error_at(
        &errs,
        "scripts/20_t.lua:2",
        &[
            "wechat.text: a platform version takes locale tables",
            "wechat = { en = { text = … }",
        ],
    );
    assert_error_at(
        &errs,
        "scripts/20_t.lua:3",
        &["telegram.en.buttons[1] needs exactly one of payload or url"],
    );
    assert_error_at(&errs, "scripts/20_t.lua:4", &["slack has no locale table"]);
}

#[test]
fn a_message_a_channel_cannot_carry_names_the_rule_and_both_fixes() {
    let mut env = env();
    env.validate = Arc::new(|channel: &str, out: &Outbound| match out {
        Outbound::Message { message, .. } if channel == "wa" && !message.buttons.is_empty() => {
            Err("WhatsApp: no buttons today".into())
        }
        _ => Ok(()),
    });
    let generic = "template \"t\" {\n  en = { text = \"x\", buttons = { { title = \"a\", payload = \"A\" } } },\n}\n";
    let errs =
        load_with(&[("20_t.lua", generic)], &limits(), &env).expect_err("wa refuses buttons");
    assert_error_at(
        &errs,
        "scripts/20_t.lua:1",
        &[
            "template \"t\" (its en table) cannot be sent to channel \"wa\" (whatsapp): WhatsApp: no buttons today",
            "Fix: add a whatsapp version of the message that fits this rule to the template, `whatsapp = { en = { text = … } }`",
            "or route whatsapp members elsewhere in route()",
            "sample member: locale en, channel wa",
        ],
    );
    // A version for the platform that breaks the rule itself: fix that version.
    let broken_version = "template \"t\" {\n  en = { text = \"x\" },\n  whatsapp = { en = { text = \"y\", buttons = { { title = \"a\", payload = \"A\" } } } },\n}\n";
    let errs =
        load_with(&[("20_t.lua", broken_version)], &limits(), &env).expect_err("still buttons");
    assert_error_at(
        &errs,
        "scripts/20_t.lua:1",
        &[
            "(its whatsapp.en version)",
            "change whatsapp.en in the template",
        ],
    );
    // A render function: branch on ctx.platform, at the render's line.
    let rendered = "template \"t\" {\n  render = function(m, ctx)\n    return { text = \"x\", buttons = { { title = \"a\", payload = \"A\" } } }\n  end,\n}\n";
    let errs = load_with(&[("20_t.lua", rendered)], &limits(), &env).expect_err("render's buttons");
    assert_error_at(
        &errs,
        "scripts/20_t.lua:2",
        &[
            "render at scripts/20_t.lua:2",
            "ctx.platform == \"whatsapp\"",
        ],
    );
    // Either fix loads: a version without buttons, or routing wa members elsewhere.
    let fixed = "template \"t\" {\n  en = { text = \"x\", buttons = { { title = \"a\", payload = \"A\" } } },\n  whatsapp = { en = { text = \"x, reply YES\" } },\n}\n";
    assert!(load_with(&[("20_t.lua", fixed)], &limits(), &env).is_ok());
    let rerouted = "route(function(m) if m.platform == 'whatsapp' then return { channel = 'sim' } end return { channel = m.channel } end)\n";
    assert!(
        load_with(
            &[("20_t.lua", generic), ("30_r.lua", rerouted)],
            &limits(),
            &env
        )
        .is_ok()
    );
}

#[test]
fn a_platform_version_is_checked_against_its_platform_even_without_a_channel() {
    // env() has no WeChat channel: the version is still held to WeChat's rules.
    let errs = load_err(&[(
        "20_t.lua",
        "template \"bf\" {\n  en = { text = \"x\" },\n  wechat = { zh = { text = \"七折\", image = \"https://x.example/a.png\", quick_replies = { { title = \"买\", payload = \"BUY\" } } } },\n}\n",
    )]);
    assert_error_at(
        &errs,
        "scripts/20_t.lua:1",
        &[
            "template \"bf\" (its wechat.zh version) cannot be sent on wechat: WeChat: an image goes out as a news article",
            "Fix: change wechat.zh in the template to fit this rule",
            "no wechat channel is configured",
        ],
    );
    assert!(
        !errs.iter().any(|e| e.to_string().contains("route()")),
        "no channel is involved, so routing is no fix:\n{}",
        show(&errs)
    );
}
