//! The appliance's own API beyond App Mesh's: the private CA in ACM's shapes, so `ctl` (and
//! scripts) can get the values App Mesh specs name (`$ROOT_CA_ARN`, `$CERTIFICATE_ARN`).
//! SigV4-signed like the rest.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::ops::blocking;
use super::request::Signed;
use super::AppState;
use crate::compile::{compile, ConfigError, Endpoints, Registered, Snapshot};
use crate::model::{ApiError, Identity, ResourceId, Spec};
use crate::store::JoinTokenRecord;
use crate::sync::JoinToken;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/appliance/v1/certificate-authority", get(describe_ca))
        .route("/appliance/v1/certificate-authority/bundle", get(ca_bundle))
        .route(
            "/appliance/v1/certificate-authority/rotate",
            post(rotate_ca),
        )
        .route("/appliance/v1/certificates", post(request_certificate))
        .route(
            "/appliance/v1/certificates/describe",
            post(describe_certificate),
        )
        .route("/appliance/v1/identities/revoke", post(revoke_identity))
        .route("/appliance/v1/identities/unrevoke", post(unrevoke_identity))
        .route("/appliance/v1/compile", get(compile_config))
        .route(
            "/appliance/v1/join-tokens",
            get(list_join_tokens).post(create_join_token),
        )
        .route("/appliance/v1/join-tokens/revoke", post(revoke_join_token))
        .route("/appliance/v1/proxies", get(list_proxies))
}

/// Longest a join token may live: a week. Tokens are for enrolling, not for identity.
const MAX_TOKEN_TTL: i64 = 7 * 24 * 3600;
const DEFAULT_TOKEN_TTL: i64 = 24 * 3600;

/// `{"Identity": "mesh/M/virtualNode/N", "TtlSeconds": 3600, "SingleUse": false}` ->
/// `{"token", "identity", "expiresAt", "id", "singleUse"}`. The token's text appears in this
/// answer only; the store keeps its hash.
async fn create_join_token(
    State(state): State<AppState>,
    req: Signed,
) -> Result<Json<Value>, ApiError> {
    let body = req.json()?;
    let identity = identity_field(&body)?;
    let ttl = match body.get("TtlSeconds") {
        None | Some(Value::Null) => DEFAULT_TOKEN_TTL,
        Some(v) => match v.as_i64() {
            Some(n) if (1..=MAX_TOKEN_TTL).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "TtlSeconds: must be an integer from 1 to {MAX_TOKEN_TTL}"
                )))
            }
        },
    };
    let single_use = match body.get("SingleUse") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("SingleUse: must be true or false")),
    };
    if state.ca.is_revoked(&identity) {
        return Err(ApiError::bad_request(format!(
            "Identity: {identity} is revoked; it cannot enrol"
        )));
    }
    let store = state.store.clone();
    let token = JoinToken::generate(state.ca.root_fingerprint());
    let (hash, id) = (token.hash(), token.id());
    let now = now().unix_timestamp();
    let record = JoinTokenRecord {
        id,
        identity: identity.to_string(),
        created_at: now,
        expires_at: now + ttl,
        single_use,
        used_at: None,
        uses: 0,
        revoked: false,
    };
    let r = record.clone();
    let resource = ResourceId {
        kind: identity.kind.resource_kind(),
        mesh: identity.mesh.clone(),
        parent: None,
        name: identity.name.clone(),
    };
    blocking(move || {
        // A token for something that does not exist would enrol a proxy with no config.
        store.describe(&resource)?;
        store.put_join_token(&hash, &r)
    })
    .await?;
    Ok(Json(json!({
        "token": token.to_string(),
        "id": record.id,
        "identity": record.identity,
        "singleUse": single_use,
        "expiresAt": rfc3339(record.expires_at),
    })))
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

async fn list_join_tokens(
    State(state): State<AppState>,
    _req: Signed,
) -> Result<Json<Value>, ApiError> {
    let store = state.store.clone();
    let tokens = blocking(move || store.list_join_tokens()).await?;
    let now = now().unix_timestamp();
    let items: Vec<Value> = tokens
        .into_iter()
        .map(|t| {
            let state = if t.revoked {
                "REVOKED"
            } else if now >= t.expires_at {
                "EXPIRED"
            } else if t.single_use && t.used_at.is_some() {
                "USED"
            } else {
                "ACTIVE"
            };
            json!({
                "id": t.id,
                "identity": t.identity,
                "singleUse": t.single_use,
                "uses": t.uses,
                "state": state,
                "createdAt": rfc3339(t.created_at),
                "expiresAt": rfc3339(t.expires_at),
                "lastUsedAt": t.used_at.map(rfc3339),
            })
        })
        .collect();
    Ok(Json(json!({ "joinTokens": items })))
}

async fn revoke_join_token(
    State(state): State<AppState>,
    req: Signed,
) -> Result<Json<Value>, ApiError> {
    let body = req.json()?;
    let id = string_field(&body, "Id")?;
    let store = state.store.clone();
    let r = blocking(move || store.revoke_join_token(&id)).await?;
    Ok(Json(
        json!({ "id": r.id, "identity": r.identity, "state": "REVOKED" }),
    ))
}

/// Every connected proxy: identity, address, config versions sent and acked, the last
/// nack, certificate expiry, and its traffic counters.
async fn list_proxies(State(state): State<AppState>, _req: Signed) -> Json<Value> {
    let mut proxies = state.registry.list();
    proxies.sort_by(|a, b| (&a.identity, &a.address).cmp(&(&b.identity, &b.address)));
    Json(json!({ "proxies": proxies }))
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn ca_error(e: crate::ca::CaError) -> ApiError {
    match e {
        crate::ca::CaError::Name(m) => ApiError::BadRequest(m),
        e @ crate::ca::CaError::NotRevoked(_) => ApiError::BadRequest(e.to_string()),
        other => ApiError::internal(other),
    }
}

fn string_field(body: &Value, name: &str) -> Result<String, ApiError> {
    match body.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(ApiError::bad_request(format!(
            "{name}: must be a non-empty string"
        ))),
        None => Err(ApiError::bad_request(format!(
            "request body: missing required member {name}"
        ))),
    }
}

fn identity_field(body: &Value) -> Result<Identity, ApiError> {
    let raw = string_field(body, "Identity")?;
    Identity::parse(&raw).map_err(|e| ApiError::bad_request(format!("Identity: {e}")))
}

async fn describe_ca(State(state): State<AppState>, _req: Signed) -> Json<Value> {
    Json(state.ca.describe_certificate_authority())
}

async fn ca_bundle(State(state): State<AppState>, _req: Signed) -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/x-pem-file")],
        state.ca.bundle_pem(),
    )
        .into_response()
}

async fn rotate_ca(State(state): State<AppState>, req: Signed) -> Result<Json<Value>, ApiError> {
    let body = req.json()?;
    let root = match body.get("Root") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("Root: must be true or false")),
    };
    let ca = state.ca.clone();
    blocking(move || {
        if root {
            ca.rotate_root(now())
        } else {
            ca.rotate_intermediate(now())
        }
        .map_err(ca_error)
    })
    .await?;
    Ok(Json(state.ca.describe_certificate_authority()))
}

/// `{"CertificateArn": ARN}` -> `{"Certificate": {...}}` in the shape of ACM's
/// `describe-certificate`, so scripts written for ACM read the names a certificate covers.
async fn describe_certificate(
    State(state): State<AppState>,
    req: Signed,
) -> Result<Json<Value>, ApiError> {
    let body = req.json()?;
    let arn = string_field(&body, "CertificateArn")?;
    let Some(cert) = state.ca.certificate(&arn) else {
        return Err(ApiError::NotFound(format!(
            "CertificateArn: no certificate {arn} in this appliance's CA"
        )));
    };
    Ok(Json(json!({
        "Certificate": {
            "CertificateArn": cert.arn,
            "DomainName": cert.domain_name,
            "SubjectAlternativeNames": cert.dns_names(),
            "CertificateAuthorityArn": state.ca.ca_arn(),
            "CreatedAt": cert.created_at.unix_timestamp(),
            "Type": "PRIVATE",
            "Status": "ISSUED",
        }
    })))
}

async fn request_certificate(
    State(state): State<AppState>,
    req: Signed,
) -> Result<Json<Value>, ApiError> {
    let body = req.json()?;
    let domain = string_field(&body, "DomainName")?;
    let sans: Vec<String> = match body.get("SubjectAlternativeNames") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    ApiError::bad_request("SubjectAlternativeNames: must be strings")
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::bad_request(
                "SubjectAlternativeNames: must be a list of strings",
            ))
        }
    };
    let ca = state.ca.clone();
    let arn = blocking(move || {
        ca.request_certificate(&domain, &sans, now())
            .map_err(ca_error)
    })
    .await?;
    Ok(Json(json!({ "CertificateArn": arn })))
}

async fn revoke_identity(
    State(state): State<AppState>,
    req: Signed,
) -> Result<Json<Value>, ApiError> {
    let body = req.json()?;
    let identity = identity_field(&body)?;
    let (ca, store) = (state.ca.clone(), state.store.clone());
    let id = identity.clone();
    blocking(move || {
        // A typo must not look like a revocation: the node or gateway must exist.
        store.describe(&ResourceId {
            kind: id.kind.resource_kind(),
            mesh: id.mesh.clone(),
            parent: None,
            name: id.name.clone(),
        })?;
        ca.revoke_identity(&id).map_err(ca_error)
    })
    .await?;
    Ok(Json(
        json!({ "Identity": identity.to_string(), "Revoked": true }),
    ))
}

async fn unrevoke_identity(
    State(state): State<AppState>,
    req: Signed,
) -> Result<Json<Value>, ApiError> {
    let body = req.json()?;
    let identity = identity_field(&body)?;
    let ca = state.ca.clone();
    let id = identity.clone();
    blocking(move || ca.unrevoke_identity(&id).map_err(ca_error)).await?;
    Ok(Json(
        json!({ "Identity": identity.to_string(), "Revoked": false }),
    ))
}

/// The ProxyConfig one proxy gets: Envoy's config_dump for an appliance proxy, and the file
/// `appliance gateway --config` runs from. `endpoint=NODE=HOST:PORT` (repeatable) stands in
/// for the registry of connected sidecars.
async fn compile_config(
    State(state): State<AppState>,
    req: Signed,
) -> Result<Json<Value>, ApiError> {
    let raw = req
        .query
        .get("identity")
        .ok_or_else(|| ApiError::bad_request("identity: missing required query parameter"))?;
    let identity = Identity::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut endpoints = Endpoints::new();
    for (k, v) in url::form_urlencoded::parse(req.raw_query().as_bytes()) {
        if k == "endpoint" {
            let (node, addr) = v.split_once('=').ok_or_else(|| {
                ApiError::bad_request(format!("endpoint: {v:?} is not NODE=HOST:PORT"))
            })?;
            endpoints
                .entry(node.to_owned())
                .or_default()
                .push(Registered::at(addr));
        }
    }
    let store = state.store.clone();
    let mesh = identity.mesh.clone();
    let (records, version) =
        blocking(move || Ok((store.mesh_snapshot(&mesh)?, store.version()))).await?;
    let mut items = Vec::with_capacity(records.len());
    for r in records {
        let spec = Spec::parse(r.id.kind, Some(&r.row.spec)).map_err(|e| {
            ApiError::internal(anyhow::anyhow!("stored {} no longer parses: {e}", r.id))
        })?;
        items.push((r.id, spec));
    }
    let snapshot = Snapshot::new(&identity.mesh, items);
    let config = compile(&snapshot, &identity, &endpoints, version).map_err(|e| match e {
        ConfigError::Missing(m) => ApiError::NotFound(m),
        other => ApiError::BadRequest(other.to_string()),
    })?;
    Ok(Json(
        serde_json::to_value(config).map_err(ApiError::internal)?,
    ))
}
