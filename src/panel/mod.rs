//! The Web Push Panel: server-rendered pages on the daemon's HTTP listener
//! (`/`, `/pushes/{push}`, its recipients explorer, and the read-only
//! Audiences, Templates, Scripts, Channels and Audit pages), live over
//! Server-Sent Events, signed in with one-time links, secure by default
//! (CSP, CSRF, same-origin, roles).
//!
//! Everything the panel knows of the daemon comes through [`Backend`]
//! (`backend.rs`), which calls the socket's own commands: the panel is a
//! second transport over them, not a second implementation.

mod actions;
mod assets;
mod audiences;
pub mod backend;
mod explorer;
mod guard;
mod live;
mod page;
mod pages;
mod session;
mod system;
mod templates;
mod view;

pub use backend::Backend;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{MethodRouter, get, post};
use axum::{Form, Router, middleware};
use session::{SignedIn, Throttle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// What the panel's handlers share.
pub struct Panel {
    backend: Backend,
    key: OnceCell<Vec<u8>>,
    live: Arc<live::Live>,
    throttle: Throttle,
    allow_remote: bool,
    session_ttl: Duration,
}

impl Panel {
    /// The signing key, read (or made) once.
    async fn key(&self) -> Result<Vec<u8>, backend::BackendError> {
        self.key
            .get_or_try_init(|| self.backend.signing_key())
            .await
            .cloned()
    }
}

/// The panel's routes, to merge into the HTTP listener's router; empty when
/// `[panel] enabled = false`.
pub fn router(backend: Backend) -> Router {
    let settings = backend.settings();
    if !settings.enabled {
        return Router::new();
    }
    let panel = Arc::new(Panel {
        live: live::Live::new(backend.clone()),
        backend,
        key: OnceCell::new(),
        throttle: Throttle::new(),
        allow_remote: settings.allow_remote,
        session_ttl: settings.session_ttl,
    });
    Router::new()
        .route("/", get(pages::pushes))
        .route("/live", get(pages::live_pushes))
        .route("/login/{token}", get(pages::login))
        .route("/logout", post(actions::logout))
        .route("/pushes/{push}", get(pages::push))
        .route("/pushes/{push}/live", get(pages::live_push))
        .route("/pushes/{push}/failures", get(pages::failures))
        .route("/pushes/{push}/export.csv", get(pages::export))
        .route("/pushes/{push}/recipients", get(explorer::page))
        .route("/pushes/{push}/recipients.csv", get(explorer::csv))
        .route("/pushes/{push}/audience", post(explorer::create_audience))
        .route("/audiences", get(audiences::list))
        .route("/audiences/{audience}", get(audiences::show))
        .route("/templates", get(templates::list))
        .route("/scripts", get(system::scripts))
        .route("/scripts/live", get(pages::live_scripts))
        .route("/channels", get(system::channels))
        .route("/audit", get(system::audit))
        .route(
            "/pushes/{push}/retry",
            get(pages::retry_form).post(actions::retry),
        )
        .route("/pushes/{push}/pause", lifecycle("pause"))
        .route("/pushes/{push}/resume", lifecycle("resume"))
        .route("/pushes/{push}/cancel", lifecycle("cancel"))
        .route(
            "/pushes/{push}/winner",
            get(pages::confirm_winner).post(actions::pick_winner),
        )
        .route(
            "/audiences/{audience}/push",
            get(pages::again_form).post(actions::again),
        )
        .route("/assets/{file}", get(assets::serve))
        .layer(middleware::from_fn_with_state(
            panel.clone(),
            guard::headers,
        ))
        .with_state(panel)
}

/// GET asks for confirmation; POST (from that page) does it.
fn lifecycle(action: &'static str) -> MethodRouter<Arc<Panel>> {
    get(
        move |State(panel): State<Arc<Panel>>, Path(name): Path<String>, who: SignedIn| {
            pages::confirm(panel, name, action, who)
        },
    )
    .post(
        move |State(panel): State<Arc<Panel>>,
              Path(name): Path<String>,
              who: SignedIn,
              headers: HeaderMap,
              Form(f): Form<actions::CsrfForm>| {
            actions::control(panel, name, action, who, headers, f.csrf)
        },
    )
}

/// What `serve` tells whoever started it: the panel's address and, on a
/// terminal only (never into a log file or the journal), a one-time admin
/// login link, so the first command ends in a browser.
pub async fn announce(backend: Backend) {
    let settings = backend.settings();
    let Some(addr) = backend.http_addr().filter(|_| settings.enabled) else {
        return;
    };
    if !addr.ip().is_loopback() {
        tracing::warn!(listen = %addr, "the panel is reachable from the network ([panel] allow_remote = true): put TLS in front of it");
    }
    println!("pushd panel: http://{addr}/");
    if std::io::stdout().is_terminal() {
        match backend.startup_login().await {
            Ok(login) => println!(
                "open this one-time admin link to sign in (valid until {}):\n  {}",
                login.expires_at, login.url
            ),
            Err(e) => tracing::warn!(error = %e, "cannot make a panel login link"),
        }
    }
}
