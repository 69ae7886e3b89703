//! `appliance gateway` and `appliance sidecar`: run a proxy from a `ProxyConfig` file (as
//! `appliance ctl compile` writes it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::notify;
use crate::compile::{ListenerRole, ProxyConfig};
use crate::proxy::{serve_admin, serve_listener, Mode, Runtime};

/// Where the admin listener binds by default (Envoy's admin port in App Mesh).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";
/// The sidecar's egress listener (App Mesh's ECS `ProxyEgressPort`).
pub const DEFAULT_EGRESS_LISTEN: &str = "127.0.0.1:15001";

#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
    /// The proxy config (JSON, from `appliance ctl compile --identity mesh/M/virtualGateway/G`).
    #[arg(long)]
    pub config: PathBuf,
    /// Bind address for the (first) listener, overriding 0.0.0.0:<listener port>.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address of /ready, /stats and /config.
    #[arg(long, default_value = DEFAULT_ADMIN_LISTEN)]
    pub admin_listen: SocketAddr,
    /// The proxy's own TLS credentials: DIR/cert.pem (chain), DIR/key.pem, DIR/ca.pem
    /// (CA bundle), re-read when they change.
    #[arg(long)]
    pub credentials_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct SidecarArgs {
    /// The proxy config (JSON, from `appliance ctl compile --identity mesh/M/virtualNode/N`).
    #[arg(long)]
    pub config: PathBuf,
    /// The local app's address, where inbound requests go.
    #[arg(long)]
    pub app: SocketAddr,
    /// Bind address for the (first) inbound listener, overriding 0.0.0.0:<listener port>.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Where the app sends requests for its backends (`Host: <virtual service>`).
    #[arg(long, default_value = DEFAULT_EGRESS_LISTEN)]
    pub egress_listen: SocketAddr,
    #[arg(long, default_value = DEFAULT_ADMIN_LISTEN)]
    pub admin_listen: SocketAddr,
    /// The proxy's own TLS credentials: DIR/cert.pem (chain), DIR/key.pem, DIR/ca.pem
    /// (CA bundle), re-read when they change.
    #[arg(long)]
    pub credentials_dir: Option<PathBuf>,
}

fn load(path: &PathBuf) -> anyhow::Result<ProxyConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    ProxyConfig::from_json(&text).with_context(|| format!("{}", path.display()))
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener to {addr}"))
}

async fn start_admin(
    addr: SocketAddr,
    rt: &Arc<Runtime>,
    shutdown: &CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let l = bind(addr, "admin").await?;
    tracing::info!(role = "admin", "listening on {}", l.local_addr()?);
    let (rt, stop) = (rt.clone(), shutdown.clone());
    Ok(tokio::spawn(async move {
        if let Err(e) = serve_admin(l, rt, stop).await {
            tracing::error!(error = %e, "admin listener failed");
        }
    }))
}

pub async fn run_gateway(args: GatewayArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = load(&args.config)?;
    if !config.identity.is_gateway() {
        anyhow::bail!(
            "{}: the config is for {}, not a virtual gateway",
            args.config.display(),
            config.identity
        );
    }
    let rt = Runtime::new(config.clone(), shutdown.clone())?;
    if let Some(dir) = &args.credentials_dir {
        crate::proxy::watch_credentials_dir(&rt, dir, shutdown.clone())?;
    }
    let mut tasks = vec![start_admin(args.admin_listen, &rt, &shutdown).await?];
    for (i, l) in config.listeners.iter().enumerate() {
        let addr = match (i, args.listen) {
            (0, Some(a)) => a,
            _ => SocketAddr::from(([0, 0, 0, 0], l.port)),
        };
        let sock = bind(addr, "gateway").await?;
        tracing::info!(role = "gateway", identity = %config.identity, port = l.port, "listening on {}", sock.local_addr()?);
        let (rt, stop, mode) = (rt.clone(), shutdown.clone(), Mode::Gateway { port: l.port });
        tasks.push(tokio::spawn(async move {
            serve_listener(sock, rt, mode, stop).await
        }));
    }
    notify::ready();
    notify::spawn_watchdog(shutdown.clone());
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

pub async fn run_sidecar(args: SidecarArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = load(&args.config)?;
    if config.identity.is_gateway() {
        anyhow::bail!(
            "{}: the config is for {}, not a virtual node",
            args.config.display(),
            config.identity
        );
    }
    let rt = Runtime::new(config.clone(), shutdown.clone())?;
    if let Some(dir) = &args.credentials_dir {
        crate::proxy::watch_credentials_dir(&rt, dir, shutdown.clone())?;
    }
    let mut tasks = vec![start_admin(args.admin_listen, &rt, &shutdown).await?];
    for (i, l) in config.listeners.iter().enumerate() {
        let ListenerRole::Inbound { .. } = &l.role else {
            continue;
        };
        let addr = match (i, args.listen) {
            (0, Some(a)) => a,
            _ => SocketAddr::from(([0, 0, 0, 0], l.port)),
        };
        let sock = bind(addr, "inbound").await?;
        tracing::info!(role = "sidecar-inbound", identity = %config.identity, port = l.port, app = %args.app, "listening on {}", sock.local_addr()?);
        // The app listens on the listener's port at the app's address, unless this is the
        // first listener, whose app address is --app.
        let app = if i == 0 {
            args.app.to_string()
        } else {
            SocketAddr::new(args.app.ip(), l.port).to_string()
        };
        let mode = Mode::Inbound {
            app,
            per_request_timeout_ms: l.per_request_timeout_ms,
        };
        let (rt, stop) = (rt.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            serve_listener(sock, rt, mode, stop).await
        }));
    }
    let egress = bind(args.egress_listen, "egress").await?;
    tracing::info!(role = "sidecar-egress", identity = %config.identity, "listening on {}", egress.local_addr()?);
    let (rt2, stop) = (rt.clone(), shutdown.clone());
    tasks.push(tokio::spawn(async move {
        serve_listener(egress, rt2, Mode::Egress, stop).await
    }));
    notify::ready();
    notify::spawn_watchdog(shutdown.clone());
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
