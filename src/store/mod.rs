//! The store: App Mesh resources in redb. One write transaction per API call holds the
//! resource row, its version, the mesh's version, the reference index and the client-token
//! record, so a call either happens whole or not at all; the change feed announces a new
//! store version only after the commit. Knows nothing of HTTP or QUIC.

mod join_tokens;
mod admins;
mod record;
mod tables;

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};
use serde_json::Value;
use tokio::sync::watch;

pub use join_tokens::{JoinTokenRecord, RedeemError};
pub use record::{Record, Row, Status, Tag};

use tables::*;

use crate::model::{ApiError, ResourceId, ResourceKind, ResourceName};

/// Most tags a resource may carry (App Mesh's limit).
pub const MAX_TAGS: usize = 50;
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

#[derive(Debug, Clone)]
pub struct ClientToken {
    pub token: String,
    pub request_digest: String,
}

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

/// The control plane's database. Cheap to clone; every clone shares one redb handle.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    account: String,
    region: String,
    changes: watch::Sender<u64>,
}

impl Store {
    /// Opens (or creates) the database file. A new store gets a random 12-digit account id,
    /// which becomes the owner in every ARN it hands out.
    pub fn open(path: &Path, region: &str) -> Result<Store, ApiError> {
        let db = Database::create(path).map_err(|e| {
            ApiError::internal(anyhow::anyhow!("opening store {}: {e}", path.display()))
        })?;
        let txn = db.begin_write().map_err(storage)?;
        let (account, version) = {
            let mut meta = txn.open_table(META).map_err(storage)?;
            let existing = meta
                .get(META_ACCOUNT)
                .map_err(storage)?
                .map(|v| String::from_utf8_lossy(v.value()).into_owned());
            let account = match existing {
                Some(account) => account,
                None => {
                    let account = new_account_id();
                    meta.insert(META_ACCOUNT, account.as_bytes())
                        .map_err(storage)?;
                    account
                }
            };
            let version = read_u64(&meta, META_STORE_VERSION)?;
            // Create every table once, so read transactions never meet a missing one.
            txn.open_table(MESHES).map_err(storage)?;
            txn.open_table(RESOURCES).map_err(storage)?;
            txn.open_table(REFS).map_err(storage)?;
            txn.open_table(TOKENS).map_err(storage)?;
            txn.open_table(MESH_VERSIONS).map_err(storage)?;
            txn.open_table(join_tokens::JOIN_TOKENS).map_err(storage)?;
            (account, version)
        };
        txn.commit().map_err(storage)?;
        let (changes, _) = watch::channel(version);
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                account,
                region: region.to_owned(),
                changes,
            }),
        })
    }

    pub fn account(&self) -> &str {
        &self.inner.account
    }

    pub fn region(&self) -> &str {
        &self.inner.region
    }

    pub fn arn(&self, id: &ResourceId) -> String {
        format!(
            "arn:aws:appmesh:{}:{}:{}",
            self.inner.region,
            self.inner.account,
            id.arn_path()
        )
    }

    /// Parses one of our ARNs back into a resource identity.
    pub fn parse_arn(&self, arn: &str) -> Result<ResourceId, ApiError> {
        let bad = || {
            ApiError::bad_request(format!(
                "resourceArn: {arn:?} is not an App Mesh resource ARN"
            ))
        };
        let rest = arn.strip_prefix("arn:aws:appmesh:").ok_or_else(bad)?;
        let mut parts = rest.splitn(3, ':');
        let (_region, account, path) = (
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
        );
        if account != self.inner.account {
            return Err(ApiError::NotFound(format!(
                "{arn} does not belong to this account ({})",
                self.inner.account
            )));
        }
        ResourceId::from_arn_path(path).ok_or_else(bad)
    }

    /// The store version: it goes up by one with every committed write.
    pub fn version(&self) -> u64 {
        *self.inner.changes.borrow()
    }

    /// The change feed: wakes with the new store version after every committed write.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

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

    // === internals ===

    fn record(&self, id: ResourceId, row: Row, status: Status) -> Record {
        Record {
            arn: self.arn(&id),
            id,
            row,
            account: self.inner.account.clone(),
            status,
        }
    }

    fn commit(&self, txn: WriteTransaction, version: u64) -> Result<(), ApiError> {
        txn.commit().map_err(storage)?;
        self.inner.changes.send_replace(version);
        Ok(())
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

    /// A retried call with a token already seen: the same request gets the resource back, a
    /// different request under the same token is a conflict.
    fn replay(
        &self,
        txn: &WriteTransaction,
        op: &str,
        id: &ResourceId,
        token: Option<&ClientToken>,
    ) -> Result<Option<Record>, ApiError> {
        let Some(token) = token else { return Ok(None) };
        let key = token_key(op, id, &token.token);
        let tokens = txn.open_table(TOKENS).map_err(storage)?;
        let Some(seen) = tokens.get(key.as_str()).map_err(storage)? else {
            return Ok(None);
        };
        let seen: TokenRecord = serde_json::from_slice(seen.value()).map_err(ApiError::internal)?;
        if seen.request_digest != token.request_digest {
            return Err(ApiError::Conflict(format!(
                "clientToken {} was already used with different parameters",
                token.token
            )));
        }
        match read_row(txn, id)? {
            Some(row) => Ok(Some(self.record(id.clone(), row, Status::Active))),
            None => Err(not_found(id)),
        }
    }

    fn remember_token(
        &self,
        txn: &WriteTransaction,
        op: &str,
        id: &ResourceId,
        token: Option<&ClientToken>,
    ) -> Result<(), ApiError> {
        let Some(token) = token else { return Ok(()) };
        let record = TokenRecord {
            request_digest: token.request_digest.clone(),
            at: now_secs(),
        };
        let bytes = serde_json::to_vec(&record).map_err(ApiError::internal)?;
        let mut tokens = txn.open_table(TOKENS).map_err(storage)?;
        tokens
            .insert(token_key(op, id, &token.token).as_str(), bytes.as_slice())
            .map_err(storage)?;
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

#[derive(serde::Serialize, serde::Deserialize)]
struct TokenRecord {
    request_digest: String,
    at: f64,
}

fn token_key(op: &str, id: &ResourceId, token: &str) -> String {
    format!("{op}\n{}\n{token}", id.arn_path())
}

fn not_found(id: &ResourceId) -> ApiError {
    match id.kind {
        ResourceKind::Mesh => {
            ApiError::NotFound(format!("Mesh with name {} does not exist", id.mesh))
        }
        kind => ApiError::NotFound(format!(
            "{} with name {} is not present under mesh {}{}",
            kind.title(),
            id.name,
            id.mesh,
            id.parent
                .as_ref()
                .map(|p| format!(
                    " in {} {p}",
                    kind.parent().map(ResourceKind::title).unwrap_or("")
                ))
                .unwrap_or_default()
        )),
    }
}

fn stored_name(s: &str) -> Result<ResourceName, ApiError> {
    ResourceName::parse("stored name", s)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("corrupt store key: {e}")))
}

fn now_secs() -> f64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_millis() as f64) / 1000.0
}

fn new_account_id() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    // A leading non-zero digit keeps the id 12 characters in every rendering.
    let first = rng.gen_range(1..=9u8);
    let rest: String = (0..11)
        .map(|_| char::from(b'0' + rng.gen_range(0..=9u8)))
        .collect();
    format!("{first}{rest}")
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

/// Maps redb failures to API errors. A full disk is the operator's to fix, and reads still
/// work, so it is "unavailable" rather than an internal fault.
fn storage(e: impl Into<redb::Error>) -> ApiError {
    let e: redb::Error = e.into();
    if let redb::Error::Io(io) = &e {
        if io.raw_os_error() == Some(28) {
            return ApiError::ServiceUnavailable(
                "the store cannot write: no space left on device".into(),
            );
        }
    }
    ApiError::internal(anyhow::anyhow!("store: {e}"))
}

#[cfg(test)]
mod tests;
