//! The recipients explorer and outcome audiences over plain HTTP: each
//! outcome and filter lists exactly what `pushd recipients` lists, pages
//! follow the command's cursor, bad input is refused with the command's
//! reason, the CSV download is the CLI's bytes, and only an admin acting
//! from this panel saves a list as an audience (with lineage).

use super::*;
use crate::analytics::{Constructed, constructed_push};
use crate::dispatch::{create_push, sim_daemon, wait_status};
use crate::support::*;
use std::time::Duration;

/// Every value of `attr="…"` in a page, in order.
pub fn attr_values(html: &str, attr: &str) -> Vec<String> {
    let key = format!("{attr}=\"");
    html.match_indices(&key)
        .map(|(at, _)| {
            let rest = &html[at + key.len()..];
            rest[..rest.find('"').unwrap_or(0)].to_string()
        })
        .collect()
}

/// The `href` of the page's `rel="next"` link, HTML escapes undone.
pub fn next_href(html: &str) -> Option<String> {
    let at = html.find("rel=\"next\"")?;
    let start = html[..at].rfind("href=\"")? + "href=\"".len();
    let end = start + html[start..].find('"')?;
    Some(html[start..end].replace("&amp;", "&").replace("&#38;", "&"))
}

/// The delivery ids `pushd recipients PUSH ARGS` lists (all of them).
pub fn cli_ids(d: &TestDaemon, push: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["recipients", push, "--limit", "1000"];
    all.extend_from_slice(args);
    let v = d.cli_json(&all);
    assert_eq!(v["ok"], true, "{all:?}: {v}");
    assert!(v["data"]["next"].is_null(), "more than a page: {v}");
    v["data"]["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["delivery_id"].to_string())
        .collect()
}

const OUTCOMES: [&str; 7] = [
    "read_and_interacted",
    "read_only",
    "interacted_only",
    "not_read_or_interacted",
    "sent_fail",
    "skipped",
    "cancelled",
];

#[test]
fn each_outcome_and_filter_lists_exactly_what_the_cli_lists() {
    let Constructed {
        rt: _rt,
        mock: _mock,
        d,
    } = constructed_push();
    // A viewer reads everything.
    let c = PanelClient::sign_in(&d, true);
    let report = d.cli_json(&["report", "exact"])["data"].clone();
    for outcome in OUTCOMES {
        let page = c.get(&format!("/pushes/exact/recipients?outcome={outcome}"));
        assert_eq!(page.status, 200, "{outcome}: {}", page.body);
        let shown = attr_values(&page.body, "data-delivery");
        let want = cli_ids(&d, "exact", &["--outcome", outcome]);
        assert_eq!(shown, want, "{outcome}");
        assert_eq!(want.len() as u64, report[outcome].as_u64().unwrap());
        // Its tab is the current one and carries the report's count.
        let tab =
            format!("href=\"/pushes/exact/recipients?outcome={outcome}\" aria-current=\"page\"");
        assert!(page.body.contains(&tab), "{outcome}: no current tab");
    }
    let all = c.get("/pushes/exact/recipients");
    assert_eq!(
        attr_values(&all.body, "data-delivery"),
        cli_ids(&d, "exact", &[])
    );
    assert!(all.body.contains("11 recipients"), "{}", all.body);

    // The other filters, alone and together.
    for (query, args) in [
        ("channel=hook", vec!["--channel", "hook"]),
        ("channel=elsewhere", vec!["--channel", "elsewhere"]),
        (
            "locale=en&outcome=read_only",
            vec!["--locale", "en", "--outcome", "read_only"],
        ),
        (
            "outcome=sent_fail&error_class=blocked",
            vec!["--outcome", "sent_fail", "--error-class", "blocked"],
        ),
        ("error_code=bounced", vec!["--error-code", "bounced"]),
    ] {
        let page = c.get(&format!("/pushes/exact/recipients?{query}"));
        assert_eq!(page.status, 200, "{query}");
        assert_eq!(
            attr_values(&page.body, "data-delivery"),
            cli_ids(&d, "exact", &args),
            "{query}"
        );
    }
    let none = c.get("/pushes/exact/recipients?channel=elsewhere");
    assert!(none.body.contains("Nobody here"), "{}", none.body);

    // Timelines: the interaction's payload, the platform's error.
    let page = c.get("/pushes/exact/recipients").text();
    let row = |user: &str| -> String {
        let at = page
            .find(&format!("hook:{user}</code>"))
            .unwrap_or_else(|| panic!("{user} missing"));
        let end = at + page[at..].find("</details>").unwrap();
        page[at..end].to_string()
    };
    let u1 = row("u1");
    for step in ["Queued", "Sent", "Read", "Interacted", "YES"] {
        assert!(u1.contains(step), "u1 {step}: {u1}");
    }
    let u10 = row("u10");
    assert!(
        u10.contains("bounced") && u10.contains("mailbox gone"),
        "{u10}"
    );
    assert!(row("u11").contains("unsubscribed"));

    // The push page leads here: each pie slice and each slice's indicator.
    let push = c.get("/pushes/exact");
    for key in ["read_only", "sent_fail"] {
        let link = format!(
            "<a href=\"/pushes/exact/recipients?outcome={key}\"><path class=\"slice\" data-slice=\"{key}\""
        );
        assert!(push.body.contains(&link), "no link on the {key} slice");
        let ind = format!(
            "<a href=\"/pushes/exact/recipients?outcome={key}\" title=\"list these recipients\">"
        );
        assert!(push.body.contains(&ind), "no link on the {key} indicator");
    }
}

#[test]
fn pages_follow_the_cursor_csv_spans_pages_and_bad_input_is_refused() {
    let d = sim_daemon(1100, "rate_per_minute = 0", "");
    create_push(
        &d,
        &["--audience", "all", "--template", "hello", "--name", "many"],
    );
    create_push(
        &d,
        &[
            "--audience",
            "all",
            "--template",
            "hello",
            "--name",
            "other",
        ],
    );
    wait_status(&d, "many", "completed", Duration::from_secs(120));
    wait_status(&d, "other", "completed", Duration::from_secs(120));
    let c = PanelClient::sign_in(&d, false);

    // Page after page by the command's cursor: every recipient once, in order.
    let mut seen = Vec::new();
    let mut path = Some("/pushes/many/recipients".to_string());
    let mut pages = 0;
    while let Some(p) = path {
        let page = c.get(&p);
        assert_eq!(page.status, 200, "{p}: {}", page.body);
        let ids = attr_values(&page.body, "data-delivery");
        assert!(ids.len() <= 50, "{p}: {} rows", ids.len());
        seen.extend(ids);
        path = next_href(&page.body);
        pages += 1;
        if path.is_some() {
            assert!(page.body.contains("First page") || pages == 1);
        }
    }
    assert_eq!(pages, 22, "1100 recipients, 50 a page");
    let mut want = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut args = vec!["recipients", "many", "--limit", "1000"];
        if let Some(a) = &after {
            args.extend(["--after", a.as_str()]);
        }
        let v = d.cli_json(&args);
        for r in v["data"]["recipients"].as_array().unwrap() {
            want.push(r["delivery_id"].to_string());
        }
        match v["data"]["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 1100);
    assert_eq!(seen, want);

    // The CSV of more than one command page is the CLI's, byte for byte.
    let csv = c.get("/pushes/many/recipients.csv");
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-disposition").starts_with("attachment"));
    let cli = d.cli(&["recipients", "many", "--format", "csv"]);
    assert!(cli.status.success());
    assert_eq!(csv.body.as_bytes(), cli.stdout.as_slice());
    assert_eq!(csv.body.lines().count(), 1101);

    // A bad outcome: the command's reason, naming the valid ones.
    let bad = c.get("/pushes/many/recipients?outcome=opened");
    assert_eq!(bad.status, 400);
    let text = bad.text();
    for word in [
        "\"opened\"",
        "read_only",
        "not_read_or_interacted",
        "sent_fail",
    ] {
        assert!(text.contains(word), "{word}: {text}");
    }
    assert!(attr_values(&bad.body, "data-delivery").is_empty());
    let bad_csv = c.get("/pushes/many/recipients.csv?outcome=opened");
    assert_eq!(bad_csv.status, 400);
    assert!(!bad_csv.header("content-type").starts_with("text/csv"));
    // A cursor from another push, and one nobody issued.
    let other = d.cli_json(&["recipients", "other", "--limit", "1"]);
    let foreign = other["data"]["next"].as_str().unwrap();
    let page = c.get(&format!("/pushes/many/recipients?after={foreign}"));
    assert_eq!(page.status, 400);
    assert!(
        page.text().contains("belongs to another push"),
        "{}",
        page.body
    );
    let page = c.get("/pushes/many/recipients?after=forged");
    assert_eq!(page.status, 400);
    assert!(page.text().contains("is not one this command returned"));
    assert_eq!(c.get("/pushes/nope/recipients").status, 404);
}

#[test]
fn the_csv_download_of_every_filter_is_the_clis_csv() {
    let Constructed {
        rt: _rt,
        mock: _mock,
        d,
    } = constructed_push();
    let c = PanelClient::sign_in(&d, true);
    for (query, args) in [
        ("", vec![]),
        ("outcome=read_only", vec!["--outcome", "read_only"]),
        ("outcome=skipped", vec!["--outcome", "skipped"]),
        ("error_code=bounced", vec!["--error-code", "bounced"]),
        (
            "channel=hook&locale=en",
            vec!["--channel", "hook", "--locale", "en"],
        ),
        ("outcome=cancelled", vec!["--outcome", "cancelled"]),
    ] {
        // A stray cursor does not cut the download short: it is the whole list.
        let r = c.get(&format!("/pushes/exact/recipients.csv?{query}&after=x"));
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        assert_eq!(r.header("content-type"), "text/csv; charset=utf-8");
        let mut all = vec!["recipients", "exact", "--format", "csv"];
        all.extend_from_slice(&args);
        let cli = d.cli(&all);
        assert!(cli.status.success(), "{}", stderr(&cli));
        assert_eq!(r.body.as_bytes(), cli.stdout.as_slice(), "{query}");
    }
}

#[test]
fn an_audience_from_a_list_has_lineage_and_only_an_admin_of_this_panel_makes_one() {
    let Constructed {
        rt: _rt,
        mock: _mock,
        d,
    } = constructed_push();
    let form = [("name", "nudge"), ("outcome", "not_read_or_interacted")];
    let audiences = || count(&d.db(), "SELECT count(*) FROM audiences");

    // A viewer sees the list but no form, and a forged POST is refused.
    let viewer = PanelClient::sign_in(&d, true);
    let page = viewer.get("/pushes/exact/recipients?outcome=not_read_or_interacted");
    assert_eq!(page.status, 200);
    assert!(
        !page.body.contains("/pushes/exact/audience"),
        "a viewer has the form"
    );
    let r = viewer.post("/pushes/exact/audience", &form, From::Panel);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(audiences(), 0);

    // An admin, but not from this panel: refused too.
    let admin = PanelClient::sign_in(&d, false);
    for from in [From::OtherSite, From::Nowhere] {
        let r = admin.post("/pushes/exact/audience", &form, from);
        assert_eq!(r.status, 403);
    }
    let mut forged = form.to_vec();
    forged.push(("csrf", "not-the-token"));
    assert_eq!(
        admin
            .post("/pushes/exact/audience", &forged, From::Panel)
            .status,
        403
    );
    assert_eq!(audiences(), 0);

    // The form is on the admin's page, carrying the filter.
    let page = admin.get("/pushes/exact/recipients?outcome=not_read_or_interacted");
    assert!(page.body.contains("action=\"/pushes/exact/audience\""));
    assert!(
        page.body
            .contains("name=\"outcome\" value=\"not_read_or_interacted\"")
    );

    // Made: then Push again to it, as for a retry audience.
    let r = admin.post("/pushes/exact/audience", &form, From::Panel);
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), "/audiences/nudge/push?from=exact");
    let shown = d.cli_json(&["audience", "show", "nudge"]);
    assert_eq!(shown["data"]["size"], 2, "{shown}");
    let lineage = &shown["data"]["audience"]["lineage"];
    assert_eq!(lineage["source_push"], "exact");
    assert_eq!(lineage["outcome"], "not_read_or_interacted");
    let entry = &audit(&d, "audience.from_push")[0];
    assert!(
        entry["actor"].as_str().unwrap().ends_with("(admin)"),
        "{entry}"
    );
    let again = admin.get("/audiences/nudge/push?from=exact");
    assert_eq!(again.status, 200);
    assert!(
        again.body.contains("<b class=\"n\">2</b> member(s)"),
        "{}",
        again.body
    );

    // Bad input: the command's reason on the explorer, nothing made.
    for (fields, status, says) in [
        (
            vec![("name", "nudge"), ("outcome", "read_only")],
            400,
            "already exists",
        ),
        (
            vec![("name", "x"), ("outcome", "opened")],
            400,
            "is not one of",
        ),
        (
            vec![("name", "  "), ("outcome", "read_only")],
            400,
            "must not be empty",
        ),
        (
            vec![("name", "all"), ("outcome", "read_only")],
            409,
            "already an audience in the scripts",
        ),
    ] {
        let r = admin.post("/pushes/exact/audience", &fields, From::Panel);
        assert_eq!(r.status, status, "{fields:?}: {}", r.body);
        assert!(r.text().contains(says), "{fields:?}: {}", r.body);
    }
    assert_eq!(audiences(), 1);

    // Its page shows where it came from.
    let page = viewer.get("/audiences/nudge");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("href=\"/pushes/exact\""),
        "{}",
        page.body
    );
    assert!(page.text().contains("Not Read / Interacted"));
    assert!(page.body.contains("data-size>2<"), "{}", page.body);
}
