//! Admin page users: user name -> Argon2id password hash (PHC string), in their own table.
//! These are not App Mesh resources: writing one does not bump the store version, so no
//! proxy config is recompiled for it.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{storage, Store};
use crate::model::ApiError;

/// `admins`: user name -> JSON `AdminRow`. Created on first use, so stores written by an
/// older release open unchanged.
const ADMINS: TableDefinition<&str, &[u8]> = TableDefinition::new("admins");

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdminRow {
    /// `$argon2id$...`: the salt and parameters travel with the hash.
    password_hash: String,
    /// Seconds since the Unix epoch, as App Mesh timestamps.
    created_at: f64,
}

impl Store {
    /// Adds an admin user. An existing name is a conflict: replacing a password silently
    /// would let anyone with API keys take over another admin's sign-in unnoticed.
    pub fn create_admin(&self, user: &str, password_hash: &str) -> Result<(), ApiError> {
        let row = serde_json::to_vec(&AdminRow {
            password_hash: password_hash.to_owned(),
            created_at: super::now_secs(),
        })
        .map_err(ApiError::internal)?;
        let txn = self.inner.db.begin_write().map_err(storage)?;
        {
            let mut admins = txn.open_table(ADMINS).map_err(storage)?;
            if admins.get(user).map_err(storage)?.is_some() {
                return Err(ApiError::Conflict(format!(
                    "admin user {user} already exists"
                )));
            }
            admins.insert(user, row.as_slice()).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        Ok(())
    }

    /// Every admin user's name and creation time (seconds since the epoch), by name.
    pub fn list_admins(&self) -> Result<Vec<(String, f64)>, ApiError> {
        let txn = self.inner.db.begin_read().map_err(storage)?;
        let admins = match txn.open_table(ADMINS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(storage(e)),
        };
        let mut out = Vec::new();
        for entry in admins.iter().map_err(storage)? {
            let (k, v) = entry.map_err(storage)?;
            let user = k.value().to_owned();
            let row: AdminRow = serde_json::from_slice(v.value()).map_err(|e| {
                ApiError::internal(anyhow::anyhow!(
                    "stored admin user {user} does not parse: {e}"
                ))
            })?;
            out.push((user, row.created_at));
        }
        Ok(out)
    }

    /// Removes an admin user; an unknown name is `NotFound`.
    pub fn delete_admin(&self, user: &str) -> Result<(), ApiError> {
        let txn = self.inner.db.begin_write().map_err(storage)?;
        {
            let mut admins = txn.open_table(ADMINS).map_err(storage)?;
            if admins.remove(user).map_err(storage)?.is_none() {
                return Err(not_found(user));
            }
        }
        txn.commit().map_err(storage)?;
        Ok(())
    }

    /// Replaces an existing admin user's password hash; an unknown name is `NotFound`
    /// (this never creates a user).
    pub fn set_admin_password(&self, user: &str, password_hash: &str) -> Result<(), ApiError> {
        let txn = self.inner.db.begin_write().map_err(storage)?;
        {
            let mut admins = txn.open_table(ADMINS).map_err(storage)?;
            let old = match admins.get(user).map_err(storage)? {
                Some(v) => serde_json::from_slice::<AdminRow>(v.value()).map_err(|e| {
                    ApiError::internal(anyhow::anyhow!(
                        "stored admin user {user} does not parse: {e}"
                    ))
                })?,
                None => return Err(not_found(user)),
            };
            let row = serde_json::to_vec(&AdminRow {
                password_hash: password_hash.to_owned(),
                created_at: old.created_at,
            })
            .map_err(ApiError::internal)?;
            admins.insert(user, row.as_slice()).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        Ok(())
    }

    /// The stored password hash of an admin user, if there is one.
    pub fn admin_password_hash(&self, user: &str) -> Result<Option<String>, ApiError> {
        let txn = self.inner.db.begin_read().map_err(storage)?;
        let admins = match txn.open_table(ADMINS) {
            Ok(t) => t,
            // No admin was ever created on this store.
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(storage(e)),
        };
        let Some(v) = admins.get(user).map_err(storage)? else {
            return Ok(None);
        };
        let row: AdminRow = serde_json::from_slice(v.value()).map_err(|e| {
            ApiError::internal(anyhow::anyhow!(
                "stored admin user {user} does not parse: {e}"
            ))
        })?;
        Ok(Some(row.password_hash))
    }
}

fn not_found(user: &str) -> ApiError {
    ApiError::NotFound(format!("admin user {user} does not exist"))
}
