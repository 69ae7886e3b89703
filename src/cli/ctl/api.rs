//! A small signed client for the control plane's REST paths, for commands that make many
//! calls of their own (`ctl import`, `appliance demo`) rather than one modelled operation.

use std::path::Path;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

use super::credentials;
use super::request::{CallError, Client};
use super::Globals;

/// Everything but RFC 3986's unreserved characters is escaped in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a call failed: the service's answer, or no usable answer at all.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The control plane refused the call (`x-amzn-ErrorType` and its message).
    #[error("{kind}: {message}")]
    Service { kind: String, message: String },
    /// No answer, or one that could not be read.
    #[error("{0:#}")]
    Transport(anyhow::Error),
}

impl ApiError {
    /// The App Mesh error type (`ConflictException`, ...), if the service answered.
    pub fn kind(&self) -> Option<&str> {
        match self {
            ApiError::Service { kind, .. } => Some(kind),
            ApiError::Transport(_) => None,
        }
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Service { kind, message } => ApiError::Service { kind, message },
            CallError::Other(e) => ApiError::Transport(e),
        }
    }
}

pub struct Api {
    client: Client,
    endpoint: String,
}

impl Api {
    /// A client for `endpoint`, signing with the `[default]` key in `data_dir/credentials`.
    pub fn for_data_dir(endpoint: &str, data_dir: &Path) -> anyhow::Result<Api> {
        let globals = Globals {
            endpoint_url: Some(endpoint.to_owned()),
            data_dir: Some(data_dir.to_path_buf()),
            ..Globals::default()
        };
        Api::new(&globals)
    }

    /// A client as `ctl`'s global options (endpoint, credentials, CA bundle) describe it.
    pub fn new(globals: &Globals) -> anyhow::Result<Api> {
        let creds = credentials::resolve(globals.data_dir.as_deref(), globals.profile.as_deref())?;
        Ok(Api {
            client: Client::new(globals, creds)?,
            endpoint: globals.endpoint(),
        })
    }

    /// Sends one signed request; returns the body as JSON (or a JSON string if it is not).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.endpoint);
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let (status, kind, text) = self.client.send(method, &url, bytes).await?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or(text);
            return Err(ApiError::Service {
                kind: kind.unwrap_or_else(|| format!("HTTP{status}")),
                message,
            });
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// The appliance CA's ARN (the walkthrough's `$ROOT_CA_ARN`).
    pub async fn ca_arn(&self) -> Result<String, ApiError> {
        let v = self
            .call("GET", "/appliance/v1/certificate-authority", None)
            .await?;
        string_at(&v, &["CertificateAuthority", "Arn"])
    }

    /// A new certificate ARN for `domain` (and more names), as ACM's `request-certificate`.
    pub async fn request_certificate(
        &self,
        domain: &str,
        sans: &[String],
    ) -> Result<String, ApiError> {
        let body = serde_json::json!({"DomainName": domain, "SubjectAlternativeNames": sans});
        let v = self
            .call("POST", "/appliance/v1/certificates", Some(&body))
            .await?;
        string_at(&v, &["CertificateArn"])
    }
}

/// A path segment for a resource name.
pub fn segment(name: &str) -> String {
    utf8_percent_encode(name, SEGMENT).to_string()
}

fn string_at(v: &Value, path: &[&str]) -> Result<String, ApiError> {
    let mut at = v;
    for key in path {
        at = at.get(key).unwrap_or(&Value::Null);
    }
    at.as_str().map(str::to_owned).ok_or_else(|| {
        ApiError::Transport(anyhow::anyhow!("the answer has no {}: {v}", path.join(".")))
    })
}
