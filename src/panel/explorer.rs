//! The recipients explorer on a push: who exactly read, did not read,
//! failed, … (`push.recipients`, the CLI's `pushd recipients`), filtered by
//! outcome, channel, locale and error, a page at a time by the command's
//! cursor; each recipient's timeline opens in place; the current filter
//! downloads as the CLI's CSV; and an admin saves it as an audience
//! (`audience.from_push`) to push again to. Links and forms only: it works
//! without JavaScript.

use super::Panel;
use super::actions;
use super::backend::{BackendError, RecipientsData};
use super::page::{self, Chrome};
use super::pages::{again_href, chrome};
use super::session::SignedIn;
use super::view::{Time, encode_segment, push_href, thousands};
use crate::analytics::render::SLICE_COLOURS;
use crate::protocol::{AudienceFromPushArgs, PushRecipientsArgs, RecipientInfo};
use askama::Template;
use axum::Form;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use super::page::Result;

/// The outcomes a recipient can have, as the report names them, with their
/// pie colour (the five slices) — the explorer's tabs, in the report's order.
pub const OUTCOMES: [(&str, &str, Option<usize>); 8] = [
    ("read_and_interacted", "Read & Interacted", Some(0)),
    ("read_only", "Read Only", Some(1)),
    ("interacted_only", "Interacted Only", Some(2)),
    ("not_read_or_interacted", "Not Read / Interacted", Some(3)),
    ("sent_fail", "Sent Fail", Some(4)),
    ("skipped", "Skipped", None),
    ("cancelled", "Cancelled", None),
    ("clicked", "Clicked a link", None),
];

/// An outcome's label ("Read Only"); the key itself if it is not one.
pub fn outcome_label(key: &str) -> &str {
    OUTCOMES
        .iter()
        .find(|(k, _, _)| *k == key)
        .map_or(key, |(_, label, _)| label)
}

/// The filter as the explorer's links and forms carry it (empty = none).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub outcome: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub channel: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub locale: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error_class: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error_code: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
    /// The command's `next` cursor of the previous page.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub after: String,
}

fn given(v: &str) -> Option<String> {
    Some(v.trim().to_string()).filter(|v| !v.is_empty() && v != "all")
}

impl Filter {
    pub fn args(&self, push: &str) -> PushRecipientsArgs {
        PushRecipientsArgs {
            push: push.to_string(),
            outcome: given(&self.outcome),
            channel: given(&self.channel),
            locale: given(&self.locale),
            error_class: given(&self.error_class),
            error_code: given(&self.error_code),
            variant: given(&self.variant),
            limit: None,
            after: given(&self.after),
        }
    }

    /// The same filter from its first page.
    fn first(&self) -> Filter {
        Filter {
            after: String::new(),
            ..self.clone()
        }
    }

    /// `path`, with the filter as its query.
    pub fn href(&self, path: &str) -> String {
        match serde_urlencoded::to_string(self) {
            Ok(q) if !q.is_empty() => format!("{path}?{q}"),
            _ => path.to_string(),
        }
    }

    /// The fields a form repeats to carry the filter (not the page).
    fn hidden(&self) -> Vec<(&'static str, String)> {
        [
            ("outcome", &self.outcome),
            ("channel", &self.channel),
            ("locale", &self.locale),
            ("error_class", &self.error_class),
            ("error_code", &self.error_code),
            ("variant", &self.variant),
        ]
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k, v.trim().to_string()))
        .collect()
    }
}

/// The explorer of `push`, listing one outcome (or all).
pub fn explorer_href(push: &str, outcome: Option<&str>) -> String {
    let f = Filter {
        outcome: outcome.unwrap_or_default().to_string(),
        ..Filter::default()
    };
    f.href(&format!("{}/recipients", push_href(push)))
}

/// One step of a recipient's timeline.
pub struct Step {
    pub kind: &'static str,
    pub label: &'static str,
    pub time: Option<Time>,
    pub detail: String,
}

/// A recipient as a row of the explorer, with its timeline.
pub struct RecipientView {
    pub delivery_id: i64,
    pub member_id: i64,
    pub name: String,
    pub who: String,
    pub locale: String,
    pub outcome_key: String,
    pub outcome: String,
    pub state: String,
    pub attempts: u32,
    pub latest: String,
    pub latest_time: Option<Time>,
    pub steps: Vec<Step>,
}

impl RecipientView {
    fn new(r: &RecipientInfo) -> RecipientView {
        let t = &r.timeline;
        let step = |kind, label, at: &Option<String>, detail: String| {
            at.as_ref().map(|at| Step {
                kind,
                label,
                time: Time::parse(at),
                detail,
            })
        };
        let error = r
            .error
            .as_ref()
            .map(|e| format!("{} · {} — {}", e.class, e.code, e.message))
            .unwrap_or_default();
        let mut steps: Vec<Step> = [
            step("queued", "Queued", &t.queued, String::new()),
            step("sent", "Sent", &t.sent, String::new()),
            step("delivered", "Delivered", &t.delivered, String::new()),
            step("read", "Read", &t.read, String::new()),
            step(
                "interacted",
                "Interacted",
                &t.interacted,
                t.interaction.clone().unwrap_or_default(),
            ),
            step("failed", "Failed", &t.failed, error),
        ]
        .into_iter()
        .flatten()
        .collect();
        if let Some(reason) = &r.skip_reason {
            steps.push(Step {
                kind: "skipped",
                label: "Skipped",
                time: None,
                detail: reason.clone(),
            });
        }
        // Times sort as text (RFC 3339 UTC): the last step that happened.
        let latest = steps.iter().filter(|s| s.time.is_some()).max_by(|a, b| {
            a.time
                .as_ref()
                .map(|t| &t.iso)
                .cmp(&b.time.as_ref().map(|t| &t.iso))
        });
        let outcome_key = r.outcome.clone().unwrap_or_else(|| "pending".into());
        RecipientView {
            delivery_id: r.delivery_id,
            member_id: r.member_id,
            name: r.name.clone(),
            who: format!("{}:{}", r.channel, r.channel_user_id),
            locale: r.locale.clone(),
            outcome: match &r.outcome {
                Some(o) => outcome_label(o).to_string(),
                None => format!("{} (not final)", r.state),
            },
            outcome_key,
            state: r.state.clone(),
            attempts: r.attempts,
            latest: latest.map_or(String::new(), |s| s.label.to_string()),
            latest_time: latest.and_then(|s| s.time.clone()),
            steps,
        }
    }
}

/// A tab of the explorer: one outcome, with the report's count.
pub struct Tab {
    pub label: &'static str,
    pub href: String,
    pub count: Option<String>,
    pub colour: Option<&'static str>,
    pub active: bool,
}

#[derive(Template)]
#[template(path = "panel/recipients.html")]
pub struct RecipientsPage {
    /// The push's A/B variants (and "holdout"), to filter by; empty: none.
    pub variants: Vec<String>,
    pub chrome: Chrome,
    pub push: String,
    pub push_href: String,
    pub action: String,
    pub heading: String,
    pub tabs: Vec<Tab>,
    pub f: Filter,
    /// "12 recipients", or why there is no count.
    pub summary: String,
    pub rows: Vec<RecipientView>,
    pub next_href: Option<String>,
    pub first_href: Option<String>,
    pub csv_href: String,
    pub admin: bool,
    pub hidden: Vec<(&'static str, String)>,
    pub audience_name: String,
    /// The command's refusal of the filter (a bad outcome, a foreign cursor).
    pub error: Option<String>,
    /// Why "Create audience" did not work.
    pub audience_error: Option<String>,
}

fn fail(e: BackendError) -> page::Answer {
    page::failure(&e).into()
}

/// The explorer page; `made` carries a failed "Create audience" (its
/// status, message and the name typed) to show on it.
async fn draw(
    panel: &Panel,
    name: &str,
    f: Filter,
    who: &SignedIn,
    made: Option<(StatusCode, String, String)>,
) -> Result {
    let data = panel.backend.push(name).await.map_err(fail)?;
    let push = data.push.name.clone();
    let listed = panel.backend.recipients(f.args(&push)).await;
    let base = format!("{}/recipients", push_href(&push));
    let r = &data.report;
    let counts = [
        r.read_and_interacted,
        r.read_only,
        r.interacted_only,
        r.not_read_or_interacted,
        r.sent_fail,
        r.skipped,
        r.cancelled,
        r.clicks,
    ];
    let outcome = given(&f.outcome).unwrap_or_default();
    let mut tabs = vec![Tab {
        label: "All",
        href: base.clone(),
        count: None,
        colour: None,
        active: outcome.is_empty(),
    }];
    // "Clicked a link" only for a push whose template tracks links.
    let tracked = !r.links.is_empty();
    let shown = OUTCOMES.iter().zip(counts);
    let shown = shown.filter(|((key, _, _), _)| tracked || *key != "clicked");
    tabs.extend(shown.map(|((key, label, c), n)| Tab {
        label,
        href: explorer_href(&push, Some(key)),
        count: Some(thousands(n)),
        colour: c.map(|i| SLICE_COLOURS[i]),
        active: outcome == *key,
    }));
    let (status, error, page) = match listed {
        Ok(page) => (StatusCode::OK, None, page),
        Err(e) if e.code == "invalid_args" => (
            StatusCode::BAD_REQUEST,
            Some(e.message),
            RecipientsData::default(),
        ),
        Err(e) => return Err(fail(e)),
    };
    let heading = if outcome.is_empty() {
        "Recipients".to_string()
    } else {
        outcome_label(&outcome).to_string()
    };
    let summary = match (page.total, &page.next) {
        (Some(n), _) => format!(
            "{} recipient{}",
            thousands(n),
            if n == 1 { "" } else { "s" }
        ),
        (None, None) => format!("{} recipient(s)", page.recipients.len()),
        (None, Some(_)) => format!(
            "{} shown; a channel, locale or variant filter is not counted (that would read the whole push)",
            page.recipients.len()
        ),
    };
    let slug = if outcome.is_empty() {
        "recipients".into()
    } else {
        outcome.replace('_', "-")
    };
    let (status, audience_error, audience_name) = match made {
        Some((s, message, typed)) => (s, Some(message), typed),
        None => (status, None, format!("{push}-{slug}")),
    };
    // A/B pushes: filter by variant (and the control group, if any).
    let mut variants: Vec<String> = data
        .push
        .ab
        .as_ref()
        .map(|ab| ab.variants.clone())
        .unwrap_or_default();
    if r.ab.as_ref().is_some_and(|a| a.holdout > 0.0) {
        variants.push(crate::variants::HOLDOUT.to_string());
    }
    let first = f.first();
    let page_view = RecipientsPage {
        variants,
        chrome: Chrome {
            section: "pushes",
            ..chrome(format!("{heading} · {push}"), who, None)
        },
        push_href: push_href(&push),
        action: base.clone(),
        heading,
        tabs,
        summary,
        rows: page.recipients.iter().map(RecipientView::new).collect(),
        next_href: page.next.as_ref().map(|n| {
            Filter {
                after: n.clone(),
                ..first.clone()
            }
            .href(&base)
        }),
        first_href: (!f.after.trim().is_empty()).then(|| first.href(&base)),
        csv_href: first.href(&format!("{base}.csv")),
        admin: who.is_admin(),
        hidden: f.hidden(),
        audience_name,
        error,
        audience_error,
        f,
        push,
    };
    Ok(page::html(status, &page_view))
}

pub async fn page(
    State(panel): State<Arc<Panel>>,
    Path(name): Path<String>,
    Query(f): Query<Filter>,
    who: SignedIn,
) -> Result {
    draw(&panel, &name, f, &who, None).await
}

/// The current filter as CSV, streamed: byte for byte what
/// `pushd recipients PUSH … --format csv` prints.
pub async fn csv(
    State(panel): State<Arc<Panel>>,
    Path(name): Path<String>,
    Query(f): Query<Filter>,
    _who: SignedIn,
) -> Result {
    let args = f.first().args(&name);
    let stream = panel.backend.recipients_csv(args).await.map_err(fail)?;
    let outcome = given(&f.outcome).unwrap_or_else(|| "recipients".into());
    let file: String = format!("{name}-{outcome}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}.csv\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct AudienceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(flatten)]
    filter: Filter,
}

/// "Create audience from this list": the filter saved as an audience
/// (admin only), then Push again to it, as for a retry audience.
pub async fn create_audience(
    State(panel): State<Arc<Panel>>,
    Path(push): Path<String>,
    who: SignedIn,
    headers: HeaderMap,
    Form(form): Form<AudienceForm>,
) -> Result {
    let session = actions::authorize(&panel, &who, &headers, &form.csrf).await?;
    let f = form.filter.first();
    let args = AudienceFromPushArgs::of(f.args(&push), form.name.trim().to_string());
    match panel.backend.audience_from_push(&session, args).await {
        Ok(made) => {
            let to = format!(
                "{}?from={}",
                again_href(&made.audience.name),
                encode_segment(&made.source_push)
            );
            Ok(Redirect::to(&to).into_response())
        }
        Err(e) => {
            let status = page::failure(&e).status();
            draw(&panel, &push, f, &who, Some((status, e.message, form.name))).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_travel_in_links_and_forms() {
        let f = Filter {
            outcome: "read_only".into(),
            locale: "zh CN&x".into(),
            after: "abc".into(),
            ..Filter::default()
        };
        assert_eq!(
            f.href("/pushes/p/recipients"),
            "/pushes/p/recipients?outcome=read_only&locale=zh+CN%26x&after=abc"
        );
        assert_eq!(
            f.first().href("/x"),
            "/x?outcome=read_only&locale=zh+CN%26x"
        );
        assert_eq!(Filter::default().href("/x"), "/x");
        let a = f.args("p");
        assert_eq!(a.outcome.as_deref(), Some("read_only"));
        assert_eq!(a.channel, None);
        assert_eq!(a.after.as_deref(), Some("abc"));
        let all = Filter {
            outcome: "all".into(),
            ..Filter::default()
        };
        assert_eq!(all.args("p").outcome, None);
        assert_eq!(
            explorer_href("a b", Some("sent_fail")),
            "/pushes/a%20b/recipients?outcome=sent_fail"
        );
        assert_eq!(
            outcome_label("not_read_or_interacted"),
            "Not Read / Interacted"
        );
    }
}
