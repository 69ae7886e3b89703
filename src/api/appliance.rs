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
use crate::compile::{compile, ConfigError, Endpoints, Snapshot};
use crate::model::{ApiError, Identity, Spec};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/appliance/v1/certificate-authority", get(describe_ca))
        .route("/appliance/v1/certificate-authority/bundle", get(ca_bundle))
        .route(
            "/appliance/v1/certificate-authority/rotate",
            post(rotate_ca),
        )
        .route("/appliance/v1/certificates", post(request_certificate))
        .route("/appliance/v1/identities/revoke", post(revoke_identity))
        .route("/appliance/v1/compile", get(compile_config))
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn ca_error(e: crate::ca::CaError) -> ApiError {
    match e {
        crate::ca::CaError::Name(m) => ApiError::BadRequest(m),
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
    let raw = string_field(&body, "Identity")?;
    let identity =
        Identity::parse(&raw).map_err(|e| ApiError::bad_request(format!("Identity: {e}")))?;
    let ca = state.ca.clone();
    let id = identity.clone();
    blocking(move || ca.revoke_identity(&id).map_err(ca_error)).await?;
    Ok(Json(
        json!({ "Identity": identity.to_string(), "Revoked": true }),
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
                .push(addr.to_owned());
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
