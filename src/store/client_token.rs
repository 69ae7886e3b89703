//! Client tokens: a Create or Update retried with the same token returns the resource it
//! made instead of making another, as App Mesh's `clientToken` promises.

use redb::{ReadableTable, WriteTransaction};

use super::tables::*;
use super::{not_found, now_secs, storage, Record, Status, Store};
use crate::model::{ApiError, ResourceId};

/// The caller's idempotency token, with a digest of the request it came with.
#[derive(Debug, Clone)]
pub struct ClientToken {
    pub token: String,
    pub request_digest: String,
}

impl Store {
    /// A retried call with a token already seen: the same request gets the resource back, a
    /// different request under the same token is a conflict.
    pub(super) fn replay(
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

    pub(super) fn remember_token(
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
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TokenRecord {
    request_digest: String,
    at: f64,
}

fn token_key(op: &str, id: &ResourceId, token: &str) -> String {
    format!("{op}\n{}\n{token}", id.arn_path())
}
