//! Reads: describe one resource, list a page of them, snapshot a whole mesh.

use base64::Engine;
use redb::ReadableDatabase;

use super::tables::*;
use super::{not_found, storage, stored_name, Record, Status, Store};
use crate::model::{ApiError, ResourceId, ResourceKind, ResourceName};

/// Which resources a List call walks.
#[derive(Debug, Clone)]
pub enum ListScope {
    Meshes,
    /// Virtual nodes, routers, services or gateways of one mesh.
    Mesh(ResourceName, ResourceKind),
    /// Routes of a router, or gateway routes of a gateway.
    Parent(ResourceId, ResourceKind),
}

/// A page of a List call.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Record>,
    pub next_token: Option<String>,
}

impl Store {
    pub fn describe(&self, id: &ResourceId) -> Result<Record, ApiError> {
        let txn = self.inner.db.begin_read().map_err(storage)?;
        let row = match id.kind {
            ResourceKind::Mesh => {
                let t = txn.open_table(MESHES).map_err(storage)?;
                let v = t.get(id.mesh.as_str()).map_err(storage)?;
                v.map(|v| decode_row(v.value())).transpose()?
            }
            _ => {
                let t = txn.open_table(RESOURCES).map_err(storage)?;
                let v = t.get(resource_key(id)).map_err(storage)?;
                v.map(|v| decode_row(v.value())).transpose()?
            }
        };
        match row {
            Some(row) => Ok(self.record(id.clone(), row, Status::Active)),
            None => {
                // Name the missing mesh rather than the child, as App Mesh does.
                if id.kind != ResourceKind::Mesh {
                    let meshes = txn.open_table(MESHES).map_err(storage)?;
                    if meshes.get(id.mesh.as_str()).map_err(storage)?.is_none() {
                        return Err(not_found(&ResourceId::mesh(id.mesh.clone())));
                    }
                }
                Err(not_found(id))
            }
        }
    }

    /// One page of resources in name order, starting after the page token.
    pub fn list(
        &self,
        scope: &ListScope,
        limit: usize,
        next_token: Option<&str>,
    ) -> Result<Page, ApiError> {
        let after = next_token.map(decode_page_token).transpose()?;
        let txn = self.inner.db.begin_read().map_err(storage)?;
        let mut items = Vec::new();
        let mut more = false;
        match scope {
            ListScope::Meshes => {
                let t = txn.open_table(MESHES).map_err(storage)?;
                let range = match &after {
                    Some(a) => t.range::<&str>((
                        std::ops::Bound::Excluded(a.as_str()),
                        std::ops::Bound::Unbounded,
                    )),
                    None => t.range::<&str>(..),
                }
                .map_err(storage)?;
                for entry in range {
                    let (k, v) = entry.map_err(storage)?;
                    if items.len() == limit {
                        more = true;
                        break;
                    }
                    let mesh = stored_name(k.value())?;
                    items.push(self.record(
                        ResourceId::mesh(mesh),
                        decode_row(v.value())?,
                        Status::Active,
                    ));
                }
            }
            ListScope::Mesh(mesh, kind) | ListScope::Parent(ResourceId { mesh, .. }, kind) => {
                let parent = match scope {
                    ListScope::Parent(p, _) => Some(p.name.clone()),
                    _ => None,
                };
                let probe = match scope {
                    ListScope::Parent(p, _) => p.clone(),
                    _ => ResourceId::mesh(mesh.clone()),
                };
                if read_row_ro(&txn, &probe)?.is_none() {
                    if probe.kind != ResourceKind::Mesh
                        && read_row_ro(&txn, &ResourceId::mesh(mesh.clone()))?.is_none()
                    {
                        return Err(not_found(&ResourceId::mesh(mesh.clone())));
                    }
                    return Err(not_found(&probe));
                }
                let t = txn.open_table(RESOURCES).map_err(storage)?;
                let p = parent.as_ref().map(ResourceName::as_str).unwrap_or("");
                let start = (
                    mesh.as_str(),
                    kind.code(),
                    p,
                    after.as_deref().unwrap_or(""),
                );
                let range = if after.is_some() {
                    t.range::<(&str, u8, &str, &str)>((
                        std::ops::Bound::Excluded(start),
                        std::ops::Bound::Unbounded,
                    ))
                } else {
                    t.range::<(&str, u8, &str, &str)>(start..)
                }
                .map_err(storage)?;
                for entry in range {
                    let (k, v) = entry.map_err(storage)?;
                    let (km, kk, kp, kn) = k.value();
                    if km != mesh.as_str() || kk != kind.code() || kp != p {
                        break;
                    }
                    if items.len() == limit {
                        more = true;
                        break;
                    }
                    let name = stored_name(kn)?;
                    let id = match &parent {
                        Some(pn) => ResourceId::nested(*kind, mesh.clone(), pn.clone(), name),
                        None => ResourceId::top(*kind, mesh.clone(), name),
                    };
                    items.push(self.record(id, decode_row(v.value())?, Status::Active));
                }
            }
        }
        let next_token = match (more, items.last()) {
            (true, Some(last)) => Some(encode_page_token(last.id.name.as_str())),
            _ => None,
        };
        Ok(Page { items, next_token })
    }

    /// Every resource of one mesh, for `compile` and the admin page's picture.
    pub fn mesh_snapshot(&self, mesh: &ResourceName) -> Result<Vec<Record>, ApiError> {
        let txn = self.inner.db.begin_read().map_err(storage)?;
        let mut out = Vec::new();
        let meshes = txn.open_table(MESHES).map_err(storage)?;
        match meshes.get(mesh.as_str()).map_err(storage)? {
            Some(v) => out.push(self.record(
                ResourceId::mesh(mesh.clone()),
                decode_row(v.value())?,
                Status::Active,
            )),
            None => return Err(not_found(&ResourceId::mesh(mesh.clone()))),
        }
        let t = txn.open_table(RESOURCES).map_err(storage)?;
        for entry in t
            .range::<(&str, u8, &str, &str)>((mesh.as_str(), 0, "", "")..)
            .map_err(storage)?
        {
            let (k, v) = entry.map_err(storage)?;
            let (km, kk, kp, kn) = k.value();
            if km != mesh.as_str() {
                break;
            }
            let kind = ResourceKind::from_code(kk).ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("store row has unknown kind code {kk}"))
            })?;
            let id = ResourceId {
                kind,
                mesh: mesh.clone(),
                parent: (!kp.is_empty()).then(|| stored_name(kp)).transpose()?,
                name: stored_name(kn)?,
            };
            out.push(self.record(id, decode_row(v.value())?, Status::Active));
        }
        Ok(out)
    }
}

fn encode_page_token(after: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("v1:{after}"))
}

fn decode_page_token(token: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "nextToken: {token:?} is not a token this API returned"
        ))
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix("v1:").map(str::to_owned).ok_or_else(bad)
}
