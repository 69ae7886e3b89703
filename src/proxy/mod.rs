//! Data plane: listeners, route tables, upstream pools, health checks, metrics. Knows
//! nothing of the store or the API; it runs a `ProxyConfig` and swaps it atomically.

mod access_log;
mod admin;
mod app_health;
mod attempt;
mod dns;
mod edge;
mod egress;
mod error;
mod forward;
mod health;
pub mod intercept;
mod limits;
mod listeners;
mod original_dst;
mod outlier;
mod path;
mod pool;
mod route_table;
mod server;
mod stats;
mod target_totals;
mod tcp;
mod timeout;
mod tls;
mod upgrade;
mod upstream;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tokio_util::sync::CancellationToken;

pub use admin::serve_admin;
pub use error::ProxyError;
pub use limits::ListenerLimits;
pub use listeners::{plan, Layout, ListenerError, Listeners, Plan, Wanted};
pub use route_table::{RequestView, RouteTable};
pub use server::{serve_listener, Mode};
pub use tls::{watch_credentials_dir, Credentials, TlsError, UpstreamTlsError, FILE_POLL};

use crate::compile::{ConfigError, ListenerRole, ProxyConfig};
use stats::{ClusterLabels, RouteLabels, Stats};
use upstream::{Clients, Cluster};

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One applied config: everything a request needs, swapped as a whole. A request holds its
/// `Arc<State>` to the end, so in-flight requests finish on the config they started with.
pub struct State {
    pub config: Arc<ProxyConfig>,
    pub table: RouteTable,
    clusters: HashMap<String, (Arc<Cluster>, CancellationToken)>,
    /// route -> cluster -> responses by status class.
    responses: HashMap<String, HashMap<String, [Counter; 5]>>,
    latency: HashMap<String, Histogram>,
    clients: Clients,
    access_log: Option<Arc<access_log::AccessLogger>>,
    /// Listener port -> its TLS, for listeners that have a `tls` block.
    listener_tls: HashMap<u16, Arc<tls::ListenerTls>>,
    /// Inbound listener port -> the limits of its requests to the local app.
    inbound_pools: HashMap<u16, Arc<pool::Limiter>>,
    /// Tries after the first, for `/stats` (Envoy's `upstream_rq_retry`).
    retries: Counter,
}

impl State {
    pub fn cluster(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.clusters.get(name).map(|(c, _)| c)
    }

    fn listener_tls(&self, port: u16) -> Option<&Arc<tls::ListenerTls>> {
        self.listener_tls.get(&port)
    }

    fn inbound_pool(&self, port: u16) -> Option<&Arc<pool::Limiter>> {
        self.inbound_pools.get(&port)
    }

    fn count(&self, route: &str, cluster: &str, status: u16) {
        let idx = CLASSES
            .iter()
            .position(|c| *c == stats::class(status))
            .unwrap_or(4);
        if let Some(c) = self.responses.get(route).and_then(|m| m.get(cluster)) {
            c[idx].inc();
        }
    }

    fn observe(&self, cluster: &str, seconds: f64) {
        if let Some(h) = self.latency.get(cluster) {
            h.observe(seconds);
        }
    }
}

/// The client for a cluster: its own when it originates TLS, else the shared one.
fn upstream_client<'a>(
    state: &'a State,
    cluster: &'a Cluster,
) -> &'a hyper_util::client::legacy::Client<tls::Connector, error::Body> {
    cluster.client(&state.clients)
}

/// A running proxy: its current config, shared clients and metrics.
pub struct Runtime {
    /// `mesh/M/virtualNode/N`, for error responses and logs.
    pub identity: String,
    state: ArcSwap<State>,
    clients: Clients,
    pub stats: Arc<Stats>,
    /// Certificates and trust: the proxy's own and the files its config names.
    tls: Arc<tls::TlsStore>,
    /// Stops every health checker when the proxy stops.
    shutdown: CancellationToken,
    /// Set once by the CLI before listeners start; the defaults otherwise.
    limits: std::sync::OnceLock<ListenerLimits>,
    /// Gateway listener port -> passes its own `healthCheck`, for `/ready`.
    listener_health: std::sync::Mutex<std::collections::BTreeMap<u16, bool>>,
    /// A gateway's log of the reasons it keeps from outside clients.
    edge_log: edge::EdgeLog,
    /// DNS service discovery's resolver and answers.
    dns: Arc<dns::Dns>,
    /// Held while a state is built and swapped in (a new config, or new DNS answers), so two
    /// swaps never build on the same old state.
    swapping: std::sync::Mutex<()>,
    /// Wakes the DNS refresher: a config with other names was applied.
    dns_names_changed: Arc<tokio::sync::Notify>,
    dns_refresher: std::sync::OnceLock<()>,
}

impl Runtime {
    pub fn new(
        config: ProxyConfig,
        shutdown: CancellationToken,
    ) -> Result<Arc<Runtime>, ConfigError> {
        let clients = Clients::new();
        let stats = Arc::new(Stats::new());
        let tls = Arc::new(tls::TlsStore::new());
        tls.spawn_file_poller(shutdown.clone());
        let identity = config.identity.to_string();
        let dns = Arc::new(dns::Dns::default());
        let state = build_state(config, None, &clients, &stats, &tls, &dns, &shutdown)?;
        Ok(Arc::new(Runtime {
            identity,
            state: ArcSwap::from_pointee(state),
            clients,
            stats,
            tls,
            shutdown,
            limits: std::sync::OnceLock::new(),
            listener_health: Default::default(),
            edge_log: edge::EdgeLog::default(),
            dns,
            swapping: std::sync::Mutex::new(()),
            dns_names_changed: Arc::default(),
            dns_refresher: std::sync::OnceLock::new(),
        }))
    }

    /// Resolves DNS names with these nameservers (`--dns-resolver`) instead of the system's.
    /// Call before the first listener starts; later calls change nothing.
    pub fn set_dns_resolvers(&self, resolvers: Vec<std::net::SocketAddr>) {
        self.dns.set_resolvers(resolvers);
    }

    /// Sets the downstream limits of every HTTP listener started after this call; a second
    /// call is ignored (the limits are fixed for the process's life).
    pub fn set_limits(&self, limits: ListenerLimits) {
        let _ = self.limits.set(limits);
    }

    /// Resolves when the control plane revokes `peer`, after logging and counting the
    /// connection it closes.
    pub(crate) fn revocation(&self, peer: String) -> impl std::future::Future<Output = ()> {
        let (revoked, stats) = (self.tls.revoked.clone(), self.stats.clone());
        async move {
            revoked.until_revoked(peer.clone()).await;
            stats.revoked_connections_closed.inc();
            tracing::info!(%peer, "closing a connection: the peer's identity was revoked");
        }
    }

    pub(crate) fn limits(&self) -> ListenerLimits {
        self.limits.get().copied().unwrap_or_default()
    }

    /// Records a gateway listener's health; true when that changed it.
    fn set_listener_health(&self, port: u16, healthy: bool) -> bool {
        let mut map = self
            .listener_health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.insert(port, healthy) != Some(healthy)
    }

    fn forget_listener_health(&self, port: u16) {
        self.listener_health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&port);
    }

    /// Gateway listeners failing their `healthCheck` now.
    pub fn unhealthy_listeners(&self) -> Vec<u16> {
        self.listener_health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(_, ok)| !**ok)
            .map(|(p, _)| *p)
            .collect()
    }

    /// Installs the proxy's own certificate, key and CA bundle, after checking that they
    /// parse and that the key is the leaf's. New handshakes use them at once; open
    /// connections keep the session they have. On error nothing changes.
    pub fn set_credentials(&self, credentials: Credentials) -> Result<(), TlsError> {
        let not_after = self.tls.set_own(&credentials)?;
        let unix = not_after
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.stats.credentials_expiry.set(unix);
        tracing::info!(proxy = %self.identity, expires_unix = unix, "TLS credentials installed");
        Ok(())
    }

    /// When the proxy's own leaf expires; `None` until credentials are set.
    pub fn credentials_expiry(&self) -> Option<std::time::SystemTime> {
        self.tls.own_expiry()
    }

    pub fn state(&self) -> Arc<State> {
        self.state.load_full()
    }

    pub fn config(&self) -> Arc<ProxyConfig> {
        self.state.load().config.clone()
    }

    /// Checks a new config and swaps it in; on error the running config stays.
    pub fn apply(&self, config: ProxyConfig) -> Result<(), ConfigError> {
        if config.identity.to_string() != self.identity {
            return Err(ConfigError::Invalid(format!(
                "config is for {}, this proxy is {}",
                config.identity, self.identity
            )));
        }
        self.swap(Some(config))?;
        self.dns_names_changed.notify_one();
        Ok(())
    }

    /// Builds a state from `config` (none: the running config again, with the latest DNS
    /// answers) and swaps it in.
    fn swap(&self, config: Option<ProxyConfig>) -> Result<(), ConfigError> {
        let _one_at_a_time = self
            .swapping
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = self.state.load_full();
        let fresh = config.is_some();
        let config = config.unwrap_or_else(|| (*old.config).clone());
        let next = build_state(
            config,
            Some(&old),
            &self.clients,
            &self.stats,
            &self.tls,
            &self.dns,
            &self.shutdown,
        )?;
        // Clusters the new config no longer has, or has changed, stop their health checks.
        for (name, (cluster, stop)) in &old.clusters {
            if !next
                .clusters
                .get(name)
                .is_some_and(|(c, _)| Arc::ptr_eq(c, cluster))
            {
                stop.cancel();
            }
        }
        if fresh {
            tracing::info!(version = next.config.version, "config applied");
        }
        self.state.store(Arc::new(next));
        Ok(())
    }

    /// Resolves the DNS names of `config` that have no answer yet (waiting at most
    /// `FIRST_ANSWER_WAIT`), so that a config is applied with its endpoints; then keeps every
    /// name of the running config fresh in the background, as its TTL runs out.
    pub async fn resolve_dns(self: &Arc<Self>, config: &ProxyConfig) {
        let mut lookups = tokio::task::JoinSet::new();
        for name in dns::names(config) {
            if !self.dns.known(&name) {
                let dns = self.dns.clone();
                lookups.spawn(async move {
                    let result = dns.resolve(&name).await;
                    (name, result)
                });
            }
        }
        let mut changed = false;
        let deadline = tokio::time::Instant::now() + dns::FIRST_ANSWER_WAIT;
        while let Ok(Some(done)) = tokio::time::timeout_at(deadline, lookups.join_next()).await {
            match done {
                Ok((_, Ok((_, c)))) => changed |= c,
                Ok((name, Err(e))) => {
                    tracing::warn!(name, error = %e, "DNS service discovery: no answer yet");
                }
                Err(e) => tracing::error!(error = %e, "a DNS lookup task failed"),
            }
        }
        if !lookups.is_empty() {
            // Answers still on their way: applied when they come.
            let runtime = Arc::downgrade(self);
            tokio::spawn(async move {
                while lookups.join_next().await.is_some() {}
                if let Some(rt) = runtime.upgrade() {
                    rt.refresh_dns_endpoints();
                }
            });
        }
        if changed {
            self.refresh_dns_endpoints();
        }
        if self.dns_refresher.set(()).is_ok() {
            tokio::spawn(dns_refresher(
                Arc::downgrade(self),
                self.dns_names_changed.clone(),
                self.shutdown.clone(),
            ));
        }
    }

    /// Rebuilds the running config's DNS clusters from the latest answers.
    fn refresh_dns_endpoints(&self) {
        if let Err(e) = self.swap(None) {
            tracing::error!(error = %e, "DNS answers changed but the config could not be rebuilt");
        }
    }
}

/// Re-resolves each DNS name of the running config when its answer is due, and rebuilds the
/// config's DNS clusters when an answer changed. Ends with the proxy.
async fn dns_refresher(
    runtime: std::sync::Weak<Runtime>,
    names_changed: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let Some(rt) = runtime.upgrade() else { return };
        let names = dns::names(&rt.config());
        let mut changed = false;
        for name in &names {
            if rt.dns.due(name) > tokio::time::Instant::now() {
                continue;
            }
            match rt.dns.resolve(name).await {
                Ok((addrs, true)) => {
                    tracing::info!(name, ?addrs, "DNS answer changed");
                    changed = true;
                }
                Ok((_, false)) => {}
                Err(e) => {
                    tracing::warn!(name, error = %e, "DNS lookup failed; keeping the last answer")
                }
            }
        }
        if changed {
            rt.refresh_dns_endpoints();
        }
        let next = names
            .iter()
            .map(|n| rt.dns.due(n))
            .min()
            .unwrap_or_else(|| tokio::time::Instant::now() + dns::MAX_REFRESH);
        drop(rt);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = names_changed.notified() => {}
            _ = tokio::time::sleep_until(next) => {}
        }
    }
}

/// A DNS cluster's endpoints from its name's last answer (none before the first); an IP
/// literal needs no lookup.
fn dns_endpoints(
    cfg: &crate::compile::ClusterConfig,
    discovery: crate::compile::DnsDiscovery,
    dns: &dns::Dns,
    previous: Option<&Cluster>,
) -> Vec<String> {
    let Some((host, port)) = cfg.endpoints.first().and_then(|e| dns::split_host_port(e)) else {
        return Vec::new();
    };
    let addrs = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => dns.last(host).unwrap_or_default(),
    };
    let current = previous.map(Cluster::addresses).unwrap_or_default();
    dns::endpoints(discovery, &addrs, port, &current)
}

fn build_state(
    config: ProxyConfig,
    old: Option<&State>,
    clients: &Clients,
    stats: &Arc<Stats>,
    tls_store: &tls::TlsStore,
    dns: &dns::Dns,
    shutdown: &CancellationToken,
) -> Result<State, ConfigError> {
    config.check()?;
    let table = RouteTable::new(&config)?;

    let mut clusters = HashMap::new();
    let mut latency = HashMap::new();
    for (name, cfg) in &config.clusters {
        let previous = old.and_then(|o| o.clusters.get(name)).map(|(c, _)| &**c);
        let addresses = match cfg.dns {
            Some(d) => dns_endpoints(cfg, d, dns, previous),
            None => cfg.endpoints.clone(),
        };
        let reused = old
            .and_then(|o| o.clusters.get(name))
            .filter(|(c, _)| c.config == *cfg && c.addresses() == addresses);
        let entry = match reused {
            Some((c, stop)) => (c.clone(), stop.clone()),
            None => {
                let tls = cfg
                    .tls
                    .as_ref()
                    .map(|t| tls::UpstreamTls::new(tls_store, t, cfg.protocol, name, stats))
                    .transpose()?;
                let cluster = Arc::new(Cluster::with_endpoints(
                    name, cfg, &addresses, tls, stats, previous,
                ));
                let stop = shutdown.child_token();
                health::spawn(&cluster, clients, stats, stop.clone());
                outlier::spawn_sweep(&cluster, stop.clone());
                (cluster, stop)
            }
        };
        clusters.insert(name.clone(), entry);
        latency.insert(
            name.clone(),
            stats
                .latency
                .get_or_create(&ClusterLabels {
                    cluster: name.clone(),
                })
                .clone(),
        );
    }
    let mut responses: HashMap<String, HashMap<String, [Counter; 5]>> = HashMap::new();
    for s in config.services.values() {
        for r in &s.routes {
            for t in &r.targets {
                let counters = CLASSES.map(|class| {
                    stats
                        .responses
                        .get_or_create(&RouteLabels {
                            route: r.name.clone(),
                            cluster: t.cluster.clone(),
                            class: class.to_owned(),
                        })
                        .clone()
                });
                responses
                    .entry(r.name.clone())
                    .or_default()
                    .insert(t.cluster.clone(), counters);
            }
        }
    }
    // Keep the writer (and its open file) while the log's spec is unchanged.
    let access_log = match &config.access_log {
        None => None,
        Some(spec) => match old
            .and_then(|o| o.access_log.clone())
            .filter(|l| l.spec == *spec)
        {
            Some(same) => Some(same),
            None => Some(Arc::new(access_log::AccessLogger::open(spec).map_err(
                |e| ConfigError::Invalid(format!("logging.accessLog.file.path {}: {e}", spec.path)),
            )?)),
        },
    };
    // Keep a listener's TLS (and its session cache) while its settings are unchanged.
    let mut listener_tls = HashMap::new();
    for l in &config.listeners {
        let Some(want) = &l.tls else { continue };
        let reused = old
            .and_then(|o| o.listener_tls.get(&l.port))
            .filter(|t| t.config == *want && t.protocol == l.protocol)
            .cloned();
        let built = match reused {
            Some(t) => t,
            None => Arc::new(tls::ListenerTls::new(
                tls_store,
                want,
                l.protocol,
                format!("0.0.0.0_{}", l.port),
                stats,
            )?),
        };
        listener_tls.insert(l.port, built);
    }
    // Keep an inbound listener's limiter while its pool is unchanged: requests in flight on
    // the old config hold its permits, and a new limiter would let twice the limit through.
    let mut inbound_pools = HashMap::new();
    for l in &config.listeners {
        let (ListenerRole::Inbound { .. }, Some(want)) = (&l.role, l.connection_pool) else {
            continue;
        };
        let reused = old
            .and_then(|o| o.inbound_pools.get(&l.port))
            .filter(|p| p.config == want)
            .cloned();
        let target = format!(
            "cds_ingress_{}_{}_{}_{}",
            config.identity.mesh,
            config.identity.name,
            l.protocol.as_str(),
            l.port
        );
        let built = reused.unwrap_or_else(|| Arc::new(pool::Limiter::new(&target, want, stats)));
        inbound_pools.insert(l.port, built);
    }
    // Last, so a config refused above changes nothing.
    tls_store.revoked.replace(&config.revoked_peers);
    Ok(State {
        retries: stats.retries.clone(),
        inbound_pools,
        listener_tls,
        config: Arc::new(config),
        table,
        clusters,
        responses,
        latency,
        clients: clients.clone(),
        access_log,
    })
}
