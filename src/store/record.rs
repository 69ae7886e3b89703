//! What the store keeps for each resource, and the JSON shapes the API returns for it.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::model::{ResourceId, ResourceKind};

/// A user tag (App Mesh's `TagRef`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// One stored resource. The identity lives in the row's key; this is the row's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub uid: String,
    /// Starts at 1; every update (and the final delete) adds one.
    pub version: u64,
    /// Unix epoch seconds, millisecond precision, as App Mesh's API sends them.
    pub created_at: f64,
    pub last_updated_at: f64,
    pub spec: Value,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// The same-mesh resources this spec refers to, kept so an update or delete can drop the
    /// old entries from the reference index without re-parsing the spec.
    #[serde(default)]
    pub references: Vec<(ResourceKind, String)>,
}

/// A resource as the API shows it: identity, row and the owner's account.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: ResourceId,
    pub row: Row,
    pub arn: String,
    pub account: String,
    pub status: Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Deleted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "ACTIVE",
            Status::Deleted => "DELETED",
        }
    }
}

impl Record {
    /// The name members every shape of this kind carries (`meshName`, `virtualRouterName`, ...).
    fn names(&self) -> serde_json::Map<String, Value> {
        let mut names = serde_json::Map::new();
        names.insert("meshName".into(), json!(self.id.mesh.as_str()));
        if let (Some(pkind), Some(parent)) = (self.id.kind.parent(), &self.id.parent) {
            names.insert(pkind.name_field().into(), json!(parent.as_str()));
        }
        if self.id.kind != ResourceKind::Mesh {
            names.insert(
                self.id.kind.name_field().into(),
                json!(self.id.name.as_str()),
            );
        }
        names
    }

    /// The `<Kind>Data` shape: what Create, Describe, Update and Delete return.
    pub fn to_data(&self) -> Value {
        let mut data = self.names();
        data.insert(
            "metadata".into(),
            json!({
                "arn": self.arn,
                "createdAt": self.row.created_at,
                "lastUpdatedAt": self.row.last_updated_at,
                "meshOwner": self.account,
                "resourceOwner": self.account,
                "uid": self.row.uid,
                "version": self.row.version,
            }),
        );
        data.insert("spec".into(), self.row.spec.clone());
        data.insert("status".into(), json!({ "status": self.status.as_str() }));
        Value::Object(data)
    }

    /// The `<Kind>Ref` shape: one item of a List response.
    pub fn to_ref(&self) -> Value {
        let mut r = self.names();
        r.insert("arn".into(), json!(self.arn));
        r.insert("createdAt".into(), json!(self.row.created_at));
        r.insert("lastUpdatedAt".into(), json!(self.row.last_updated_at));
        r.insert("meshOwner".into(), json!(self.account));
        r.insert("resourceOwner".into(), json!(self.account));
        r.insert("version".into(), json!(self.row.version));
        Value::Object(r)
    }
}
