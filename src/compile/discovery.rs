//! Service discovery: where a virtual node's endpoints come from, and the name its
//! certificate must carry.
//!
//! - A node some sidecar has registered for takes its endpoints from the registry (DESIGN.md
//!   "Endpoints"), whatever its `serviceDiscovery`.
//! - `awsCloudMap`: the registry is the appliance's Cloud Map. The endpoints are the node's
//!   registered sidecars whose reported attributes (`--attribute k=v`) include every
//!   `attributes` pair (Cloud Map's DiscoverInstances), of the family `ipPreference` allows.
//!   No sidecar registered: no endpoints. `namespaceName`/`serviceName` only name the
//!   service (the TLS name `service.namespace`).
//! - `dns` for a node no sidecar registers: its `hostname`, resolved by the proxy as
//!   `responseType` and `ipPreference` say (`DnsDiscovery`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::PeerName;
use crate::model::spec::{
    AwsCloudMapServiceDiscovery, DnsResponseType, IpPreference, MeshSpec, ServiceDiscovery,
};

/// Where a virtual node's endpoints are, when its sidecars have registered: node name -> the
/// registered sidecars.
pub type Endpoints = BTreeMap<String, Vec<Registered>>;

/// One registered sidecar of a node: its advertised address and the attributes it reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Registered {
    /// `host:port`, or a bare host serving every listener of the node on its own port.
    pub address: String,
    /// Cloud Map instance attributes (`--attribute k=v`), matched by `awsCloudMap.attributes`.
    pub attributes: BTreeMap<String, String>,
}

impl Registered {
    /// A registered sidecar reporting no attributes.
    pub fn at(address: impl Into<String>) -> Registered {
        Registered {
            address: address.into(),
            attributes: BTreeMap::new(),
        }
    }
}

impl From<&str> for Registered {
    fn from(address: &str) -> Registered {
        Registered::at(address)
    }
}

/// Why a reported Cloud Map attribute is refused. The rules are Cloud Map's (and App Mesh's
/// for `awsCloudMap.attributes`): a key of 1..255 printable ASCII characters without spaces,
/// a value of 1..1024 printable ASCII characters not starting with a space.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributeError {
    #[error("{0:?} is not KEY=VALUE")]
    NoEquals(String),
    #[error("key {0:?} must be 1 to 255 printable ASCII characters without spaces")]
    Key(String),
    #[error("value {0:?} of key {1:?} must be 1 to 1024 printable ASCII characters, not starting with a space")]
    Value(String, String),
    #[error("key {0:?} is given twice")]
    Duplicate(String),
}

/// Checks one attribute against Cloud Map's rules.
pub fn check_attribute(key: &str, value: &str) -> Result<(), AttributeError> {
    let printable = |c: char| c.is_ascii_graphic() || c == ' ';
    if key.is_empty() || key.len() > 255 || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(AttributeError::Key(key.to_owned()));
    }
    if value.is_empty()
        || value.len() > 1024
        || value.starts_with(' ')
        || !value.chars().all(printable)
    {
        return Err(AttributeError::Value(value.to_owned(), key.to_owned()));
    }
    Ok(())
}

/// Parses `KEY=VALUE` (the first `=` splits; a value may contain more).
pub fn parse_attribute(raw: &str) -> Result<(String, String), AttributeError> {
    let (key, value) = raw
        .split_once('=')
        .ok_or_else(|| AttributeError::NoEquals(raw.to_owned()))?;
    check_attribute(key, value)?;
    Ok((key.to_owned(), value.to_owned()))
}

/// Checks a sidecar's reported attributes and gathers them; a key given twice is refused.
pub fn attribute_map(
    pairs: impl IntoIterator<Item = (String, String)>,
) -> Result<BTreeMap<String, String>, AttributeError> {
    let mut map = BTreeMap::new();
    for (key, value) in pairs {
        check_attribute(&key, &value)?;
        if map.contains_key(&key) {
            return Err(AttributeError::Duplicate(key));
        }
        map.insert(key, value);
    }
    Ok(map)
}

/// How a proxy turns a cluster's DNS name into endpoints (Envoy's cluster `type` and
/// `dns_lookup_family`, as App Mesh set them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsDiscovery {
    /// `LOADBALANCER` (Envoy's LOGICAL_DNS): one endpoint, the first address of the answer.
    /// `ENDPOINTS` (STRICT_DNS): every address is an endpoint of its own.
    pub response_type: DnsResponseType,
    /// Which family's addresses to use: the node's `ipPreference`, else the mesh's, else
    /// App Mesh's DNS default, IPv6 first and IPv4 when there is none.
    pub ip_preference: IpPreference,
}

/// App Mesh's IP preference for DNS discovery when neither node nor mesh sets one: "the Envoy
/// DNS resolver prefers IPv6 and falls back to IPv4" (Envoy's `AUTO`).
pub const DEFAULT_DNS_IP_PREFERENCE: IpPreference = IpPreference::Ipv6Preferred;
/// App Mesh's IP preference for Cloud Map when neither node nor mesh sets one: "prefer IPv4
/// and fall back to IPv6 for IPs returned by Cloud Map".
pub const DEFAULT_CLOUD_MAP_IP_PREFERENCE: IpPreference = IpPreference::Ipv4Preferred;

/// The name a server's certificate must carry when a client policy lists no SANs: the DNS
/// hostname, `service.namespace` for Cloud Map, or the node's SPIFFE id.
pub(super) fn expected_name(
    mesh: &str,
    node_name: &str,
    discovery: Option<&ServiceDiscovery>,
) -> PeerName {
    match discovery {
        Some(ServiceDiscovery::Dns(d)) => PeerName::Dns(d.hostname.clone()),
        Some(ServiceDiscovery::AwsCloudMap(c)) => {
            PeerName::Dns(format!("{}.{}", c.service_name, c.namespace_name))
        }
        None => PeerName::Node {
            mesh: mesh.to_owned(),
            node: node_name.to_owned(),
        },
    }
}

/// The endpoints (`host:port`) of one listener `port` of a node, and how to resolve them when
/// they are a DNS name. `registered` is the node's entry in the registry, if any sidecar of
/// it ever registered.
pub(super) fn endpoints(
    mesh: &MeshSpec,
    discovery: Option<&ServiceDiscovery>,
    registered: Option<&[Registered]>,
    port: u16,
) -> (Vec<String>, Option<DnsDiscovery>) {
    let mesh_preference = mesh.service_discovery.and_then(|sd| sd.ip_preference);
    match (discovery, registered) {
        (Some(ServiceDiscovery::AwsCloudMap(map)), registered) => {
            let preference = map
                .ip_preference
                .or(mesh_preference)
                .unwrap_or(DEFAULT_CLOUD_MAP_IP_PREFERENCE);
            let list = registered
                .unwrap_or_default()
                .iter()
                .filter(|r| has_attributes(r, map) && family_allowed(&r.address, preference))
                .map(|r| with_port(&r.address, port))
                .collect();
            (list, None)
        }
        (_, Some(list)) => (
            list.iter().map(|r| with_port(&r.address, port)).collect(),
            None,
        ),
        (Some(ServiceDiscovery::Dns(d)), None) => (
            vec![with_port(&d.hostname, port)],
            Some(DnsDiscovery {
                response_type: d.response_type.unwrap_or(DnsResponseType::Loadbalancer),
                ip_preference: d
                    .ip_preference
                    .or(mesh_preference)
                    .unwrap_or(DEFAULT_DNS_IP_PREFERENCE),
            }),
        ),
        (None, None) => (Vec::new(), None),
    }
}

/// Cloud Map's DiscoverInstances: an instance matches when it carries every queried
/// key/value pair (extra attributes do not matter).
fn has_attributes(r: &Registered, map: &AwsCloudMapServiceDiscovery) -> bool {
    map.attributes
        .iter()
        .flatten()
        .all(|a| r.attributes.get(&a.key) == Some(&a.value))
}

/// Whether an instance's address may be used under `preference`. A sidecar registers one
/// address, so "preferred" keeps every instance (its one address is the best it has) and
/// "only" drops the instances of the other family. A host name (not an IP) is of no known
/// family: kept unless a family is required.
fn family_allowed(address: &str, preference: IpPreference) -> bool {
    let ip = address
        .parse::<std::net::SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| address.parse::<std::net::IpAddr>());
    match (preference, ip) {
        (IpPreference::Ipv4Only, Ok(ip)) => ip.is_ipv4(),
        (IpPreference::Ipv6Only, Ok(ip)) => ip.is_ipv6(),
        (IpPreference::Ipv4Only | IpPreference::Ipv6Only, Err(_)) => false,
        (IpPreference::Ipv4Preferred | IpPreference::Ipv6Preferred, _) => true,
    }
}

/// A registered endpoint is `host:port`, or a bare host that serves every listener of its
/// node on the listener's own port.
pub(super) fn with_port(addr: &str, port: u16) -> String {
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return addr.to_owned();
    }
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        Ok(ip) => format!("{ip}:{port}"),
        Err(_)
            if addr
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok()) =>
        {
            addr.to_owned()
        }
        Err(_) => format!("{addr}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::{
        AwsCloudMapInstanceAttribute, DnsServiceDiscovery, MeshServiceDiscovery,
    };

    fn cloud_map(attributes: &[(&str, &str)], pref: Option<IpPreference>) -> ServiceDiscovery {
        ServiceDiscovery::AwsCloudMap(AwsCloudMapServiceDiscovery {
            attributes: (!attributes.is_empty()).then(|| {
                attributes
                    .iter()
                    .map(|(k, v)| AwsCloudMapInstanceAttribute {
                        key: (*k).into(),
                        value: (*v).into(),
                    })
                    .collect()
            }),
            ip_preference: pref,
            namespace_name: "apps.local".into(),
            service_name: "colorteller".into(),
        })
    }

    fn sidecar(address: &str, attributes: &[(&str, &str)]) -> Registered {
        Registered {
            address: address.into(),
            attributes: attributes
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        }
    }

    fn dns(response_type: Option<DnsResponseType>, pref: Option<IpPreference>) -> ServiceDiscovery {
        ServiceDiscovery::Dns(DnsServiceDiscovery {
            hostname: "color.apps.local".into(),
            ip_preference: pref,
            response_type,
        })
    }

    fn mesh(pref: Option<IpPreference>) -> MeshSpec {
        MeshSpec {
            egress_filter: None,
            service_discovery: pref.map(|p| MeshServiceDiscovery {
                ip_preference: Some(p),
            }),
        }
    }

    #[test]
    fn cloud_map_keeps_the_sidecars_carrying_every_queried_attribute() {
        let reg = [
            sidecar("10.0.0.1:80", &[("color", "blue"), ("stage", "prod")]),
            sidecar("10.0.0.2:80", &[("color", "blue")]),
            sidecar("10.0.0.3:80", &[("color", "red"), ("stage", "prod")]),
            sidecar("10.0.0.4:80", &[]),
        ];
        for (query, want) in [
            (
                vec![],
                vec!["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"],
            ),
            (vec![("color", "blue")], vec!["10.0.0.1:80", "10.0.0.2:80"]),
            (
                vec![("color", "blue"), ("stage", "prod")],
                vec!["10.0.0.1:80"],
            ),
            (vec![("color", "green")], vec![]),
            (vec![("Color", "blue")], vec![]),
        ] {
            let sd = cloud_map(&query, None);
            let (list, dns) = endpoints(&mesh(None), Some(&sd), Some(&reg), 80);
            assert_eq!(list, want, "query {query:?}");
            assert_eq!(dns, None);
        }
    }

    #[test]
    fn attributes_follow_cloud_maps_syntax() {
        assert_eq!(
            parse_attribute("stage=prod=blue"),
            Ok(("stage".into(), "prod=blue".into()))
        );
        assert_eq!(parse_attribute("k=a b "), Ok(("k".into(), "a b ".into())));
        for (raw, want) in [
            ("stage", AttributeError::NoEquals("stage".into())),
            ("=prod", AttributeError::Key("".into())),
            ("sta ge=prod", AttributeError::Key("sta ge".into())),
            ("stage=", AttributeError::Value("".into(), "stage".into())),
            (
                "stage= prod",
                AttributeError::Value(" prod".into(), "stage".into()),
            ),
            (
                "stage=pr\u{e9}d",
                AttributeError::Value("pr\u{e9}d".into(), "stage".into()),
            ),
        ] {
            assert_eq!(parse_attribute(raw), Err(want), "{raw:?}");
        }
        let long = "k".repeat(256);
        assert_eq!(
            check_attribute(&long, "v"),
            Err(AttributeError::Key(long.clone()))
        );
        assert_eq!(
            attribute_map([("a".into(), "1".into()), ("a".into(), "2".into())]),
            Err(AttributeError::Duplicate("a".into()))
        );
    }

    #[test]
    fn cloud_map_with_no_sidecar_registered_has_no_endpoints_and_no_dns_name() {
        let sd = cloud_map(&[], None);
        assert_eq!(endpoints(&mesh(None), Some(&sd), None, 80), (vec![], None));
    }

    #[test]
    fn cloud_map_ip_preference_only_drops_the_other_family_and_the_node_overrides_the_mesh() {
        let reg = [
            sidecar("10.0.0.1:80", &[]),
            sidecar("[fd00::1]:80", &[]),
            sidecar("10.0.0.2", &[]),
        ];
        let all = vec!["10.0.0.1:80", "10.0.0.2:80", "[fd00::1]:80"];
        for (mesh_pref, node_pref, want) in [
            (None, None, all.clone()),
            (
                None,
                Some(IpPreference::Ipv4Only),
                vec!["10.0.0.1:80", "10.0.0.2:80"],
            ),
            (None, Some(IpPreference::Ipv6Only), vec!["[fd00::1]:80"]),
            (Some(IpPreference::Ipv6Only), None, vec!["[fd00::1]:80"]),
            (
                Some(IpPreference::Ipv6Only),
                Some(IpPreference::Ipv4Preferred),
                all.clone(),
            ),
            (
                Some(IpPreference::Ipv4Only),
                Some(IpPreference::Ipv6Preferred),
                all.clone(),
            ),
        ] {
            let sd = cloud_map(&[], node_pref);
            let (mut list, _) = endpoints(&mesh(mesh_pref), Some(&sd), Some(&reg), 80);
            list.sort();
            assert_eq!(list, want, "mesh {mesh_pref:?} node {node_pref:?}");
        }
    }

    #[test]
    fn dns_names_carry_response_type_and_the_effective_ip_preference() {
        for (rt, mesh_pref, node_pref, want) in [
            (
                None,
                None,
                None,
                (DnsResponseType::Loadbalancer, IpPreference::Ipv6Preferred),
            ),
            (
                Some(DnsResponseType::Endpoints),
                Some(IpPreference::Ipv4Only),
                None,
                (DnsResponseType::Endpoints, IpPreference::Ipv4Only),
            ),
            (
                None,
                Some(IpPreference::Ipv4Only),
                Some(IpPreference::Ipv6Only),
                (DnsResponseType::Loadbalancer, IpPreference::Ipv6Only),
            ),
        ] {
            let sd = dns(rt, node_pref);
            let (list, d) = endpoints(&mesh(mesh_pref), Some(&sd), None, 9080);
            assert_eq!(list, ["color.apps.local:9080"]);
            assert_eq!(
                d,
                Some(DnsDiscovery {
                    response_type: want.0,
                    ip_preference: want.1
                })
            );
        }
    }

    #[test]
    fn a_registered_dns_node_uses_its_sidecars_not_its_name() {
        let sd = dns(Some(DnsResponseType::Endpoints), None);
        let reg = [sidecar("10.0.0.9", &[("color", "x")])];
        assert_eq!(
            endpoints(&mesh(None), Some(&sd), Some(&reg), 9080),
            (vec!["10.0.0.9:9080".to_owned()], None)
        );
        assert_eq!(
            endpoints(&mesh(None), Some(&sd), Some(&[]), 9080),
            (vec![], None)
        );
    }
}
