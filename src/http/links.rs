//! `GET|HEAD /l/{token}`: a tracked link's click, answered with a 302 to
//! the URL registered for it (never to anything the request carries), 404
//! for a token that is not ours, 503 when the click cannot be recorded.
//! No Lua and no read before the answer: the token is checked in memory and
//! the click recorded (and its URL found) in one batched store write.

use super::Headers;
use crate::links::{ClickOutcome, Links};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub(super) async fn redirect(
    State(links): State<Arc<Links>>,
    Path(token): Path<String>,
    method: Method,
    Headers(headers): Headers,
) -> Response {
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let outcome = links
        .click(&token, method == Method::HEAD, user_agent)
        .await;
    // Every answer is per request: a cached redirect would hide the next
    // click, a cached 404 a link that works later.
    let no_store = (header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match outcome {
        ClickOutcome::Redirect(url) => match HeaderValue::from_str(&url) {
            Ok(location) => (
                StatusCode::FOUND,
                [
                    (header::LOCATION, location),
                    no_store,
                    // The token names a recipient: keep it out of the
                    // destination's Referer.
                    (
                        header::REFERRER_POLICY,
                        HeaderValue::from_static("no-referrer"),
                    ),
                    (
                        header::HeaderName::from_static("x-robots-tag"),
                        HeaderValue::from_static("noindex, nofollow"),
                    ),
                ],
            )
                .into_response(),
            Err(_) => {
                tracing::error!(%url, "a registered link URL cannot be sent as a Location header");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [no_store],
                    "this link's address cannot be used\n",
                )
                    .into_response()
            }
        },
        ClickOutcome::NotFound => (
            StatusCode::NOT_FOUND,
            [no_store],
            "unknown link: check that it was copied whole\n",
        )
            .into_response(),
        ClickOutcome::Unavailable(why) => {
            tracing::warn!(error = %why, "cannot record a link click");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [
                    no_store,
                    (header::RETRY_AFTER, HeaderValue::from_static("5")),
                ],
                "cannot open this link right now; try again in a moment\n",
            )
                .into_response()
        }
    }
}
