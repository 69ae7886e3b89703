//! `Signed`: the extractor every App Mesh API handler takes. It reads the body (bounded),
//! checks the SigV4 signature over it (or the admin page's session cookie and CSRF token),
//! and hands the handler the path parameters, the query and the JSON body, with every
//! failure already in the API's error shape.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use serde_json::Value;

use super::AppState;
use crate::model::{validate_param, ApiError, ResourceName};

/// Largest request body accepted. App Mesh specs are a few KB; 1 MiB leaves room for the
/// largest legal spec and refuses anything that is clearly not one.
pub const MAX_BODY: usize = 1 << 20;
/// An oversized body up to this size is read and thrown away before the error is sent, so
/// the client (still sending) gets a clear 400 rather than a reset connection. Anything
/// larger is cut off.
const DRAIN_LIMIT: u64 = 64 << 20;

pub struct Signed {
    raw_query: String,
    pub params: HashMap<String, String>,
    pub query: HashMap<String, String>,
    pub body: Bytes,
}

impl FromRequest<AppState> for Signed {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        // Who is calling is settled before a byte of body is buffered: a request with no
        // live session and no signature by a known key is refused without reading its
        // body, so unauthenticated clients cannot make the API hold megabytes for them.
        let session = super::admin::session_caller(&parts.method, &parts.headers);
        if session.is_none() {
            super::sigv4::check_key(&state.keys, &parts.headers)?;
        }
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(len) = declared {
            if len > MAX_BODY as u64 {
                if len <= DRAIN_LIMIT {
                    drain(body).await;
                }
                return Err(too_large(len));
            }
        }
        // Bodies being read share one budget, so even signed clients together hold at most
        // `BUFFER_BUDGET` of bodies in memory; the rest wait their turn.
        let want = declared.map_or(MAX_BODY, |len| usize::try_from(len).unwrap_or(MAX_BODY));
        let _budget = body_budget(want).await?;
        let body = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|e| match stalled(&e) {
                Some(msg) => ApiError::bad_request(format!("request body: {msg}")),
                None => ApiError::bad_request(format!(
                    "request body is larger than the limit of {MAX_BODY} bytes"
                )),
            })?;
        // HTTP/2 carries the host as `:authority`, not as a Host header; clients sign it as
        // `host` either way.
        if !parts.headers.contains_key(http::header::HOST) {
            if let Some(v) = parts
                .uri
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
            {
                parts.headers.insert(http::header::HOST, v);
            }
        }
        let uri = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_owned();
        let method = parts.method.clone();
        // The admin page's way in: a session cookie (and a CSRF token on writes) instead
        // of a signature. A request with an Authorization header is always checked by SigV4.
        let caller = match session {
            Some(session) => session?,
            None => super::auth::verify_request(
                state,
                &method,
                &uri,
                &parts.headers,
                &body,
                SystemTime::now(),
            )?,
        };
        tracing::Span::current().record("caller", caller.as_str());
        let params: HashMap<String, String> =
            Path::<HashMap<String, String>>::from_request_parts(&mut parts, state)
                .await
                .map(|Path(p)| p)
                .unwrap_or_default();
        let query = parts
            .uri
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        Ok(Signed {
            raw_query: parts.uri.query().unwrap_or("").to_owned(),
            params,
            query,
            body,
        })
    }
}

/// Refuses `.` and `..` path segments (also percent-encoded). SigV4 signers resolve them
/// before signing while the router takes the path as sent, so such a request could be
/// signed for one resource and act on another; refusing them makes both see one string.
pub(super) fn check_path_segments(path: &str) -> Result<(), ApiError> {
    for segment in path.split('/') {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        if decoded == "." || decoded == ".." {
            return Err(ApiError::bad_request(format!(
                "path: the segment {segment:?} is not allowed (resource names may not be . or ..)"
            )));
        }
    }
    Ok(())
}

/// Most request-body bytes all requests together may hold while they are read.
const BUFFER_BUDGET: usize = 64 << 20;
/// The budget is counted in KiB, so it fits a semaphore's `u32` permits.
const BUDGET_UNIT: usize = 1024;
/// Longest a request waits for room in the budget before it is told to come back.
const BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn body_budget(len: usize) -> Result<tokio::sync::SemaphorePermit<'static>, ApiError> {
    static BUDGET: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let budget = BUDGET.get_or_init(|| tokio::sync::Semaphore::new(BUFFER_BUDGET / BUDGET_UNIT));
    let units = u32::try_from(len.min(MAX_BODY).div_ceil(BUDGET_UNIT).max(1)).unwrap_or(u32::MAX);
    match tokio::time::timeout(BUDGET_WAIT, budget.acquire_many(units)).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(e)) => Err(ApiError::internal(anyhow::anyhow!(
            "body budget closed: {e}"
        ))),
        Err(_) => Err(ApiError::ServiceUnavailable(
            "the API is reading too many request bodies at once; try again".into(),
        )),
    }
}

/// The stall message when a body read failed because the client stopped sending.
fn stalled(err: &axum::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(s) = e.downcast_ref::<super::serve::BodyStalled>() {
            return Some(s.to_string());
        }
        source = e.source();
    }
    None
}

async fn drain(body: axum::body::Body) {
    use http_body_util::BodyExt;
    let mut body = body;
    while let Some(Ok(_)) = body.frame().await {}
}

fn too_large(len: u64) -> ApiError {
    ApiError::bad_request(format!(
        "request body of {len} bytes is larger than the limit of {MAX_BODY} bytes"
    ))
}

impl Signed {
    /// The query string as received, for parameters that repeat.
    pub fn raw_query(&self) -> &str {
        &self.raw_query
    }

    /// The body as a JSON object; an empty body is `{}`.
    pub fn json(&self) -> Result<Value, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Default::default()));
        }
        let value: Value = serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(ApiError::bad_request("request body must be a JSON object"));
        }
        Ok(value)
    }

    /// A path parameter, as a resource name.
    pub fn name(&self, param: &str) -> Result<ResourceName, ApiError> {
        let raw = self.params.get(param).ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("route lacks path parameter {param}"))
        })?;
        ResourceName::parse(param, raw)
    }

    /// A query parameter, checked against the operation's model (`limit` ranges and so on).
    pub fn query_param(&self, operation: &str, member: &str) -> Result<Option<&str>, ApiError> {
        match self.query.get(member) {
            Some(v) => {
                validate_param(operation, member, v)?;
                Ok(Some(v.as_str()))
            }
            None => Ok(None),
        }
    }
}
