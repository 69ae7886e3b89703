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
