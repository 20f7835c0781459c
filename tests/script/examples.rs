//! The shipped `scripts/` load against the default config, and the example
//! push reaches about a hundred of the default simulator members.

use super::*;
use pushd::config::Config;
use pushd::model::{Outbound, Routed, now_ms};
use pushd::script::PushStart;
use pushd::store::Store;
use pushd::store::members::{MEMBER_COLUMNS, member_from_row, upsert_rows};
use std::path::Path;

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

#[test]
fn shipped_scripts_load_against_the_default_config() {
    let cfg = Config::default_at(&shipped().join("..").join("config.toml"));
    let limits = ScriptLimits::from_config(&cfg);
    let env = ScriptEnv::from_config(&cfg, ScriptEnv::accept_all());
    let g = match Generation::load(1, &shipped(), &limits, &env) {
        Ok(g) => g,
        Err(errs) => panic!("shipped scripts fail to load:\n{}", show(&errs)),
    };
    assert!(
        !g.files.iter().any(|f| f.ends_with(".d.lua")),
        "{:?}",
        g.files
    );
    assert!(g.has_route);
    for t in g.templates.values().filter(|t| !t.has_render) {
        assert!(
            t.locales.contains(&"en".to_string()) && t.locales.contains(&"zh".to_string()),
            "{t:?}"
        );
    }
    let push = g
        .pushes
        .iter()
        .find(|p| p.name == "welcome-vip")
        .expect("welcome-vip");
    assert_eq!(push.start_at, PushStart::Now);

    // Resolve its audience over the seeded members, as the dispatcher will.
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("pushd.db")).unwrap();
    // The members a fresh daemon seeds (the default config's 1000).
    let rows = pushd::channel::simulator::seed_members("sim", 1000, now_ms());
    store
        .write_blocking(move |c| upsert_rows(c, &rows))
        .unwrap();
    let audience = &g.audiences[&push.audience];
    let (sql, params) = (
        audience.filter_sql.sql.clone(),
        audience.filter_sql.params.clone(),
    );
    let members: Vec<Member> = store
        .read_blocking(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {MEMBER_COLUMNS} FROM members m WHERE {sql}"
            ))?;
            let rows = st.query_map(rusqlite::params_from_iter(params.iter()), |r| {
                member_from_row(r, 0)
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .unwrap();
    let keep = g.filter_blocking(&push.audience, members.clone()).unwrap();
    let members: Vec<Member> = members
        .into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(m, _)| m)
        .collect();
    assert!(
        (80..=120).contains(&members.len()),
        "welcome-vip reaches {} members",
        members.len()
    );

    let out = g.prepare_blocking(&push.template, members, now_ms());
    for r in &out {
        match r {
            Ok(Routed::Send {
                channel,
                outbound: Outbound::Message { message, .. },
            }) => {
                assert_eq!(channel, "sim");
                assert!(
                    message.text.contains("VIP") || message.text.contains("VIP 俱乐部"),
                    "{message:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn type_stubs_describe_every_global_the_host_installs() {
    let stubs = std::fs::read_to_string(shipped().join("pushd.d.lua")).unwrap();
    assert!(stubs.starts_with("---@meta"));
    for name in [
        "function audience(",
        "function template(",
        "function route(",
        "function push(",
        "function log.info(",
        "function log.warn(",
        "function Context.in_service_window(",
        "function Context.local_time(",
    ] {
        assert!(stubs.contains(name), "pushd.d.lua lacks {name}");
    }
}

#[test]
fn platforms_have_one_name_in_config_scripts_and_type_stubs() {
    use pushd::model::Platform;
    let stubs = std::fs::read_to_string(shipped().join("pushd.d.lua")).unwrap();
    let alias = stubs
        .lines()
        .find_map(|l| l.strip_prefix("---@alias pushd.Platform "))
        .expect("the pushd.Platform alias");
    let in_stubs: Vec<&str> = alias.split('|').map(|s| s.trim_matches('"')).collect();
    let names: Vec<&str> = Platform::ALL.iter().map(|p| p.as_str()).collect();
    assert_eq!(in_stubs, names, "pushd.d.lua's platform names");
    for name in &names {
        // The config kind, m.platform and a template's platform version share the name.
        assert_eq!(
            Platform::parse(name).map(|p| p.to_string()).as_deref(),
            Some(*name)
        );
        assert!(
            stubs.contains(&format!("---@field {name} pushd.PlatformVersion?")),
            "pushd.d.lua lacks the {name} version of a template"
        );
        let g = load(&[(
            "20_t.lua",
            &format!(
                "template \"t\" {{ en = {{ text = \"x\" }}, {name} = {{ en = {{ text = \"{{{{platform}}}}\" }} }} }}"
            ),
        )]);
        assert_eq!(
            g.templates["t"]
                .overrides
                .keys()
                .map(|p| p.as_str())
                .collect::<Vec<_>>(),
            [*name]
        );
    }
}
