//! DNS service discovery: a node's `dns.hostname` becomes endpoints here, as Envoy's DNS
//! clusters did it in App Mesh.
//!
//! - `ENDPOINTS` (Envoy's STRICT_DNS): every address of the answer is an endpoint of its own,
//!   balanced, health-checked and ejected on its own.
//! - `LOADBALANCER` (LOGICAL_DNS): one endpoint, the answer's first address. It stays on its
//!   address while the answer still holds it (round-robin DNS reorders answers; hopping
//!   would restart its health each time), and moves to the new first address when not.
//! - `ipPreference` (Envoy's `dns_lookup_family`): `*_ONLY` keeps one family, `*_PREFERRED`
//!   uses the preferred family when the answer has any address of it, else the other.
//!
//! Answers are cached for their TTL (Envoy's `respect_dns_ttl`), within
//! `MIN_REFRESH..=MAX_REFRESH`, and re-resolved in the background when it runs out: a
//! connection never waits for DNS. A failed lookup keeps the last answer (Envoy keeps its
//! hosts) and is retried after `FAILURE_RETRY`.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::compile::{DnsDiscovery, ProxyConfig};
use crate::model::spec::{DnsResponseType, IpPreference};

/// Shortest time an answer is kept, whatever its TTL (a TTL of 0 would mean a lookup per
/// refresh loop turn).
pub const MIN_REFRESH: Duration = Duration::from_secs(1);
/// Longest time an answer is kept, whatever its TTL: a changed `/etc/hosts` or record is
/// seen within this. Longer: fewer lookups; shorter: changes show sooner.
pub const MAX_REFRESH: Duration = Duration::from_secs(300);
/// After a failed lookup, the next try (Envoy's `dns_failure_refresh_rate` default of 5 s).
pub const FAILURE_RETRY: Duration = Duration::from_secs(5);
/// Longest the proxy waits for the first answers of a new config's new names before applying
/// it; a name still unresolved then has no endpoints until its answer comes (applied at once).
/// Names looked up before (even in vain) are never waited for again.
pub const FIRST_ANSWER_WAIT: Duration = Duration::from_secs(2);

/// Why a name could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The resolver answered, with no address for the name.
    #[error("{host} has no address")]
    NoAddress { host: String },
    /// The lookup failed (no answer, a server error, a timeout, an unreadable resolv.conf).
    #[error("resolving {host}: {reason}")]
    Lookup { host: String, reason: String },
}

/// One answer: its addresses in the resolver's order, and how long it may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub addrs: Vec<IpAddr>,
    pub ttl: Duration,
}

type LookupFuture<'a> = Pin<Box<dyn Future<Output = Result<Answer, DnsError>> + Send + 'a>>;

/// Something that resolves a name to its IPv4 and IPv6 addresses: hickory in the proxy, a
/// table in unit tests.
pub trait Lookup: Send + Sync {
    fn lookup<'a>(&'a self, host: &'a str) -> LookupFuture<'a>;
}

/// The proxy's DNS: the resolver and the last answer of every name.
pub struct Dns {
    /// Nameservers from `--dns-resolver`; empty: the system's (`/etc/resolv.conf`). Fixed
    /// by the first lookup.
    resolvers: OnceLock<Vec<SocketAddr>>,
    lookup: OnceLock<Arc<dyn Lookup>>,
    answers: Mutex<HashMap<String, Cached>>,
}

#[derive(Debug, Clone)]
struct Cached {
    /// The last good answer; none if every lookup so far failed.
    addrs: Option<Vec<IpAddr>>,
    /// When to look the name up again.
    due: Instant,
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            resolvers: OnceLock::new(),
            lookup: OnceLock::new(),
            answers: Mutex::new(HashMap::new()),
        }
    }
}

impl Dns {
    /// A cache over `lookup` (unit tests; the proxy's is made on first use).
    #[cfg(test)]
    pub fn with_lookup(lookup: Arc<dyn Lookup>) -> Dns {
        let dns = Dns::default();
        let _ = dns.lookup.set(lookup);
        dns
    }

    /// Uses these nameservers instead of the system's; ignored once a name was resolved.
    pub fn set_resolvers(&self, resolvers: Vec<SocketAddr>) {
        let _ = self.resolvers.set(resolvers);
    }

    fn lookup(&self) -> &Arc<dyn Lookup> {
        self.lookup.get_or_init(|| {
            let resolvers = self.resolvers.get_or_init(Vec::new);
            Arc::new(Hickory::new(resolvers))
        })
    }

    fn answers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.answers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `host` was ever looked up (answered or not).
    pub fn known(&self, host: &str) -> bool {
        self.answers().contains_key(host)
    }

    /// The last answer for `host`, due or not; none before its first good answer.
    pub fn last(&self, host: &str) -> Option<Vec<IpAddr>> {
        self.answers().get(host).and_then(|c| c.addrs.clone())
    }

    /// When `host` should be looked up again; now for a name never looked up.
    pub fn due(&self, host: &str) -> Instant {
        self.answers()
            .get(host)
            .map_or_else(Instant::now, |c| c.due)
    }

    /// The addresses of `host`: the cached answer while its TTL lasts, else a fresh lookup.
    /// True with them when they differ from the previous answer.
    pub async fn resolve(&self, host: &str) -> Result<(Vec<IpAddr>, bool), DnsError> {
        let now = Instant::now();
        if let Some(Cached {
            addrs: Some(addrs),
            due,
        }) = self.answers().get(host).cloned()
        {
            if due > now {
                return Ok((addrs, false));
            }
        }
        let result = self.lookup().lookup(host).await;
        let now = Instant::now();
        let mut answers = self.answers();
        let entry = answers.entry(host.to_owned()).or_insert(Cached {
            addrs: None,
            due: now,
        });
        match result {
            Ok(answer) => {
                entry.due = now + answer.ttl.clamp(MIN_REFRESH, MAX_REFRESH);
                let changed = entry.addrs.as_ref() != Some(&answer.addrs);
                entry.addrs = Some(answer.addrs.clone());
                Ok((answer.addrs, changed))
            }
            Err(e) => {
                entry.due = now + FAILURE_RETRY;
                Err(e)
            }
        }
    }
}

/// The DNS names a config resolves, once each (IP literals need no lookup).
pub fn names(config: &ProxyConfig) -> Vec<String> {
    let mut names: Vec<String> = config
        .clusters
        .values()
        .filter(|c| c.dns.is_some())
        .filter_map(|c| c.endpoints.first())
        .filter_map(|e| split_host_port(e).map(|(h, _)| h.to_owned()))
        .filter(|h| h.parse::<IpAddr>().is_err())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `host:port` split at the last colon; `[v6]:port` loses its brackets.
pub fn split_host_port(endpoint: &str) -> Option<(&str, u16)> {
    let (host, port) = endpoint.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some((host, port))
}

/// The addresses `preference` allows, in the answer's order (Envoy's `dns_lookup_family`:
/// V4_ONLY, V6_ONLY, V4_PREFERRED, AUTO).
pub fn select(preference: IpPreference, addrs: &[IpAddr]) -> Vec<IpAddr> {
    let of = |v4: bool| -> Vec<IpAddr> {
        addrs
            .iter()
            .copied()
            .filter(|a| a.is_ipv4() == v4)
            .collect()
    };
    match preference {
        IpPreference::Ipv4Only => of(true),
        IpPreference::Ipv6Only => of(false),
        IpPreference::Ipv4Preferred => Some(of(true))
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| of(false)),
        IpPreference::Ipv6Preferred => Some(of(false))
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| of(true)),
    }
}

/// A DNS cluster's endpoints (`ip:port`) from an answer: all of them (`ENDPOINTS`), or one
/// (`LOADBALANCER`: the current one while the answer still has it, else the first).
pub fn endpoints(
    discovery: DnsDiscovery,
    addrs: &[IpAddr],
    port: u16,
    current: &[String],
) -> Vec<String> {
    let chosen: Vec<String> = select(discovery.ip_preference, addrs)
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port).to_string())
        .collect();
    match discovery.response_type {
        DnsResponseType::Endpoints => {
            let mut all = chosen;
            all.sort();
            all.dedup();
            all
        }
        DnsResponseType::Loadbalancer => match current.first() {
            Some(c) if current.len() == 1 && chosen.contains(c) => vec![c.clone()],
            _ => chosen.into_iter().take(1).collect(),
        },
    }
}

// === impl Hickory ===

/// hickory's resolver: the system's configuration (`/etc/resolv.conf`, `/etc/hosts`) or the
/// `--dns-resolver` nameservers (with `/etc/hosts` still read first, as libc does).
struct Hickory {
    resolver: Result<hickory_resolver::TokioResolver, String>,
}

impl Hickory {
    fn new(resolvers: &[SocketAddr]) -> Hickory {
        use hickory_resolver::config::{
            LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts,
        };
        use hickory_resolver::name_server::TokioConnectionProvider;
        use hickory_resolver::proto::xfer::Protocol;
        let builder = if resolvers.is_empty() {
            hickory_resolver::TokioResolver::builder_tokio()
                .map_err(|e| format!("reading the system's DNS configuration: {e}"))
        } else {
            let mut config = ResolverConfig::new();
            for addr in resolvers {
                config.add_name_server(NameServerConfig::new(*addr, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(*addr, Protocol::Tcp));
            }
            Ok(hickory_resolver::TokioResolver::builder_with_config(
                config,
                TokioConnectionProvider::default(),
            ))
        };
        let resolver = builder.map(|mut b| {
            let opts: &mut ResolverOpts = b.options_mut();
            // Both families, always: `select` applies the cluster's preference, so one
            // answer serves clusters of every preference.
            opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
            b.build()
        });
        if let Err(e) = &resolver {
            tracing::error!(error = %e, "no DNS resolver: DNS service discovery names will not resolve");
        }
        Hickory { resolver }
    }
}

impl Lookup for Hickory {
    fn lookup<'a>(&'a self, host: &'a str) -> LookupFuture<'a> {
        Box::pin(async move {
            let resolver = self.resolver.as_ref().map_err(|e| DnsError::Lookup {
                host: host.to_owned(),
                reason: e.clone(),
            })?;
            let found = resolver.lookup_ip(host).await.map_err(|e| {
                if e.is_no_records_found() {
                    DnsError::NoAddress {
                        host: host.to_owned(),
                    }
                } else {
                    DnsError::Lookup {
                        host: host.to_owned(),
                        reason: e.to_string(),
                    }
                }
            })?;
            let ttl = found
                .valid_until()
                .saturating_duration_since(std::time::Instant::now());
            let addrs: Vec<IpAddr> = found.iter().collect();
            if addrs.is_empty() {
                return Err(DnsError::NoAddress {
                    host: host.to_owned(),
                });
            }
            Ok(Answer { addrs, ttl })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers from a table that tests change, counting lookups.
    #[derive(Default)]
    struct Table {
        answers: Mutex<HashMap<String, Result<Answer, DnsError>>>,
        lookups: AtomicUsize,
    }

    impl Table {
        fn set(&self, host: &str, answer: Result<Answer, DnsError>) {
            self.answers.lock().unwrap().insert(host.into(), answer);
        }
    }

    impl Lookup for Table {
        fn lookup<'a>(&'a self, host: &'a str) -> LookupFuture<'a> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            let answer = self.answers.lock().unwrap().get(host).cloned();
            Box::pin(
                async move { answer.unwrap_or(Err(DnsError::NoAddress { host: host.into() })) },
            )
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn answer(addrs: &[&str], ttl_s: u64) -> Result<Answer, DnsError> {
        Ok(Answer {
            addrs: addrs.iter().map(|a| ip(a)).collect(),
            ttl: Duration::from_secs(ttl_s),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_is_reused_until_its_ttl_runs_out() {
        let table = Arc::new(Table::default());
        table.set("db.local", answer(&["10.0.0.1"], 30));
        let dns = Dns::with_lookup(table.clone());
        assert_eq!(
            dns.resolve("db.local").await,
            Ok((vec![ip("10.0.0.1")], true))
        );
        table.set("db.local", answer(&["10.0.0.2"], 30));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(
            dns.resolve("db.local").await,
            Ok((vec![ip("10.0.0.1")], false))
        );
        assert_eq!(
            table.lookups.load(Ordering::SeqCst),
            1,
            "cached within the TTL"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            dns.resolve("db.local").await,
            Ok((vec![ip("10.0.0.2")], true))
        );
        assert_eq!(table.lookups.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_ttl_is_held_within_the_refresh_bounds() {
        let table = Arc::new(Table::default());
        table.set("zero", answer(&["10.0.0.1"], 0));
        table.set("day", answer(&["10.0.0.2"], 86_400));
        let dns = Dns::with_lookup(table);
        let start = Instant::now();
        dns.resolve("zero").await.unwrap();
        dns.resolve("day").await.unwrap();
        assert_eq!(dns.due("zero") - start, MIN_REFRESH);
        assert_eq!(dns.due("day") - start, MAX_REFRESH);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_lookup_keeps_the_last_answer_and_retries_later() {
        let table = Arc::new(Table::default());
        table.set("db.local", answer(&["10.0.0.1"], 1));
        let dns = Dns::with_lookup(table.clone());
        dns.resolve("db.local").await.unwrap();
        let failure = DnsError::Lookup {
            host: "db.local".into(),
            reason: "timed out".into(),
        };
        table.set("db.local", Err(failure.clone()));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(dns.resolve("db.local").await, Err(failure));
        assert_eq!(dns.last("db.local"), Some(vec![ip("10.0.0.1")]));
        assert_eq!(dns.due("db.local") - Instant::now(), FAILURE_RETRY);
        assert_eq!(dns.last("never"), None);
        assert!(dns.known("db.local") && !dns.known("never"));
    }

    #[test]
    fn ip_preference_picks_the_family_as_envoys_dns_lookup_family() {
        let both = [ip("fd00::1"), ip("10.0.0.1"), ip("fd00::2"), ip("10.0.0.2")];
        let v4 = [ip("10.0.0.1"), ip("10.0.0.2")];
        let v6 = [ip("fd00::1"), ip("fd00::2")];
        for (pref, addrs, want) in [
            (IpPreference::Ipv4Only, &both[..], &v4[..]),
            (IpPreference::Ipv6Only, &both[..], &v6[..]),
            (IpPreference::Ipv4Preferred, &both[..], &v4[..]),
            (IpPreference::Ipv6Preferred, &both[..], &v6[..]),
            (IpPreference::Ipv4Preferred, &v6[..], &v6[..]),
            (IpPreference::Ipv6Preferred, &v4[..], &v4[..]),
            (IpPreference::Ipv4Only, &v6[..], &[][..]),
            (IpPreference::Ipv6Only, &v4[..], &[][..]),
        ] {
            assert_eq!(select(pref, addrs), want, "{pref:?} of {addrs:?}");
        }
    }

    #[test]
    fn endpoints_mode_makes_every_address_an_endpoint_and_loadbalancer_one() {
        let addrs = [ip("127.0.0.3"), ip("127.0.0.2"), ip("::1")];
        let d = |response_type| DnsDiscovery {
            response_type,
            ip_preference: IpPreference::Ipv4Preferred,
        };
        assert_eq!(
            endpoints(d(DnsResponseType::Endpoints), &addrs, 80, &[]),
            ["127.0.0.2:80", "127.0.0.3:80"]
        );
        assert_eq!(
            endpoints(d(DnsResponseType::Loadbalancer), &addrs, 80, &[]),
            ["127.0.0.3:80"],
            "the first answer"
        );
        assert_eq!(
            endpoints(
                d(DnsResponseType::Loadbalancer),
                &addrs,
                80,
                &["127.0.0.2:80".into()]
            ),
            ["127.0.0.2:80"],
            "kept while the answer still has it"
        );
        assert_eq!(
            endpoints(
                d(DnsResponseType::Loadbalancer),
                &addrs,
                80,
                &["127.0.0.9:80".into()]
            ),
            ["127.0.0.3:80"],
            "moved when it has not"
        );
        let six = DnsDiscovery {
            response_type: DnsResponseType::Endpoints,
            ip_preference: IpPreference::Ipv6Only,
        };
        assert_eq!(endpoints(six, &addrs, 80, &[]), ["[::1]:80"]);
    }

    #[test]
    fn host_and_port_split_at_the_last_colon() {
        assert_eq!(split_host_port("db.local:80"), Some(("db.local", 80)));
        assert_eq!(split_host_port("[::1]:80"), Some(("::1", 80)));
        assert_eq!(split_host_port("db.local"), None);
    }
}
