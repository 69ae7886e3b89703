//! The store: App Mesh resources in redb. One write transaction per API call holds the
//! resource row, its version, the mesh's version, the reference index and the client-token
//! record, so a call either happens whole or not at all; the change feed announces a new
//! store version only after the commit. Knows nothing of HTTP or QUIC.
//!
//! This file opens the database and owns the handle, ARNs and the change feed; `write` holds
//! the write transactions, `read` the reads, `client_token` idempotent retries, `tables` the
//! redb layout and the reference index.

mod admins;
mod client_token;
mod join_tokens;
mod read;
mod record;
mod tables;
mod write;

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableTable, WriteTransaction};
use tokio::sync::watch;

pub use client_token::ClientToken;
pub use join_tokens::{JoinTokenRecord, RedeemError};
pub use read::{ListScope, Page};
pub use record::{Record, Row, Status, Tag};
pub use write::{Lookup, Write};

use tables::*;

use crate::model::{ApiError, ResourceId, ResourceKind, ResourceName};

/// Most tags a resource may carry (App Mesh's limit).
pub const MAX_TAGS: usize = 50;

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
