//! The panel's pages as compiled templates (askama: a misspelt field is a
//! build error, every `{{ value }}` is HTML-escaped), and the answers every
//! handler shares: signed out, refused, and a command's error as a page
//! with the HTTP status its code means.

use super::backend::BackendError;
use super::view::{PushRow, PushView, SampleView};
use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// What the frame of every page shows.
pub struct Chrome {
    pub title: String,
    /// The signed-in role, when there is a session.
    pub role: Option<&'static str>,
    /// For the sign-out form.
    pub csrf: String,
    /// The live-update stream of this page, if it has one.
    pub live: Option<String>,
    /// When the page's data was read (ms): older live updates are ignored.
    pub at: i64,
    pub version: &'static str,
    /// Which part of the navigation bar the page belongs to.
    pub section: &'static str,
    /// What the page shows, in short: a live update with another one makes
    /// the page draw itself again (the Scripts page after a reload).
    pub fingerprint: Option<String>,
}

impl Chrome {
    pub fn new(title: impl Into<String>) -> Chrome {
        Chrome {
            title: title.into(),
            role: None,
            csrf: String::new(),
            live: None,
            at: chrono::Utc::now().timestamp_millis(),
            version: env!("CARGO_PKG_VERSION"),
            section: "pushes",
            fingerprint: None,
        }
    }
}

/// One link of the navigation bar.
pub struct NavLink {
    pub label: &'static str,
    pub href: &'static str,
    pub current: bool,
}

/// The panel's pages, in the navigation bar's order: (section, label, href).
const NAV: [(&str, &str, &str); 6] = [
    ("pushes", "Pushes", "/"),
    ("audiences", "Audiences", "/audiences"),
    ("templates", "Templates", "/templates"),
    ("scripts", "Scripts", "/scripts"),
    ("channels", "Channels", "/channels"),
    ("audit", "Audit", "/audit"),
];

impl Chrome {
    pub fn nav(&self) -> Vec<NavLink> {
        NAV.iter()
            .map(|(section, label, href)| NavLink {
                label,
                href,
                current: *section == self.section,
            })
            .collect()
    }
}

#[derive(Template)]
#[template(path = "panel/pushes.html")]
pub struct PushesPage {
    pub chrome: Chrome,
    pub rows: Vec<PushRow>,
    /// The push ids shown, so the live script knows when to reload.
    pub ids: String,
    /// The delivery policy in force (`[policy]`), in words.
    pub policy: String,
}

#[derive(Template)]
#[template(path = "panel/push.html")]
pub struct PushPage {
    pub chrome: Chrome,
    pub v: PushView,
    pub admin: bool,
    pub retry_href: Option<String>,
}

/// One failure group as the Inspect page lists it.
pub struct GroupView {
    pub class: String,
    pub code: String,
    pub count: String,
    pub share: String,
    pub message: String,
    pub samples: Vec<String>,
}

#[derive(Template)]
#[template(path = "panel/failures.html")]
pub struct FailuresPage {
    pub chrome: Chrome,
    pub push: String,
    pub href: String,
    pub total: String,
    pub groups: Vec<GroupView>,
    pub admin: bool,
}

#[derive(Template)]
#[template(path = "panel/retry.html")]
pub struct RetryPage {
    pub chrome: Chrome,
    pub push: String,
    pub href: String,
    pub sent_fail: String,
    pub name: String,
    pub transient_only: bool,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "panel/again.html")]
pub struct AgainPage {
    pub chrome: Chrome,
    pub audience: String,
    pub action: String,
    pub size: Option<String>,
    pub samples: Vec<SampleView>,
    pub templates: Vec<String>,
    pub template: String,
    pub name: String,
    pub at_later: bool,
    pub at: String,
    pub rate: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "panel/created.html")]
pub struct CreatedPage {
    pub chrome: Chrome,
    pub row: PushRow,
    pub warnings: Vec<String>,
}

#[derive(Template)]
#[template(path = "panel/confirm.html")]
pub struct ConfirmPage {
    pub chrome: Chrome,
    pub push: String,
    pub href: String,
    /// The question ("Pause black-friday?").
    pub title: String,
    /// The button.
    pub verb: String,
    pub action: String,
    pub consequence: String,
    pub danger: bool,
    /// Hidden fields the form carries besides the CSRF token.
    pub fields: Vec<(&'static str, String)>,
}

#[derive(Template)]
#[template(path = "panel/message.html")]
pub struct MessagePage {
    pub chrome: Chrome,
    pub heading: String,
    pub body: String,
    /// A command that fixes it, shown as code.
    pub command: Option<String>,
}

/// A handler's early answer (an error page, a refusal), boxed: a
/// `Response` is large and travels through every `?`.
pub struct Answer(Box<Response>);

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<Response> for Answer {
    fn from(r: Response) -> Answer {
        Answer(Box::new(r))
    }
}

/// What page handlers return: the page, or the answer that stops them.
pub type Result<T = Response> = std::result::Result<T, Answer>;

/// Renders a template, or a plain 500 naming the template error.
pub fn html(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "panel template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("the page could not be drawn: {e}\n"),
            )
                .into_response()
        }
    }
}

/// No session (or an ended one): how to get one.
pub fn signed_out() -> Response {
    let page = MessagePage {
        chrome: Chrome::new("Sign in"),
        heading: "Sign in to the push panel".into(),
        body: "The panel has no passwords. Ask for a one-time login link on the machine \
               that runs pushd, then open it in this browser."
            .into(),
        command: Some("pushd panel login".into()),
    };
    html(StatusCode::UNAUTHORIZED, &page)
}

pub fn refused(status: StatusCode, heading: &str, body: &str) -> Response {
    let page = MessagePage {
        chrome: Chrome::new(heading),
        heading: heading.into(),
        body: body.into(),
        command: None,
    };
    html(status, &page)
}

/// A command's error as a page: its message, with the status its code means.
pub fn failure(e: &BackendError) -> Response {
    let (status, heading) = match e.code.as_str() {
        "not_found" => (StatusCode::NOT_FOUND, "Not found"),
        "invalid_args" => (StatusCode::BAD_REQUEST, "That did not work"),
        "conflict" => (StatusCode::CONFLICT, "Not possible right now"),
        "forbidden" => (StatusCode::FORBIDDEN, "Not allowed"),
        "unavailable" => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong"),
    };
    if status.is_server_error() {
        tracing::warn!(code = %e.code, error = %e.message, "panel request failed");
    }
    refused(status, heading, &e.message)
}

/// The viewer's answer to any action.
pub fn viewer_forbidden() -> Response {
    refused(
        StatusCode::FORBIDDEN,
        "Read-only session",
        "You are signed in as a viewer, which may only read. Ask an admin for an admin \
         login link (`pushd panel login`).",
    )
}
