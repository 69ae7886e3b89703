//! The command line: one binary, roles as subcommands. Flags and environment are parsed
//! here, once, into the types the roles take.

pub mod control;
pub mod ctl;
pub mod demo;
pub mod intercept;
pub mod notify;
pub mod proxy;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "appliance",
    version,
    about = "A self-hosted AWS App Mesh: control plane, private CA and proxies in one binary"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "APPLIANCE_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Async worker threads (default: one per CPU). A sidecar beside one app often wants 1.
    #[arg(long, global = true, env = "APPLIANCE_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=512))]
    pub worker_threads: Option<u16>,
    /// Stop (as on SIGTERM) when stdin reaches end of file. `appliance demo` starts its
    /// children with it and holds their stdin, so they end when the demo does, however it
    /// ends: the kernel closes the pipe even after SIGKILL.
    #[arg(long, global = true, hide = true)]
    pub exit_with_parent: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane: store, App Mesh API, private CA.
    Control(control::ControlArgs),
    /// Run a virtual gateway's proxy (ingress).
    Gateway(proxy::GatewayArgs),
    /// Run a virtual node's sidecar proxy.
    Sidecar(proxy::SidecarArgs),
    /// The `aws appmesh` commands (and the appliance's own) against a control plane.
    Ctl(ctl::CtlArgs),
    /// Install or remove App Mesh's iptables interception rules (run as root, e.g. from a
    /// unit's `ExecStartPre=+`), configured by App Mesh's APPMESH_* variables.
    Intercept(intercept::InterceptArgs),
    /// Run App Mesh's ingress walkthrough (colorteller) on this machine, TLS everywhere.
    Demo(demo::DemoArgs),
}
