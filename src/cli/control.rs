//! `appliance control`: opens the store and the CA, loads (or creates) the API credentials,
//! and serves the App Mesh API until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::notify;
use crate::api::{self, AppState};
use crate::ca::{private, Ca, CaConfig, CERTS_DIR, DEFAULT_TRUST_DOMAIN};
use crate::store::Store;
use crate::sync::{self, Registry};

/// Default API address: loopback, so a fresh install is not reachable from the network
/// until the operator chooses an address.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7070";
/// The store's file name under the data directory.
pub const STORE_FILE: &str = "store.redb";
/// How often the CA checks for authorities to rotate or retire.
const CA_MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug, clap::Args)]
pub struct ControlArgs {
    /// Directory for the store, the API credentials and the CA. Created if missing.
    #[arg(long, env = "APPLIANCE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address of the App Mesh API (and admin page).
    #[arg(long, default_value = DEFAULT_API_LISTEN, env = "APPLIANCE_API_LISTEN")]
    pub api_listen: SocketAddr,
    /// Serve the API over TLS with a certificate from the appliance's CA. It names
    /// `localhost`, this host's name, the listen address and every `--api-tls-name`.
    #[arg(long, env = "APPLIANCE_API_TLS")]
    pub api_tls: bool,
    /// Extra DNS name for the API's certificate (repeatable), e.g. the name clients use.
    #[arg(long = "api-tls-name")]
    pub api_tls_names: Vec<String>,
    /// Region written into ARNs. Requests signed for any region are accepted.
    #[arg(long, default_value = "us-east-1", env = "AWS_REGION")]
    pub region: String,
    /// SPIFFE trust domain of the identities in leaf certificates.
    #[arg(long, default_value = DEFAULT_TRUST_DOMAIN, env = "APPLIANCE_TRUST_DOMAIN")]
    pub trust_domain: String,
    /// Lifetime of proxies' leaf certificates, in seconds. Renewal starts at two thirds.
    #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(60..=31_536_000))]
    pub leaf_ttl: u64,
    /// Where proxies connect for their config and certificates (QUIC, UDP).
    #[arg(long, default_value = crate::sync::DEFAULT_SYNC_LISTEN, env = "APPLIANCE_SYNC_LISTEN")]
    pub sync_listen: SocketAddr,
    /// How long a disconnected sidecar's endpoint stays in its node's endpoints, in
    /// milliseconds, in case it is only reconnecting.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub sync_grace_ms: u64,
    /// Longest a client may take to send a request's head (request line and headers), in
    /// milliseconds, from connecting or from the end of its last response; then the
    /// connection is closed. Stops clients that open connections and never finish a request.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub header_read_timeout_ms: u64,
    /// Longest wait for the next piece of a request body, in milliseconds; a stalled upload
    /// is answered 400 and its buffer freed.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub body_read_timeout_ms: u64,
    /// Longest a whole API request may take, in milliseconds, head to response (503 after).
    /// Also bounds how long shutdown waits for a slow request.
    #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub request_timeout_ms: u64,
    /// Most API connections open at once; past it a new connection gets a 503 ("too many
    /// open connections") over plain HTTP, or is closed over TLS. Request heads over 60 KiB
    /// get a 431 regardless.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
}

pub async fn run(args: ControlArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    private::open_private_dir(&args.data_dir).context("the data directory")?;
    private::refuse_link(&args.data_dir.join(api::CREDENTIALS_FILE))?;
    let keys = api::load_or_create_credentials(&args.data_dir)?;
    let store_path = args.data_dir.join(STORE_FILE);
    prepare_store_file(&store_path)?;
    let store = Store::open(&store_path, &args.region).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    tracing::info!(store = %store_path.display(), account = store.account(), version = store.version(), "store open");
    let ca_config = CaConfig {
        trust_domain: args.trust_domain.clone(),
        region: args.region.clone(),
        account: store.account().to_owned(),
        leaf_ttl: time::Duration::seconds(i64::try_from(args.leaf_ttl).unwrap_or(i64::MAX)),
    };
    let ca = Arc::new(Ca::open_or_create(
        &args.data_dir.join(CERTS_DIR),
        ca_config,
        time::OffsetDateTime::now_utc(),
    )?);
    tracing::info!(arn = %ca.ca_arn(), trust_domain = %args.trust_domain, "CA ready");
    spawn_ca_maintenance(ca.clone(), shutdown.clone());

    let listener = TcpListener::bind(args.api_listen)
        .await
        .with_context(|| format!("binding the API listener to {}", args.api_listen))?;
    let addr = listener.local_addr()?;
    let registry = Arc::new(Registry::new(Duration::from_millis(args.sync_grace_ms)));
    let sync_endpoint = sync::server::bind(args.sync_listen, &ca)?;
    tracing::info!(
        role = "sync",
        alpn = "appliance-sync/1",
        "listening on {}/udp",
        sync_endpoint.local_addr()?
    );
    let sync_ctx = sync::server::Context::new(store.clone(), ca.clone(), registry.clone());
    let sync_task = tokio::spawn(sync::server::serve(
        sync_endpoint,
        sync_ctx,
        shutdown.clone(),
    ));
    let state = AppState {
        store,
        keys: Arc::new(keys),
        ca: ca.clone(),
        registry,
    };
    let tls = if args.api_tls {
        Some(api_tls_config(&ca, &args, addr)?)
    } else {
        None
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(role = "api", scheme, credentials = %args.data_dir.join(api::CREDENTIALS_FILE).display(), "listening on {addr}");
    notify::ready();
    notify::spawn_watchdog(shutdown.clone());
    let stop = shutdown.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        notify::stopping();
    });
    let limits = api::Limits {
        header_read_timeout: Duration::from_millis(args.header_read_timeout_ms),
        body_read_timeout: Duration::from_millis(args.body_read_timeout_ms),
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        drain_deadline: api::Limits::default().drain_deadline,
    };
    api::serve(listener, state, limits, tls, shutdown).await?;
    let _ = sync_task.await;
    tracing::info!("control plane stopped");
    Ok(())
}

fn api_tls_config(
    ca: &Ca,
    args: &ControlArgs,
    addr: SocketAddr,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut names = vec!["localhost".to_owned()];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() && crate::ca::check_dns_name(host).is_ok() {
            names.push(host.to_owned());
        }
    }
    names.extend(args.api_tls_names.iter().cloned());
    let mut ips = vec![addr.ip()];
    if addr.ip().is_unspecified() {
        ips = vec!["127.0.0.1".parse()?, "::1".parse()?];
    }
    let (chain, key) = ca.issue_server_cert(&names, &ips, time::OffsetDateTime::now_utc())?;
    api::server_config(&chain, &key)
}

fn spawn_ca_maintenance(ca: Arc<Ca>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CA_MAINTENANCE_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    let ca = ca.clone();
                    let result = tokio::task::spawn_blocking(move || ca.maintain(time::OffsetDateTime::now_utc())).await;
                    match result {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::error!(error = %e, "CA maintenance failed"),
                        Err(e) => tracing::error!(error = %e, "CA maintenance task failed"),
                    }
                }
            }
        }
    });
}

/// The store is created 0600 before redb opens it (redb initialises an empty file), and an
/// older one is set to 0600; a link in its place (which would put the database elsewhere)
/// is refused.
fn prepare_store_file(path: &std::path::Path) -> anyhow::Result<()> {
    private::refuse_link(path)?;
    if !path.exists() {
        private::create_fresh(path, 0o600)?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {} to its owner", path.display()))?;
    }
    Ok(())
}
