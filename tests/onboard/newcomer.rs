//! Small things a newcomer trips over: `push create` with an unknown
//! audience lists the known ones; `audience preview` shows button URLs and
//! the image in its text output, not only with --json.

use crate::dispatch::{push_hello, sim_daemon, wait_status};
use crate::support::*;
use std::time::Duration;

#[test]
fn push_create_with_an_unknown_audience_lists_the_known_ones() {
    let d = sim_daemon(4, "rate_per_minute = 0", "block_rate = 1.0");
    push_hello(&d, "first", &[]);
    wait_status(&d, "first", "completed", Duration::from_secs(30));
    let v = d.cli_json(&["retry-audience", "first", "--name", "first-retry"]);
    assert_eq!(v["ok"], true, "{v}");
    let pushes = count(&d.db(), "SELECT count(*) FROM pushes");

    let out = d.cli(&["push", "create", "--audience", "al", "--template", "hello"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("audience \"al\" is defined neither in the live scripts nor as a saved audience; script audiences: all, vip; saved audiences: first-retry"),
        "{err}"
    );
    assert_eq!(
        count(&d.db(), "SELECT count(*) FROM pushes"),
        pushes,
        "nothing was created"
    );
}

#[test]
fn preview_text_shows_button_urls_and_the_image() {
    let cfg =
        base_config("[channels.sim]\nkind = \"simulator\"\nseed_members = 3\nlatency = \"2ms\"\n");
    let mut d = TestDaemon::prepare(&cfg);
    d.write_script(
        "10.lua",
        r#"
audience "all" { where = { channel = "sim" } }
template "promo" { en = {
  text = "Hi {{name}}",
  image = "https://cdn.example.com/p.jpg",
  buttons = { { title = "Shop", url = "https://shop.example.com/x" }, { title = "Stop", payload = "STOP" } },
} }
"#,
    );
    d.spawn();
    wait_for("the scripts to load", Duration::from_secs(30), || {
        d.status()["scripts"].is_object().then_some(())
    });
    let out = d.cli(&[
        "audience",
        "preview",
        "all",
        "--template",
        "promo",
        "--limit",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("[Shop → https://shop.example.com/x] [Stop]"),
        "{text}"
    );
    assert!(
        text.contains("\n    image: https://cdn.example.com/p.jpg\n"),
        "{text}"
    );
}
