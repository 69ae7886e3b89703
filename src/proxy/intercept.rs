//! Transparent interception, as App Mesh set it up on EC2 and ECS: nat-table chains
//! `APPMESH_INGRESS` (app ports -> the proxy's ingress port) and `APPMESH_EGRESS` (the app's
//! outgoing TCP -> the proxy's egress port), jumped to from PREROUTING and OUTPUT, with App
//! Mesh's `APPMESH_*` knobs. The rules are written by `iptables` (Debian's package), never
//! by hand over netlink. Installing is idempotent (the old rules go first) and all or nothing
//! (a failure removes what was added); removing leaves no trace and is idempotent too.

use std::net::IpAddr;
use std::process::Command;

/// The nat chain of inbound redirects (App Mesh's name).
pub const INGRESS_CHAIN: &str = "APPMESH_INGRESS";
/// The nat chain of outbound redirects (App Mesh's name).
pub const EGRESS_CHAIN: &str = "APPMESH_EGRESS";
/// App Mesh's proxy ingress port (`APPMESH_ENVOY_INGRESS_PORT`).
pub const DEFAULT_INGRESS_PORT: u16 = 15000;
/// App Mesh's proxy egress port (`APPMESH_ENVOY_EGRESS_PORT`).
pub const DEFAULT_EGRESS_PORT: u16 = 15001;
/// The instance metadata and ECS task metadata endpoints: App Mesh's default ignored IPs, so
/// the app keeps its credentials even when the proxy is down.
pub const DEFAULT_EGRESS_IGNORED_IP: &str = "169.254.169.254,169.254.170.2";
/// SSH: App Mesh always adds it to the ignored ports, so interception never locks an
/// operator out.
pub const ALWAYS_IGNORED_PORT: u16 = 22;
/// `-m multiport` takes at most 15 ports per rule.
const MULTIPORT_MAX: usize = 15;

/// What went wrong setting up or tearing down interception.
#[derive(Debug, thiserror::Error)]
pub enum InterceptError {
    /// One or more `APPMESH_*` variables are unusable; every bad one is listed.
    #[error("interception settings: {}", .0.join("; "))]
    Settings(Vec<String>),
    /// `iptables` could not be started (usually: not installed, or not on PATH).
    #[error("cannot run {program}: {source} (install Debian's iptables package)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// `iptables` refused a command (usually: not root / no CAP_NET_ADMIN, or a kernel
    /// without the nat table or the owner/addrtype/multiport matches).
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    /// Installing failed part way; what had been added was removed again.
    #[error("installing the interception rules failed, nothing is left installed: {0}")]
    RolledBack(Box<InterceptError>),
    /// Installing failed part way and removing the partial rules failed too.
    #[error("installing the interception rules failed ({install}); removing the partial rules also failed ({remove}): run `appliance intercept remove`")]
    Partial {
        install: Box<InterceptError>,
        remove: Box<InterceptError>,
    },
}

/// App Mesh's proxy configuration for EC2/ECS, checked: every port is 1-65535 and every
/// ignored address parses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterceptConfig {
    /// `APPMESH_IGNORE_UID`: the proxy's user; its own connections are never redirected.
    pub ignore_uid: Option<u32>,
    /// `APPMESH_IGNORE_GID`: the same, by group.
    pub ignore_gid: Option<u32>,
    /// `APPMESH_APP_PORTS`: inbound connections to these ports go to `ingress_port`. Empty:
    /// no inbound redirect.
    pub app_ports: Vec<u16>,
    /// `APPMESH_ENVOY_INGRESS_PORT` (or `APPMESH_PROXY_INGRESS_PORT`), default 15000.
    pub ingress_port: u16,
    /// `APPMESH_ENVOY_EGRESS_PORT` (or `APPMESH_PROXY_EGRESS_PORT`), default 15001.
    pub egress_port: u16,
    /// `APPMESH_EGRESS_IGNORED_IP`: addresses or CIDR blocks left alone, as written.
    pub egress_ignored_ips: Vec<String>,
    /// `APPMESH_EGRESS_IGNORED_PORTS`, plus 22 always.
    pub egress_ignored_ports: Vec<u16>,
}

impl InterceptConfig {
    /// Reads App Mesh's variables through `var` (the process environment in `cli`, a map in
    /// tests). `own_uid` is used when neither `APPMESH_IGNORE_UID` nor `APPMESH_IGNORE_GID` is
    /// set (the sidecar installing rules for itself); without it one of them is required.
    /// Every bad variable is reported at once.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        own_uid: Option<u32>,
    ) -> Result<InterceptConfig, InterceptError> {
        let var = |k: &str| {
            var(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut bad = Vec::new();
        let mut id = |k: &str| match var(k) {
            None => None,
            Some(v) => v
                .parse::<u32>()
                .map_err(|_| bad.push(format!("{k}={v:?} is not a numeric user or group id")))
                .ok(),
        };
        let (uid, gid) = (id("APPMESH_IGNORE_UID"), id("APPMESH_IGNORE_GID"));
        let ignore_uid = match (uid, gid, own_uid) {
            (None, None, Some(own)) => Some(own),
            (None, None, None) => {
                if var("APPMESH_IGNORE_UID").is_none() && var("APPMESH_IGNORE_GID").is_none() {
                    bad.push("set APPMESH_IGNORE_UID or APPMESH_IGNORE_GID to the proxy's user or group, or its own traffic would loop back into it".into());
                }
                None
            }
            (uid, _, _) => uid,
        };
        let mut port = |names: &[&str], default: u16| -> u16 {
            let set: Vec<(&str, String)> = names
                .iter()
                .filter_map(|k| var(k).map(|v| (*k, v)))
                .collect();
            let Some((k, v)) = set.first() else {
                return default;
            };
            if let Some((k2, v2)) = set.iter().find(|(_, v2)| v2 != v) {
                bad.push(format!("{k}={v:?} and {k2}={v2:?} disagree"));
            }
            parse_port(k, v).map_err(|e| bad.push(e)).unwrap_or(default)
        };
        let ingress_port = port(
            &["APPMESH_ENVOY_INGRESS_PORT", "APPMESH_PROXY_INGRESS_PORT"],
            DEFAULT_INGRESS_PORT,
        );
        let egress_port = port(
            &["APPMESH_ENVOY_EGRESS_PORT", "APPMESH_PROXY_EGRESS_PORT"],
            DEFAULT_EGRESS_PORT,
        );
        let mut ports = |k: &str| -> Vec<u16> {
            let v = var(k).unwrap_or_default();
            split(&v)
                .filter_map(|p| parse_port(k, p).map_err(|e| bad.push(e)).ok())
                .collect()
        };
        let app_ports = ports("APPMESH_APP_PORTS");
        let mut egress_ignored_ports = ports("APPMESH_EGRESS_IGNORED_PORTS");
        if !egress_ignored_ports.contains(&ALWAYS_IGNORED_PORT) {
            egress_ignored_ports.push(ALWAYS_IGNORED_PORT);
        }
        let ips =
            var("APPMESH_EGRESS_IGNORED_IP").unwrap_or_else(|| DEFAULT_EGRESS_IGNORED_IP.into());
        let egress_ignored_ips = split(&ips)
            .filter_map(|ip| match valid_ipv4_block(ip) {
                true => Some(ip.to_owned()),
                false => {
                    bad.push(format!("APPMESH_EGRESS_IGNORED_IP: {ip:?} is not an IPv4 address or CIDR block (a.b.c.d or a.b.c.d/n)"));
                    None
                }
            })
            .collect();
        // App Mesh's IPv6 rules (ip6tables) are not built: refused rather than leaving the
        // app's IPv6 traffic unredirected while it believes it is meshed.
        if var("APPMESH_ENABLE_IPV6").is_some_and(|v| v != "0") {
            bad.push("APPMESH_ENABLE_IPV6: IPv6 interception is not supported (IPv4 rules only); unset it or set it to 0".into());
        }
        if app_ports.contains(&ingress_port) || app_ports.contains(&egress_port) {
            bad.push(format!("APPMESH_APP_PORTS must not contain the proxy's own ports {ingress_port} and {egress_port}"));
        }
        if !bad.is_empty() {
            return Err(InterceptError::Settings(bad));
        }
        Ok(InterceptConfig {
            ignore_uid,
            ignore_gid: gid,
            app_ports,
            ingress_port,
            egress_port,
            egress_ignored_ips,
            egress_ignored_ports,
        })
    }

    /// The `iptables` commands that install these rules, in order: the chains first, their
    /// rules, then the jumps, so no connection is redirected into a half-built chain.
    pub fn install_commands(&self) -> Vec<Vec<String>> {
        let mut out = vec![
            args(&["-t", "nat", "-N", EGRESS_CHAIN]),
            args(&["-t", "nat", "-N", INGRESS_CHAIN]),
        ];
        let egress = |rule: &[&str]| {
            let mut a = args(&["-t", "nat", "-A", EGRESS_CHAIN]);
            a.extend(args(rule));
            a
        };
        if let Some(uid) = self.ignore_uid {
            out.push(egress(&[
                "-m",
                "owner",
                "--uid-owner",
                &uid.to_string(),
                "-j",
                "RETURN",
            ]));
        }
        if let Some(gid) = self.ignore_gid {
            out.push(egress(&[
                "-m",
                "owner",
                "--gid-owner",
                &gid.to_string(),
                "-j",
                "RETURN",
            ]));
        }
        for chunk in self.egress_ignored_ports.chunks(MULTIPORT_MAX) {
            let list = join(chunk);
            out.push(egress(&[
                "-p",
                "tcp",
                "-m",
                "multiport",
                "--dports",
                &list,
                "-j",
                "RETURN",
            ]));
        }
        for ip in &self.egress_ignored_ips {
            out.push(egress(&["-p", "tcp", "-d", ip, "-j", "RETURN"]));
        }
        let to = self.egress_port.to_string();
        out.push(egress(&["-p", "tcp", "-j", "REDIRECT", "--to-ports", &to]));
        let to = self.ingress_port.to_string();
        for chunk in self.app_ports.chunks(MULTIPORT_MAX) {
            let list = join(chunk);
            out.push(args(&[
                "-t",
                "nat",
                "-A",
                INGRESS_CHAIN,
                "-p",
                "tcp",
                "-m",
                "multiport",
                "--dports",
                &list,
                "-j",
                "REDIRECT",
                "--to-ports",
                &to,
            ]));
        }
        for (hook, jump) in JUMPS {
            let mut a = args(&["-t", "nat", "-A", hook]);
            a.extend(args(jump));
            out.push(a);
        }
        out
    }
}

/// The jumps into our chains: outbound TCP to any address not of this host (App Mesh's
/// `addrtype ! --dst-type LOCAL`), inbound TCP from any address not of this host.
const JUMPS: [(&str, &[&str]); 2] = [
    (
        "OUTPUT",
        &[
            "-p",
            "tcp",
            "-m",
            "addrtype",
            "!",
            "--dst-type",
            "LOCAL",
            "-j",
            EGRESS_CHAIN,
        ],
    ),
    (
        "PREROUTING",
        &[
            "-p",
            "tcp",
            "-m",
            "addrtype",
            "!",
            "--src-type",
            "LOCAL",
            "-j",
            INGRESS_CHAIN,
        ],
    ),
];

/// Runs one `iptables` command; a fake in tests.
pub trait Iptables {
    /// Runs `iptables ARGS`; `Ok(stdout)` when it exits 0.
    fn run(&mut self, args: &[String]) -> Result<String, InterceptError>;
}

/// The real `iptables` (Debian's alternative: nft or legacy, whichever is selected).
pub struct System {
    pub program: String,
}

impl Default for System {
    fn default() -> System {
        System {
            program: "iptables".into(),
        }
    }
}

impl Iptables for System {
    fn run(&mut self, args: &[String]) -> Result<String, InterceptError> {
        // -w: wait for the xtables lock rather than fail when another tool holds it.
        let out = Command::new(&self.program)
            .arg("-w")
            .args(args)
            .output()
            .map_err(|source| InterceptError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        Err(InterceptError::Command {
            command: format!("{} {}", self.program, args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Installs the rules of `config`, replacing any earlier ones (so running it twice leaves one
/// set). On a failure part way, what was added is removed and the error says so.
pub fn install(ipt: &mut dyn Iptables, config: &InterceptConfig) -> Result<(), InterceptError> {
    remove(ipt)?;
    for command in config.install_commands() {
        if let Err(install) = ipt.run(&command) {
            return Err(match remove(ipt) {
                Ok(()) => InterceptError::RolledBack(Box::new(install)),
                Err(remove) => InterceptError::Partial {
                    install: Box::new(install),
                    remove: Box::new(remove),
                },
            });
        }
    }
    tracing::info!(
        egress_port = config.egress_port,
        ingress_port = config.ingress_port,
        app_ports = ?config.app_ports,
        "interception rules installed"
    );
    Ok(())
}

/// Removes every jump into our chains (whatever rule spec it was written with) and the
/// chains themselves. Nothing installed is not an error.
pub fn remove(ipt: &mut dyn Iptables) -> Result<(), InterceptError> {
    for (hook, chain) in [("OUTPUT", EGRESS_CHAIN), ("PREROUTING", INGRESS_CHAIN)] {
        let listing = ipt.run(&args(&["-t", "nat", "-S", hook]))?;
        for rule in jumps_to(&listing, hook, chain) {
            ipt.run(&rule)?;
        }
    }
    let existing = ipt.run(&args(&["-t", "nat", "-S"]))?;
    for chain in [EGRESS_CHAIN, INGRESS_CHAIN] {
        if existing.lines().any(|l| l.trim() == format!("-N {chain}")) {
            ipt.run(&args(&["-t", "nat", "-F", chain]))?;
            ipt.run(&args(&["-t", "nat", "-X", chain]))?;
        }
    }
    Ok(())
}

/// The delete commands for the rules of `hook` in an `iptables -S` listing that jump to
/// `chain`.
fn jumps_to(listing: &str, hook: &str, chain: &str) -> Vec<Vec<String>> {
    let prefix = format!("-A {hook} ");
    listing
        .lines()
        .filter_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .filter(|rest| {
            rest.split_whitespace()
                .collect::<Vec<_>>()
                .ends_with(&["-j", chain])
        })
        .map(|rest| {
            let mut a = args(&["-t", "nat", "-D", hook]);
            a.extend(rest.split_whitespace().map(str::to_owned));
            a
        })
        .collect()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

fn join(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_port(name: &str, raw: &str) -> Result<u16, String> {
    match raw.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{name}: {raw:?} is not a port (1-65535)")),
    }
}

/// `a.b.c.d` or `a.b.c.d/n` with n at most 32 (App Mesh's rules are IPv4).
fn valid_ipv4_block(raw: &str) -> bool {
    let (ip, bits) = raw
        .split_once('/')
        .map_or((raw, None), |(a, b)| (a, Some(b)));
    let ip_ok = matches!(ip.parse::<IpAddr>(), Ok(IpAddr::V4(_)));
    ip_ok && bits.is_none_or(|b| b.parse::<u8>().is_ok_and(|n| n <= 32))
}

#[cfg(test)]
#[path = "intercept_tests.rs"]
mod tests;
