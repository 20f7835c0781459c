//! What a GET shows: the pushes, a push's result, its failures, the
//! detailed report as a download, the forms and confirmations of actions,
//! the live streams, and the login link that starts a session. Reading
//! changes nothing (but opening a login link, which uses it up).

use super::Panel;
use super::backend::BackendError;
use super::live::{self, Topic};
use super::page::{self, *};
use super::session::{self, SignedIn};
use super::view::{self, PushRow, PushView, encode_segment, push_href, thousands};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::sync::Arc;

pub use super::page::Result;

/// The frame of a signed-in page.
pub fn chrome(title: impl Into<String>, who: &SignedIn, live: Option<String>) -> Chrome {
    Chrome {
        role: Some(who.session.role.as_str()),
        csrf: who.csrf.clone(),
        live,
        ..Chrome::new(title)
    }
}

fn fail(e: BackendError) -> page::Answer {
    page::failure(&e).into()
}

/// Actions and their forms are for admins; a viewer gets 403 and nothing changes.
pub fn admin_only(who: &SignedIn) -> Result<()> {
    if who.is_admin() {
        Ok(())
    } else {
        Err(page::viewer_forbidden().into())
    }
}

pub async fn pushes(State(panel): State<Arc<Panel>>, who: SignedIn) -> Result {
    let pushes = panel.backend.pushes().await.map_err(fail)?;
    let rows: Vec<PushRow> = pushes.iter().map(PushRow::from_summary).collect();
    let ids = rows
        .iter()
        .map(|r| r.id.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let policy = panel.backend.status().await.map_err(fail)?.policy;
    let page = PushesPage {
        chrome: chrome("Pushes", &who, Some("/live".into())),
        rows,
        ids,
        policy: crate::panel::view::policy_words(&policy),
    };
    Ok(page::html(StatusCode::OK, &page))
}

pub async fn push(
    State(panel): State<Arc<Panel>>,
    Path(name): Path<String>,
    who: SignedIn,
) -> Result {
    let data = panel.backend.push(&name).await.map_err(fail)?;
    let v = PushView::new(&data);
    let retry_href = (who.is_admin() && v.sent_fail > 0).then(|| format!("{}/retry", v.row.href));
    let live = (!v.is_final).then(|| format!("{}/live", v.row.href));
    let page = PushPage {
        chrome: chrome(v.row.name.clone(), &who, live),
        admin: who.is_admin(),
        retry_href,
        v,
    };
    Ok(page::html(StatusCode::OK, &page))
}

pub async fn failures(
    State(panel): State<Arc<Panel>>,
    Path(name): Path<String>,
    who: SignedIn,
) -> Result {
    let f = panel.backend.failures(&name).await.map_err(fail)?;
    let groups = f
        .groups
        .iter()
        .map(|g| GroupView {
            class: g.class.clone(),
            code: g.code.clone(),
            count: thousands(g.count),
            share: view::percent(if f.sent_fail == 0 {
                0.0
            } else {
                100.0 * g.count as f64 / f.sent_fail as f64
            }),
            message: g.message.clone(),
            samples: g
                .samples
                .iter()
                .map(|s| format!("{}:{}", s.channel, s.channel_user_id))
                .collect(),
        })
        .collect();
    let page = FailuresPage {
        chrome: chrome(format!("Sent Fail of {}", f.push), &who, None),
        href: push_href(&f.push),
        total: thousands(f.sent_fail),
        push: f.push,
        groups,
        admin: who.is_admin(),
    };
    Ok(page::html(StatusCode::OK, &page))
}

/// The detailed report, streamed as `pushd export` writes it.
pub async fn export(
    State(panel): State<Arc<Panel>>,
    Path(name): Path<String>,
    _who: SignedIn,
) -> Result {
    let stream = panel.backend.export(&name).await.map_err(fail)?;
    let file: String = name
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
                format!("attachment; filename=\"{file}-report.csv\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

pub async fn retry_form(
    State(panel): State<Arc<Panel>>,
    Path(name): Path<String>,
    who: SignedIn,
) -> Result {
    admin_only(&who)?;
    let data = panel.backend.push(&name).await.map_err(fail)?;
    let page = RetryPage {
        chrome: chrome("Create retry audience", &who, None),
        href: push_href(&data.push.name),
        sent_fail: thousands(data.report.sent_fail),
        name: format!("{}-retry", data.push.name),
        push: data.push.name.clone(),
        transient_only: false,
        error: None,
    };
    Ok(page::html(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub struct AgainQuery {
    /// The push whose template the form suggests.
    from: Option<String>,
}

pub async fn again_form(
    State(panel): State<Arc<Panel>>,
    Path(audience): Path<String>,
    Query(q): Query<AgainQuery>,
    who: SignedIn,
) -> Result {
    admin_only(&who)?;
    let templates = panel.backend.templates().await.map_err(fail)?;
    let template = match &q.from {
        Some(from) => panel
            .backend
            .push(from)
            .await
            .map(|d| d.report.template)
            .unwrap_or_default(),
        None => String::new(),
    };
    let known = templates.contains(&template);
    let preview = panel
        .backend
        .audience_preview(&audience, known.then_some(template.as_str()), 3)
        .await
        .map_err(fail)?;
    let page = AgainPage {
        chrome: chrome("Push again", &who, None),
        action: again_href(&audience),
        audience,
        size: Some(thousands(preview.size)),
        samples: preview.samples.iter().map(view::sample).collect(),
        template: preview.template.unwrap_or(template),
        templates,
        name: String::new(),
        at_later: false,
        at: String::new(),
        rate: String::new(),
        error: None,
    };
    Ok(page::html(StatusCode::OK, &page))
}

pub fn again_href(audience: &str) -> String {
    format!("/audiences/{}/push", encode_segment(audience))
}

/// What each lifecycle action is called and does, for its confirmation.
pub fn control_text(action: &str) -> Option<(&'static str, &'static str, bool)> {
    match action {
        "pause" => Some((
            "Pause",
            "Sending stops after the messages already on their way; nothing is lost, and Resume carries on where it stopped.",
            false,
        )),
        "resume" => Some((
            "Resume",
            "Sending carries on where it stopped, at the push's rate.",
            false,
        )),
        "cancel" => Some((
            "Cancel",
            "Every recipient not sent yet ends cancelled. This cannot be undone; the result stays as it is.",
            true,
        )),
        _ => None,
    }
}

pub async fn confirm(
    panel: Arc<Panel>,
    name: String,
    action: &'static str,
    who: SignedIn,
) -> Result {
    admin_only(&who)?;
    let data = panel.backend.push(&name).await.map_err(fail)?;
    let Some((verb, consequence, danger)) = control_text(action) else {
        return Err(StatusCode::NOT_FOUND.into_response().into());
    };
    let href = push_href(&data.push.name);
    let page = ConfirmPage {
        chrome: chrome(format!("{verb} {}", data.push.name), &who, None),
        action: format!("{href}/{action}"),
        push: data.push.name.clone(),
        href,
        title: format!("{verb} {}?", data.push.name),
        verb: verb.into(),
        consequence: consequence.into(),
        danger,
        fields: Vec::new(),
    };
    Ok(page::html(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub struct WinnerQuery {
    #[serde(default)]
    variant: String,
}

/// GET `/pushes/{push}/winner?variant=b`: confirm sending `b` to the rest.
pub async fn confirm_winner(
    State(panel): State<Arc<Panel>>,
    Path(name): Path<String>,
    Query(q): Query<WinnerQuery>,
    who: SignedIn,
) -> Result {
    admin_only(&who)?;
    let data = panel.backend.push(&name).await.map_err(fail)?;
    let known = data
        .push
        .ab
        .as_ref()
        .is_some_and(|ab| ab.variants.contains(&q.variant));
    if !known {
        return Err(page::refused(
            StatusCode::NOT_FOUND,
            "No such variant",
            &format!(
                "Push {} has no variant {:?} to pick.",
                data.push.name, q.variant
            ),
        )
        .into());
    }
    let href = push_href(&data.push.name);
    let page = ConfirmPage {
        chrome: chrome(
            format!("Pick {} for {}", q.variant, data.push.name),
            &who,
            None,
        ),
        action: format!("{href}/winner"),
        push: data.push.name.clone(),
        href,
        title: format!(
            "Send variant {} to the rest of {}?",
            q.variant, data.push.name
        ),
        verb: format!("Send {} to the rest", q.variant),
        consequence: format!(
            "Everyone still waiting for the winner is sent variant {} now, and the test ends. This cannot be undone.",
            q.variant
        ),
        danger: false,
        fields: vec![("variant", q.variant)],
    };
    Ok(page::html(StatusCode::OK, &page))
}

pub async fn live_pushes(State(panel): State<Arc<Panel>>, _who: SignedIn) -> Response {
    live::stream(&panel.live, Topic::Pushes, panel.backend.shutdown()).into_response()
}

pub async fn live_push(
    State(panel): State<Arc<Panel>>,
    Path(name): Path<String>,
    _who: SignedIn,
) -> Result {
    // The push's canonical name: one ticker per push, however it is named.
    let data = panel.backend.push(&name).await.map_err(fail)?;
    let topic = Topic::Push(data.push.id.to_string());
    Ok(live::stream(&panel.live, topic, panel.backend.shutdown()).into_response())
}

/// The Scripts page's stream: a reload (good or bad) makes it redraw.
pub async fn live_scripts(State(panel): State<Arc<Panel>>, _who: SignedIn) -> Response {
    live::stream(&panel.live, Topic::Scripts, panel.backend.shutdown()).into_response()
}

/// `/login/TOKEN`: a one-time link becomes a session cookie.
pub async fn login(State(panel): State<Arc<Panel>>, Path(token): Path<String>) -> Result {
    panel.throttle.before_attempt().await;
    let well_formed = token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit());
    let session = if well_formed {
        panel.backend.redeem_login(&token).await.map_err(fail)?
    } else {
        None
    };
    let Some(session) = session else {
        panel.throttle.failed().await;
        tracing::warn!("refused a panel login link (unknown, used or expired)");
        return Err(page::refused(
            StatusCode::FORBIDDEN,
            "This login link does not work",
            "A login link works once and only until it expires; this one was already used, has \
             expired, or was never issued. Ask for a new one on the machine that runs pushd: \
             `pushd panel login`.",
        )
        .into());
    };
    let key = panel.key().await.map_err(fail)?;
    let cookie = session::set_cookie(&key, &session, panel.session_ttl);
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response())
}
