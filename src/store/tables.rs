//! Table definitions and the row-level helpers every write transaction uses.
//!
//! Layout (keys are stable on disk; never reorder tuple members or renumber kinds):
//! - `meshes`: mesh name -> JSON `Row`
//! - `resources`: (mesh, kind code, parent name or "", name) -> JSON `Row`, so one range
//!   scan lists a kind within a mesh or within a router/gateway, in name order
//! - `refs`: (mesh, target kind, target name, referrer ARN path) -> (), the reference index
//!   that answers "who uses this?" on delete without reading specs
//! - `tokens`: "op\nresource\ntoken" -> JSON, for clientToken idempotency
//! - `mesh_versions`: mesh name -> u64, bumped by every write inside the mesh
//! - `meta`: account id and the store version

use redb::{
    ReadOnlyTable, ReadTransaction, ReadableTable, Table, TableDefinition, WriteTransaction,
};

use super::{storage, Row};
use crate::model::{ApiError, ResourceId, ResourceKind, ResourceName};

pub(super) type ResourceKey<'a> = (&'a str, u8, &'a str, &'a str);

pub(super) const MESHES: TableDefinition<&str, &[u8]> = TableDefinition::new("meshes");
pub(super) const RESOURCES: TableDefinition<ResourceKey, &[u8]> = TableDefinition::new("resources");
pub(super) const REFS: TableDefinition<ResourceKey, ()> = TableDefinition::new("refs");
pub(super) const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
pub(super) const MESH_VERSIONS: TableDefinition<&str, u64> = TableDefinition::new("mesh_versions");
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub(super) const META_ACCOUNT: &str = "account";
pub(super) const META_STORE_VERSION: &str = "store_version";

pub(super) fn resource_key(id: &ResourceId) -> ResourceKey<'_> {
    (
        id.mesh.as_str(),
        id.kind.code(),
        id.parent.as_ref().map(ResourceName::as_str).unwrap_or(""),
        id.name.as_str(),
    )
}

pub(super) fn decode_row(bytes: &[u8]) -> Result<Row, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("corrupt store row: {e}")))
}

pub(super) fn read_u64(meta: &Table<&str, &[u8]>, key: &str) -> Result<u64, ApiError> {
    Ok(match meta.get(key).map_err(storage)? {
        Some(v) => {
            let bytes: [u8; 8] = v
                .value()
                .try_into()
                .map_err(|_| ApiError::internal(anyhow::anyhow!("meta {key} is not 8 bytes")))?;
            u64::from_be_bytes(bytes)
        }
        None => 0,
    })
}

pub(super) fn read_row(txn: &WriteTransaction, id: &ResourceId) -> Result<Option<Row>, ApiError> {
    match id.kind {
        ResourceKind::Mesh => {
            let t = txn.open_table(MESHES).map_err(storage)?;
            let v = t.get(id.mesh.as_str()).map_err(storage)?;
            v.map(|v| decode_row(v.value())).transpose()
        }
        _ => {
            let t = txn.open_table(RESOURCES).map_err(storage)?;
            let v = t.get(resource_key(id)).map_err(storage)?;
            v.map(|v| decode_row(v.value())).transpose()
        }
    }
}

pub(super) fn read_row_ro(txn: &ReadTransaction, id: &ResourceId) -> Result<Option<Row>, ApiError> {
    match id.kind {
        ResourceKind::Mesh => {
            let t: ReadOnlyTable<&str, &[u8]> = txn.open_table(MESHES).map_err(storage)?;
            let v = t.get(id.mesh.as_str()).map_err(storage)?;
            v.map(|v| decode_row(v.value())).transpose()
        }
        _ => {
            let t = txn.open_table(RESOURCES).map_err(storage)?;
            let v = t.get(resource_key(id)).map_err(storage)?;
            v.map(|v| decode_row(v.value())).transpose()
        }
    }
}

pub(super) fn write_row(
    txn: &WriteTransaction,
    id: &ResourceId,
    row: &Row,
) -> Result<(), ApiError> {
    let bytes = serde_json::to_vec(row).map_err(ApiError::internal)?;
    match id.kind {
        ResourceKind::Mesh => {
            txn.open_table(MESHES)
                .map_err(storage)?
                .insert(id.mesh.as_str(), bytes.as_slice())
                .map_err(storage)?;
        }
        _ => {
            txn.open_table(RESOURCES)
                .map_err(storage)?
                .insert(resource_key(id), bytes.as_slice())
                .map_err(storage)?;
        }
    }
    Ok(())
}

pub(super) fn delete_row(txn: &WriteTransaction, id: &ResourceId) -> Result<(), ApiError> {
    match id.kind {
        ResourceKind::Mesh => {
            txn.open_table(MESHES)
                .map_err(storage)?
                .remove(id.mesh.as_str())
                .map_err(storage)?;
        }
        _ => {
            txn.open_table(RESOURCES)
                .map_err(storage)?
                .remove(resource_key(id))
                .map_err(storage)?;
        }
    }
    Ok(())
}

pub(super) fn add_references(
    txn: &WriteTransaction,
    from: &ResourceId,
    refs: &[(ResourceKind, ResourceName)],
) -> Result<(), ApiError> {
    let mut t = txn.open_table(REFS).map_err(storage)?;
    let referrer = from.arn_path();
    for (kind, name) in refs {
        t.insert(
            (
                from.mesh.as_str(),
                kind.code(),
                name.as_str(),
                referrer.as_str(),
            ),
            (),
        )
        .map_err(storage)?;
    }
    Ok(())
}

pub(super) fn remove_references(
    txn: &WriteTransaction,
    from: &ResourceId,
    refs: &[(ResourceKind, String)],
) -> Result<(), ApiError> {
    let mut t = txn.open_table(REFS).map_err(storage)?;
    let referrer = from.arn_path();
    for (kind, name) in refs {
        t.remove((
            from.mesh.as_str(),
            kind.code(),
            name.as_str(),
            referrer.as_str(),
        ))
        .map_err(storage)?;
    }
    Ok(())
}

/// Everything that keeps `id` from being deleted, as ARN paths: referrers in the index, and
/// children (a mesh's resources, a router's routes, a gateway's gateway routes).
pub(super) fn users_of(txn: &WriteTransaction, id: &ResourceId) -> Result<Vec<String>, ApiError> {
    let mut users = Vec::new();
    let mesh = id.mesh.as_str();
    let resources = txn.open_table(RESOURCES).map_err(storage)?;
    let mut children = |kind: Option<ResourceKind>, parent: &str| -> Result<(), ApiError> {
        let start = (mesh, kind.map(ResourceKind::code).unwrap_or(0), parent, "");
        for entry in resources.range::<ResourceKey>(start..).map_err(storage)? {
            let (k, _) = entry.map_err(storage)?;
            let (km, kk, kp, kn) = k.value();
            let same_scope =
                km == mesh && kind.is_none_or(|kind| kk == kind.code() && kp == parent);
            if !same_scope {
                break;
            }
            let kind = ResourceKind::from_code(kk).unwrap_or(ResourceKind::Mesh);
            users.push(match kind.parent() {
                Some(pk) => format!("mesh/{km}/{}/{kp}/{}/{kn}", pk.as_str(), kind.as_str()),
                None => format!("mesh/{km}/{}/{kn}", kind.as_str()),
            });
        }
        Ok(())
    };
    match id.kind {
        ResourceKind::Mesh => children(None, "")?,
        ResourceKind::VirtualRouter => children(Some(ResourceKind::Route), id.name.as_str())?,
        ResourceKind::VirtualGateway => {
            children(Some(ResourceKind::GatewayRoute), id.name.as_str())?
        }
        _ => {}
    }
    let refs = txn.open_table(REFS).map_err(storage)?;
    let (code, name) = (id.kind.code(), id.name.as_str());
    for entry in refs
        .range::<ResourceKey>((mesh, code, name, "")..)
        .map_err(storage)?
    {
        let (k, _) = entry.map_err(storage)?;
        let (km, kk, kn, referrer) = k.value();
        if km != mesh || kk != code || kn != name {
            break;
        }
        users.push(referrer.to_owned());
    }
    Ok(users)
}

/// Bumps the mesh's version and the store version; returns the new store version.
pub(super) fn bump_versions(txn: &WriteTransaction, mesh: &ResourceName) -> Result<u64, ApiError> {
    {
        let mut t = txn.open_table(MESH_VERSIONS).map_err(storage)?;
        let current = t
            .get(mesh.as_str())
            .map_err(storage)?
            .map(|v| v.value())
            .unwrap_or(0);
        t.insert(mesh.as_str(), current + 1).map_err(storage)?;
    }
    bump_store_version(txn)
}

pub(super) fn bump_store_version(txn: &WriteTransaction) -> Result<u64, ApiError> {
    let mut meta = txn.open_table(META).map_err(storage)?;
    let next = read_u64(&meta, META_STORE_VERSION)? + 1;
    meta.insert(META_STORE_VERSION, next.to_be_bytes().as_slice())
        .map_err(storage)?;
    Ok(next)
}
