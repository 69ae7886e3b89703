//! The proxy's admin listener: `/ready`, `/stats` (Prometheus text) and `/config` (the
//! running ProxyConfig as JSON, Envoy's config_dump for this proxy).

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Runtime;

pub async fn serve_admin(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/ready", get(ready))
        .route("/stats", get(stats))
        .route("/config", get(config))
        .with_state(runtime);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

/// LIVE, or 503 while a gateway listener fails its own `healthCheck`.
async fn ready(State(rt): State<Arc<Runtime>>) -> axum::response::Response {
    let failing = rt.unhealthy_listeners();
    if failing.is_empty() {
        return "LIVE\n".into_response();
    }
    (
        http::StatusCode::SERVICE_UNAVAILABLE,
        format!("UNHEALTHY: listener {failing:?} fails its health check\n"),
    )
        .into_response()
}

async fn stats(State(rt): State<Arc<Runtime>>) -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        rt.stats.encode(),
    )
}

async fn config(State(rt): State<Arc<Runtime>>) -> impl IntoResponse {
    Json((*rt.config()).clone())
}
