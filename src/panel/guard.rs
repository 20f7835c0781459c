//! What every panel response and request passes through: the security
//! headers (a strict CSP with no inline script, no framing, no referrer),
//! the Host check against DNS rebinding, and the same-origin check that
//! every state-changing POST must pass before its CSRF token is looked at.

use super::Panel;
use super::page;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Only our own files: no inline script or style, no other origin, no
/// plugins, forms post only here, nobody may frame the panel.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub async fn headers(State(panel): State<Arc<Panel>>, req: Request, next: Next) -> Response {
    if !panel.allow_remote && !host_is_local(req.headers()) {
        return page::refused(
            axum::http::StatusCode::MISDIRECTED_REQUEST,
            "Wrong address",
            "The panel answers only on this machine's loopback address (127.0.0.1, ::1 or localhost). \
             Open it there, or set [panel] allow_remote = true behind TLS.",
        )
        .into_response();
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// A page on 127.0.0.1 must not be reachable as `evil.example` resolving to
/// 127.0.0.1 (DNS rebinding): the Host must name the loopback.
fn host_is_local(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A state change must come from a page of this panel: `Sec-Fetch-Site:
/// same-origin` where the browser sends it, and an `Origin` naming this
/// host where it is present. A request carrying neither is refused too
/// (every browser form post sends one of them). Under `Referrer-Policy:
/// no-referrer` browsers send `Origin: null` with form posts, so an opaque
/// origin passes only with `Sec-Fetch-Site: same-origin` beside it.
pub fn same_origin(method: &Method, headers: &HeaderMap) -> Result<(), &'static str> {
    if method != Method::POST {
        return Ok(());
    }
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let same_site_fetch = match fetch_site {
        Some("same-origin") => true,
        Some(_) => return Err("the request came from another site (Sec-Fetch-Site)"),
        None => false,
    };
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some("null"), _) if same_site_fetch => Ok(()),
        (Some("null"), _) => Err("the request came from an opaque origin (Origin: null)"),
        (Some(origin), Some(host)) => {
            let ok = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|o| o.eq_ignore_ascii_case(host));
            if ok {
                Ok(())
            } else {
                Err("the request came from another origin (Origin)")
            }
        }
        (Some(_), None) => Err("the request has no Host"),
        (None, _) if same_site_fetch => Ok(()),
        (None, _) => Err("the request says neither its Origin nor its Sec-Fetch-Site"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn only_same_origin_posts_pass() {
        let post = Method::POST;
        let host = ("host", "127.0.0.1:8787");
        assert!(same_origin(&post, &h(&[host, ("origin", "http://127.0.0.1:8787")])).is_ok());
        assert!(same_origin(&post, &h(&[host, ("sec-fetch-site", "same-origin")])).is_ok());
        assert!(same_origin(&post, &h(&[host, ("origin", "http://evil.example")])).is_err());
        assert!(same_origin(&post, &h(&[host, ("sec-fetch-site", "cross-site")])).is_err());
        assert!(same_origin(&post, &h(&[host, ("sec-fetch-site", "same-site")])).is_err());
        assert!(same_origin(&post, &h(&[host])).is_err());
        let null = ("origin", "null");
        assert!(same_origin(&post, &h(&[host, null, ("sec-fetch-site", "same-origin")])).is_ok());
        assert!(same_origin(&post, &h(&[host, null])).is_err());
        assert!(same_origin(&post, &h(&[host, null, ("sec-fetch-site", "cross-site")])).is_err());
        assert!(same_origin(&Method::GET, &h(&[host])).is_ok());
    }

    #[test]
    fn hosts_must_be_loopback() {
        assert!(host_is_local(&h(&[("host", "127.0.0.1:8787")])));
        assert!(host_is_local(&h(&[("host", "localhost:1")])));
        assert!(host_is_local(&h(&[("host", "[::1]:8787")])));
        assert!(!host_is_local(&h(&[("host", "evil.example:8787")])));
        assert!(!host_is_local(&h(&[("host", "10.0.0.1")])));
        assert!(!host_is_local(&h(&[])));
    }
}
