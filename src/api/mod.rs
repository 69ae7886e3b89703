//! The HTTP API: App Mesh's 2019-01-25 REST paths (so `aws appmesh --endpoint-url` works),
//! SigV4 authentication, and the rest-json error shape. Knows nothing of proxy internals.

mod admin;
mod appliance;
mod appmesh;
mod auth;
mod error;
mod ops;
mod request;
pub mod sigv4;
mod tls;

pub use tls::{serve_tls, server_config};

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
        // Outermost, so every log line below carries the request id.
        .layer(axum::middleware::from_fn(request_span))
        .with_state(state)
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

/// Serves the API on `listener` until `shutdown` fires, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}
