//! The A/B section of each report rendering: a per-variant table (the
//! indicators, the metric's rate, the difference to the best and its
//! p-value) in the terminal, CSV and HTML, and one pie per variant in HTML.

use super::ab::VariantReport;
use super::render::{esc, pie_svg};
use super::report::Report;
use crate::util::table;
use std::fmt::Write;

/// A variant's counts as a report of their own, for its pie.
pub fn as_report(v: &VariantReport) -> Report {
    Report {
        push: v.variant.clone(),
        recipients: v.recipients,
        sent_success: v.sent_success,
        sent_fail: v.sent_fail,
        read_and_interacted: v.read_and_interacted,
        read_only: v.read_only,
        interacted_only: v.interacted_only,
        not_read_or_interacted: v.not_read_or_interacted,
        remaining: v.remaining,
        percent: v.percent.clone(),
        ..Report::default()
    }
}

/// "0.0123", "<0.0001", or "-" (the best, or too little data).
pub fn p_text(v: &VariantReport) -> String {
    match v.p_value {
        None => "-".into(),
        Some(p) if p < 0.0001 => "<0.0001".into(),
        Some(p) => format!("{p:.4}"),
    }
}

/// "+1.50 pp" / "best".
pub fn diff_text(v: &VariantReport) -> String {
    if v.best {
        "best".into()
    } else {
        format!("{:+.2} pp", v.diff_to_best)
    }
}

/// "winner b (auto)", "winner due at …", for the report's headline.
pub fn headline(r: &Report) -> String {
    let Some(ab) = &r.ab else {
        return String::new();
    };
    let decision = match (&r.winner, ab.phase.as_str()) {
        (Some(w), _) => format!(
            "winner {w} (chosen by {})",
            ab.decided_by.as_deref().unwrap_or("-")
        ),
        (None, "test") => "testing: the test share is being sent".into(),
        (None, "waiting") => "waiting for the winner".into(),
        _ => "no test: every variant went to its share of the audience".into(),
    };
    format!("{decision}; {}", details(r))
}

/// How the variants are compared: the metric, the test share and the
/// control group.
pub fn details(r: &Report) -> String {
    let Some(ab) = &r.ab else {
        return String::new();
    };
    let mut s = String::new();
    let _ = write!(
        s,
        "rate = {} of those sent in the test phase (TESTED)",
        ab.metric
    );
    if let Some(share) = ab.test_share {
        let _ = write!(s, "; test share {:.0}%", share * 100.0);
    }
    if ab.holdout > 0.0 {
        let _ = write!(
            s,
            "; control group {} (holdout {:.0}%, sent nothing)",
            ab.control_group,
            ab.holdout * 100.0
        );
    }
    s
}

/// A holdout without variants: just the control group.
fn control_only(r: &Report) -> Option<String> {
    let ab = r.ab.as_ref().filter(|_| r.variants.is_empty())?;
    Some(format!(
        "control group: {} (holdout {:.0}%, sent nothing)",
        ab.control_group,
        ab.holdout * 100.0
    ))
}

/// The terminal table (nothing for a push without variants).
pub fn text(r: &Report) -> String {
    if let Some(c) = control_only(r) {
        return format!("\n{c}\n");
    }
    if r.variants.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = r
        .variants
        .iter()
        .map(|v| {
            let mark = if r.winner.as_deref() == Some(&v.variant) {
                " (winner)"
            } else {
                ""
            };
            vec![
                format!("{}{mark}", v.variant),
                v.recipients.to_string(),
                v.sent_success.to_string(),
                v.sent_fail.to_string(),
                v.read_and_interacted.to_string(),
                v.read_only.to_string(),
                v.interacted_only.to_string(),
                v.not_read_or_interacted.to_string(),
                v.clicks.to_string(),
                v.tested.to_string(),
                format!("{:.2}%", v.rate),
                diff_text(v),
                p_text(v),
            ]
        })
        .collect();
    format!(
        "\nvariants: {}\n\n{}",
        headline(r),
        table::render(
            &[
                "VARIANT",
                ">RECIPIENTS",
                ">SENT",
                ">FAIL",
                ">READ&INT",
                ">READ ONLY",
                ">INT ONLY",
                ">NOT READ",
                ">CLICKS",
                ">TESTED",
                ">RATE",
                ">VS BEST",
                ">P-VALUE",
            ],
            &rows,
        )
    )
}

/// CSV rows `variant <name> <key>,count,percent` (and the control group).
pub fn csv(r: &Report, out: &mut String) {
    for v in &r.variants {
        let p = &v.percent;
        for (k, n, pc) in [
            ("recipients", v.recipients, 100.0),
            ("sent_success", v.sent_success, p.sent_success),
            ("sent_fail", v.sent_fail, p.sent_fail),
            (
                "read_and_interacted",
                v.read_and_interacted,
                p.read_and_interacted,
            ),
            ("read_only", v.read_only, p.read_only),
            ("interacted_only", v.interacted_only, p.interacted_only),
            (
                "not_read_or_interacted",
                v.not_read_or_interacted,
                p.not_read_or_interacted,
            ),
            ("clicks", v.clicks, p.clicks),
        ] {
            let _ = writeln!(out, "variant {} {k},{n},{pc:.2}", v.variant);
        }
        let _ = writeln!(out, "variant {} tested,{},", v.variant, v.tested);
        let _ = writeln!(out, "variant {} rate,,{:.2}", v.variant, v.rate);
        let _ = writeln!(
            out,
            "variant {} diff_to_best,,{:.2}",
            v.variant, v.diff_to_best
        );
        if let Some(pv) = v.p_value {
            let _ = writeln!(out, "variant {} p_value,,{pv:.4}", v.variant);
        }
    }
    if let Some(ab) = &r.ab
        && ab.holdout > 0.0
    {
        let _ = writeln!(out, "control_group,{},", ab.control_group);
    }
    if let Some(w) = &r.winner {
        let _ = writeln!(out, "winner {w},,");
    }
}

/// The HTML section: headline, per-variant table, one pie per variant.
pub fn html(r: &Report) -> String {
    if let Some(c) = control_only(r) {
        return format!("<p class=\"muted\">{}</p>\n", esc(&c));
    }
    if r.variants.is_empty() {
        return String::new();
    }
    let mut rows = String::new();
    let mut pies = String::new();
    for v in &r.variants {
        let winner = r.winner.as_deref() == Some(&v.variant);
        let _ = write!(
            rows,
            "<tr data-variant=\"{name}\"{cls}><td>{name}{mark}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n rate\">{:.2}%</td><td class=\"n\">{}</td><td class=\"n p\">{}</td></tr>",
            v.recipients,
            v.sent_success,
            v.sent_fail,
            v.read_and_interacted,
            v.read_only,
            v.interacted_only,
            v.not_read_or_interacted,
            v.clicks,
            v.tested,
            v.rate,
            esc(&diff_text(v)),
            esc(&p_text(v)),
            name = esc(&v.variant),
            cls = if winner { " class=\"winner\"" } else { "" },
            mark = if winner { " <b>(winner)</b>" } else { "" },
        );
        let _ = write!(
            pies,
            "<figure class=\"vpie\" data-variant=\"{name}\">{}<figcaption>{name}: {:.2}% {metric}</figcaption></figure>",
            pie_svg(&as_report(v)),
            v.rate,
            name = esc(&v.variant),
            metric = esc(r.ab.as_ref().map_or("read", |a| a.metric.as_str())),
        );
    }
    format!(
        "<h2>Variants</h2>\n<p class=\"muted\">{}. p-value: chi-squared test of each variant's rate against the best (below 0.05: the difference is unlikely to be chance).</p>\n<table class=\"variants\"><tr><th>Variant</th><th>Recipients</th><th>Sent</th><th>Fail</th><th>Read &amp; Int.</th><th>Read only</th><th>Int. only</th><th>Not read</th><th>Clicks</th><th>Tested</th><th>Rate</th><th>vs best</th><th>p-value</th></tr>{rows}</table>\n<div class=\"row vpies\">{pies}</div>\n",
        esc(&headline(r))
    )
}
