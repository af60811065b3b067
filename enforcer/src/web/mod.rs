//! The enforcer's read-only HTTP endpoint (by default on loopback): the zone-map
//! page, its JSON data and the Prometheus metrics. Only `GET` (and `HEAD`) is
//! served; every other method is answered with 405. Nothing here changes state.
//!
//! # Layout
//! - [`map`]: `/api/map`, the zone map built from a snapshot (pure).
//! - [`layout`]: where each zone and namespace group goes on the map (pure).
//! - [`metrics`]: `/metrics`, counters fed where things happen, gauges at scrape time.
//! - [`instrument`]: decorators of the data plane and the store that feed metrics.
//! - `page.html`: `/`, one self-contained page (inline CSS and JS, no CDN, no fonts)
//!   that draws `/api/map` as SVG.

pub mod instrument;
pub mod layout;
pub mod map;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::learning::Learning;
use crate::registry::{EndpointRegistry, now_unix_ms};
pub use metrics::{Metrics, VerdictCounters};

/// The page, embedded in the binary.
pub const PAGE: &str = include_str!("page.html");
/// The default `--web-listen` address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9917";

/// Nothing outside this origin, no framing; scripts and styles only inline.
const PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; connect-src 'self'; img-src data:; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(
        "cannot listen on {addr} for the zone-map page and /metrics: {source}; choose \
         another address with --web-listen or turn the page off with --no-web"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the handlers read.
#[derive(Clone)]
pub struct WebState {
    pub registry: EndpointRegistry,
    pub learning: Learning,
    pub metrics: Metrics,
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, WebError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| WebError::Bind { addr, source })
}

/// Serves until the task is aborted or the listener fails.
pub async fn serve(listener: TcpListener, state: WebState) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}

pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/map", get(api_map))
        .route("/metrics", get(metrics))
        .fallback(fallback)
        .with_state(Arc::new(state))
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

async fn api_map(State(state): State<Arc<WebState>>) -> Response {
    let snapshot = state.registry.snapshot();
    let mut map = map::zone_map(
        &snapshot,
        &state.learning.learned(),
        &state.learning.reports(),
        state.registry.node(),
        now_unix_ms(),
    );
    if let Some(responder) = state.learning.responder() {
        responder.annotate_map(&mut map, &snapshot);
    }
    match serde_json::to_vec(&map) {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            body,
        )
            .into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

async fn metrics(State(state): State<Arc<WebState>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = metrics::Format::negotiate(accept);
    let store = state.registry.store_health().await;
    let input = metrics::ScrapeInput {
        snapshot: &state.registry.snapshot(),
        learning: state.learning.totals(),
        verdicts: state.learning.verdicts(),
        responses: state.learning.responder().map(|r| r.counters()),
        readiness: state.registry.readiness(),
        store: &store,
    };
    let text = state.metrics.render(&input, format);
    ([(header::CONTENT_TYPE, format.content_type())], text).into_response()
}

async fn fallback(method: Method) -> Response {
    if method == Method::GET || method == Method::HEAD {
        (
            StatusCode::NOT_FOUND,
            "not found: try /, /api/map or /metrics\n",
        )
            .into_response()
    } else {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
            "this endpoint is read-only: only GET is served\n",
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests;
