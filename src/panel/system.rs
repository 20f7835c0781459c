//! The pages about the daemon itself, each one command away: Scripts (the
//! live generation and the last reload attempt with its errors at
//! file:line, from `status`; it redraws itself when a save is loaded),
//! Channels (`channel.list`: kind, rates, last error, webhook URL) and the
//! Audit trail (`audit.list`, filtered by action and actor, paged by id).

use super::Panel;
use super::backend::{BackendError, StatusData};
use super::page::{self, Chrome};
use super::pages::chrome;
use super::session::SignedIn;
use super::view::{Time, thousands};
use crate::model::fmt_ms;
use crate::protocol::{AuditEntry, AuditListArgs, ChannelSummary};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use super::page::Result;

fn fail(e: BackendError) -> page::Answer {
    page::failure(&e).into()
}

fn in_section(section: &'static str, c: Chrome) -> Chrome {
    Chrome { section, ..c }
}

// ---- Scripts ---------------------------------------------------------------

/// A script problem: `scripts/10.lua:3: message` → where, and what.
pub struct Problem {
    pub at: Option<String>,
    pub message: String,
}

/// Splits the `file:line: ` a script error starts with, when it has one.
pub fn problem(text: &str) -> Problem {
    let located = text.split_once(": ").filter(|(at, _)| {
        at.rsplit_once(':').is_some_and(|(file, line)| {
            !file.is_empty()
                && !file.contains(char::is_whitespace)
                && !line.is_empty()
                && line.bytes().all(|b| b.is_ascii_digit())
        })
    });
    match located {
        Some((at, message)) => Problem {
            at: Some(at.to_string()),
            message: message.to_string(),
        },
        None => Problem {
            at: None,
            message: text.to_string(),
        },
    }
}

pub struct GenerationView {
    pub number: i64,
    pub hash: String,
    pub hash_short: String,
    pub loaded_at: Option<Time>,
    pub files: Vec<String>,
    pub audiences: String,
    pub templates: String,
    pub pushes: String,
}

pub struct AttemptView {
    pub at: Option<Time>,
    pub attempt: Option<i64>,
    pub ok: bool,
    pub problems: Vec<Problem>,
}

#[derive(Template)]
#[template(path = "panel/scripts.html")]
pub struct ScriptsPage {
    pub chrome: Chrome,
    pub live: Option<GenerationView>,
    pub last: Option<AttemptView>,
    /// The last attempt failed while an older generation serves.
    pub kept: bool,
}

/// What the Scripts page shows, in short: a reload changes it, and a page
/// whose fingerprint differs from the live one draws itself again.
pub fn fingerprint(s: &StatusData) -> String {
    let live = s.scripts.as_ref().map_or(0, |g| g.generation);
    match &s.last_script_reload {
        Some(r) => format!("g{live}:{}:{}:{}", r.at, r.attempt.unwrap_or(0), r.ok),
        None => format!("g{live}"),
    }
}

pub async fn scripts(State(panel): State<Arc<Panel>>, who: SignedIn) -> Result {
    let s = panel.backend.status().await.map_err(fail)?;
    let live = s.scripts.as_ref().map(|g| GenerationView {
        number: g.generation,
        hash_short: g.hash.chars().take(12).collect(),
        hash: g.hash.clone(),
        loaded_at: Time::parse(&g.loaded_at),
        files: g.files.clone(),
        audiences: thousands(g.audiences.len() as u64),
        templates: thousands(g.templates.len() as u64),
        pushes: thousands(g.pushes.len() as u64),
    });
    let last = s.last_script_reload.as_ref().map(|r| AttemptView {
        at: Time::parse(&r.at),
        attempt: r.attempt,
        ok: r.ok,
        problems: r.errors.iter().map(|e| problem(e)).collect(),
    });
    let kept = live.is_some() && last.as_ref().is_some_and(|l| !l.ok);
    let mut chrome = in_section(
        "scripts",
        chrome("Scripts", &who, Some("/scripts/live".into())),
    );
    chrome.fingerprint = Some(fingerprint(&s));
    let page = ScriptsPage {
        chrome,
        live,
        last,
        kept,
    };
    Ok(page::html(StatusCode::OK, &page))
}

// ---- Channels --------------------------------------------------------------

/// A rate as people say it: per second when at least one, else per minute.
fn rate(per_second: f64) -> String {
    if per_second >= 1.0 {
        if per_second.fract() == 0.0 {
            format!("{per_second:.0}/s")
        } else {
            format!("{per_second:.1}/s")
        }
    } else {
        format!("{:.0}/min", per_second * 60.0)
    }
}

pub struct ChannelView {
    pub name: String,
    pub kind: String,
    pub rate: String,
    pub rate_source: &'static str,
    pub current: String,
    pub error: Option<(Option<Time>, String, String, String)>,
    pub webhook: Option<String>,
}

impl ChannelView {
    fn new(c: &ChannelSummary) -> ChannelView {
        let (rate_text, rate_source) =
            match (c.configured_rate_per_second, c.default_rate_per_second) {
                (Some(r), _) => (rate(r), "configured"),
                (None, Some(r)) => (rate(r), "the platform's default"),
                (None, None) => ("—".into(), "no limit of its own"),
            };
        ChannelView {
            name: c.name.clone(),
            kind: c.kind.clone(),
            rate: rate_text,
            rate_source,
            current: format!("{}/min", thousands(c.current_per_minute.round() as u64)),
            error: c.last_error.as_ref().map(|e| {
                (
                    Time::parse(&e.at),
                    e.class.clone(),
                    e.code.clone(),
                    e.message.clone(),
                )
            }),
            webhook: c.webhook_url.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "panel/channels.html")]
pub struct ChannelsPage {
    pub chrome: Chrome,
    pub channels: Vec<ChannelView>,
}

pub async fn channels(State(panel): State<Arc<Panel>>, who: SignedIn) -> Result {
    let data = panel.backend.channels().await.map_err(fail)?;
    let page = ChannelsPage {
        chrome: in_section("channels", chrome("Channels", &who, None)),
        channels: data.channels.iter().map(ChannelView::new).collect(),
    };
    Ok(page::html(StatusCode::OK, &page))
}

// ---- Audit -----------------------------------------------------------------

/// The audit page's filter and page, as its URL carries them.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AuditQuery {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
}

impl AuditQuery {
    fn href(&self) -> String {
        match serde_urlencoded::to_string(self) {
            Ok(q) if !q.is_empty() => format!("/audit?{q}"),
            _ => "/audit".into(),
        }
    }
}

/// Rows per page of the audit trail.
const AUDIT_PAGE: u32 = 50;

pub struct AuditRow {
    pub id: i64,
    pub at: Option<Time>,
    pub who: String,
    pub action: String,
    pub target: String,
    pub ok: bool,
    pub detail: String,
}

impl AuditRow {
    fn new(e: &AuditEntry) -> AuditRow {
        AuditRow {
            id: e.id,
            at: Time::parse(&fmt_ms(e.at)),
            // As `pushd audit` names them.
            who: match (&e.actor, e.uid) {
                (Some(actor), _) => actor.clone(),
                (None, Some(uid)) => format!("uid {uid}"),
                (None, None) => "daemon".into(),
            },
            action: e.action.clone(),
            target: e.target.clone().unwrap_or_default(),
            ok: e.ok,
            detail: e.detail.clone().unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "panel/audit.html")]
pub struct AuditPage {
    pub chrome: Chrome,
    pub q: AuditQuery,
    pub rows: Vec<AuditRow>,
    pub next_href: Option<String>,
    pub first_href: Option<String>,
    pub filtered: bool,
}

pub async fn audit(
    State(panel): State<Arc<Panel>>,
    Query(q): Query<AuditQuery>,
    who: SignedIn,
) -> Result {
    let args = AuditListArgs {
        limit: Some(AUDIT_PAGE),
        action: Some(q.action.trim().to_string()).filter(|a| !a.is_empty()),
        actor: Some(q.actor.trim().to_string()).filter(|a| !a.is_empty()),
        before: q.before,
    };
    let data = panel.backend.audit(args).await.map_err(fail)?;
    let first = AuditQuery {
        before: None,
        ..q.clone()
    };
    let page = AuditPage {
        chrome: in_section("audit", chrome("Audit trail", &who, None)),
        rows: data.entries.iter().map(AuditRow::new).collect(),
        next_href: data.next.map(|before| {
            AuditQuery {
                before: Some(before),
                ..first.clone()
            }
            .href()
        }),
        first_href: q.before.is_some().then(|| first.href()),
        filtered: !q.action.trim().is_empty() || !q.actor.trim().is_empty(),
        q,
    };
    Ok(page::html(StatusCode::OK, &page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_problems_split_at_their_location() {
        let p = problem("scripts/10_vip.lua:12: unexpected symbol near 'x'");
        assert_eq!(p.at.as_deref(), Some("scripts/10_vip.lua:12"));
        assert_eq!(p.message, "unexpected symbol near 'x'");
        let p = problem("cannot read the scripts folder /x: denied");
        assert_eq!(p.at, None);
        assert_eq!(p.message, "cannot read the scripts folder /x: denied");
        assert_eq!(rate(80.0), "80/s");
        assert_eq!(rate(2.5), "2.5/s");
        assert_eq!(rate(100.0 / 60.0), "1.7/s");
        assert_eq!(rate(0.5), "30/min");
    }
}
