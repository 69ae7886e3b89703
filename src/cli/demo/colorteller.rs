//! The walkthrough's colorteller app: answers every path with its colour, and `/ping` (the
//! nodes' health check) with an empty 200. It runs in the demo's own process, so nothing
//! of it can outlive the demo.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Binds 127.0.0.1 on a free port and serves `color` there until `stop`.
pub async fn spawn(color: &'static str, stop: CancellationToken) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .with_context(|| format!("binding the {color} colorteller"))?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        tracing::warn!(%e, color, "colorteller accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let stop = stop.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| answer(color, req));
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(tcp), svc);
                tokio::select! {
                    _ = stop.cancelled() => {}
                    res = conn => if let Err(e) = res {
                        tracing::debug!(%e, color, "colorteller connection ended");
                    },
                }
            });
        }
    });
    Ok(addr)
}

async fn answer(
    color: &'static str,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = if req.uri().path() == "/ping" {
        Bytes::new()
    } else {
        Bytes::from_static(color.as_bytes())
    };
    Ok(Response::new(Full::new(body)))
}
