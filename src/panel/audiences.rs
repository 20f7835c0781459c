//! The Audiences pages: every audience by name (`audience.list`) — the
//! scripts' with their definition as written and where it is (file:line),
//! the saved ones with their lineage — and one audience
//! (`audience.show`): its exact size now and a sample of its members.
//! Read-only; an admin is offered Push again from the audience's page.

use super::Panel;
use super::backend::BackendError;
use super::explorer::{explorer_href, outcome_label};
use super::page::{self, Chrome};
use super::pages::{again_href, chrome};
use super::session::SignedIn;
use super::view::{Time, encode_segment, push_href, thousands};
use crate::protocol::AudienceSummary;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;

use super::page::Result;

/// Where a saved audience came from, as the pages say it.
pub struct LineageView {
    pub outcome: String,
    /// The source push's page and its recipients of that outcome.
    pub push: Option<(String, String, String)>,
    pub filter: Option<String>,
    pub only: Option<String>,
    pub created_at: Option<Time>,
}

/// An audience as the pages show it.
pub struct AudienceView {
    pub name: String,
    pub href: String,
    pub kind: String,
    pub description: String,
    pub where_text: Option<String>,
    pub has_filter: bool,
    pub defined_at: Option<String>,
    /// "1,234", or "≤ 1,234" before a Lua filter refines it.
    pub size: String,
    pub size_note: Option<&'static str>,
    pub pushes: Vec<(String, String)>,
    pub lineage: Option<LineageView>,
}

pub fn audience_href(name: &str) -> String {
    format!("/audiences/{}", encode_segment(name))
}

impl AudienceView {
    fn new(a: &AudienceSummary) -> AudienceView {
        let (size, size_note) = match (a.size, a.matches_where) {
            (Some(n), _) => (thousands(n), None),
            (None, Some(n)) => (
                format!("≤ {}", thousands(n)),
                Some(
                    "what `where` selects; the Lua filter refines it (exact size on the audience's page)",
                ),
            ),
            (None, None) => ("—".into(), None),
        };
        AudienceView {
            name: a.name.clone(),
            href: audience_href(&a.name),
            kind: a.kind.clone(),
            description: a.description.clone().unwrap_or_default(),
            where_text: a.where_text.clone(),
            has_filter: a.has_filter,
            defined_at: a.defined_at.clone(),
            size,
            size_note,
            pushes: a.pushes.iter().map(|p| (p.clone(), push_href(p))).collect(),
            lineage: a.lineage.as_ref().map(|l| {
                let outcome = l.outcome.clone().unwrap_or_default();
                LineageView {
                    push: l.source_push.as_ref().map(|p| {
                        let list = explorer_href(p, l.outcome.as_deref());
                        (p.clone(), push_href(p), list)
                    }),
                    outcome: if outcome.is_empty() {
                        "Recipients".into()
                    } else {
                        outcome_label(&outcome).to_string()
                    },
                    filter: l.filter.clone(),
                    only: l.only.clone(),
                    created_at: Time::parse(&l.created_at),
                }
            }),
        }
    }
}

#[derive(Template)]
#[template(path = "panel/audiences.html")]
pub struct AudiencesPage {
    pub chrome: Chrome,
    pub rows: Vec<AudienceView>,
    pub next_href: Option<String>,
    pub first_href: Option<String>,
}

/// A sample member as the audience's page lists it.
pub struct MemberView {
    pub id: i64,
    pub name: String,
    pub who: String,
    pub locale: String,
    pub tags: String,
}

#[derive(Template)]
#[template(path = "panel/audience.html")]
pub struct AudiencePage {
    pub chrome: Chrome,
    pub a: AudienceView,
    pub size: String,
    pub subscribed: String,
    pub members: Vec<MemberView>,
    pub push_again: Option<String>,
}

fn fail(e: BackendError) -> page::Answer {
    page::failure(&e).into()
}

#[derive(Deserialize)]
pub struct After {
    #[serde(default)]
    after: String,
}

fn in_section(c: Chrome) -> Chrome {
    Chrome {
        section: "audiences",
        ..c
    }
}

pub async fn list(
    State(panel): State<Arc<Panel>>,
    Query(q): Query<After>,
    who: SignedIn,
) -> Result {
    let after = Some(q.after.clone()).filter(|a| !a.is_empty());
    let data = panel.backend.audiences(after).await.map_err(fail)?;
    let page = AudiencesPage {
        chrome: in_section(chrome("Audiences", &who, None)),
        rows: data.audiences.iter().map(AudienceView::new).collect(),
        next_href: data.next.as_ref().map(|n| {
            format!(
                "/audiences?{}",
                serde_urlencoded::to_string([("after", n)]).unwrap_or_default()
            )
        }),
        first_href: (!q.after.is_empty()).then(|| "/audiences".to_string()),
    };
    Ok(page::html(StatusCode::OK, &page))
}

pub async fn show(
    State(panel): State<Arc<Panel>>,
    Path(name): Path<String>,
    who: SignedIn,
) -> Result {
    let data = panel.backend.audience(&name).await.map_err(fail)?;
    let a = AudienceView::new(&data.audience);
    let page = AudiencePage {
        chrome: in_section(chrome(format!("Audience {}", a.name), &who, None)),
        // "≈" when the filter ran on the first members only (the budget).
        size: approx(data.size, data.estimated),
        subscribed: approx(data.subscribed, data.estimated),
        members: data
            .sample
            .iter()
            .map(|m| MemberView {
                id: m.member_id,
                name: m.name.clone(),
                who: format!("{}:{}", m.channel, m.channel_user_id),
                locale: m.locale.clone(),
                tags: m.tags.join(", "),
            })
            .collect(),
        push_again: who.is_admin().then(|| again_href(&a.name)),
        a,
    };
    Ok(page::html(StatusCode::OK, &page))
}

/// A count, with "≈" when it was extrapolated.
fn approx(n: u64, estimated: bool) -> String {
    match estimated {
        true => format!("≈{}", thousands(n)),
        false => thousands(n),
    }
}
