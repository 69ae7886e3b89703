//! Create, update, delete and tag: each one write transaction that checks references,
//! records the client token and bumps the versions before it commits.

use serde_json::Value;

use redb::{ReadableTable, WriteTransaction};

use super::tables::*;
use super::{not_found, now_secs, storage, ClientToken, Record, Row, Status, Store, Tag, MAX_TAGS};
use crate::model::{ApiError, ResourceId, ResourceKind, ResourceName};

/// How many referrers a `ResourceInUseException` lists before it says "and N more".
const MAX_LISTED_REFERRERS: usize = 10;

/// What a Create or Update writes.
#[derive(Debug, Clone)]
pub struct Write {
    /// The spec as it will be returned (validated, defaults filled).
    pub spec: Value,
    /// Same-mesh resources the spec names; each must exist.
    pub references: Vec<(ResourceKind, ResourceName)>,
    /// Tags to set at creation (ignored by updates, as in App Mesh).
    pub tags: Vec<Tag>,
    /// The caller's idempotency token, with a digest of the request it came with.
    pub client_token: Option<ClientToken>,
}

impl Store {
    /// Creates a resource. `check` runs inside the write transaction with a view of the
    /// store, for rules that relate this resource to others.
    pub fn create(
        &self,
        id: &ResourceId,
        write: Write,
        check: impl FnOnce(&Lookup) -> Result<(), ApiError>,
    ) -> Result<Record, ApiError> {
        let txn = self.inner.db.begin_write().map_err(storage)?;
        if let Some(replayed) = self.replay(&txn, "create", id, write.client_token.as_ref())? {
            return Ok(replayed);
        }
        if write.tags.len() > MAX_TAGS {
            return Err(ApiError::TooManyTags(format!(
                "tags: {} tags given, at most {MAX_TAGS} allowed",
                write.tags.len()
            )));
        }
        if id.kind != ResourceKind::Mesh {
            self.require_mesh(&txn, &id.mesh)?;
        }
        if let Some(parent) = id.parent_id() {
            if read_row(&txn, &parent)?.is_none() {
                return Err(not_found(&parent));
            }
        }
        if read_row(&txn, id)?.is_some() {
            return Err(ApiError::Conflict(format!(
                "{} with name {} already exists in mesh {}",
                id.kind.title(),
                id.name,
                id.mesh
            )));
        }
        self.check_references(&txn, id, &write.references)?;
        check(&Lookup { txn: &txn })?;
        let now = now_secs();
        let row = Row {
            uid: uuid::Uuid::new_v4().to_string(),
            version: 1,
            created_at: now,
            last_updated_at: now,
            spec: write.spec,
            tags: write.tags,
            references: write
                .references
                .iter()
                .map(|(k, n)| (*k, n.to_string()))
                .collect(),
        };
        add_references(&txn, id, &write.references)?;
        write_row(&txn, id, &row)?;
        self.remember_token(&txn, "create", id, write.client_token.as_ref())?;
        let version = bump_versions(&txn, &id.mesh)?;
        self.commit(txn, version)?;
        Ok(self.record(id.clone(), row, Status::Active))
    }

    /// Replaces a resource's spec; `check` as for `create`.
    pub fn update(
        &self,
        id: &ResourceId,
        write: Write,
        check: impl FnOnce(&Lookup) -> Result<(), ApiError>,
    ) -> Result<Record, ApiError> {
        let txn = self.inner.db.begin_write().map_err(storage)?;
        if let Some(replayed) = self.replay(&txn, "update", id, write.client_token.as_ref())? {
            return Ok(replayed);
        }
        let mut row = read_row(&txn, id)?.ok_or_else(|| not_found(id))?;
        self.check_references(&txn, id, &write.references)?;
        check(&Lookup { txn: &txn })?;
        remove_references(&txn, id, &row.references)?;
        add_references(&txn, id, &write.references)?;
        row.version += 1;
        row.last_updated_at = now_secs().max(row.last_updated_at);
        row.spec = write.spec;
        row.references = write
            .references
            .iter()
            .map(|(k, n)| (*k, n.to_string()))
            .collect();
        write_row(&txn, id, &row)?;
        self.remember_token(&txn, "update", id, write.client_token.as_ref())?;
        let version = bump_versions(&txn, &id.mesh)?;
        self.commit(txn, version)?;
        Ok(self.record(id.clone(), row, Status::Active))
    }

    /// Deletes a resource nothing refers to, returning it as App Mesh does: status DELETED and
    /// its version one higher.
    pub fn delete(&self, id: &ResourceId) -> Result<Record, ApiError> {
        let txn = self.inner.db.begin_write().map_err(storage)?;
        let mut row = read_row(&txn, id)?.ok_or_else(|| not_found(id))?;
        let users = users_of(&txn, id)?;
        if !users.is_empty() {
            let shown: Vec<&str> = users
                .iter()
                .take(MAX_LISTED_REFERRERS)
                .map(String::as_str)
                .collect();
            let more = users.len().saturating_sub(MAX_LISTED_REFERRERS);
            let tail = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            return Err(ApiError::ResourceInUse(format!(
                "{} {} cannot be deleted because it is in use by: {}{tail}",
                id.kind.title(),
                id.name,
                shown.join(", ")
            )));
        }
        remove_references(&txn, id, &row.references)?;
        delete_row(&txn, id)?;
        if id.kind == ResourceKind::Mesh {
            txn.open_table(MESH_VERSIONS)
                .map_err(storage)?
                .remove(id.mesh.as_str())
                .map_err(storage)?;
        }
        let version = if id.kind == ResourceKind::Mesh {
            bump_store_version(&txn)?
        } else {
            bump_versions(&txn, &id.mesh)?
        };
        self.commit(txn, version)?;
        row.version += 1;
        row.last_updated_at = now_secs().max(row.last_updated_at);
        Ok(self.record(id.clone(), row, Status::Deleted))
    }

    /// Adds or replaces tags on a resource; no row change beyond its tags.
    pub fn tag(&self, id: &ResourceId, tags: Vec<Tag>) -> Result<(), ApiError> {
        self.edit_tags(id, |current| {
            for tag in tags {
                match current.iter_mut().find(|t| t.key == tag.key) {
                    Some(t) => t.value = tag.value,
                    None => current.push(tag),
                }
            }
            if current.len() > MAX_TAGS {
                return Err(ApiError::TooManyTags(format!(
                    "tags: the resource would have {} tags, at most {MAX_TAGS} allowed",
                    current.len()
                )));
            }
            Ok(())
        })
    }

    pub fn untag(&self, id: &ResourceId, keys: &[String]) -> Result<(), ApiError> {
        self.edit_tags(id, |current| {
            current.retain(|t| !keys.contains(&t.key));
            Ok(())
        })
    }

    fn require_mesh(&self, txn: &WriteTransaction, mesh: &ResourceName) -> Result<(), ApiError> {
        let meshes = txn.open_table(MESHES).map_err(storage)?;
        if meshes.get(mesh.as_str()).map_err(storage)?.is_none() {
            return Err(not_found(&ResourceId::mesh(mesh.clone())));
        }
        Ok(())
    }

    fn check_references(
        &self,
        txn: &WriteTransaction,
        id: &ResourceId,
        refs: &[(ResourceKind, ResourceName)],
    ) -> Result<(), ApiError> {
        for (kind, name) in refs {
            let target = ResourceId::top(*kind, id.mesh.clone(), name.clone());
            if read_row(txn, &target)?.is_none() {
                return Err(ApiError::NotFound(format!(
                    "{} {} refers to {} {}, which does not exist in mesh {}",
                    id.kind.title(),
                    id.name,
                    kind.title(),
                    name,
                    id.mesh
                )));
            }
        }
        Ok(())
    }

    fn edit_tags(
        &self,
        id: &ResourceId,
        edit: impl FnOnce(&mut Vec<Tag>) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let txn = self.inner.db.begin_write().map_err(storage)?;
        let mut row = read_row(&txn, id)?.ok_or_else(|| not_found(id))?;
        edit(&mut row.tags)?;
        write_row(&txn, id, &row)?;
        let version = bump_store_version(&txn)?;
        self.commit(txn, version)
    }
}

/// A read view of the store inside a write transaction.
pub struct Lookup<'a> {
    txn: &'a WriteTransaction,
}

impl Lookup<'_> {
    /// The stored spec of a resource, if it exists.
    pub fn spec(&self, id: &ResourceId) -> Result<Option<Value>, ApiError> {
        Ok(read_row(self.txn, id)?.map(|row| row.spec))
    }
}
