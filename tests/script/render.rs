//! prepare(): locale choice, placeholders, render functions, the router and
//! its context; filter(): the member as Lua sees it.

use super::*;
use pushd::model::{Message, Millis, Outbound, Routed, now_ms};

const TEMPLATES: &str = r#"
template "hello" {
  en = {
    text = "Hi {{name}} from {{attributes.city}}{{attributes.missing}}! spend={{attributes.spend}} vip={{attributes.vip}} {{attributes.nickname|friend}}",
    buttons = { { title = "Shop {{locale}}", payload = "SHOP_{{id}}" }, { title = "Site", url = "https://x.example/{{channel_user_id}}" } },
    image = "https://img.example/{{platform}}.png",
  },
  zh = { text = "你好 {{name}}" },
  ["pt-BR"] = { text = "Olá {{name}}" },
}

template "computed" {
  en = { text = "table fallback" },
  render = function(m, ctx)
    if m.tags.vip then
      return { text = "VIP " .. m.name .. " @" .. ctx.local_time(m).hhmm, quick_replies = { { title = "Yes", payload = "Y" } } }
    end
    return nil
  end,
}
"#;

const ROUTER: &str = r#"
route(function(m, msg, ctx)
  if m.tags.skipme then return { skip = "asked to skip" } end
  if m.platform == "whatsapp" and not ctx.in_service_window(m) then
    return { channel = m.channel, kind = "template", template = "wa_welcome", language = m.locale, params = { m.name, utf8.char(utf8.codepoint(msg.text, 1)), 42 } }
  end
  if m.platform == "messenger" and not ctx.in_service_window(m) then
    return { channel = m.channel, tag = "ACCOUNT_UPDATE" }
  end
  if m.tags.elsewhere then return { channel = "not_configured" } end
  if m.tags.broken then return { channel = 7, kind = "fax" } end
  if m.tags.pushname then return { channel = m.channel, tag = ctx.push or "none" } end
  return { channel = m.channel }
end)
"#;

fn with_attrs(mut m: Member, attrs: serde_json::Value) -> Member {
    m.attributes = attrs.as_object().cloned().unwrap_or_default();
    m
}

fn sent(r: &Result<Routed, ScriptError>) -> (&str, &Outbound) {
    match r {
        Ok(Routed::Send { channel, outbound }) => (channel.as_str(), outbound),
        other => panic!("expected a send, got {other:?}"),
    }
}

fn message(r: &Result<Routed, ScriptError>) -> &Message {
    match sent(r).1 {
        Outbound::Message { message, .. } => message,
        other => panic!("expected a free-form message, got {other:?}"),
    }
}

#[test]
fn table_templates_render_placeholders_and_pick_locales() {
    let g = load(&[("20_t.lua", TEMPLATES)]);
    let m1 = with_attrs(
        member(7, "sim", "en-GB"),
        serde_json::json!({"city": "Hong Kong", "spend": 120.5, "vip": true}),
    );
    let out = g.prepare_blocking(
        "hello",
        vec![
            m1,
            member(8, "sim", "zh-CN"),
            member(9, "sim", "pt_br"),
            member(10, "sim", "fr"),
        ],
        now_ms(),
    );
    let en = message(&out[0]);
    assert_eq!(
        en.text,
        "Hi Member 7 from Hong Kong! spend=120.5 vip=true friend"
    );
    assert_eq!(en.buttons[0].title, "Shop en-GB");
    assert_eq!(en.buttons[0].payload.as_deref(), Some("SHOP_7"));
    assert_eq!(en.buttons[1].url.as_deref(), Some("https://x.example/u7"));
    assert_eq!(
        en.image_url.as_deref(),
        Some("https://img.example/simulator.png")
    );
    assert_eq!(message(&out[1]).text, "你好 Member 8");
    assert_eq!(message(&out[2]).text, "Olá Member 9");
    assert!(
        message(&out[3]).text.starts_with("Hi Member 10 from !"),
        "fr falls back to en"
    );
    assert_eq!(
        sent(&out[0]).0,
        "sim",
        "no router: the member's own channel"
    );
}

#[test]
fn render_function_output_and_fallback_to_tables() {
    let g = load(&[("20_t.lua", TEMPLATES)]);
    let mut vip = member(1, "sim", "en");
    vip.tags = vec!["vip".into()];
    vip.timezone = "Asia/Hong_Kong".into();
    // 2026-01-01T00:30:00Z = 08:30 in Hong Kong.
    let now: Millis = 1_767_227_400_000;
    let out = g.prepare_blocking("computed", vec![vip, member(2, "sim", "en")], now);
    let m = message(&out[0]);
    assert_eq!(m.text, "VIP Member 1 @08:30");
    assert_eq!(m.quick_replies[0].payload.as_deref(), Some("Y"));
    assert_eq!(message(&out[1]).text, "table fallback");
}

#[test]
fn router_chooses_platform_templates_tags_and_skips() {
    let g = load(&[("20_t.lua", TEMPLATES), ("30_r.lua", ROUTER)]);
    let now = now_ms();
    let recent = Some(now - 60_000);
    let mut wa_old = member(1, "wa", "en");
    wa_old.last_interaction_at = Some(now - 25 * 3600 * 1000);
    let mut wa_new = member(2, "wa", "en");
    wa_new.last_interaction_at = recent;
    // fb has a 1h window in env().
    let mut fb_old = member(3, "fb", "en");
    fb_old.last_interaction_at = Some(now - 2 * 3600 * 1000);
    let mut skip = member(4, "sim", "en");
    skip.tags = vec!["skipme".into()];
    let mut elsewhere = member(5, "sim", "en");
    elsewhere.tags = vec!["elsewhere".into()];
    let mut broken = member(6, "sim", "en");
    broken.tags = vec!["broken".into()];
    let out = g.prepare_blocking(
        "hello",
        vec![wa_old, wa_new, fb_old, skip, elsewhere, broken],
        now,
    );

    assert_eq!(
        sent(&out[0]),
        (
            "wa",
            &Outbound::Template {
                name: "wa_welcome".into(),
                language: "en".into(),
                params: vec!["Member 1".into(), "H".into(), "42".into()],
            }
        )
    );
    assert!(matches!(
        sent(&out[1]).1,
        Outbound::Message { tag: None, .. }
    ));
    assert!(
        matches!(sent(&out[2]).1, Outbound::Message { tag: Some(t), .. } if t == "ACCOUNT_UPDATE")
    );
    assert_eq!(
        out[3],
        Ok(Routed::Skip {
            reason: "asked to skip".into()
        })
    );
    assert_eq!(
        sent(&out[4]).0,
        "not_configured",
        "unknown channels are the dispatcher's call"
    );
    let err = out[5].as_ref().unwrap_err();
    assert!(
        err.to_string().starts_with("scripts/30_r.lua:2: in route:"),
        "{err}"
    );
}

#[test]
fn ctx_push_is_the_push_name_when_given() {
    let g = load(&[("20_t.lua", TEMPLATES), ("30_r.lua", ROUTER)]);
    let mut m = member(1, "sim", "en");
    m.tags = vec!["pushname".into()];
    let tag = |r: &Result<Routed, ScriptError>| match sent(r).1 {
        Outbound::Message { tag, .. } => tag.clone(),
        _ => None,
    };
    let out = g.prepare_for_blocking(Some("bf-2026"), None, "hello", vec![m.clone()], now_ms());
    assert_eq!(tag(&out[0]).as_deref(), Some("bf-2026"));
    let out = g.prepare_blocking("hello", vec![m], now_ms());
    assert_eq!(tag(&out[0]).as_deref(), Some("none"));
}

#[test]
fn member_fields_as_lua_sees_them() {
    let g = load(&[(
        "10_a.lua",
        r#"
audience "probe" {
  filter = function(m, ctx)
    assert(m.id == 42 and m.channel == "wa" and m.platform == "whatsapp", "identity")
    assert(m.channel_user_id == "u42" and m.name == "Member 42" and m.locale == "zh-CN" and m.timezone == "UTC", "strings")
    assert(m.tags.vip == true and m.tags.other == nil, "tags set")
    assert(m.attributes.spend == 250 and math.type(m.attributes.spend) == "integer", "integer attribute")
    assert(m.attributes.ratio == 0.5 and m.attributes.plan == "pro" and m.attributes.gone == nil, "attributes")
    assert(m.attributes.address.city == "HK" and m.attributes.list[2] == "b", "nested attributes")
    assert(m.subscribed == true, "subscribed")
    assert(m.last_interaction_at == 1700000000, "last_interaction_at in seconds")
    assert(math.abs(ctx.now - os.time()) < 60, "ctx.now")
    return true
  end,
}"#,
    )]);
    let mut m = with_attrs(
        member(42, "wa", "zh-CN"),
        serde_json::json!({"spend": 250, "ratio": 0.5, "plan": "pro", "gone": null, "address": {"city": "HK"}, "list": ["a", "b"]}),
    );
    m.tags = vec!["vip".into()];
    m.last_interaction_at = Some(1_700_000_000_123);
    assert_eq!(g.filter_blocking("probe", vec![m]).unwrap(), [true]);
}

#[test]
fn filter_without_function_keeps_everyone_and_unknown_names_fail() {
    let g = load(&[("10_a.lua", "audience \"all\" {}")]);
    let ms: Vec<Member> = (1..=3).map(|i| member(i, "sim", "en")).collect();
    assert_eq!(
        g.filter_blocking("all", ms.clone()).unwrap(),
        [true, true, true]
    );
    assert!(
        g.filter_blocking("nope", ms.clone())
            .unwrap_err()
            .to_string()
            .contains("\"nope\" is not defined")
    );
    let out = g.prepare_blocking("nope", ms, now_ms());
    assert!(out.iter().all(|r| {
        r.as_ref()
            .unwrap_err()
            .to_string()
            .contains("template \"nope\" is not defined")
    }));
}

#[test]
fn large_batches_are_split_over_states_and_keep_their_order() {
    let g = load(&[
        (
            "10_a.lua",
            "audience \"odd\" { filter = function(m) return m.id % 2 == 1 end }",
        ),
        ("20_t.lua", "template \"n\" { en = { text = \"#{{id}}\" } }"),
        (
            "30_r.lua",
            "route(function(m, msg) return { channel = m.channel } end)",
        ),
    ]);
    let ms: Vec<Member> = (0..1000).map(|i| member(i, "sim", "en")).collect();
    let keep = g.filter_blocking("odd", ms.clone()).unwrap();
    assert_eq!(keep, (0..1000).map(|i| i % 2 == 1).collect::<Vec<_>>());
    let out = g.prepare_blocking("n", ms, now_ms());
    let texts: Vec<String> = out.iter().map(|r| message(r).text.clone()).collect();
    assert_eq!(
        texts,
        (0..1000).map(|i| format!("#{i}")).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_calls_from_the_runtime() {
    let g = load(&[
        (
            "10_a.lua",
            "audience \"even\" { filter = function(m) return m.id % 2 == 0 end }",
        ),
        ("20_t.lua", "template \"n\" { en = { text = \"#{{id}}\" } }"),
    ]);
    let ms: Vec<Member> = (0..300).map(|i| member(i, "sim", "en")).collect();
    let keep = g.filter("even", ms.clone()).await.unwrap();
    assert_eq!(keep.iter().filter(|k| **k).count(), 150);
    assert!(keep[0] && !keep[1]);
    let (a, b) = tokio::join!(
        g.prepare("n", ms.clone(), now_ms()),
        g.prepare("n", ms, now_ms())
    );
    assert_eq!(a, b);
    assert_eq!(message(&a[299]).text, "#299");
}

#[test]
fn dropping_the_generation_stops_its_threads() {
    let s = scripts(&[(
        "10_a.lua",
        "audience \"a\" { filter = function() return true end }",
    )]);
    // Threads are named lua-g<number>-<i>; 77 is this test's own number.
    let g = Generation::load(77, &s.dir, &limits(), &env()).unwrap();
    let ours = || {
        thread_names()
            .iter()
            .filter(|n| n.starts_with("lua-g77-"))
            .count()
    };
    assert_eq!(ours(), 2, "one thread per state");
    assert_eq!(
        g.filter_blocking("a", vec![member(1, "sim", "en")])
            .unwrap(),
        [true]
    );
    drop(g);
    super::super::support::wait_for("script threads to exit", Duration::from_secs(10), || {
        (ours() == 0).then_some(())
    });
}

fn thread_names() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .collect()
}

#[test]
fn a_script_cannot_break_ctx_for_later_batches() {
    let s = scripts(&[(
        "10_a.lua",
        r#"
audience "vandal" { filter = function(m, ctx) ctx.local_time = nil; ctx.now = 0; return true end }
audience "uses" { filter = function(m, ctx) return ctx.local_time(m).year >= 2024 and ctx.now > 0 end }
"#,
    )]);
    let one = ScriptLimits {
        states: 1,
        ..limits()
    };
    let g = Generation::load(1, &s.dir, &one, &env()).unwrap();
    assert_eq!(
        g.filter_blocking("vandal", vec![member(1, "sim", "en")])
            .unwrap(),
        [true]
    );
    assert_eq!(
        g.filter_blocking("uses", vec![member(1, "sim", "en")])
            .unwrap(),
        [true]
    );
}

const VERSIONS: &str = r#"
template "promo" {
  en = { text = "generic en on {{platform}}" },
  zh = { text = "generic zh" },
  ["zh-TW"] = { text = "generic zh-TW" },
  whatsapp = {
    en = { text = "wa en {{name}}", buttons = { { title = "Yes", payload = "Y" } } },
    zh = { text = "wa zh" },
  },
  messenger = { es = { text = "fb es" } },
}

template "by_platform" {
  en = { text = "table on {{platform}}" },
  wechat = { en = { text = "wechat table" } },
  render = function(m, ctx)
    if ctx.platform == "whatsapp" then
      return { text = "render for " .. ctx.platform .. ", m.platform " .. m.platform .. ", template " .. ctx.template }
    end
    return nil
  end,
}

route(function(m, msg, ctx)
  if m.tags.ask then return { skip = ctx.platform .. "/" .. ctx.template } end
  return { channel = m.channel }
end)
"#;

/// `env()` plus a WeChat channel `wx`.
fn env_with_wechat() -> ScriptEnv {
    let mut env = env();
    env.channels
        .insert("wx".into(), ChannelInfo::new(Platform::Wechat));
    env
}

#[test]
fn a_platform_version_is_chosen_for_its_platform_and_the_generic_tables_elsewhere() {
    let g = match load_with(&[("20_t.lua", VERSIONS)], &limits(), &env_with_wechat()) {
        Ok(g) => g,
        Err(errs) => panic!("should load:\n{}", show(&errs)),
    };
    let promo = &g.templates["promo"];
    assert_eq!(promo.locales, ["en", "zh", "zh-TW"]);
    let versions: Vec<(&str, &Vec<String>)> = promo
        .overrides
        .iter()
        .map(|(p, ls)| (p.as_str(), ls))
        .collect();
    assert_eq!(
        versions,
        [
            ("whatsapp", &vec!["en".to_string(), "zh".to_string()]),
            ("messenger", &vec!["es".to_string()])
        ]
    );
    let members = vec![
        member(1, "wa", "en"),
        member(2, "wa", "zh-CN"),
        member(3, "wa", "zh-TW"),
        member(4, "wa", "fr"),
        member(5, "sim", "en"),
        member(6, "fb", "en"),
        member(7, "fb", "es"),
        member(8, "fb", "fr"),
    ];
    let out = g.prepare_blocking("promo", members, now_ms());
    let texts: Vec<&str> = out.iter().map(|r| message(r).text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "wa en Member 1",
            "wa zh",
            // An exact generic locale beats the platform's version of the language.
            "generic zh-TW",
            // No table in the member's language: the default locale, platform first.
            "wa en Member 4",
            "generic en on simulator",
            "generic en on messenger",
            "fb es",
            "generic en on messenger",
        ]
    );
    assert_eq!(message(&out[0]).buttons[0].payload.as_deref(), Some("Y"));
    assert!(message(&out[4]).buttons.is_empty());
}

#[test]
fn render_reads_ctx_platform_and_falls_back_to_the_platform_version() {
    let g = match load_with(&[("20_t.lua", VERSIONS)], &limits(), &env_with_wechat()) {
        Ok(g) => g,
        Err(errs) => panic!("should load:\n{}", show(&errs)),
    };
    let mut asks = member(4, "wx", "en");
    asks.tags = vec!["ask".into()];
    let out = g.prepare_blocking(
        "by_platform",
        vec![
            member(1, "wa", "en"),
            member(2, "wx", "en"),
            member(3, "sim", "en"),
            asks,
        ],
        now_ms(),
    );
    assert_eq!(
        message(&out[0]).text,
        "render for whatsapp, m.platform whatsapp, template by_platform"
    );
    assert_eq!(message(&out[1]).text, "wechat table");
    assert_eq!(message(&out[2]).text, "table on simulator");
    // The router sees the same ctx.platform and ctx.template.
    match &out[3] {
        Ok(Routed::Skip { reason }) => assert_eq!(reason, "wechat/by_platform"),
        other => panic!("expected a skip, got {other:?}"),
    }
}
