//! Every way the proxy itself fails a request, and the one place each becomes a response:
//! a status, a one-line reason, and `x-appliance-proxy` naming the proxy.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};

/// A body's error: hyper's, or the proxy's own when it cuts a response (a timeout).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BodyError>;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matches {0}")]
    NoRoute(String),
    #[error("virtual service {service} is not a backend of {identity}")]
    NotABackend { service: String, identity: String },
    #[error("virtual service {0} has no provider")]
    NoProvider(String),
    #[error("no healthy endpoint in {0}")]
    NoHealthyEndpoint(String),
    /// No target of the route has an endpoint that can take the request.
    #[error("route {route} has no endpoint that can take the request ({reason})")]
    NoEndpoint { route: String, reason: String },
    #[error("upstream {endpoint} of {cluster}: {reason}")]
    Upstream {
        cluster: String,
        endpoint: String,
        reason: String,
    },
    /// The upstream answered with something that is not HTTP (or broke HTTP/2's rules):
    /// Envoy's 502 with flag UPE ("reset reason: protocol error").
    #[error("upstream {endpoint} of {cluster}: protocol error: {reason}")]
    UpstreamProtocol {
        cluster: String,
        endpoint: String,
        reason: String,
    },
    /// The cluster's client policy asks for TLS and the handshake failed: a configuration
    /// problem (or credentials not delivered yet), not a passing one, so it is not retried.
    #[error("upstream {endpoint} of {cluster}: {reason}")]
    UpstreamTls {
        cluster: String,
        endpoint: String,
        reason: String,
    },
    /// A `connectionPool` limit is full: refused at once rather than queued without bound.
    #[error("upstream overflow: {target} is at its limit of {reason}")]
    Overflow { target: String, reason: String },
    #[error("upstream did not answer within {0} ms")]
    Timeout(u64),
    /// Nothing arrived from the upstream for the route's or listener's `timeout.idle`
    /// before it answered (Envoy's stream idle timeout: 408).
    #[error("upstream stream idle for {0} ms")]
    StreamIdle(u128),
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl ProxyError {
    /// A failed request to `endpoint`: a protocol error when the upstream spoke something
    /// that is not (valid) HTTP, else a connect failure or reset.
    pub(super) fn upstream(
        cluster: &str,
        endpoint: &str,
        e: &hyper_util::client::legacy::Error,
    ) -> ProxyError {
        let (cluster, endpoint) = (cluster.to_owned(), endpoint.to_owned());
        let reason = super::forward::error_chain(e);
        let h1_parse = super::forward::find_source::<hyper::Error>(e).is_some_and(|h| h.is_parse());
        let h2_protocol = super::forward::find_source::<h2::Error>(e)
            .is_some_and(|h| h.reason() == Some(h2::Reason::PROTOCOL_ERROR));
        if h1_parse || h2_protocol {
            ProxyError::UpstreamProtocol {
                cluster,
                endpoint,
                reason,
            }
        } else {
            ProxyError::Upstream {
                cluster,
                endpoint,
                reason,
            }
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute(_) => StatusCode::NOT_FOUND,
            ProxyError::NotABackend { .. } => StatusCode::FORBIDDEN,
            ProxyError::NoProvider(_)
            | ProxyError::NoHealthyEndpoint(_)
            | ProxyError::NoEndpoint { .. }
            | ProxyError::UpstreamTls { .. }
            | ProxyError::Overflow { .. }
            // Envoy answers a connect failure or a reset before the response head with 503
            // ("upstream connect error or disconnect/reset before headers"), so a gateway's
            // default policy (retry on 503) retries a sidecar whose app refused.
            | ProxyError::Upstream { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UpstreamProtocol { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::StreamIdle(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// What a client outside the mesh is told (a gateway's clients): the failure's kind in
    /// Envoy's words, never a cluster, endpoint address or mesh-internal name. The reason
    /// itself goes to the gateway's log. A client's own mistake is echoed back whole.
    pub fn public_text(&self) -> std::borrow::Cow<'static, str> {
        match self {
            ProxyError::NoRoute(_) | ProxyError::BadRequest(_) => self.to_string().into(),
            ProxyError::Upstream { .. } | ProxyError::UpstreamTls { .. } => {
                "upstream connect error or disconnect/reset before headers".into()
            }
            ProxyError::Overflow { .. } => {
                "upstream connect error or disconnect/reset before headers. reset reason: overflow"
                    .into()
            }
            other => public_text(other.status()).into(),
        }
    }

    /// The response for a client of `audience`; `proxy` names this proxy in
    /// `x-appliance-proxy`.
    pub fn into_response(self, proxy: &str, audience: Audience) -> Response<Body> {
        let overloaded = matches!(self, ProxyError::Overflow { .. });
        let text = match audience {
            Audience::Mesh => self.to_string(),
            Audience::Outside => self.public_text().into_owned(),
        };
        let mut resp = Response::new(full(format!("{text}\n")));
        *resp.status_mut() = self.status();
        let headers = resp.headers_mut();
        // Envoy's marker of a circuit breaker's 503, which clients may already look for.
        if overloaded {
            headers.insert("x-envoy-overloaded", http::HeaderValue::from_static("true"));
        }
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Ok(v) = http::HeaderValue::from_str(proxy) {
            headers.insert("x-appliance-proxy", v);
        }
        resp
    }
}

impl ProxyError {
    /// Envoy's response flags for the failures the proxy answers itself.
    pub fn response_flags(&self) -> &'static str {
        match self {
            ProxyError::NoRoute(_) => "NR",
            ProxyError::NoHealthyEndpoint(_)
            | ProxyError::NoEndpoint { .. }
            | ProxyError::NoProvider(_) => "UH",
            ProxyError::Upstream { .. } | ProxyError::UpstreamTls { .. } => "UF",
            ProxyError::UpstreamProtocol { .. } => "UPE",
            ProxyError::Timeout(_) => "UT",
            ProxyError::StreamIdle(_) => "SI",
            ProxyError::Overflow { .. } => "UO",
            ProxyError::NotABackend { .. } => "UAEX",
            ProxyError::BadRequest(_) => "DPE",
        }
    }

    /// The `reason` label of `local_errors`, one short word per variant.
    pub fn reason_label(&self) -> &'static str {
        match self {
            ProxyError::NoRoute(_) => "no_route",
            ProxyError::NotABackend { .. } => "not_a_backend",
            ProxyError::NoProvider(_) => "no_provider",
            ProxyError::NoHealthyEndpoint(_) | ProxyError::NoEndpoint { .. } => {
                "no_healthy_endpoint"
            }
            ProxyError::Upstream { .. } => "upstream",
            ProxyError::UpstreamProtocol { .. } => "upstream_protocol_error",
            ProxyError::UpstreamTls { .. } => "upstream_tls",
            ProxyError::Timeout(_) => "timeout",
            ProxyError::StreamIdle(_) => "stream_idle",
            ProxyError::Overflow { .. } => "overflow",
            ProxyError::BadRequest(_) => "bad_request",
        }
    }

    /// The gRPC status a gRPC client gets for this failure.
    pub fn grpc_status(&self) -> u8 {
        match self {
            ProxyError::NoRoute(_) => 12,        // UNIMPLEMENTED
            ProxyError::NotABackend { .. } => 7, // PERMISSION_DENIED
            ProxyError::Timeout(_) | ProxyError::StreamIdle(_) => 4, // DEADLINE_EXCEEDED
            ProxyError::BadRequest(_) => 3,      // INVALID_ARGUMENT
            ProxyError::NoProvider(_)
            | ProxyError::NoHealthyEndpoint(_)
            | ProxyError::NoEndpoint { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::UpstreamProtocol { .. }
            | ProxyError::UpstreamTls { .. }
            | ProxyError::Overflow { .. } => 14, // UNAVAILABLE
        }
    }

    /// A trailers-only gRPC answer: HTTP 200 with `grpc-status` and `grpc-message`.
    pub fn into_grpc_response(self, proxy: &str, audience: Audience) -> Response<Body> {
        let mut resp = Response::new(full(""));
        let headers = resp.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        headers.insert(
            "grpc-status",
            http::HeaderValue::from(u16::from(self.grpc_status())),
        );
        let text = match audience {
            Audience::Mesh => self.to_string(),
            Audience::Outside => self.public_text().into_owned(),
        };
        let message =
            percent_encoding::utf8_percent_encode(&text, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        if let Ok(v) = http::HeaderValue::from_str(&message) {
            headers.insert("grpc-message", v);
        }
        if let Ok(v) = http::HeaderValue::from_str(proxy) {
            headers.insert("x-appliance-proxy", v);
        }
        resp
    }
}

/// Who a proxy's own answer is for: a proxy or app of the mesh, which gets the whole
/// reason, or a client outside it (at a gateway), which gets a short text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    Mesh,
    Outside,
}

/// The short text an outside client gets for a proxy's answer with `status`, in the words
/// Envoy uses for its own local replies.
pub fn public_text(status: StatusCode) -> &'static str {
    match status {
        StatusCode::SERVICE_UNAVAILABLE => "no healthy upstream",
        StatusCode::BAD_GATEWAY => "upstream protocol error",
        StatusCode::GATEWAY_TIMEOUT => "upstream request timeout",
        StatusCode::REQUEST_TIMEOUT => "stream timeout",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "no route",
        other => other.canonical_reason().unwrap_or("error"),
    }
}

pub fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into())
        .map_err(|never| match never {})
        .boxed()
}
