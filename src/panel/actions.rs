//! What a POST does. Each one first proves it came from this panel (same
//! origin, then the session's CSRF token), then that the session may act
//! (admin), and only then calls the backend, which authorizes and audits it
//! again like a socket command. Anything refused changes nothing.

use super::backend::{PushCreateArgs, Session};
use super::page::{self, AgainPage, CreatedPage, RetryPage};
use super::pages::{self, again_href, chrome};
use super::session::{self, SignedIn};
use super::view::{PushRow, encode_segment, push_href, thousands};
use super::{Panel, guard};
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;
use std::sync::Arc;

use super::page::Result;

/// Same origin and the right CSRF token: the request is this panel's own.
async fn from_this_panel(
    panel: &Panel,
    who: &SignedIn,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<()> {
    if let Err(why) = guard::same_origin(&Method::POST, headers) {
        tracing::warn!(session = %who.session.id, why, "refused a cross-origin panel POST");
        return Err(page::refused(
            StatusCode::FORBIDDEN,
            "Refused",
            &format!(
                "{why}. Actions are accepted only from the panel's own pages; reload it and try again."
            ),
        )
        .into());
    }
    let key = panel.key().await.map_err(|e| page::failure(&e))?;
    if !session::csrf_ok(&key, &who.session.id, csrf) {
        tracing::warn!(session = %who.session.id, "refused a panel POST without this session's CSRF token");
        return Err(page::refused(
            StatusCode::FORBIDDEN,
            "Refused",
            "The form's security token does not belong to this session (it may be from an older \
             page or another browser). Reload the page and try again.",
        )
        .into());
    }
    Ok(())
}

/// A state change: from this panel, by an admin.
pub(super) async fn authorize(
    panel: &Panel,
    who: &SignedIn,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Session> {
    from_this_panel(panel, who, headers, csrf).await?;
    pages::admin_only(who)?;
    Ok(who.session.clone())
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub async fn logout(
    State(panel): State<Arc<Panel>>,
    who: SignedIn,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Result {
    from_this_panel(&panel, &who, &headers, &f.csrf).await?;
    panel
        .backend
        .end_session(&who.session)
        .await
        .map_err(|e| page::failure(&e))?;
    Ok((
        [(header::SET_COOKIE, session::clear_cookie())],
        Redirect::to("/"),
    )
        .into_response())
}

/// Pause, resume or cancel, then back to the push.
pub async fn control(
    panel: Arc<Panel>,
    name: String,
    action: &'static str,
    who: SignedIn,
    headers: HeaderMap,
    csrf: String,
) -> Result {
    let session = authorize(&panel, &who, &headers, &csrf).await?;
    let b = &panel.backend;
    let done = match action {
        "pause" => b.pause(&session, &name).await,
        "resume" => b.resume(&session, &name).await,
        "cancel" => b.cancel(&session, &name).await,
        _ => return Err(StatusCode::NOT_FOUND.into_response().into()),
    };
    let data = done.map_err(|e| page::failure(&e))?;
    Ok(Redirect::to(&push_href(&data.push.name)).into_response())
}

#[derive(Deserialize)]
pub struct WinnerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    variant: String,
}

/// The A/B winner an admin picked (from its confirmation page).
pub async fn pick_winner(
    State(panel): State<Arc<Panel>>,
    Path(name): Path<String>,
    who: SignedIn,
    headers: HeaderMap,
    Form(f): Form<WinnerForm>,
) -> Result {
    let session = authorize(&panel, &who, &headers, &f.csrf).await?;
    let data = panel
        .backend
        .pick_winner(&session, &name, &f.variant)
        .await
        .map_err(|e| page::failure(&e))?;
    Ok(Redirect::to(&push_href(&data.push.name)).into_response())
}

#[derive(Deserialize)]
pub struct RetryForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    only: String,
}

pub async fn retry(
    State(panel): State<Arc<Panel>>,
    Path(push): Path<String>,
    who: SignedIn,
    headers: HeaderMap,
    Form(f): Form<RetryForm>,
) -> Result {
    let session = authorize(&panel, &who, &headers, &f.csrf).await?;
    let only = match f.only.as_str() {
        "" | "all" => None,
        other => Some(other),
    };
    let name = f.name.trim();
    match panel
        .backend
        .create_retry_audience(&session, &push, name, only)
        .await
    {
        Ok(made) => {
            let to = format!(
                "{}?from={}",
                again_href(&made.audience.name),
                encode_segment(&made.source_push)
            );
            Ok(Redirect::to(&to).into_response())
        }
        Err(e) => {
            // The form again, with what was typed and what was wrong.
            let data = panel
                .backend
                .push(&push)
                .await
                .map_err(|e| page::failure(&e))?;
            let status = page::failure(&e).status();
            let form = RetryPage {
                chrome: chrome("Create retry audience", &who, None),
                href: push_href(&data.push.name),
                sent_fail: thousands(data.report.sent_fail),
                push: data.push.name,
                name: name.to_string(),
                transient_only: only == Some("transient"),
                error: Some(e.message),
            };
            Err(page::html(status, &form).into())
        }
    }
}

#[derive(Deserialize)]
pub struct AgainForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    template: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    when: String,
    #[serde(default)]
    at: String,
    #[serde(default)]
    tz_offset: String,
    #[serde(default)]
    rate: String,
}

/// `datetime-local` text in the browser's timezone (`tz_offset` is
/// JavaScript's `getTimezoneOffset()`, minutes west of UTC; UTC without it)
/// as the RFC 3339 time `push.create` takes.
fn start_at(f: &AgainForm) -> std::result::Result<Option<String>, AgainFormError> {
    if f.when != "at" {
        return Ok(None);
    }
    let text = f.at.trim();
    let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| AgainFormError::NotDateTime(text.to_string()))?;
    let west: i32 = match f.tz_offset.trim() {
        "" => 0,
        o => o
            .parse()
            .ok()
            .filter(|m: &i32| m.abs() <= 14 * 60)
            .ok_or_else(|| AgainFormError::OffsetNotMinutes(o.to_string()))?,
    };
    let offset =
        chrono::FixedOffset::east_opt(-west * 60).ok_or(AgainFormError::OffsetOutOfRange)?;
    let at = naive
        .and_local_timezone(offset)
        .single()
        .ok_or_else(|| AgainFormError::NotInTimezone(text.to_string()))?;
    Ok(Some(at.to_rfc3339()))
}

fn rate(f: &AgainForm) -> std::result::Result<Option<u32>, AgainFormError> {
    match f.rate.trim() {
        "" => Ok(None),
        r => r
            .parse::<u32>()
            .map(Some)
            .map_err(|_| AgainFormError::RateNotNumber(r.to_string())),
    }
}

/// Why the "run again" form's start time or rate cannot be read; shown to
/// the operator above the form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum AgainFormError {
    #[error("Start At {0:?} is not a date and time like 2026-11-27T09:00")]
    NotDateTime(String),
    #[error("timezone offset {0:?} is not a number of minutes")]
    OffsetNotMinutes(String),
    #[error("the timezone offset is out of range")]
    OffsetOutOfRange,
    /// A local time skipped by a daylight-saving change.
    #[error("Start At {0:?} does not exist in your timezone")]
    NotInTimezone(String),
    #[error("rate {0:?} is not a whole number of messages per minute")]
    RateNotNumber(String),
}

pub async fn again(
    State(panel): State<Arc<Panel>>,
    Path(audience): Path<String>,
    who: SignedIn,
    headers: HeaderMap,
    Form(f): Form<AgainForm>,
) -> Result {
    let session = authorize(&panel, &who, &headers, &f.csrf).await?;
    let parsed = start_at(&f).and_then(|at| Ok((at, rate(&f)?)));
    let result = match parsed {
        Ok((at, rate_per_minute)) => {
            let args = PushCreateArgs {
                audience: audience.clone(),
                template: f.template.clone(),
                name: Some(f.name.trim().to_string()).filter(|n| !n.is_empty()),
                at,
                rate_per_minute,
                ..Default::default()
            };
            panel
                .backend
                .create_push(&session, args)
                .await
                .map_err(|e| (page::failure(&e).status(), e.message))
        }
        Err(e) => Err((StatusCode::BAD_REQUEST, e.to_string())),
    };
    match result {
        Ok(created) => {
            let page = CreatedPage {
                chrome: chrome("Push created", &who, None),
                row: PushRow::from_summary(&created.push),
                warnings: created.warnings,
            };
            Ok(page::html(StatusCode::OK, &page))
        }
        Err((status, message)) => {
            let templates = panel.backend.templates().await.unwrap_or_default();
            let form = AgainPage {
                chrome: chrome("Push again", &who, None),
                action: again_href(&audience),
                size: None,
                samples: Vec::new(),
                audience,
                templates,
                template: f.template,
                name: f.name,
                at_later: f.when == "at",
                at: f.at,
                rate: f.rate,
                error: Some(message),
            };
            Err(page::html(status, &form).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(when: &str, at: &str, tz: &str) -> AgainForm {
        AgainForm {
            csrf: String::new(),
            template: String::new(),
            name: String::new(),
            when: when.into(),
            at: at.into(),
            tz_offset: tz.into(),
            rate: String::new(),
        }
    }

    #[test]
    fn start_at_is_read_in_the_browsers_timezone() {
        assert_eq!(start_at(&form("now", "", "")).unwrap(), None);
        assert_eq!(
            start_at(&form("at", "2026-11-27T09:00", "-480"))
                .unwrap()
                .unwrap(),
            "2026-11-27T09:00:00+08:00"
        );
        assert_eq!(
            start_at(&form("at", "2026-11-27T09:00", ""))
                .unwrap()
                .unwrap(),
            "2026-11-27T09:00:00+00:00"
        );
        assert_eq!(
            start_at(&form("at", "tomorrow", "0"))
                .unwrap_err()
                .to_string(),
            "Start At \"tomorrow\" is not a date and time like 2026-11-27T09:00"
        );
        assert_eq!(
            start_at(&form("at", "2026-11-27T09:00", "x")).unwrap_err(),
            AgainFormError::OffsetNotMinutes("x".into())
        );
    }
}
