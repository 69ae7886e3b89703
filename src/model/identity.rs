//! Who a proxy is: a virtual node or a virtual gateway of one mesh. Written
//! `mesh/<mesh>/virtualNode/<name>` as App Mesh's `APPMESH_RESOURCE_ARN` short form, and
//! accepted also as the full ARN.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{ResourceKind, ResourceName};

/// The two kinds of resource a proxy can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ProxyKind {
    VirtualNode,
    VirtualGateway,
}

impl ProxyKind {
    pub fn resource_kind(self) -> ResourceKind {
        match self {
            ProxyKind::VirtualNode => ResourceKind::VirtualNode,
            ProxyKind::VirtualGateway => ResourceKind::VirtualGateway,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Identity {
    pub mesh: ResourceName,
    pub kind: ProxyKind,
    pub name: ResourceName,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("identity {value:?}: {reason} (expected mesh/<mesh>/virtualNode/<name>, mesh/<mesh>/virtualGateway/<name>, or the full App Mesh ARN)")]
pub struct IdentityError {
    value: String,
    reason: &'static str,
}

impl Identity {
    pub fn new(mesh: ResourceName, kind: ProxyKind, name: ResourceName) -> Identity {
        Identity { mesh, kind, name }
    }

    /// Parses `mesh/M/virtualNode/N`, `mesh/M/virtualGateway/G`, or
    /// `arn:aws:appmesh:REGION:ACCOUNT:mesh/M/virtualNode/N`.
    pub fn parse(value: &str) -> Result<Identity, IdentityError> {
        let err = |reason| IdentityError {
            value: value.to_owned(),
            reason,
        };
        let path = match value.strip_prefix("arn:") {
            Some(rest) => {
                let parts: Vec<&str> = rest.splitn(5, ':').collect();
                match parts.as_slice() {
                    [_partition, "appmesh" | "appmesh-preview", _region, _account, path] => *path,
                    _ => return Err(err("not an App Mesh ARN")),
                }
            }
            None => value,
        };
        let parts: Vec<&str> = path.split('/').collect();
        let ["mesh", mesh, kind, name] = parts.as_slice() else {
            return Err(err("wrong number of parts"));
        };
        let kind = match *kind {
            "virtualNode" => ProxyKind::VirtualNode,
            "virtualGateway" => ProxyKind::VirtualGateway,
            _ => return Err(err("the kind must be virtualNode or virtualGateway")),
        };
        let mesh = ResourceName::parse("mesh", mesh)
            .map_err(|_| err("the mesh name is not a valid name"))?;
        let name = ResourceName::parse("name", name)
            .map_err(|_| err("the resource name is not a valid name"))?;
        Ok(Identity { mesh, kind, name })
    }

    /// The SPIFFE id its certificates carry.
    pub fn spiffe_id(&self, trust_domain: &str) -> String {
        format!("spiffe://{trust_domain}/{self}")
    }

    /// Reads an identity back from a SPIFFE id of the given trust domain.
    pub fn from_spiffe_id(uri: &str, trust_domain: &str) -> Option<Identity> {
        let path = uri
            .strip_prefix("spiffe://")?
            .strip_prefix(trust_domain)?
            .strip_prefix('/')?;
        Identity::parse(path).ok()
    }

    pub fn is_gateway(&self) -> bool {
        self.kind == ProxyKind::VirtualGateway
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ProxyKind::VirtualNode => "virtualNode",
            ProxyKind::VirtualGateway => "virtualGateway",
        };
        write!(f, "mesh/{}/{kind}/{}", self.mesh, self.name)
    }
}

impl FromStr for Identity {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Identity::parse(s)
    }
}

impl TryFrom<String> for Identity {
    type Error = IdentityError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Identity::parse(&s)
    }
}

impl From<Identity> for String {
    fn from(i: Identity) -> String {
        i.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_arn_forms_parse_to_the_same_identity() {
        let short = Identity::parse("mesh/ColorApp/virtualNode/colorteller-white-vn").unwrap();
        let arn = Identity::parse(
            "arn:aws:appmesh:us-west-2:123456789012:mesh/ColorApp/virtualNode/colorteller-white-vn",
        )
        .unwrap();
        assert_eq!(short, arn);
        assert_eq!(
            short.to_string(),
            "mesh/ColorApp/virtualNode/colorteller-white-vn"
        );
        assert!(Identity::parse("mesh/m/virtualGateway/g")
            .unwrap()
            .is_gateway());
    }

    #[test]
    fn other_kinds_and_shapes_are_refused_with_a_reason() {
        for bad in [
            "mesh/m/virtualRouter/r",
            "mesh/m/virtualNode",
            "m/virtualNode/n",
            "arn:aws:s3:::bucket",
            "mesh//virtualNode/n",
        ] {
            let err = Identity::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn spiffe_ids_round_trip_within_their_trust_domain() {
        let id = Identity::parse("mesh/m/virtualGateway/gw").unwrap();
        let uri = id.spiffe_id("appliance.local");
        assert_eq!(uri, "spiffe://appliance.local/mesh/m/virtualGateway/gw");
        assert_eq!(Identity::from_spiffe_id(&uri, "appliance.local"), Some(id));
        assert_eq!(Identity::from_spiffe_id(&uri, "other.local"), None);
    }
}
