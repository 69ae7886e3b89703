//! `appliance control`: opens the store, loads (or creates) the API credentials, and serves
//! the App Mesh API until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::notify;
use crate::api::{self, AppState};
use crate::store::Store;

/// Default API address: loopback, so a fresh install is not reachable from the network
/// until the operator chooses an address.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7070";
/// The store's file name under the data directory.
pub const STORE_FILE: &str = "store.redb";

#[derive(Debug, clap::Args)]
pub struct ControlArgs {
    /// Directory for the store, the API credentials and the CA. Created if missing.
    #[arg(long, env = "APPLIANCE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address of the App Mesh API (and admin page).
    #[arg(long, default_value = DEFAULT_API_LISTEN, env = "APPLIANCE_API_LISTEN")]
    pub api_listen: SocketAddr,
    /// Region written into ARNs. Requests signed for any region are accepted.
    #[arg(long, default_value = "us-east-1", env = "AWS_REGION")]
    pub region: String,
}

pub async fn run(args: ControlArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data directory {}", args.data_dir.display()))?;
    restrict_dir(&args.data_dir)?;
    let keys = api::load_or_create_credentials(&args.data_dir)?;
    let store_path = args.data_dir.join(STORE_FILE);
    let store = Store::open(&store_path, &args.region).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    tracing::info!(store = %store_path.display(), account = store.account(), version = store.version(), "store open");
    let listener = TcpListener::bind(args.api_listen)
        .await
        .with_context(|| format!("binding the API listener to {}", args.api_listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(role = "api", credentials = %args.data_dir.join(api::CREDENTIALS_FILE).display(), "listening on {addr}");
    let state = AppState {
        store,
        keys: Arc::new(keys),
    };
    notify::ready();
    notify::spawn_watchdog(shutdown.clone());
    let stop = shutdown.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        notify::stopping();
    });
    api::serve(listener, state, shutdown).await?;
    tracing::info!("control plane stopped");
    Ok(())
}

/// The data directory holds keys and credentials: only its owner may list it.
fn restrict_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {} to its owner", dir.display()))?;
    }
    Ok(())
}
