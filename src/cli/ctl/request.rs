//! Turning an operation and its input into a signed HTTP request, and its answer into the
//! AWS CLI's output shape.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};

use super::credentials::Credentials;
use super::Globals;
use crate::model::service_model::{service_model, Operation, Shape};

/// Everything but RFC 3986's unreserved characters is escaped in a path label.
const LABEL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// A call that gets no answer by then fails rather than hanging a script.
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub enum CallError {
    /// The service answered with an error (`x-amzn-ErrorType`).
    Service { kind: String, message: String },
    /// No answer, or one that could not be read.
    Other(anyhow::Error),
}

impl From<anyhow::Error> for CallError {
    fn from(e: anyhow::Error) -> Self {
        CallError::Other(e)
    }
}

pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    region: String,
    creds: Credentials,
    debug: bool,
}

impl Client {
    pub fn new(globals: &Globals, creds: Credentials) -> anyhow::Result<Client> {
        let mut builder = reqwest::Client::builder().timeout(TIMEOUT);
        let bundle = globals
            .ca_bundle
            .clone()
            .or_else(|| std::env::var_os("AWS_CA_BUNDLE").map(Into::into));
        if let Some(path) = bundle {
            let pem = std::fs::read(&path)
                .with_context(|| format!("reading --ca-bundle {}", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("parsing {}", path.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Client {
            http: builder.build()?,
            endpoint: globals.endpoint(),
            region: globals.region(),
            creds,
            debug: globals.debug,
        })
    }

    /// Calls one App Mesh operation with the given input members.
    pub async fn call(
        &self,
        op: &Operation,
        input: &Map<String, Value>,
    ) -> Result<Value, CallError> {
        let model = service_model();
        let members = match op.input.as_ref().and_then(|i| model.shape(&i.shape)) {
            Some(Shape::Structure { members, .. }) => members.clone(),
            _ => Default::default(),
        };
        let mut path = op.http.request_uri.clone();
        let mut query = Vec::new();
        let mut body = Map::new();
        let mut has_body_members = false;
        for (name, r) in &members {
            match r.location.as_deref() {
                Some("uri") => {
                    let label = r.location_name.as_deref().unwrap_or(name);
                    let value = input.get(name).map(scalar).unwrap_or_default();
                    path = path.replace(
                        &format!("{{{label}}}"),
                        &utf8_percent_encode(&value, LABEL).to_string(),
                    );
                }
                Some("querystring") => {
                    if let Some(v) = input.get(name) {
                        query.push((
                            r.location_name.clone().unwrap_or_else(|| name.clone()),
                            scalar(v),
                        ));
                    }
                }
                _ => {
                    has_body_members = true;
                    if let Some(v) = input.get(name) {
                        body.insert(name.clone(), v.clone());
                    } else if r.idempotency_token {
                        // As the AWS CLI does: a fresh token per invocation, so a retry inside
                        // this one call is idempotent.
                        body.insert(
                            name.clone(),
                            Value::String(uuid::Uuid::new_v4().to_string()),
                        );
                    }
                }
            }
        }
        let mut url = format!("{}{path}", self.endpoint);
        if !query.is_empty() {
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&query)
                .finish();
            url = format!("{url}?{q}");
        }
        let body_bytes = if has_body_members {
            serde_json::to_vec(&Value::Object(body)).map_err(anyhow::Error::from)?
        } else {
            Vec::new()
        };
        let response = self.send(&op.http.method, &url, body_bytes).await?;
        let (status, kind, text) = response;
        if self.debug {
            eprintln!("{} {url} -> {status}\n{text}", op.http.method);
        }
        if !(200..300).contains(&status) {
            let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let message = parsed
                .get("message")
                .or_else(|| parsed.get("Message"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| text.clone());
            let kind = kind
                .or_else(|| {
                    parsed
                        .get("__type")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| format!("HTTP{status}"));
            return Err(CallError::Service { kind, message });
        }
        let value: Value = if text.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("the endpoint answered with invalid JSON: {e}"))?
        };
        Ok(shape_output(op, value))
    }

    /// Signs and sends one request; returns (status, error type, body text).
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Option<String>, String), CallError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| anyhow::anyhow!("invalid --endpoint-url {url}: {e}"))?;
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => return Err(anyhow::anyhow!("--endpoint-url {url} has no host").into()),
        };
        let identity = aws_credential_types::Credentials::new(
            &self.creds.access_key_id,
            &self.creds.secret_access_key,
            None,
            None,
            "appliance-ctl",
        )
        .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("appmesh")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| anyhow::anyhow!("signing: {e}"))?
            .into();
        let headers = [
            ("host", host.as_str()),
            ("content-type", "application/json"),
        ];
        let signable =
            SignableRequest::new(method, url, headers.into_iter(), SignableBody::Bytes(&body))
                .map_err(|e| anyhow::anyhow!("signing: {e}"))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| anyhow::anyhow!("signing: {e}"))?
            .into_parts();
        let method =
            reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut req = self
            .http
            .request(method, url)
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in instructions.headers() {
            req = req.header(name, value);
        }
        let resp = req.send().await.map_err(|e| {
            anyhow::anyhow!("Could not connect to the endpoint URL: \"{url}\" ({e})")
        })?;
        let status = resp.status().as_u16();
        let kind = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or(v).to_owned());
        let text = resp
            .text()
            .await
            .map_err(|e| anyhow::anyhow!("reading the response: {e}"))?;
        Ok((status, kind, text))
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The AWS CLI shows a payload output (the bare resource) under its member name.
fn shape_output(op: &Operation, body: Value) -> Value {
    let payload = op
        .output
        .as_ref()
        .and_then(|o| match service_model().shape(&o.shape) {
            Some(Shape::Structure { payload, .. }) => payload.clone(),
            _ => None,
        });
    match payload {
        Some(member) => {
            let mut m = Map::new();
            m.insert(member, body);
            Value::Object(m)
        }
        None => body,
    }
}
