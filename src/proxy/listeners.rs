//! The listener lifecycle: which sockets a config needs, and how the running ones move to a
//! new config. New ports are bound before the config is swapped in (a port that cannot be
//! bound fails the config, which the proxy then nacks), ports that went away drain, and
//! ports that stay keep their socket: their settings (protocol, timeouts, health check,
//! connection pool, TLS) are read from the running config per connection and per request,
//! so an edit applies to the next request while in-flight ones finish on the old settings.
//!
//! `plan` decides, without sockets; `Listeners` carries the decision out.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::server::{serve_live, Mode};
use super::Runtime;
use crate::compile::{ListenerRole, ProxyConfig};

/// Where a proxy's configured listeners go: its role and the flags that move them.
#[derive(Debug, Clone)]
pub enum Layout {
    /// `appliance gateway`; `listen` overrides the first listener's bind address.
    Gateway { listen: Option<SocketAddr> },
    /// `appliance sidecar`: `app` is the first inbound listener's app (the others are the
    /// app's host at their own port); `listen` overrides its bind address.
    Sidecar {
        app: SocketAddr,
        listen: Option<SocketAddr>,
    },
}

/// One socket a config asks for: the configured port, where it binds, what it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub port: u16,
    pub addr: SocketAddr,
    pub mode: Mode,
}

impl Layout {
    /// Every listener socket `config` asks for, in config order.
    pub fn wanted(&self, config: &ProxyConfig) -> Vec<Wanted> {
        let mut out = Vec::new();
        for (i, l) in config.listeners.iter().enumerate() {
            let default = SocketAddr::from(([0, 0, 0, 0], l.port));
            match (self, &l.role) {
                (Layout::Gateway { listen }, ListenerRole::Gateway { .. }) => {
                    let addr = if i == 0 {
                        listen.unwrap_or(default)
                    } else {
                        default
                    };
                    out.push(Wanted {
                        port: l.port,
                        addr,
                        mode: Mode::Gateway { port: l.port },
                    });
                }
                (Layout::Sidecar { app, listen }, ListenerRole::Inbound { .. }) => {
                    let first = out.is_empty();
                    let (addr, app) = if first {
                        (listen.unwrap_or(default), app.to_string())
                    } else {
                        (default, SocketAddr::new(app.ip(), l.port).to_string())
                    };
                    out.push(Wanted {
                        port: l.port,
                        addr,
                        mode: Mode::Inbound { app, port: l.port },
                    });
                }
                _ => {}
            }
        }
        out
    }

    /// The `role` its listeners log (`listening on ADDR`).
    pub fn name(&self) -> &'static str {
        match self {
            Layout::Gateway { .. } => "gateway",
            Layout::Sidecar { .. } => "sidecar-inbound",
        }
    }
}

/// How the running listeners become the wanted ones.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New sockets, bound before the config is swapped in.
    pub bind: Vec<Wanted>,
    /// Kept sockets whose mode changes (the app behind a port): the next connection uses it.
    pub update: Vec<Wanted>,
    /// Ports whose listeners stop accepting and drain, after the swap.
    pub drain: Vec<u16>,
}

/// Compares what runs with what is wanted. A port that stays on the same address keeps its
/// socket whatever else changed; one that moves address is drained and bound anew.
pub fn plan(running: &BTreeMap<u16, Wanted>, wanted: &[Wanted]) -> Plan {
    let mut out = Plan::default();
    for w in wanted {
        match running.get(&w.port) {
            None => out.bind.push(w.clone()),
            Some(r) if r.addr != w.addr => {
                out.drain.push(w.port);
                out.bind.push(w.clone());
            }
            Some(r) if r.mode != w.mode => out.update.push(w.clone()),
            Some(_) => {}
        }
    }
    for port in running.keys() {
        if !wanted.iter().any(|w| w.port == *port) {
            out.drain.push(*port);
        }
    }
    out.drain.sort_unstable();
    out
}

/// Why a config's listeners could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("binding the {role} listener to {addr}: {source}")]
    Bind {
        role: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] crate::compile::ConfigError),
}

struct Running {
    wanted: Wanted,
    mode: Arc<ArcSwap<Mode>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The running listeners of one proxy, kept in step with its config.
pub struct Listeners {
    layout: Layout,
    runtime: Arc<Runtime>,
    running: BTreeMap<u16, Running>,
    stop: CancellationToken,
}

impl Listeners {
    /// No listeners yet; `stop` ends them all (after which `join` returns).
    pub fn new(layout: Layout, runtime: Arc<Runtime>, stop: CancellationToken) -> Listeners {
        Listeners {
            layout,
            runtime,
            running: BTreeMap::new(),
            stop,
        }
    }

    /// Binds what `config` adds, swaps it into the runtime (unless the runtime was just
    /// built from it, `swap` false), then starts the new listeners, points kept ones at
    /// their new mode and drains the ones it dropped. On error nothing changed.
    pub async fn apply(&mut self, config: ProxyConfig, swap: bool) -> Result<(), ListenerError> {
        let current: BTreeMap<u16, Wanted> = self
            .running
            .iter()
            .map(|(p, r)| (*p, r.wanted.clone()))
            .collect();
        let plan = plan(&current, &self.layout.wanted(&config));
        let mut fresh = Vec::new();
        for w in plan.bind {
            // A port that moves address keeps its old socket until the swap; binding the
            // new one first keeps the config all-or-nothing.
            let sock = TcpListener::bind(w.addr)
                .await
                .map_err(|source| ListenerError::Bind {
                    role: self.layout.name(),
                    addr: w.addr,
                    source,
                })?;
            fresh.push((w, sock));
        }
        // A DNS name's first answer before the config runs, so its clusters have endpoints.
        self.runtime.resolve_dns(&config).await;
        if swap {
            self.runtime.apply(config)?;
        }
        for port in plan.drain {
            if let Some(r) = self.running.remove(&port) {
                tracing::info!(port, "listener no longer in the config; draining it");
                r.stop.cancel();
            }
        }
        for w in plan.update {
            if let Some(r) = self.running.get_mut(&w.port) {
                r.mode.store(Arc::new(w.mode.clone()));
                r.wanted = w;
            }
        }
        for (w, sock) in fresh {
            self.start(w, sock);
        }
        Ok(())
    }

    fn start(&mut self, wanted: Wanted, sock: TcpListener) {
        let addr = sock.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let port = wanted.port;
        tracing::info!(role = self.layout.name(), identity = %self.runtime.identity, port, "listening on {addr}");
        let stop = self.stop.child_token();
        let mode = Arc::new(ArcSwap::from_pointee(wanted.mode.clone()));
        let (rt, s, m) = (self.runtime.clone(), stop.clone(), mode.clone());
        if let (Mode::Gateway { port }, Ok(bound)) = (&wanted.mode, sock.local_addr()) {
            super::health::spawn_listener_check(&self.runtime, *port, bound, stop.clone());
        }
        let task = tokio::spawn(async move { serve_live(sock, rt, m, s).await });
        self.running.insert(
            port,
            Running {
                wanted,
                mode,
                stop,
                task,
            },
        );
    }

    /// Waits for every listener to end (after the stop token fires).
    pub async fn join(self) {
        for (_, r) in self.running {
            let _ = r.task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound(port: u16, app: &str) -> Wanted {
        Wanted {
            port,
            addr: SocketAddr::from(([0, 0, 0, 0], port)),
            mode: Mode::Inbound {
                app: app.into(),
                port,
            },
        }
    }

    fn running(list: &[Wanted]) -> BTreeMap<u16, Wanted> {
        list.iter().map(|w| (w.port, w.clone())).collect()
    }

    #[test]
    fn a_port_kept_on_the_same_address_keeps_its_socket() {
        let now = running(&[inbound(8080, "a:1")]);
        assert_eq!(plan(&now, &[inbound(8080, "a:1")]), Plan::default());
    }

    #[test]
    fn a_new_port_is_bound_and_a_removed_one_drained() {
        let now = running(&[inbound(8080, "a:1")]);
        let p = plan(&now, &[inbound(9090, "a:9090")]);
        assert_eq!(p.bind, vec![inbound(9090, "a:9090")]);
        assert_eq!(p.drain, vec![8080]);
        assert!(p.update.is_empty());
    }

    #[test]
    fn a_kept_port_whose_app_changes_is_updated_in_place() {
        let now = running(&[inbound(8080, "a:1")]);
        let p = plan(&now, &[inbound(8080, "a:8080")]);
        assert_eq!(p.update, vec![inbound(8080, "a:8080")]);
        assert!(p.bind.is_empty() && p.drain.is_empty());
    }

    #[test]
    fn a_port_that_moves_address_is_drained_and_bound_anew() {
        let now = running(&[inbound(8080, "a:1")]);
        let mut moved = inbound(8080, "a:1");
        moved.addr = SocketAddr::from(([127, 0, 0, 1], 18080));
        let p = plan(&now, std::slice::from_ref(&moved));
        assert_eq!(p.bind, vec![moved]);
        assert_eq!(p.drain, vec![8080]);
    }

    #[test]
    fn the_first_inbound_listener_gets_the_app_and_listen_flags() {
        let app: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        let listen: SocketAddr = "127.0.0.1:15000".parse().unwrap();
        let layout = Layout::Sidecar {
            app,
            listen: Some(listen),
        };
        let mut config = crate::compile::ProxyConfig::new(
            crate::model::Identity::parse("mesh/m/virtualNode/n").unwrap(),
            1,
            Vec::new(),
            BTreeMap::new(),
            BTreeMap::new(),
        )
        .unwrap();
        for port in [8080, 9090] {
            config.listeners.push(crate::compile::ListenerConfig {
                port,
                protocol: crate::model::spec::PortProtocol::Http,
                per_request_timeout_ms: 15_000,
                idle_timeout_ms: 300_000,
                role: ListenerRole::Inbound { health_check: None },
                tls: None,
                connection_pool: None,
            });
        }
        let w = layout.wanted(&config);
        assert_eq!(w[0].addr, listen);
        assert_eq!(
            w[0].mode,
            Mode::Inbound {
                app: "127.0.0.1:3000".into(),
                port: 8080
            }
        );
        assert_eq!(w[1].addr, SocketAddr::from(([0, 0, 0, 0], 9090)));
        assert_eq!(
            w[1].mode,
            Mode::Inbound {
                app: "127.0.0.1:9090".into(),
                port: 9090
            }
        );
    }
}
