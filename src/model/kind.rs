//! Resource kinds, names and identities: what a stored resource is called, in the API's
//! JSON (`virtualNodeName`), in its ARN (`mesh/m/virtualNode/n`) and in the store's keys.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ApiError;

/// The seven App Mesh resource types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ResourceKind {
    Mesh,
    VirtualNode,
    VirtualRouter,
    Route,
    VirtualService,
    VirtualGateway,
    GatewayRoute,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 7] = [
        Self::Mesh,
        Self::VirtualNode,
        Self::VirtualRouter,
        Self::Route,
        Self::VirtualService,
        Self::VirtualGateway,
        Self::GatewayRoute,
    ];

    /// The segment used in ARNs and in App Mesh's messages (`virtualNode`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mesh => "mesh",
            Self::VirtualNode => "virtualNode",
            Self::VirtualRouter => "virtualRouter",
            Self::Route => "route",
            Self::VirtualService => "virtualService",
            Self::VirtualGateway => "virtualGateway",
            Self::GatewayRoute => "gatewayRoute",
        }
    }

    /// The name as App Mesh writes it in error messages (`VirtualNode`).
    pub fn title(self) -> &'static str {
        match self {
            Self::Mesh => "Mesh",
            Self::VirtualNode => "VirtualNode",
            Self::VirtualRouter => "VirtualRouter",
            Self::Route => "Route",
            Self::VirtualService => "VirtualService",
            Self::VirtualGateway => "VirtualGateway",
            Self::GatewayRoute => "GatewayRoute",
        }
    }

    /// The JSON member holding this resource's own name (`virtualNodeName`).
    pub fn name_field(self) -> &'static str {
        match self {
            Self::Mesh => "meshName",
            Self::VirtualNode => "virtualNodeName",
            Self::VirtualRouter => "virtualRouterName",
            Self::Route => "routeName",
            Self::VirtualService => "virtualServiceName",
            Self::VirtualGateway => "virtualGatewayName",
            Self::GatewayRoute => "gatewayRouteName",
        }
    }

    /// The kind of the parent for the two nested kinds.
    pub fn parent(self) -> Option<ResourceKind> {
        match self {
            Self::Route => Some(Self::VirtualRouter),
            Self::GatewayRoute => Some(Self::VirtualGateway),
            _ => None,
        }
    }

    /// One byte for store keys; stable on disk, so never renumber.
    pub fn code(self) -> u8 {
        match self {
            Self::Mesh => 0,
            Self::VirtualNode => 1,
            Self::VirtualRouter => 2,
            Self::Route => 3,
            Self::VirtualService => 4,
            Self::VirtualGateway => 5,
            Self::GatewayRoute => 6,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    pub fn from_segment(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource name: 1 to 255 characters (App Mesh's `ResourceName`). A `/` is refused as well,
/// because names are path segments of ARNs and of the API's URLs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ResourceName(String);

impl ResourceName {
    pub const MAX_LEN: usize = 255;

    pub fn parse(field: &str, value: &str) -> Result<Self, ApiError> {
        let len = value.chars().count();
        if len == 0 || len > Self::MAX_LEN {
            return Err(ApiError::bad_request(format!(
                "{field}: length {len} is outside 1..{}",
                Self::MAX_LEN
            )));
        }
        if value.contains('/') || value.chars().any(char::is_control) {
            return Err(ApiError::bad_request(format!(
                "{field}: {value:?} may not contain '/' or control characters"
            )));
        }
        if let Some(c) = value.chars().find(|c| is_invisible(*c)) {
            return Err(ApiError::bad_request(format!(
                "{field}: {value:?} may not contain the invisible or direction-changing character U+{:04X}",
                u32::from(c)
            )));
        }
        // `.` and `..` are path segments that clients and signers resolve away, so a
        // resource with such a name could be created but never named again in a URL.
        if value.chars().all(|c| c == '.') {
            return Err(ApiError::bad_request(format!(
                "{field}: {value:?} may not consist of dots only"
            )));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Characters that render as nothing or reorder the text around them (bidi overrides and
/// isolates, zero-width spaces and joiners, the BOM): two names that look the same must
/// be the same name.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ResourceName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ResourceName::parse("name", &s).map_err(serde::de::Error::custom)
    }
}

/// Which resource: its kind, mesh, parent (router or gateway, for routes and gateway routes)
/// and name. For a mesh, `mesh` and `name` are the same.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId {
    pub kind: ResourceKind,
    pub mesh: ResourceName,
    pub parent: Option<ResourceName>,
    pub name: ResourceName,
}

impl ResourceId {
    pub fn mesh(mesh: ResourceName) -> Self {
        Self {
            kind: ResourceKind::Mesh,
            name: mesh.clone(),
            mesh,
            parent: None,
        }
    }

    pub fn top(kind: ResourceKind, mesh: ResourceName, name: ResourceName) -> Self {
        debug_assert!(kind.parent().is_none() && kind != ResourceKind::Mesh);
        Self {
            kind,
            mesh,
            parent: None,
            name,
        }
    }

    pub fn nested(
        kind: ResourceKind,
        mesh: ResourceName,
        parent: ResourceName,
        name: ResourceName,
    ) -> Self {
        debug_assert!(kind.parent().is_some());
        Self {
            kind,
            mesh,
            parent: Some(parent),
            name,
        }
    }

    /// The parent's identity, for routes and gateway routes.
    pub fn parent_id(&self) -> Option<ResourceId> {
        let (kind, parent) = (self.kind.parent()?, self.parent.clone()?);
        Some(ResourceId::top(kind, self.mesh.clone(), parent))
    }

    /// The resource part of the ARN: `mesh/m/virtualRouter/vr/route/r`.
    pub fn arn_path(&self) -> String {
        match (self.kind, &self.parent) {
            (ResourceKind::Mesh, _) => format!("mesh/{}", self.mesh),
            (kind, Some(parent)) => format!(
                "mesh/{}/{}/{}/{}/{}",
                self.mesh,
                kind.parent().map(ResourceKind::as_str).unwrap_or_default(),
                parent,
                kind.as_str(),
                self.name
            ),
            (kind, None) => format!("mesh/{}/{}/{}", self.mesh, kind.as_str(), self.name),
        }
    }

    /// Parses the resource part of an ARN (`mesh/m/virtualNode/n`), the inverse of `arn_path`.
    pub fn from_arn_path(path: &str) -> Option<Self> {
        let parts: Vec<&str> = path.split('/').collect();
        let name = |i: usize| {
            parts
                .get(i)
                .and_then(|s| ResourceName::parse("arn", s).ok())
        };
        match parts.as_slice() {
            ["mesh", _] => Some(Self::mesh(name(1)?)),
            ["mesh", _, kind, _] => {
                let kind = ResourceKind::from_segment(kind)?;
                (kind != ResourceKind::Mesh && kind.parent().is_none())
                    .then(|| Some(Self::top(kind, name(1)?, name(3)?)))?
            }
            ["mesh", _, pkind, _, kind, _] => {
                let kind = ResourceKind::from_segment(kind)?;
                (kind.parent()?.as_str() == *pkind)
                    .then(|| Some(Self::nested(kind, name(1)?, name(3)?, name(5)?)))?
            }
            _ => None,
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> ResourceName {
        ResourceName::parse("t", s).unwrap()
    }

    #[test]
    fn arn_paths_round_trip_for_every_kind() {
        let ids = [
            ResourceId::mesh(n("m")),
            ResourceId::top(ResourceKind::VirtualNode, n("m"), n("vn")),
            ResourceId::top(ResourceKind::VirtualService, n("m"), n("a.b.local")),
            ResourceId::nested(ResourceKind::Route, n("m"), n("vr"), n("r")),
            ResourceId::nested(ResourceKind::GatewayRoute, n("m"), n("vg"), n("gr")),
        ];
        for id in ids {
            assert_eq!(
                ResourceId::from_arn_path(&id.arn_path()),
                Some(id.clone()),
                "{id}"
            );
        }
        assert_eq!(ResourceId::from_arn_path("mesh/m/route/r"), None);
        assert_eq!(
            ResourceId::from_arn_path("mesh/m/virtualNode/vn/route/r"),
            None
        );
    }

    #[test]
    fn names_reject_empty_long_and_slashes() {
        assert!(ResourceName::parse("x", "").is_err());
        assert!(ResourceName::parse("x", &"a".repeat(256)).is_err());
        assert!(ResourceName::parse("x", "a/b").is_err());
        assert!(ResourceName::parse("x", &"a".repeat(255)).is_ok());
    }
}
