//! `appliance intercept install|remove` (for a unit's `ExecStartPre=+`/`ExecStopPost=+`)
//! and `appliance sidecar --intercept`: App Mesh's iptables interception, its `APPMESH_*`
//! variables read here, once. The rules themselves are `proxy::intercept`'s.

use std::net::SocketAddr;

use anyhow::Context;

use crate::proxy::intercept::{self, InterceptConfig, System};

#[derive(Debug, clap::Args)]
pub struct InterceptArgs {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, Clone, Copy, clap::Subcommand)]
pub enum Action {
    /// Install the APPMESH_INGRESS/APPMESH_EGRESS nat rules from App Mesh's variables:
    /// APPMESH_IGNORE_UID or APPMESH_IGNORE_GID (required: the proxy's user or group),
    /// APPMESH_APP_PORTS, APPMESH_ENVOY_INGRESS_PORT (15000), APPMESH_ENVOY_EGRESS_PORT
    /// (15001), APPMESH_EGRESS_IGNORED_IP (169.254.169.254,169.254.170.2),
    /// APPMESH_EGRESS_IGNORED_PORTS (22 always added). Replaces earlier rules; on a failure
    /// nothing is left installed.
    Install,
    /// Remove the rules `install` added, if any.
    Remove,
}

/// Runs `appliance intercept ...`.
pub fn run(args: &InterceptArgs) -> anyhow::Result<()> {
    let mut ipt = System::default();
    match args.action {
        Action::Install => {
            let config = from_env(None)?;
            intercept::install(&mut ipt, &config)?;
        }
        Action::Remove => {
            intercept::remove(&mut ipt)?;
            tracing::info!("interception rules removed");
        }
    }
    Ok(())
}

/// App Mesh's variables from the environment; `own_uid` stands in for a missing
/// APPMESH_IGNORE_UID/GID.
fn from_env(own_uid: Option<u32>) -> anyhow::Result<InterceptConfig> {
    Ok(InterceptConfig::from_vars(
        |k| std::env::var(k).ok(),
        own_uid,
    )?)
}

/// Interception installed by `appliance sidecar --intercept`: removed when dropped, however
/// the sidecar ends (a clean stop, an error after start).
pub struct Installed(());

impl Installed {
    /// Reads the variables (the sidecar's own uid is the default ignored user), checks that
    /// the redirect ports are the sidecar's listeners, and installs the rules.
    pub fn install(egress: SocketAddr, inbound: Option<SocketAddr>) -> anyhow::Result<Installed> {
        let config = from_env(Some(own_uid()?)).context("--intercept")?;
        anyhow::ensure!(
            egress.port() == config.egress_port,
            "--intercept: the egress port is {} (APPMESH_ENVOY_EGRESS_PORT) but --egress-listen is {egress}; make them the same",
            config.egress_port
        );
        if !config.app_ports.is_empty() {
            let listen = inbound.context(
                "--intercept with APPMESH_APP_PORTS: pass --listen 0.0.0.0:<APPMESH_ENVOY_INGRESS_PORT>, where redirected inbound connections arrive",
            )?;
            anyhow::ensure!(
                listen.port() == config.ingress_port,
                "--intercept: the ingress port is {} (APPMESH_ENVOY_INGRESS_PORT) but --listen is {listen}; make them the same",
                config.ingress_port
            );
        }
        intercept::install(&mut System::default(), &config)
            .context("--intercept: the sidecar will not run without its interception rules")?;
        Ok(Installed(()))
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        match intercept::remove(&mut System::default()) {
            Ok(()) => tracing::info!("interception rules removed"),
            Err(e) => {
                tracing::error!(error = %e, "removing the interception rules failed; run `appliance intercept remove`")
            }
        }
    }
}

/// This process's user: the owner of /proc/self.
fn own_uid() -> anyhow::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata("/proc/self")
        .context("--intercept: reading /proc/self to learn the sidecar's own user")?;
    Ok(meta.uid())
}
