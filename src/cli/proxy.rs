//! `appliance gateway` and `appliance sidecar`: a proxy that gets its config and certificate
//! from the control plane over QUIC (`--control`), or runs from a file (`--config`, as
//! `appliance ctl compile` writes it) for debugging and air-gapped hosts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::intercept::Installed;
use super::notify;
use crate::compile::ProxyConfig;
use crate::model::Identity;
use crate::proxy::{serve_admin, serve_listener, Layout, ListenerLimits, Listeners, Mode, Runtime};
use crate::sync::client::{self, Client, ClientOptions, Event};
use crate::sync::StateDir;

/// Where the admin listener binds by default (Envoy's admin port in App Mesh).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";
/// The sidecar's egress listener (App Mesh's ECS `ProxyEgressPort`).
pub const DEFAULT_EGRESS_LISTEN: &str = "127.0.0.1:15001";
/// After telling the control plane it is draining, a proxy keeps serving this long, so
/// peers stop sending to it before its listeners close.
const DRAIN_NOTICE: Duration = Duration::from_millis(1500);

/// Where a proxy's config comes from, and who it is.
#[derive(Debug, clap::Args)]
pub struct SourceArgs {
    /// Run from this config file (from `appliance ctl compile`) instead of the control plane.
    #[arg(long, conflicts_with_all = ["control", "token"])]
    pub config: Option<PathBuf>,
    /// The control plane's sync address, `host:port` (UDP).
    #[arg(long, env = "APPLIANCE_CONTROL", required_unless_present = "config")]
    pub control: Option<String>,
    /// A join token from `appliance ctl create-join-token`; needed only to enrol. It shows
    /// in `ps`: prefer --token-file or APPLIANCE_TOKEN.
    #[arg(long, env = "APPLIANCE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the join token (surrounding whitespace ignored), so it never appears
    /// in the process list.
    #[arg(long, conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// Keeps the proxy's key, certificate and last good config.
    #[arg(long, env = "APPLIANCE_STATE_DIR", required_unless_present = "config")]
    pub state_dir: Option<PathBuf>,
    /// `mesh/M/virtualNode/N`, `mesh/M/virtualGateway/G` or the full ARN. Defaults to
    /// APPMESH_RESOURCE_ARN, APPMESH_VIRTUAL_NODE_NAME or APPMESH_RESOURCE_NAME, as Envoy
    /// read them in App Mesh.
    #[arg(long)]
    pub identity: Option<String>,
    /// With --config: the proxy's own TLS credentials, DIR/cert.pem (chain), DIR/key.pem and
    /// DIR/ca.pem (CA bundle), re-read when they change. With --control they come from the
    /// control plane instead.
    #[arg(long, requires = "config")]
    pub credentials_dir: Option<PathBuf>,
    #[command(flatten)]
    pub limits: ListenerLimitArgs,
    /// `IP:PORT` of a DNS server for DNS service discovery, repeatable, instead of the
    /// system's (/etc/resolv.conf); /etc/hosts is read first either way.
    #[arg(long)]
    pub dns_resolver: Vec<SocketAddr>,
    /// `KEY=VALUE`, repeatable (sidecars): a Cloud Map attribute of this endpoint, which a
    /// node's `awsCloudMap.attributes` select by.
    #[arg(long, value_parser = crate::compile::parse_attribute, conflicts_with = "config")]
    pub attribute: Vec<(String, String)>,
}

impl SourceArgs {
    /// The join token from --token, APPLIANCE_TOKEN or --token-file.
    fn token(&self) -> anyhow::Result<Option<String>> {
        let Some(path) = &self.token_file else {
            return Ok(self.token.clone());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --token-file {}", path.display()))?;
        let token = text.trim();
        anyhow::ensure!(
            !token.is_empty(),
            "--token-file {} is empty; put the token from `appliance ctl create-join-token` in it",
            path.display()
        );
        Ok(Some(token.to_owned()))
    }
}

/// Limits on what downstream clients may hold of the proxy's HTTP listeners.
#[derive(Debug, clap::Args)]
pub struct ListenerLimitArgs {
    /// Longest a downstream client may take to send a request head, in milliseconds (from
    /// connecting, or from the end of its last response); then the connection is closed.
    /// Heads over 60 KiB are answered 431 regardless, as Envoy does.
    #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub header_read_timeout_ms: u64,
    /// Most open downstream connections per listener; past it a new connection gets a 503
    /// ("too many open connections") on plain HTTP, or is closed on TLS.
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
}

impl ListenerLimitArgs {
    fn limits(&self) -> ListenerLimits {
        ListenerLimits {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Bind address for the (first) listener, overriding 0.0.0.0:<listener port>.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address of /ready, /stats and /config.
    #[arg(long, default_value = DEFAULT_ADMIN_LISTEN)]
    pub admin_listen: SocketAddr,
}

#[derive(Debug, clap::Args)]
pub struct SidecarArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The local app's address, where inbound requests go.
    #[arg(long)]
    pub app: SocketAddr,
    /// Bind address for the (first) inbound listener, overriding 0.0.0.0:<listener port>.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Where other proxies reach this one (the node's endpoint). Defaults to --listen, or to
    /// this host's address towards the control plane and the listener's port.
    #[arg(long)]
    pub advertise: Option<SocketAddr>,
    /// Where the app sends requests for its backends (`Host: <virtual service>`).
    #[arg(long, default_value = DEFAULT_EGRESS_LISTEN)]
    pub egress_listen: SocketAddr,
    #[arg(long, default_value = DEFAULT_ADMIN_LISTEN)]
    pub admin_listen: SocketAddr,
    /// `VIRTUAL_SERVICE[:PORT]=LISTEN_ADDR`, repeatable: a local port for a backend reached
    /// over raw TCP, routed by its tcp route (the one matching PORT, when given). Raw TCP has
    /// no Host header; App Mesh used iptables' original destination, this uses one port per
    /// backend. The node must declare the backend.
    #[arg(long, value_parser = EgressTcp::parse)]
    pub egress_tcp: Vec<EgressTcp>,
    /// Install App Mesh's iptables interception (APPMESH_* variables, as `appliance
    /// intercept install`; the sidecar's own user is the ignored one unless
    /// APPMESH_IGNORE_UID/GID says otherwise) once the listeners are up, and remove it on
    /// stop. The app then needs no proxy settings: its TCP goes to --egress-listen, which
    /// routes by the original destination. Needs root or CAP_NET_ADMIN; if the rules cannot
    /// be installed, the sidecar stops rather than run unprotected.
    #[arg(long)]
    pub intercept: bool,
}

/// One `--egress-tcp` mapping.
#[derive(Debug, Clone)]
pub struct EgressTcp {
    pub service: String,
    pub port: Option<u16>,
    pub listen: SocketAddr,
}

impl EgressTcp {
    fn parse(raw: &str) -> Result<EgressTcp, String> {
        let (lhs, listen) = raw
            .split_once('=')
            .ok_or_else(|| format!("{raw:?}: expected VIRTUAL_SERVICE[:PORT]=LISTEN_ADDR"))?;
        let listen = listen
            .parse()
            .map_err(|e| format!("{raw:?}: listen address {listen:?}: {e}"))?;
        let (service, port) = match lhs.rsplit_once(':') {
            Some((s, p)) => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("{raw:?}: port {p:?} is not 0-65535"))?;
                (s, Some(port))
            }
            None => (lhs, None),
        };
        if service.is_empty() {
            return Err(format!("{raw:?}: no virtual service name"));
        }
        Ok(EgressTcp {
            service: service.to_owned(),
            port,
            listen,
        })
    }
}

/// The identity from --identity or App Mesh's environment variables, short or ARN form.
fn identity(arg: &Option<String>) -> anyhow::Result<Identity> {
    let (raw, from) = match arg {
        Some(v) => (v.clone(), "--identity"),
        None => {
            let found = [
                "APPMESH_RESOURCE_ARN",
                "APPMESH_VIRTUAL_NODE_NAME",
                "APPMESH_RESOURCE_NAME",
            ]
            .into_iter()
            .find_map(|k| {
                std::env::var(k)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .map(|v| (v, k))
            });
            found.ok_or_else(|| {
                anyhow::anyhow!("no identity: pass --identity mesh/M/virtualNode/N or set APPMESH_VIRTUAL_NODE_NAME")
            })?
        }
    };
    // arn:aws:appmesh:REGION:ACCOUNT:mesh/M/virtualNode/N
    let path = if raw.starts_with("arn:") {
        raw.splitn(6, ':').nth(5).unwrap_or_default().to_owned()
    } else {
        raw.clone()
    };
    Identity::parse(&path).with_context(|| format!("{from}: {raw:?}"))
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

/// A sidecar's egress listeners: HTTP (Host names the service) and one per `--egress-tcp`.
#[derive(Default)]
struct Egress {
    http: Option<SocketAddr>,
    tcp: Vec<EgressTcp>,
    /// `--intercept`: iptables rules installed once the listeners are up.
    intercept: bool,
}

async fn start_admin(
    addr: SocketAddr,
    rt: &Arc<Runtime>,
    shutdown: &CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
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
    let role = Layout::Gateway {
        listen: args.listen,
    };
    let egress = Egress::default();
    run(args.source, role, egress, args.admin_listen, None, shutdown).await
}

pub async fn run_sidecar(args: SidecarArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let role = Layout::Sidecar {
        app: args.app,
        listen: args.listen,
    };
    let egress = Egress {
        http: Some(args.egress_listen),
        tcp: args.egress_tcp,
        intercept: args.intercept,
    };
    let advertise = args.advertise;
    run(
        args.source,
        role,
        egress,
        args.admin_listen,
        advertise,
        shutdown,
    )
    .await
}

fn check_kind(identity: &Identity, role: &Layout, what: &str) -> anyhow::Result<()> {
    match (role, identity.is_gateway()) {
        (Layout::Gateway { .. }, false) => {
            anyhow::bail!(
                "{what} is for {identity}, not a virtual gateway; use `appliance sidecar`"
            )
        }
        (Layout::Sidecar { .. }, true) => {
            anyhow::bail!("{what} is for {identity}, not a virtual node; use `appliance gateway`")
        }
        _ => Ok(()),
    }
}

async fn run(
    source: SourceArgs,
    role: Layout,
    egress: Egress,
    admin: SocketAddr,
    advertise: Option<SocketAddr>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Listeners stop only after the control plane has been told we are draining.
    let listeners_stop = CancellationToken::new();
    if let Some(path) = &source.config {
        let config = load(path)?;
        check_kind(&config.identity, &role, &path.display().to_string())?;
        let rt = Runtime::new(config.clone(), listeners_stop.clone())?;
        rt.set_limits(source.limits.limits());
        rt.set_dns_resolvers(source.dns_resolver.clone());
        if let Some(dir) = &source.credentials_dir {
            crate::proxy::watch_credentials_dir(&rt, dir, listeners_stop.clone())?;
        }
        let (listeners, tasks) = start(&role, rt, config, &egress, admin, &listeners_stop).await?;
        let _intercept = intercept(&role, &egress).inspect_err(|_| listeners_stop.cancel())?;
        notify::ready();
        notify::spawn_watchdog(shutdown.clone());
        shutdown.cancelled().await;
        listeners_stop.cancel();
        listeners.join().await;
        for t in tasks {
            let _ = t.await;
        }
        return Ok(());
    }

    let identity = identity(&source.identity)?;
    check_kind(&identity, &role, "--identity")?;
    let (Some(control), Some(state_dir)) = (source.control.clone(), source.state_dir.clone())
    else {
        anyhow::bail!("--control and --state-dir are required without --config");
    };
    let state = StateDir::open(&state_dir, &identity).map_err(anyhow::Error::msg)?;
    let cached = match state.config() {
        Some(Ok(c)) if c.identity == identity => Some(c),
        Some(Ok(c)) => {
            tracing::warn!(cached = %c.identity, "the cached config is for another identity; ignored");
            None
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, "the cached config is unusable; waiting for the control plane");
            None
        }
        None => None,
    };
    let advertise = match (&role, advertise) {
        (Layout::Gateway { .. }, _) => None,
        (_, Some(a)) => Some(a.to_string()),
        (Layout::Sidecar { listen, .. }, None) => Some(default_advertise(*listen, &control).await),
    };
    anyhow::ensure!(
        source.attribute.is_empty() || advertise.is_some(),
        "--attribute: only a sidecar registers an endpoint to carry attributes"
    );
    crate::compile::attribute_map(source.attribute.clone())
        .map_err(|e| anyhow::anyhow!("--attribute: {e}"))?;
    let opts = ClientOptions {
        control,
        identity: identity.clone(),
        advertise,
        attributes: source.attribute.clone(),
    };
    let token = source.token()?;
    let mut creds = client::ensure_enrolled(&opts, &state, token.as_deref(), &shutdown)
        .await
        .map_err(anyhow::Error::new)?;

    let (events_tx, mut events) = mpsc::channel::<Event>(4);
    // A sidecar's app is unhealthy until its first check passes, so a sidecar that starts
    // before its app is no endpoint yet; a gateway has no app.
    let (health_tx, health_rx) = watch::channel(matches!(role, Layout::Gateway { .. }));
    let running_version = cached.as_ref().map_or(0, |c| c.version);
    let runtime_cell: Arc<std::sync::OnceLock<Arc<Runtime>>> = Arc::default();
    let stats_cell = runtime_cell.clone();
    let sync_stop = CancellationToken::new();
    let client = Client {
        opts,
        state: Arc::new(state),
        events: events_tx,
        health: health_rx,
        stats: Arc::new(move || {
            stats_cell
                .get()
                .map(|rt| rt.target_totals())
                .unwrap_or_default()
        }),
        running_version,
    };
    let sync_task = tokio::spawn(client.run(sync_stop.clone()));

    // Serve from the cache at once if there is one; otherwise wait for the first config.
    let first = match cached {
        Some(c) => {
            tracing::info!(
                version = c.version,
                "serving the cached config until the control plane answers"
            );
            c
        }
        None => loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    sync_stop.cancel();
                    let _ = sync_task.await;
                    return Ok(());
                }
                e = events.recv() => match e {
                    Some(Event::Config { config, reply }) => {
                        let _ = reply.send(Ok(()));
                        break *config;
                    }
                    Some(Event::Credentials(c)) => { creds = c; continue }
                    None => anyhow::bail!("the sync client stopped"),
                }
            }
        },
    };
    let rt = Runtime::new(first.clone(), listeners_stop.clone())?;
    rt.set_limits(source.limits.limits());
    rt.set_dns_resolvers(source.dns_resolver.clone());
    let _ = runtime_cell.set(rt.clone());
    // The leaf from enrolment (or the state dir) is the data plane's TLS identity too.
    rt.set_credentials(creds.clone())
        .context("the proxy's credentials")?;
    let (mut listeners, tasks) =
        match start(&role, rt.clone(), first, &egress, admin, &listeners_stop).await {
            Ok(x) => x,
            Err(e) => {
                sync_stop.cancel();
                return Err(e);
            }
        };
    let _intercept = intercept(&role, &egress).inspect_err(|_| {
        sync_stop.cancel();
        listeners_stop.cancel();
    })?;
    if let Layout::Sidecar { app, .. } = &role {
        let mut app_health = rt.watch_app(app.to_string(), listeners_stop.clone());
        tokio::spawn(async move {
            while app_health.changed().await.is_ok() {
                let h = *app_health.borrow_and_update();
                if health_tx.send(h).is_err() {
                    return;
                }
            }
        });
    }
    notify::ready();
    notify::spawn_watchdog(shutdown.clone());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            e = events.recv() => match e {
                Some(Event::Config { config, reply }) => {
                    let _ = reply.send(listeners.apply(*config, true).await.map_err(|e| e.to_string()));
                }
                Some(Event::Credentials(c)) => match rt.set_credentials(c) {
                    Ok(()) => tracing::info!("new certificate in use for new connections"),
                    Err(e) => tracing::error!(error = %e, "the renewed certificate is unusable; keeping the previous one"),
                },
                None => break,
            }
        }
    }
    // Drain: say so to the control plane, give peers a moment to stop sending, then close
    // the listeners and let in-flight requests finish.
    sync_stop.cancel();
    let _ = sync_task.await;
    tokio::time::sleep(DRAIN_NOTICE).await;
    listeners_stop.cancel();
    listeners.join().await;
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// With `--intercept`, the iptables rules, removed when the result is dropped.
fn intercept(role: &Layout, egress: &Egress) -> anyhow::Result<Option<Installed>> {
    let (true, Some(http), Layout::Sidecar { listen, .. }) = (egress.intercept, egress.http, role)
    else {
        return Ok(None);
    };
    Installed::install(http, *listen).map(Some)
}

/// Binds the admin listener, the config's listeners and (sidecars) the egress listener.
async fn start(
    role: &Layout,
    rt: Arc<Runtime>,
    config: ProxyConfig,
    egress: &Egress,
    admin: SocketAddr,
    stop: &CancellationToken,
) -> anyhow::Result<(Listeners, Vec<JoinHandle<()>>)> {
    let mut tasks = vec![start_admin(admin, &rt, stop).await?];
    let mut listeners = Listeners::new(role.clone(), rt.clone(), stop.clone());
    listeners.apply(config, false).await?;
    // Refused before any port is bound: a typo in a backend name must not look like a
    // backend that refuses connections.
    let declared = rt.config();
    for e in &egress.tcp {
        if !declared.services.contains_key(&e.service) {
            anyhow::bail!(
                "--egress-tcp {}: {} does not declare the backend {}; add it to the virtual node's backends",
                e.service,
                rt.identity,
                e.service
            );
        }
    }
    for e in &egress.tcp {
        let sock = bind(e.listen, "egress-tcp").await?;
        let role = format!("egress-tcp/{}", e.service);
        tracing::info!(role = role.as_str(), identity = %rt.identity, "listening on {}", sock.local_addr()?);
        let (rt, s) = (rt.clone(), stop.clone());
        let mode = Mode::EgressTcp {
            service: e.service.clone(),
            port: e.port,
        };
        tasks.push(tokio::spawn(async move {
            serve_listener(sock, rt, mode, s).await
        }));
    }
    if let Some(addr) = egress.http {
        let sock = bind(addr, "egress").await?;
        tracing::info!(role = "sidecar-egress", identity = %rt.identity, "listening on {}", sock.local_addr()?);
        let s = stop.clone();
        tasks.push(tokio::spawn(async move {
            serve_listener(sock, rt, Mode::Egress, s).await
        }));
    }
    Ok((listeners, tasks))
}

/// A sidecar's endpoint when --advertise is not given: --listen if it names an address,
/// else the address this host uses towards the control plane, with no port: the control
/// plane then uses each listener's own port.
async fn default_advertise(listen: Option<SocketAddr>, control: &str) -> String {
    if let Some(l) = listen.filter(|l| !l.ip().is_unspecified() && l.port() != 0) {
        return l.to_string();
    }
    let ip = async {
        let target = tokio::net::lookup_host(control).await.ok()?.next()?;
        let bind = if target.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        let sock = tokio::net::UdpSocket::bind(bind).await.ok()?;
        sock.connect(target).await.ok()?;
        Some(sock.local_addr().ok()?.ip())
    }
    .await
    .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    ip.to_string()
}
