//! A/B template variants in scripts: each variant's body (its locales and
//! platform versions) rendered for its members, `ctx.variant` in `render`,
//! and every malformed variant or test reported at its file:line.

use super::*;
use pushd::model::{Outbound, Routed, now_ms};
use pushd::script::LinkEnv;

const BF: &str = r#"
template "bf" {
  variants = {
    a = { en = { text = "30% off today, {{name}}" }, zh = { text = "今天七折" } },
    b = {
      en = { text = "Your VIP price is ready, {{name}}" },
      whatsapp = { en = { text = "VIP price (WhatsApp), {{name}}" } },
    },
  },
}
template "said" {
  variants = { x = { en = { text = "table x" } }, y = { en = { text = "table y" } } },
  render = function(m, ctx)
    if ctx.variant == "y" then return { text = "render saw " .. ctx.variant } end
    return nil
  end,
}
"#;

fn text(r: &Result<Routed, pushd::script::ScriptError>) -> String {
    match r {
        Ok(Routed::Send {
            outbound: Outbound::Message { message, .. },
            ..
        }) => message.text.clone(),
        other => panic!("expected a message, got {other:?}"),
    }
}

fn render(g: &Generation, template: &str, variant: Option<&str>, m: Member) -> String {
    let out = g.prepare_for_blocking(Some("p"), variant, template, vec![m], now_ms());
    text(&out[0])
}

#[test]
fn each_variant_renders_its_own_body_locales_and_platform_versions() {
    let g = load(&[("10_bf.lua", BF)]);
    assert_eq!(g.templates["bf"].variants, vec!["a", "b"]);
    let en = member(1, "sim", "en");
    assert_eq!(
        render(&g, "bf", Some("a"), en.clone()),
        "30% off today, Member 1"
    );
    assert_eq!(
        render(&g, "bf", Some("b"), en.clone()),
        "Your VIP price is ready, Member 1"
    );
    // A variant's own locale table, and its fallback to the default locale.
    assert_eq!(
        render(&g, "bf", Some("a"), member(2, "sim", "zh")),
        "今天七折"
    );
    assert_eq!(
        render(&g, "bf", Some("b"), member(2, "sim", "zh")),
        "Your VIP price is ready, Member 2"
    );
    // A variant's platform version, for that platform's members only.
    assert_eq!(
        render(&g, "bf", Some("b"), member(3, "wa", "en")),
        "VIP price (WhatsApp), Member 3"
    );
    assert_eq!(
        render(&g, "bf", Some("a"), member(3, "wa", "en")),
        "30% off today, Member 3"
    );
    // No variant (a preview, a test send): the first variant.
    assert_eq!(render(&g, "bf", None, en), "30% off today, Member 1");
}

#[test]
fn render_sees_the_members_variant_in_ctx() {
    let g = load(&[("10_bf.lua", BF)]);
    let m = member(1, "sim", "en");
    assert_eq!(render(&g, "said", Some("y"), m.clone()), "render saw y");
    // render returned nil: the variant's own table.
    assert_eq!(render(&g, "said", Some("x"), m), "table x");
}

#[test]
fn malformed_variants_are_reported_at_their_file_and_line() {
    let base = "audience \"all\" { where = { channel = \"sim\" } }\n";
    let cases: &[(&str, &[&str])] = &[
        (
            "template \"t\" { variants = { a = { en = { text = \"x\" } } } }",
            &["2 to 8 variants", "found 1"],
        ),
        (
            "template \"t\" { en = { text = \"x\" }, variants = { a = { en = { text = \"x\" } }, b = { en = { text = \"y\" } } } }",
            &["both variants and its own locale tables"],
        ),
        (
            "template \"t\" { variants = { holdout = { en = { text = \"x\" } }, b = { en = { text = \"y\" } } } }",
            &["\"holdout\" is not a valid variant name"],
        ),
        (
            "template \"t\" { variants = { a = { en = { text = \"x\" } }, b = { en = { txt = \"y\" } } } }",
            &["variants.b.", "txt"],
        ),
        (
            "template \"t\" { variants = { a = { en = { text = \"x\" } }, b = { colour = \"red\" } } }",
            &["variants.b.colour", "unknown key"],
        ),
        (
            "template \"t\" { variants = { a = { en = { text = \"{{name\" } }, b = { en = { text = \"y\" } } } }",
            &["variants.a.en.text"],
        ),
        (
            "template \"t\" { variants = \"ab\" }",
            &["variants must be a table"],
        ),
    ];
    for (line2, words) in cases {
        let errs = load_err(&[("10_t.lua", &format!("{base}{line2}\n"))]);
        assert_error_at(&errs, "scripts/10_t.lua:2", words);
    }
    let nine: String = (0..9)
        .map(|i| format!("v{i} = {{ en = {{ text = \"{i}\" }} }}, "))
        .collect();
    let errs = load_err(&[(
        "10_t.lua",
        &format!("{base}template \"t\" {{ variants = {{ {nine} }} }}\n"),
    )]);
    assert_error_at(&errs, "scripts/10_t.lua:2", &["2 to 8 variants", "found 9"]);
}

#[test]
fn malformed_tests_are_reported_at_the_push() {
    let defs = "audience \"all\" { where = { channel = \"sim\" } }\n\
                template \"plain\" { en = { text = \"x\" } }\n\
                template \"ab\" { variants = { a = { en = { text = \"x\" } }, b = { en = { text = \"y\" } } } }\n";
    let cases: &[(&str, &[&str])] = &[
        (
            "template = \"plain\", test = { share = 0.2, wait = \"1h\" }",
            &["test needs variants", "\"plain\" has none"],
        ),
        (
            "template = \"ab\", test = { share = 1.5, wait = \"1h\" }",
            &["test.share", "less than 100%"],
        ),
        (
            "template = \"ab\", test = { share = \"20%\" }",
            &["test.wait is required"],
        ),
        (
            "template = \"ab\", test = { share = 0.2, wait = \"1h\", metric = \"opens\" }",
            &["test.metric", "read, interacted, clicked"],
        ),
        (
            "template = \"ab\", test = { share = 0.2, wait = \"1h\", winner = \"vote\" }",
            &["test.winner", "auto or manual"],
        ),
        (
            "template = \"ab\", test = { share = 0.2, wait = \"1h\", when = 1 }",
            &["test", "when"],
        ),
        (
            "template = \"ab\", holdout = 0",
            &["holdout", "more than 0%"],
        ),
        (
            "template = \"ab\", test = { share = 0.2, wait = \"1h\", metric = \"clicked\" }",
            &["template \"ab\"", "clicked metric needs tracked links"],
        ),
    ];
    for (body, words) in cases {
        let errs = load_err(&[(
            "10_t.lua",
            &format!("{defs}push \"p\" {{ audience = \"all\", start_at = \"now\", {body} }}\n"),
        )]);
        assert_error_at(&errs, "scripts/10_t.lua:4", words);
    }
    // Well formed: loads, shares as numbers or percentages; by clicks on a
    // template that tracks a link.
    let with_url = ScriptEnv {
        links: LinkEnv {
            public_url: Some("https://go.example".into()),
            track_buttons: false,
        },
        ..env()
    };
    let g = load_with(
        &[(
            "10_t.lua",
            &format!(
                "{defs}template \"abl\" {{ variants = {{ a = {{ en = {{ text = 'x {{{{track \"https://a.example/\"}}}}' }} }}, \
                 b = {{ en = {{ text = \"y\" }} }} }} }}\n\
                 push \"p\" {{ audience = \"all\", template = \"abl\", start_at = \"now\", \
                 test = {{ share = \"20%\", wait = \"2h\", metric = \"clicked\", winner = \"manual\" }}, holdout = 0.05 }}\n"
            ),
        )],
        &limits(),
        &with_url,
    )
    .unwrap_or_else(|e| panic!("{}", show(&e)));
    let p = &g.pushes[0];
    let t = p.test.expect("a test");
    assert_eq!((t.share, t.wait_ms), (0.2, 7_200_000));
    assert_eq!(
        (t.metric.as_str(), t.winner.as_str(), p.holdout),
        ("clicked", "manual", 0.05)
    );
}
