//! A/B variants on the panel: the push page's per-variant table and pies
//! in a real Chromium, the admin's "Send b to the rest" with its
//! confirmation, and the refusals — a viewer, another site, a variant the
//! push does not have — that change nothing.

use super::{From, PanelClient, audit, login_link};
use crate::dispatch::{show, wait_status};
use crate::support::browser::Browser;
use crate::support::*;
use crate::variants::{push_bf, sim_daemon};
use serde_json::json;
use std::time::Duration;

/// A manual test whose test share is sent and waits for a winner.
fn waiting_push() -> TestDaemon {
    let d = sim_daemon(
        300,
        "read_rate_by_text = { \"VIP\" = 0.7, \"% off\" = 0.2 }\n",
    );
    push_bf(
        &d,
        "bf",
        &[
            "--test-share",
            "30%",
            "--test-wait",
            "1s",
            "--winner",
            "manual",
            "--holdout",
            "10%",
        ],
    );
    wait_for(
        "the test to wait for a pick",
        Duration::from_secs(60),
        || (show(&d, "bf")["ab"]["phase"] == "waiting").then_some(()),
    );
    d
}

#[test]
fn an_admin_sends_the_chosen_variant_to_the_rest_from_the_push_page() {
    let Some(mut b) = Browser::launch("panel_variants") else {
        return;
    };
    let d = waiting_push();
    b.goto(&login_link(&d, &[]));
    b.goto(&format!("{}/pushes/bf", d.http_base()));
    // One row and one pie per variant, the same numbers as the report.
    let report = d.cli_json(&["report", "bf"])["data"].clone();
    for v in report["variants"].as_array().unwrap() {
        let name = v["variant"].as_str().unwrap();
        let row = b.text(&format!("table.ab tr[data-variant='{name}']"));
        assert!(
            row.contains(&format!("{:.1}%", v["rate"].as_f64().unwrap())),
            "{name}: {row} vs {v}"
        );
        let slices = b.eval(&format!(
            "document.querySelectorAll(\"figure.vpie[data-variant='{name}'] path.slice\").length"
        ));
        assert!(slices.as_u64().unwrap() >= 1, "{name} has a pie");
    }
    assert!(b.text(".variants .ab-phase").contains("pick the winner"));
    assert!(b.text(".variants").contains("Control group"));
    b.click_and_wait("a[href='/pushes/bf/winner?variant=b']");
    assert_eq!(
        b.text("form.confirm h1"),
        "Send variant b to the rest of bf?"
    );
    assert_eq!(
        show(&d, "bf")["ab"]["phase"],
        "waiting",
        "nothing before confirming"
    );
    b.click_and_wait("form.confirm button[type=submit]");
    assert_eq!(b.eval("location.pathname"), json!("/pushes/bf"));
    let done = wait_status(&d, "bf", "completed", Duration::from_secs(60));
    assert_eq!(done["ab"]["winner"], "b");
    let e = &audit(&d, "push.pick_winner")[0];
    assert!(e["actor"].as_str().unwrap().ends_with("(admin)"), "{e}");
    b.goto(&format!("{}/pushes/bf", d.http_base()));
    assert!(b.text("table.ab tr[data-variant='b']").contains("winner"));
    assert_eq!(
        b.eval("document.querySelectorAll('a[href*=\"/winner?\"]').length"),
        json!(0),
        "no pick once decided"
    );
}

#[test]
fn a_viewer_another_site_and_an_unknown_variant_cannot_pick_a_winner() {
    let d = waiting_push();
    let viewer = PanelClient::sign_in(&d, true);
    let page = viewer.get("/pushes/bf");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("table class=\"ab\""),
        "the viewer sees the variants"
    );
    assert!(
        !page.body.contains("/winner?variant="),
        "but no pick button"
    );
    let r = viewer.post("/pushes/bf/winner", &[("variant", "b")], From::Panel);
    assert_eq!(r.status, 403, "{}", r.body);
    let admin = PanelClient::sign_in(&d, false);
    let r = admin.post("/pushes/bf/winner", &[("variant", "b")], From::OtherSite);
    assert_eq!(r.status, 403, "{}", r.body);
    let r = admin.post("/pushes/bf/winner", &[("variant", "<script>")], From::Panel);
    assert!(r.status >= 400, "{}", r.status);
    assert!(
        !r.body.contains("<script>"),
        "the name is escaped: {}",
        r.body
    );
    let r = admin.get("/pushes/bf/winner?variant=zz");
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(show(&d, "bf")["ab"]["phase"], "waiting", "nothing changed");
    assert!(
        audit(&d, "push.pick_winner")
            .iter()
            .all(|e| e["ok"] == false)
    );
}
