//! The HTTP API: App Mesh's 2019-01-25 REST paths (so `aws appmesh --endpoint-url` works),
//! SigV4 authentication, and the rest-json error shape. Knows nothing of proxy internals.

mod admin;
mod appliance;
mod appmesh;
mod auth;
mod error;
mod ops;
mod request;
mod serve;
pub mod sigv4;
mod tls;

pub use serve::{serve_with as serve, Limits, MAX_HEADER_BYTES};
pub use tls::server_config;

use std::sync::Arc;

use axum::Router;

pub use auth::{load_or_create_credentials, parse_credentials, CREDENTIALS_FILE};
pub use request::MAX_BODY;

use crate::ca::Ca;
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub keys: Arc<sigv4::Keys>,
    pub ca: Arc<Ca>,
    /// Connected proxies, for `list-proxies` and the admin page.
    pub registry: Arc<crate::sync::Registry>,
}

/// The whole API as one router, so tests can drive it without a socket.
pub fn router(state: AppState) -> Router {
    appmesh::routes()
        .merge(appliance::routes())
        .merge(admin::routes())
        .fallback(appmesh::unknown_operation)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        // Before routing, so no handler ever sees a path its signer read differently.
        .layer(axum::middleware::from_fn(refuse_dot_segments))
        // Outermost, so every log line below carries the request id.
        .layer(axum::middleware::from_fn(request_span))
        .with_state(state)
}

async fn refuse_dot_segments(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match request::check_path_segments(req.uri().path()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Gives each request an id (returned as `x-amzn-RequestId`, as AWS does) and a span that
/// carries it, the method, the path and, once the signature checks out, the caller's key id.
async fn request_span(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let request_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %req.uri().path(),
        caller = tracing::field::Empty,
    );
    let mut response = next.run(req).instrument(span).await;
    if let Ok(v) = http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-RequestId", v);
    }
    response
}
