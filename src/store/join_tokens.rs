//! Join tokens at rest: keyed by the SHA-256 of their secret, never the secret itself.
//! Redeeming one is a single write transaction, so a single-use token enrols exactly once
//! even when two proxies race with it.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{storage, Store};
use crate::model::ApiError;

pub(super) const JOIN_TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("join_tokens");

/// One token's public facts (what `list-join-tokens` shows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinTokenRecord {
    /// The first 12 hex digits of the hash: a handle for revoking.
    pub id: String,
    pub identity: String,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: i64,
    pub single_use: bool,
    #[serde(default)]
    pub used_at: Option<i64>,
    #[serde(default)]
    pub uses: u64,
    #[serde(default)]
    pub revoked: bool,
}

/// Why a token does not enrol. The texts are what the proxy's operator reads.
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    #[error("the join token is not known to this control plane")]
    Unknown,
    #[error("the join token {id} expired at {at} (unix seconds)")]
    Expired { id: String, at: i64 },
    #[error("the join token {id} is single-use and was used at {at} (unix seconds)")]
    Used { id: String, at: i64 },
    #[error("the join token {id} was revoked")]
    Revoked { id: String },
    #[error("the join token {id} is for {bound}, not {asked}")]
    WrongIdentity {
        id: String,
        bound: String,
        asked: String,
    },
    #[error(transparent)]
    Store(#[from] ApiError),
}

fn decode(bytes: &[u8]) -> Result<JoinTokenRecord, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("corrupt join token row: {e}")))
}

fn encode(record: &JoinTokenRecord) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(record).map_err(ApiError::internal)
}

impl Store {
    pub fn put_join_token(
        &self,
        hash: &[u8; 32],
        record: &JoinTokenRecord,
    ) -> Result<(), ApiError> {
        let txn = self.inner.db.begin_write().map_err(storage)?;
        {
            let mut t = txn.open_table(JOIN_TOKENS).map_err(storage)?;
            t.insert(hash.as_slice(), encode(record)?.as_slice())
                .map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    /// Checks the token for `identity` at `now` and counts the use, in one transaction.
    pub fn redeem_join_token(
        &self,
        hash: &[u8; 32],
        identity: &str,
        now: i64,
    ) -> Result<JoinTokenRecord, RedeemError> {
        let txn = self.inner.db.begin_write().map_err(storage)?;
        let record = {
            let mut t = txn.open_table(JOIN_TOKENS).map_err(storage)?;
            let mut record = match t.get(hash.as_slice()).map_err(storage)? {
                Some(v) => decode(v.value())?,
                None => return Err(RedeemError::Unknown),
            };
            let id = record.id.clone();
            if record.revoked {
                return Err(RedeemError::Revoked { id });
            }
            if now >= record.expires_at {
                return Err(RedeemError::Expired {
                    id,
                    at: record.expires_at,
                });
            }
            if let (true, Some(at)) = (record.single_use, record.used_at) {
                return Err(RedeemError::Used { id, at });
            }
            if record.identity != identity {
                return Err(RedeemError::WrongIdentity {
                    id,
                    bound: record.identity,
                    asked: identity.to_owned(),
                });
            }
            record.used_at = Some(now);
            record.uses += 1;
            t.insert(hash.as_slice(), encode(&record)?.as_slice())
                .map_err(storage)?;
            record
        };
        txn.commit().map_err(storage)?;
        Ok(record)
    }

    pub fn list_join_tokens(&self) -> Result<Vec<JoinTokenRecord>, ApiError> {
        let txn = self.inner.db.begin_read().map_err(storage)?;
        let t = match txn.open_table(JOIN_TOKENS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(storage(e)),
        };
        let mut out = Vec::new();
        for item in t.iter().map_err(storage)? {
            let (_, v) = item.map_err(storage)?;
            out.push(decode(v.value())?);
        }
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    /// Revokes the token with this id; NotFound when there is none.
    pub fn revoke_join_token(&self, id: &str) -> Result<JoinTokenRecord, ApiError> {
        let txn = self.inner.db.begin_write().map_err(storage)?;
        let record = {
            let mut t = txn.open_table(JOIN_TOKENS).map_err(storage)?;
            let mut found = None;
            for item in t.iter().map_err(storage)? {
                let (k, v) = item.map_err(storage)?;
                let record = decode(v.value())?;
                if record.id == id {
                    found = Some((k.value().to_vec(), record));
                    break;
                }
            }
            let Some((key, mut record)) = found else {
                return Err(ApiError::NotFound(format!(
                    "join token {id} does not exist"
                )));
            };
            record.revoked = true;
            t.insert(key.as_slice(), encode(&record)?.as_slice())
                .map_err(storage)?;
            record
        };
        txn.commit().map_err(storage)?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb"), "us-east-1").unwrap();
        (dir, s)
    }

    fn record(single_use: bool) -> JoinTokenRecord {
        JoinTokenRecord {
            id: "abc".into(),
            identity: "mesh/m/virtualNode/n".into(),
            created_at: 100,
            expires_at: 200,
            single_use,
            used_at: None,
            uses: 0,
            revoked: false,
        }
    }

    #[test]
    fn a_single_use_token_enrols_once() {
        let (_d, s) = store();
        s.put_join_token(&[1; 32], &record(true)).unwrap();
        s.redeem_join_token(&[1; 32], "mesh/m/virtualNode/n", 150)
            .unwrap();
        let again = s
            .redeem_join_token(&[1; 32], "mesh/m/virtualNode/n", 151)
            .unwrap_err();
        assert!(again.to_string().contains("single-use"), "{again}");
    }

    #[test]
    fn expired_revoked_unknown_and_foreign_identity_are_refused() {
        let (_d, s) = store();
        s.put_join_token(&[1; 32], &record(false)).unwrap();
        let e = s.redeem_join_token(&[1; 32], "mesh/m/virtualNode/n", 200);
        assert!(matches!(e, Err(RedeemError::Expired { .. })));
        let e = s.redeem_join_token(&[1; 32], "mesh/m/virtualNode/other", 150);
        assert!(matches!(e, Err(RedeemError::WrongIdentity { .. })));
        let e = s.redeem_join_token(&[2; 32], "mesh/m/virtualNode/n", 150);
        assert!(matches!(e, Err(RedeemError::Unknown)));
        // A reusable token counts its uses.
        s.redeem_join_token(&[1; 32], "mesh/m/virtualNode/n", 150)
            .unwrap();
        let r = s
            .redeem_join_token(&[1; 32], "mesh/m/virtualNode/n", 151)
            .unwrap();
        assert_eq!(r.uses, 2);
        s.revoke_join_token("abc").unwrap();
        let e = s.redeem_join_token(&[1; 32], "mesh/m/virtualNode/n", 150);
        assert!(matches!(e, Err(RedeemError::Revoked { .. })));
        assert!(s.list_join_tokens().unwrap()[0].revoked);
        assert!(matches!(
            s.revoke_join_token("nope"),
            Err(ApiError::NotFound(_))
        ));
    }
}
