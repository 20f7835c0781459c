//! What a page shows, formatted once: numbers with thousands separators,
//! percentages, rates, times (UTC on the server; the browser shows them in
//! its own timezone), progress, and the indicator rows of the push result.
//! The live updates send the very same strings, so a page reads the same
//! with or without JavaScript.

use super::backend::{PreviewSample, PushShowData, PushSummary};
use super::explorer::explorer_href;
use crate::analytics::ab_render;
use crate::analytics::render::{SLICE_COLOURS, pie_svg_linked};
use crate::model::{Outbound, Routed};
use serde_json::{Value, json};

/// `1234567` → `"1,234,567"`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn percent(p: f64) -> String {
    format!("{p:.1}%")
}

/// A time as the page shows it: machine-readable for `<time datetime>`,
/// UTC text (replaced by local time in the browser), UTC on hover.
#[derive(Debug, Clone, PartialEq)]
pub struct Time {
    pub iso: String,
    pub utc: String,
}

impl Time {
    /// From the protocol's RFC 3339 text.
    pub fn parse(rfc3339: &str) -> Option<Time> {
        let t = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
        let t = t.with_timezone(&chrono::Utc);
        Some(Time {
            iso: t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            utc: t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        })
    }
}

/// A push as one row of the pushes page (and the head of its own page).
#[derive(Debug, Clone)]
pub struct PushRow {
    pub id: i64,
    pub name: String,
    pub href: String,
    pub status: String,
    pub reason: String,
    pub progress_value: u64,
    pub progress_max: u64,
    pub progress: String,
    pub sent: String,
    pub failed: String,
    pub remaining: String,
    pub recipients: String,
    pub rate: String,
    pub eta: String,
    pub start_at: Option<Time>,
    pub finish_at: Option<Time>,
    /// Recipients held by quiet hours or the send window, and until when
    /// ("—" when none).
    pub held: String,
    /// The A/B phase ("" without variants): a new one redraws the page.
    pub phase: String,
}

/// Path segment of a push: its name, percent-encoded.
pub fn push_href(name: &str) -> String {
    format!("/pushes/{}", encode_segment(name))
}

pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl PushRow {
    pub fn from_summary(p: &PushSummary) -> PushRow {
        let done = p.sent + p.failed;
        let max = p.recipients.max(1);
        let pct = if p.recipients == 0 {
            0.0
        } else {
            100.0 * done as f64 / p.recipients as f64
        };
        let running = p.status == "running";
        PushRow {
            id: p.id,
            name: p.name.clone(),
            href: push_href(&p.name),
            status: p.status.clone(),
            reason: p.status_reason.clone().unwrap_or_default(),
            phase: p.ab.as_ref().map(|a| a.phase.clone()).unwrap_or_default(),
            progress_value: done.min(max),
            progress_max: max,
            progress: format!("{pct:.0}%"),
            sent: thousands(p.sent),
            failed: thousands(p.failed),
            remaining: thousands(p.remaining),
            recipients: thousands(p.recipients),
            rate: if running {
                format!("{}/min", thousands(p.current_rate.round() as u64))
            } else {
                "—".into()
            },
            eta: match (&p.eta, p.status.as_str()) {
                // The protocol's ETA ends in "(at <UTC time>)"; the page
                // shows the duration (its time would need a timezone).
                (Some(eta), "running" | "scheduled") => {
                    eta.split(" (at ").next().unwrap_or(eta).to_string()
                }
                _ => "—".into(),
            },
            start_at: Time::parse(&p.start_at),
            finish_at: p.finished_at.as_deref().and_then(Time::parse),
            held: match (p.held, &p.resumes_at, &p.held_until) {
                (0, _, _) => "—".into(),
                (n, Some(at), _) => format!("{}, sending resumes {at}", thousands(n)),
                (n, None, Some(until)) => format!("{} until {until}", thousands(n)),
                (n, None, None) => thousands(n),
            },
        }
    }

    /// What the live stream updates in place (same strings as the page).
    pub fn live(&self) -> Value {
        json!({
            "id": self.id,
            "status": self.status,
            "phase": self.phase,
            "progress": [self.progress_value, self.progress_max],
            "fields": {
                "progress": self.progress,
                "sent": self.sent,
                "failed": self.failed,
                "remaining": self.remaining,
                "held": self.held,
                "recipients": self.recipients,
                "rate": self.rate,
                "eta": self.eta,
            },
        })
    }
}

/// One line of the key-indicator table.
#[derive(Debug, Clone)]
pub struct Indicator {
    pub key: &'static str,
    pub label: &'static str,
    pub count: String,
    pub percent: String,
    /// Its pie colour (the four engagement slices and Sent Fail).
    pub colour: Option<&'static str>,
    /// Shown indented under Sent Success.
    pub part: bool,
    /// Its recipients in the explorer (the five slices).
    pub href: Option<String>,
}

/// The push page: progress, the six key indicators and the pie.
#[derive(Debug, Clone)]
pub struct PushView {
    pub row: PushRow,
    pub audience: String,
    pub template: String,
    pub retry_of: Option<String>,
    pub is_final: bool,
    pub indicators: Vec<Indicator>,
    pub sent_fail: u64,
    pub skipped: String,
    pub cancelled: String,
    pub pie: String,
    /// The recipients explorer of this push.
    pub explorer: String,
    pub as_of: Option<Time>,
    pub note: String,
    /// Tracked links (none: the template tracks no link).
    pub links: Vec<LinkRow>,
    /// Recipients who clicked a tracked link, their share, every click, and
    /// where they are listed.
    pub clicks: String,
    pub clicks_percent: String,
    pub clicks_total: String,
    pub clicked_href: String,
    /// A/B variants (None: the push has none).
    pub ab: Option<AbView>,
}

/// One A/B variant as the push page shows it: its indicators, its rate in
/// the test phase against the best, its pie and its recipients.
#[derive(Debug, Clone)]
pub struct VariantRow {
    pub name: String,
    pub recipients: String,
    pub sent: String,
    pub failed: String,
    pub read_and_interacted: String,
    pub read_only: String,
    pub interacted_only: String,
    pub not_read: String,
    pub tested: String,
    pub rate: String,
    pub vs_best: String,
    pub p_value: String,
    pub winner: bool,
    pub pie: String,
    /// Its recipients in the explorer.
    pub href: String,
}

/// The A/B part of the push page (None: the push has no variants).
#[derive(Debug, Clone)]
pub struct AbView {
    /// "rate = read of …; test share 20%; control group …".
    pub details: String,
    /// Where the test stands, in words.
    pub phase: String,
    pub variants: Vec<VariantRow>,
    /// An admin may pick the winner now (a test still undecided).
    pub can_pick: bool,
    /// The control group's recipients in the explorer (None: no holdout).
    pub control_href: Option<String>,
    pub control: String,
}

impl AbView {
    fn new(d: &PushShowData, is_final: bool) -> Option<AbView> {
        let r = &d.report;
        let ab = d.push.ab.as_ref()?;
        let name = &d.push.name;
        let variant_href = |v: &str| {
            let f = super::explorer::Filter {
                variant: v.to_string(),
                ..Default::default()
            };
            f.href(&format!("{}/recipients", push_href(name)))
        };
        let variants = r
            .variants
            .iter()
            .map(|v| VariantRow {
                name: v.variant.clone(),
                recipients: thousands(v.recipients),
                sent: thousands(v.sent_success),
                failed: thousands(v.sent_fail),
                read_and_interacted: thousands(v.read_and_interacted),
                read_only: thousands(v.read_only),
                interacted_only: thousands(v.interacted_only),
                not_read: thousands(v.not_read_or_interacted),
                tested: thousands(v.tested),
                rate: percent(v.rate),
                vs_best: ab_render::diff_text(v),
                p_value: ab_render::p_text(v),
                winner: r.winner.as_deref() == Some(v.variant.as_str()),
                pie: pie_svg_linked(&ab_render::as_report(v), |_| None),
                href: variant_href(&v.variant),
            })
            .collect();
        let control = r.ab.as_ref().map_or(0, |a| a.control_group);
        let holdout = r.ab.as_ref().is_some_and(|a| a.holdout > 0.0);
        Some(AbView {
            details: ab_render::details(r),
            phase: if ab.variants.is_empty() {
                format!(
                    "A control group of {} is held out and sent nothing.",
                    thousands(control)
                )
            } else {
                phase_words(ab, is_final, d.push.remaining)
            },
            variants,
            can_pick: ab.winner_mode.is_some() && ab.winner.is_none() && !is_final,
            control_href: holdout.then(|| variant_href(crate::variants::HOLDOUT)),
            control: thousands(control),
        })
    }
}

/// Where an A/B test stands, as the push page says it.
fn phase_words(ab: &crate::protocol::AbSummary, is_final: bool, remaining: u64) -> String {
    let by = ab.decided_by.as_deref().unwrap_or("-");
    match (ab.phase.as_str(), &ab.winner) {
        (_, Some(w)) if is_final => format!("Winner: {w} (chosen by {by})."),
        (_, Some(w)) => format!("Winner: {w} (chosen by {by}); sending it to the rest."),
        ("test", _) => "Testing: sending the test share; the rest waits for the winner.".into(),
        ("waiting", _) => match &ab.decide_at {
            Some(t) => format!(
                "The test share is sent; the winner is chosen at {t} and goes to the {} waiting.",
                thousands(remaining)
            ),
            None => format!(
                "The test share is sent; {} members wait for you to pick the winner.",
                thousands(remaining)
            ),
        },
        _ => "No test: every variant goes to its share of the audience.".into(),
    }
}

/// One tracked link of a push, as the push page lists it.
#[derive(Debug, Clone)]
pub struct LinkRow {
    pub url: String,
    pub clicks: String,
    pub clicks_total: String,
    pub previews: String,
}

impl PushView {
    pub fn new(d: &PushShowData) -> PushView {
        let r = &d.report;
        let p = &r.percent;
        let slice = |i: usize| Some(SLICE_COLOURS[i]);
        let name = &d.push.name;
        let ind = |key, label, n: u64, pc: f64, colour: Option<&'static str>, part| Indicator {
            key,
            label,
            count: thousands(n),
            percent: percent(pc),
            colour,
            part,
            href: colour.map(|_| explorer_href(name, Some(key))),
        };
        PushView {
            row: PushRow::from_summary(&d.push),
            audience: r.audience.clone(),
            template: r.template.clone(),
            retry_of: r.retry_of.clone(),
            is_final: r.is_final,
            indicators: vec![
                ind(
                    "sent_success",
                    "Sent Success",
                    r.sent_success,
                    p.sent_success,
                    None,
                    false,
                ),
                ind(
                    "read_and_interacted",
                    "Read & Interacted",
                    r.read_and_interacted,
                    p.read_and_interacted,
                    slice(0),
                    true,
                ),
                ind(
                    "read_only",
                    "Read Only",
                    r.read_only,
                    p.read_only,
                    slice(1),
                    true,
                ),
                ind(
                    "interacted_only",
                    "Interacted Only",
                    r.interacted_only,
                    p.interacted_only,
                    slice(2),
                    true,
                ),
                ind(
                    "not_read_or_interacted",
                    "Not Read / Interacted",
                    r.not_read_or_interacted,
                    p.not_read_or_interacted,
                    slice(3),
                    true,
                ),
                ind(
                    "sent_fail",
                    "Sent Fail",
                    r.sent_fail,
                    p.sent_fail,
                    slice(4),
                    false,
                ),
            ],
            sent_fail: r.sent_fail,
            skipped: thousands(r.skipped),
            cancelled: thousands(r.cancelled),
            pie: pie_svg_linked(r, |key| Some(explorer_href(name, Some(key)))),
            explorer: explorer_href(name, None),
            as_of: Time::parse(&r.as_of),
            note: r.note.clone(),
            links: r
                .links
                .iter()
                .map(|l| LinkRow {
                    url: l.url.clone(),
                    clicks: thousands(l.clicks),
                    clicks_total: thousands(l.clicks_total),
                    previews: thousands(l.previews),
                })
                .collect(),
            clicks: thousands(r.clicks),
            clicks_percent: percent(p.clicks),
            clicks_total: thousands(r.clicks_total),
            clicked_href: explorer_href(name, Some("clicked")),
            ab: AbView::new(d, r.is_final),
        }
    }

    pub fn live(&self) -> Value {
        let mut v = self.row.live();
        let fields = &mut v["fields"];
        for i in &self.indicators {
            fields[format!("{}_n", i.key)] = json!(i.count);
            fields[format!("{}_p", i.key)] = json!(i.percent);
        }
        fields["skipped"] = json!(self.skipped);
        fields["cancelled"] = json!(self.cancelled);
        v["svg"] = json!(self.pie);
        v
    }

    pub fn can_pause(&self) -> bool {
        matches!(self.row.status.as_str(), "scheduled" | "running")
    }

    pub fn can_resume(&self) -> bool {
        self.row.status == "paused"
    }

    pub fn can_cancel(&self) -> bool {
        !self.is_final
    }
}

/// A previewed recipient and what they would get, as text.
/// One rendered sample message on the Push again page.
pub struct SampleView {
    pub who: String,
    pub text: String,
    pub buttons: Vec<String>,
}

pub fn sample(s: &PreviewSample) -> SampleView {
    let who = format!("{} ({}:{})", s.name, s.channel, s.channel_user_id);
    let (text, buttons) = match (&s.routed, &s.error) {
        (Some(Routed::Send { outbound, .. }), _) => match outbound {
            Outbound::Message { message, .. } => (
                message.text.clone(),
                message
                    .buttons
                    .iter()
                    .chain(&message.quick_replies)
                    .map(|b| b.title.clone())
                    .collect(),
            ),
            Outbound::Template {
                name,
                language,
                params,
            } => (
                format!(
                    "platform template {name} ({language}) with {}",
                    params.join(", ")
                ),
                Vec::new(),
            ),
        },
        (Some(Routed::Skip { reason }), _) => (format!("skipped: {reason}"), Vec::new()),
        (None, Some(e)) => (format!("cannot render: {e}"), Vec::new()),
        (None, None) => (String::new(), Vec::new()),
    };
    SampleView { who, text, buttons }
}

/// The delivery policy in force, as the Pushes page states it.
pub fn policy_words(p: &crate::protocol::PolicyStatus) -> String {
    let caps = match (p.max_per_day, p.max_per_week) {
        (None, None) => "no frequency cap".to_string(),
        (Some(d), None) => format!("at most {d} a day per member"),
        (None, Some(w)) => format!("at most {w} a week per member"),
        (Some(d), Some(w)) => format!("at most {d} a day and {w} a week per member"),
    };
    let quiet = match &p.quiet_hours {
        Some(q) => format!("quiet hours {q} in each member's timezone"),
        None => "no quiet hours".to_string(),
    };
    format!("{caps}, all pushes together; {quiet}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_as_shown() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(percent(12.345), "12.3%");
        assert_eq!(push_href("a b/<c>"), "/pushes/a%20b%2F%3Cc%3E");
        let t = Time::parse("2026-12-04T15:55:10+08:00").unwrap();
        assert_eq!(t.iso, "2026-12-04T07:55:10Z");
        assert_eq!(t.utc, "2026-12-04 07:55:10 UTC");
        assert_eq!(Time::parse("soon"), None);
    }
}
