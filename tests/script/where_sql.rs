//! `where` compiled to SQL selects exactly the members that the equivalent
//! Lua predicate keeps, on a generated member set in a real store.

use super::*;
use pushd::model::NewMember as ImportRow;
use pushd::store::Store;
use pushd::store::members::{MEMBER_COLUMNS, member_from_row, upsert_rows};
use std::collections::BTreeSet;

const DAY_MS: i64 = 86_400_000;

/// A deterministic spread of members over channels, locales, tags,
/// attributes, subscription and last interaction.
fn generated_rows(n: u64) -> Vec<ImportRow> {
    let now = pushd::model::now_ms();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        // xorshift64: deterministic, no dependency.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let channels = ["sim", "wa", "fb", "old_channel"];
    let locales = [
        "en", "en-US", "EN-gb", "zh", "zh-CN", "zh_TW", "es", "pt-BR", "zhx",
    ];
    let tags = ["vip", "newsletter", "churn-risk", "beta"];
    let plans = ["pro", "free", "team"];
    (0..n)
        .map(|i| {
            let r = next();
            let mut t: Vec<String> = tags
                .iter()
                .enumerate()
                .filter(|(k, _)| (r >> (k * 3)) % 3 == 0)
                .map(|(_, t)| t.to_string())
                .collect();
            t.sort();
            let mut attrs = serde_json::Map::new();
            let r2 = next();
            if r2 % 5 != 0 {
                attrs.insert("spend".into(), serde_json::json!((r2 >> 8) % 4 * 50));
            }
            if r2 % 7 != 0 {
                attrs.insert(
                    "plan".into(),
                    serde_json::json!(plans[((r2 >> 16) % 3) as usize]),
                );
            }
            match (r2 >> 24) % 4 {
                0 => {
                    attrs.insert("score".into(), serde_json::json!(2.5));
                }
                1 => {
                    attrs.insert("score".into(), serde_json::json!(3));
                }
                2 => {
                    attrs.insert("score".into(), serde_json::json!("2.5"));
                }
                _ => {}
            }
            if (r2 >> 32) % 3 != 0 {
                attrs.insert("active".into(), serde_json::json!((r2 >> 34) % 2 == 0));
            }
            // Whole days plus half a day, so nobody sits on a 30-day boundary.
            let last = match (r >> 20) % 8 {
                0 => None,
                k => Some(now - ((r >> 24) % 60) as i64 * DAY_MS - DAY_MS / 2 - k as i64),
            };
            ImportRow {
                channel: channels[((r >> 12) % 4) as usize].into(),
                channel_user_id: format!("user-{i}"),
                name: Some(format!("Member {i}")),
                locale: Some(locales[((r >> 16) % locales.len() as u64) as usize].into()),
                timezone: Some("UTC".into()),
                tags: Some(t),
                attributes: Some(attrs),
                subscribed: Some((r >> 40) % 4 != 0),
                last_interaction_at: last,
            }
        })
        .collect()
}

/// (where table, equivalent Lua predicate over m and ctx)
const CASES: &[(&str, &str)] = &[
    (
        r#"{ platform = "whatsapp" }"#,
        r#"m.platform == "whatsapp""#,
    ),
    (
        r#"{ platform = { "whatsapp", "messenger" } }"#,
        r#"m.platform == "whatsapp" or m.platform == "messenger""#,
    ),
    (r#"{ channel = "sim" }"#, r#"m.channel == "sim""#),
    (
        r#"{ channel = { "sim", "fb" } }"#,
        r#"m.channel == "sim" or m.channel == "fb""#,
    ),
    (
        r#"{ tags_all = { "vip", "newsletter" } }"#,
        r#"m.tags.vip and m.tags.newsletter"#,
    ),
    (
        r#"{ tags_any = { "vip", "beta" } }"#,
        r#"m.tags.vip or m.tags.beta"#,
    ),
    (
        r#"{ tags_none = { "churn-risk", "beta" } }"#,
        r#"not m.tags["churn-risk"] and not m.tags.beta"#,
    ),
    (r#"{ subscribed = false }"#, r#"not m.subscribed"#),
    (
        r#"{ locale = "zh" }"#,
        r#"(function() local l = m.locale:lower():gsub("_", "-") return l == "zh" or l:sub(1, 3) == "zh-" end)()"#,
    ),
    (
        r#"{ locale = { "en-us", "es" } }"#,
        r#"(function() local l = m.locale:lower():gsub("_", "-") return l == "en-us" or l == "es" or l:sub(1, 3) == "es-" end)()"#,
    ),
    (
        r#"{ last_interaction_within = "30d" }"#,
        r#"m.last_interaction_at ~= nil and ctx.now - m.last_interaction_at <= 30 * 86400"#,
    ),
    (
        r#"{ attributes = { plan = "pro" } }"#,
        r#"m.attributes.plan == "pro""#,
    ),
    (
        r#"{ attributes = { spend = 100 } }"#,
        r#"m.attributes.spend == 100"#,
    ),
    (
        r#"{ attributes = { score = 2.5 } }"#,
        r#"type(m.attributes.score) == "number" and m.attributes.score == 2.5"#,
    ),
    (
        r#"{ attributes = { active = true } }"#,
        r#"m.attributes.active == true"#,
    ),
    (
        r#"{ attributes = { active = false } }"#,
        r#"m.attributes.active == false"#,
    ),
    (
        r#"{ attributes = { plan = { "pro", "team" }, spend = { 0, 150 } } }"#,
        r#"(m.attributes.plan == "pro" or m.attributes.plan == "team") and (m.attributes.spend == 0 or m.attributes.spend == 150)"#,
    ),
    (
        r#"{ platform = "simulator", tags_any = { "vip", "newsletter" }, tags_none = { "churn-risk" }, subscribed = true, locale = { "en", "zh" }, last_interaction_within = "45d", attributes = { plan = "free" } }"#,
        r#"m.platform == "simulator" and (m.tags.vip or m.tags.newsletter) and not m.tags["churn-risk"] and m.subscribed
           and (function() local l = m.locale:lower():gsub("_", "-") return l == "en" or l:sub(1, 3) == "en-" or l == "zh" or l:sub(1, 3) == "zh-" end)()
           and m.last_interaction_at ~= nil and ctx.now - m.last_interaction_at <= 45 * 86400
           and m.attributes.plan == "free""#,
    ),
    ("{}", "true"),
];

#[test]
fn where_sql_selects_what_the_lua_predicate_keeps() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("pushd.db")).unwrap();
    let rows = generated_rows(600);
    store
        .write_blocking(move |c| upsert_rows(c, &rows))
        .unwrap();
    let members: Vec<Member> = store
        .read_blocking(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {MEMBER_COLUMNS} FROM members m ORDER BY m.id"
            ))?;
            let rows = st.query_map([], |r| member_from_row(r, 0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .unwrap();
    assert_eq!(members.len(), 600);

    let mut script = String::new();
    for (i, (w, pred)) in CASES.iter().enumerate() {
        script.push_str(&format!("audience \"w{i}\" {{ where = {w} }}\n"));
        script.push_str(&format!(
            "audience \"f{i}\" {{ filter = function(m, ctx) return {pred} end }}\n"
        ));
    }
    let g = load(&[("10_where.lua", &script)]);

    for (i, (w, _)) in CASES.iter().enumerate() {
        let f = &g.audiences[&format!("w{i}")].filter_sql;
        let params = f.params.clone();
        let sql = format!("SELECT m.id FROM members m WHERE {} ORDER BY m.id", f.sql);
        let by_sql: BTreeSet<i64> = store
            .read_blocking(move |c| {
                let mut st = c.prepare(&sql)?;
                let ids = st.query_map(rusqlite::params_from_iter(params.iter()), |r| r.get(0))?;
                Ok(ids.collect::<rusqlite::Result<BTreeSet<i64>>>()?)
            })
            .unwrap_or_else(|e| panic!("case {i} {w}: SQL failed: {e}\n{}", f.sql));
        let keep = g
            .filter_blocking(&format!("f{i}"), members.clone())
            .unwrap();
        let by_lua: BTreeSet<i64> = members
            .iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(m, _)| m.id)
            .collect();
        assert_eq!(by_sql, by_lua, "case {i}: where = {w}\nsql: {}", f.sql);
        // A case that selects nobody or everybody proves little.
        if *w != "{}" {
            assert!(
                !by_sql.is_empty() && by_sql.len() < members.len(),
                "case {i} {w} selects {} of {}",
                by_sql.len(),
                members.len()
            );
        }
    }
}
