//! Report renderings: aligned table with terminal bars, CSV, and one
//! self-contained HTML page with an SVG pie of the five disjoint slices.
//! Tracked links (clicks, and a table per link) follow the indicators in
//! each, when the push has any.

use super::report::Report;
use crate::model::FailureGroup;
use crate::util::table;
use std::f64::consts::PI;
use std::fmt::Write;

/// Colours of the five slices, in `Report::slices` order (the panel's
/// legend uses them too, so a slice and its row always match).
pub const SLICE_COLOURS: [&str; 5] = ["#2e7d32", "#66bb6a", "#29b6f6", "#bdbdbd", "#e53935"];

fn rows(r: &Report) -> Vec<(&'static str, u64, f64)> {
    let p = &r.percent;
    vec![
        ("Sent Success", r.sent_success, p.sent_success),
        (
            "  Read & Interacted",
            r.read_and_interacted,
            p.read_and_interacted,
        ),
        ("  Read Only", r.read_only, p.read_only),
        ("  Interacted Only", r.interacted_only, p.interacted_only),
        (
            "  Not Read / Interacted",
            r.not_read_or_interacted,
            p.not_read_or_interacted,
        ),
        ("Sent Fail", r.sent_fail, p.sent_fail),
    ]
}

/// The terminal report: header facts, the indicator table, and bars.
pub fn text(r: &Report) -> String {
    let mut out = table::kv(&[
        ("push", format!("{} (#{})", r.push, r.push_id)),
        ("status", r.status.clone()),
        ("audience", r.audience.clone()),
        ("template", r.template.clone()),
        ("start at", r.start_at.clone()),
        (
            "started at",
            r.started_at.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "finish at",
            r.finished_at.clone().unwrap_or_else(|| "-".into()),
        ),
        ("recipients", r.recipients.to_string()),
        (
            "skipped",
            match r.capped {
                0 => r.skipped.to_string(),
                n => format!("{} ({n} capped by [policy])", r.skipped),
            },
        ),
        ("cancelled", r.cancelled.to_string()),
        ("as of", r.as_of.clone()),
    ]);
    if let Some(src) = &r.retry_of {
        out.push_str(&format!("retry of {src}\n"));
    }
    out.push_str(&format!("{}\n\n", r.note));
    let body: Vec<Vec<String>> = rows(r)
        .into_iter()
        .map(|(name, n, p)| {
            let bar = "█".repeat((p / 2.5).round() as usize);
            vec![name.to_string(), n.to_string(), format!("{p:.1}%"), bar]
        })
        .collect();
    out.push_str(&table::render(
        &["INDICATOR", ">COUNT", ">PERCENT", ""],
        &body,
    ));
    out.push_str(&links_text(r));
    out.push_str(&super::ab_render::text(r));
    out
}

/// The tracked links under the terminal report (nothing when none).
fn links_text(r: &Report) -> String {
    if r.links.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\nclicks: {} recipient(s) ({:.1}%), {} click(s) in all\n\n",
        r.clicks, r.percent.clicks, r.clicks_total
    );
    let body: Vec<Vec<String>> = r
        .links
        .iter()
        .map(|l| {
            vec![
                l.url.clone(),
                l.clicks.to_string(),
                l.clicks_total.to_string(),
                l.previews.to_string(),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &["TRACKED LINK", ">RECIPIENTS", ">CLICKS", ">PREVIEWS"],
        &body,
    ));
    out
}

pub fn csv(r: &Report) -> String {
    let mut out = String::from("indicator,count,percent\n");
    let p = &r.percent;
    for (k, n, v) in [
        ("recipients", r.recipients, 100.0),
        ("sent_success", r.sent_success, p.sent_success),
        ("sent_fail", r.sent_fail, p.sent_fail),
        (
            "read_and_interacted",
            r.read_and_interacted,
            p.read_and_interacted,
        ),
        ("read_only", r.read_only, p.read_only),
        ("interacted_only", r.interacted_only, p.interacted_only),
        (
            "not_read_or_interacted",
            r.not_read_or_interacted,
            p.not_read_or_interacted,
        ),
        ("skipped", r.skipped, p.skipped),
        ("cancelled", r.cancelled, p.cancelled),
    ] {
        let _ = writeln!(out, "{k},{n},{v:.2}");
    }
    if !r.links.is_empty() {
        let _ = writeln!(out, "clicks,{},{:.2}", r.clicks, p.clicks);
        let _ = writeln!(out, "clicks_total,{},", r.clicks_total);
        // One row per link and count, in the same three columns.
        let pct = |n: u64| {
            if r.recipients == 0 {
                0.0
            } else {
                n as f64 * 100.0 / r.recipients as f64
            }
        };
        for l in &r.links {
            let _ = writeln!(
                out,
                "{},{},{:.2}",
                csv_field(&format!("link {}", l.url)),
                l.clicks,
                pct(l.clicks)
            );
            let _ = writeln!(
                out,
                "{},{},",
                csv_field(&format!("link_total {}", l.url)),
                l.clicks_total
            );
        }
    }
    super::ab_render::csv(r, &mut out);
    out
}

/// A CSV field, quoted when it needs to be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The tracked-links section of the HTML report (and of the panel's push
/// page): clicks, and one row per link. Empty when the push tracks none.
pub fn links_html(r: &Report) -> String {
    if r.links.is_empty() {
        return String::new();
    }
    let mut rows = String::new();
    for l in &r.links {
        let _ = write!(
            rows,
            "<tr><td class=\"url\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&l.url),
            l.clicks,
            l.clicks_total,
            l.previews
        );
    }
    format!(
        "<h2>Tracked links</h2>\n<p class=\"muted\">{} recipient(s) clicked ({:.1}%), {} click(s) in all; previews are platforms fetching the link, not people.</p>\n<table class=\"links\"><tr><th>URL</th><th>Recipients</th><th>Clicks</th><th>Previews</th></tr>{rows}</table>\n",
        r.clicks, r.percent.clicks, r.clicks_total
    )
}

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An SVG pie: one `<path>` per non-empty slice, each carrying its start and
/// end angle (degrees clockwise from 12 o'clock) so it can be checked.
pub fn pie_svg(r: &Report) -> String {
    pie_svg_linked(r, |_| None)
}

/// [`pie_svg`] with each slice a link to `link(slice key)` where it gives
/// one (the panel's recipients of that outcome); the drawing is the same.
pub fn pie_svg_linked(r: &Report, link: impl Fn(&str) -> Option<String>) -> String {
    let total: u64 = r.slices().iter().map(|s| s.2).sum();
    let (cx, cy, rad) = (120.0, 120.0, 110.0);
    let mut svg = String::from(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 240 240\" width=\"240\" height=\"240\" role=\"img\" aria-label=\"push outcome\">",
    );
    if total == 0 {
        let _ = write!(
            svg,
            "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"{rad}\" fill=\"#eeeeee\"/>"
        );
        svg.push_str("</svg>");
        return svg;
    }
    let mut start = 0.0f64;
    for (i, (key, label, n)) in r.slices().into_iter().enumerate() {
        if n == 0 {
            continue;
        }
        let sweep = 360.0 * n as f64 / total as f64;
        let end = start + sweep;
        let point = |deg: f64| {
            let a = (deg - 90.0) * PI / 180.0;
            (cx + rad * a.cos(), cy + rad * a.sin())
        };
        let d = if n == total {
            // A full circle cannot be one arc.
            format!(
                "M {cx} {} A {rad} {rad} 0 1 1 {cx} {} A {rad} {rad} 0 1 1 {cx} {} Z",
                cy - rad,
                cy + rad,
                cy - rad
            )
        } else {
            let (x0, y0) = point(start);
            let (x1, y1) = point(end);
            let large = if sweep > 180.0 { 1 } else { 0 };
            format!("M {cx} {cy} L {x0:.3} {y0:.3} A {rad} {rad} 0 {large} 1 {x1:.3} {y1:.3} Z")
        };
        let href = link(key);
        if let Some(href) = &href {
            let _ = write!(svg, "<a href=\"{}\">", esc(href));
        }
        let _ = write!(
            svg,
            "<path class=\"slice\" data-slice=\"{key}\" data-start=\"{start:.4}\" data-end=\"{end:.4}\" d=\"{d}\" fill=\"{}\" stroke=\"#fff\" stroke-width=\"1\"><title>{} — {n} ({:.1}%)</title></path>",
            SLICE_COLOURS[i],
            esc(label),
            100.0 * n as f64 / total as f64
        );
        if href.is_some() {
            svg.push_str("</a>");
        }
        start = end;
    }
    svg.push_str("</svg>");
    svg
}

/// One HTML file, no external assets: pie, legend in %, indicator table,
/// start/finish times and the failure summary.
pub fn html(r: &Report, failures: &[FailureGroup]) -> String {
    let mut legend = String::new();
    let total: u64 = r.slices().iter().map(|s| s.2).sum();
    for (i, (_, label, n)) in r.slices().into_iter().enumerate() {
        let p = if total == 0 {
            0.0
        } else {
            100.0 * n as f64 / total as f64
        };
        let _ = write!(
            legend,
            "<li><span class=\"sw\" style=\"background:{}\"></span>{} <b>{p:.1}%</b> ({n})</li>",
            SLICE_COLOURS[i],
            esc(label)
        );
    }
    let mut table_rows = String::new();
    for (name, n, p) in rows(r) {
        let _ = write!(
            table_rows,
            "<tr><td>{}</td><td class=\"n\">{n}</td><td class=\"n\">{p:.1}%</td></tr>",
            esc(name.trim()).replace("  ", "")
        );
    }
    let mut fail_rows = String::new();
    for g in failures {
        let samples: Vec<String> = g
            .samples
            .iter()
            .map(|s| format!("{}:{}", s.channel, s.channel_user_id))
            .collect();
        let _ = write!(
            fail_rows,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&g.class),
            esc(&g.code),
            g.count,
            esc(&g.message),
            esc(&samples.join(", "))
        );
    }
    if fail_rows.is_empty() {
        fail_rows = "<tr><td colspan=\"5\">No failures.</td></tr>".into();
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>pushd report: {name}</title>
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#222;max-width:60rem}}
h1{{font-size:1.4rem}} .row{{display:flex;gap:2rem;align-items:center;flex-wrap:wrap}}
ul.legend{{list-style:none;padding:0}} ul.legend li{{margin:.3rem 0}}
.sw{{display:inline-block;width:.9rem;height:.9rem;margin-right:.5rem;vertical-align:middle;border-radius:2px}}
table{{border-collapse:collapse;margin:1rem 0}} td,th{{border-bottom:1px solid #ddd;padding:.3rem .8rem;text-align:left}}
td.n{{text-align:right;font-variant-numeric:tabular-nums}} tr.winner td{{background:#f1f8e9}} figure.vpie{{margin:0;text-align:center}} figure.vpie svg{{width:160px;height:160px}} .muted{{color:#666}} td.url{{word-break:break-all}}
</style></head><body>
<h1>Push report: {name}</h1>
<p class="muted">Status <b>{status}</b> · Start At {start} · Finish At {finish} · {recipients} recipients · as of {as_of}{retry}</p>
<p class="muted">{note}</p>
<div class="row"><div>{svg}</div><ul class="legend">{legend}</ul></div>
<h2>Key indicators</h2>
<table><tr><th>Indicator</th><th>Count</th><th>%</th></tr>{table_rows}
<tr><td>Skipped (not in the pie)</td><td class="n">{skipped}</td><td></td></tr>
<tr><td>Cancelled (not in the pie)</td><td class="n">{cancelled}</td><td></td></tr></table>
{links}{variants}<h2>Failures</h2>
<table><tr><th>Class</th><th>Code</th><th>Count</th><th>Platform message</th><th>Sample recipients</th></tr>{fail_rows}</table>
</body></html>
"#,
        name = esc(&r.push),
        status = esc(&r.status),
        start = esc(&r.start_at),
        finish = esc(r.finished_at.as_deref().unwrap_or("-")),
        recipients = r.recipients,
        as_of = esc(&r.as_of),
        retry = r
            .retry_of
            .as_deref()
            .map(|s| format!(" · retry of {}", esc(s)))
            .unwrap_or_default(),
        note = esc(&r.note),
        svg = pie_svg(r),
        skipped = r.skipped,
        cancelled = r.cancelled,
        links = links_html(r),
        variants = super::ab_render::html(r),
    )
}
