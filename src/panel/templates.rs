//! The Templates page: each template of the live scripts rendered for a
//! sample member per configured platform and locale (`template.list`, the
//! same rendering and routing as `audience preview` and a push), with where
//! it is defined and its platform versions; a page of templates at a time.

use super::Panel;
use super::backend::BackendError;
use super::page::{self, Chrome};
use super::pages::chrome;
use super::session::SignedIn;
use super::view;
use super::view::SampleView;
use crate::model::Routed;
use crate::protocol::{TemplateInfo, TemplateSample};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;

use super::page::Result;

/// One rendering: for whom, through which channel, and the message.
pub struct RenderingView {
    pub platform: String,
    pub locale: String,
    /// "Ana (wa:8613…)" or the made-up sample member.
    pub who: String,
    pub real_member: bool,
    /// Where the router sends it, when not the member's own channel.
    pub routed_to: Option<String>,
    pub message: SampleView,
    /// Skipped, not renderable: shown as a notice, not a bubble.
    pub problem: bool,
}

pub struct TemplateView {
    pub name: String,
    pub defined_at: String,
    pub locales: String,
    pub versions: Vec<(String, String, bool)>,
    pub has_render: bool,
    pub renderings: Vec<RenderingView>,
}

fn rendering(s: &TemplateSample) -> RenderingView {
    let p = &s.sample;
    let routed_to = match &p.routed {
        Some(Routed::Send { channel, .. }) if *channel != p.channel => Some(channel.clone()),
        _ => None,
    };
    let problem = !matches!(p.routed, Some(Routed::Send { .. }));
    RenderingView {
        platform: s.platform.clone(),
        locale: s.locale.clone(),
        who: if s.real_member {
            format!("{} ({}:{})", p.name, p.channel, p.channel_user_id)
        } else {
            format!(
                "a sample member on {} (no real one has this locale)",
                p.channel
            )
        },
        real_member: s.real_member,
        routed_to,
        message: view::sample(p),
        problem,
    }
}

impl TemplateView {
    fn new(t: &TemplateInfo) -> TemplateView {
        TemplateView {
            name: t.name.clone(),
            defined_at: t.defined_at.clone(),
            locales: t.locales.join(", "),
            versions: t
                .platform_versions
                .iter()
                .map(|v| (v.platform.clone(), v.locales.join(", "), v.configured))
                .collect(),
            has_render: t.has_render,
            renderings: t.samples.iter().map(rendering).collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "panel/templates.html")]
pub struct TemplatesPage {
    pub chrome: Chrome,
    pub generation: i64,
    pub templates: Vec<TemplateView>,
    pub next_href: Option<String>,
    pub first_href: Option<String>,
}

fn fail(e: BackendError) -> page::Answer {
    page::failure(&e).into()
}

#[derive(Deserialize)]
pub struct After {
    #[serde(default)]
    after: String,
}

pub async fn list(
    State(panel): State<Arc<Panel>>,
    Query(q): Query<After>,
    who: SignedIn,
) -> Result {
    let after = Some(q.after.clone()).filter(|a| !a.is_empty());
    let data = panel.backend.template_page(after).await.map_err(fail)?;
    let page = TemplatesPage {
        chrome: Chrome {
            section: "templates",
            ..chrome("Templates", &who, None)
        },
        generation: data.generation,
        templates: data.templates.iter().map(TemplateView::new).collect(),
        next_href: data.next.as_ref().map(|n| {
            format!(
                "/templates?{}",
                serde_urlencoded::to_string([("after", n)]).unwrap_or_default()
            )
        }),
        first_href: (!q.after.is_empty()).then(|| "/templates".to_string()),
    };
    Ok(page::html(StatusCode::OK, &page))
}
