//! SigV4 verification of API requests. The signature is recomputed with the `aws-sigv4`
//! crate over exactly the headers the client signed, then compared in constant time; the
//! parsing of the `Authorization` header and the time-skew rule are ours.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use http::HeaderMap;

use crate::model::ApiError;

/// The signing service every request must be scoped to.
pub const SERVICE: &str = "appmesh";
/// How far a request's signing time may be from ours (AWS allows 15 minutes).
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Access keys this control plane accepts: access key id -> secret.
#[derive(Clone, Default)]
pub struct Keys {
    secrets: HashMap<String, String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Ids are not secret; the secrets never appear.
        f.debug_struct("Keys")
            .field("ids", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keys {
    pub fn insert(&mut self, access_key_id: String, secret: String) {
        self.secrets.insert(access_key_id, secret);
    }

    fn secret(&self, access_key_id: &str) -> Option<&str> {
        self.secrets.get(access_key_id).map(String::as_str)
    }

    /// Whether `secret` is the secret of `access_key_id` (the admin page's sign-in). The
    /// comparison takes the same time wherever the first differing byte is.
    pub fn matches(&self, access_key_id: &str, secret: &str) -> bool {
        self.secret(access_key_id)
            .is_some_and(|s| constant_time_eq(s.as_bytes(), secret.as_bytes()))
    }
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
#[derive(Debug, PartialEq)]
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, ApiError> {
    let incomplete =
        |what: &str| ApiError::IncompleteSignature(format!("Authorization header: {what}"));
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| incomplete("only the AWS4-HMAC-SHA256 algorithm is accepted"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim) {
        match part.split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => return Err(incomplete(&format!("unexpected part {part:?}"))),
        }
    }
    let credential = credential.ok_or_else(|| incomplete("missing Credential"))?;
    let signed = signed.ok_or_else(|| incomplete("missing SignedHeaders"))?;
    let signature = signature.ok_or_else(|| incomplete("missing Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(incomplete(
            "Credential must be AKID/yyyymmdd/region/service/aws4_request",
        ));
    };
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

/// The cheap part of `verify`, run before the body is read: the request carries an
/// Authorization header for this service by a key this control plane knows.
pub fn check_key(keys: &Keys, headers: &HeaderMap) -> Result<(), ApiError> {
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::MissingAuthenticationToken(
                "Missing Authentication Token: the request is not signed".into(),
            )
        })?
        .to_str()
        .map_err(|_| ApiError::IncompleteSignature("Authorization header is not ASCII".into()))?;
    let auth = parse_authorization(auth)?;
    if keys.secret(auth.access_key_id).is_none() {
        return Err(ApiError::UnrecognizedClient(format!(
            "The security token included in the request is invalid: access key id {} is not known",
            auth.access_key_id
        )));
    }
    Ok(())
}

/// Checks a request's signature. `uri` is the path and query exactly as received.
/// Returns the access key id that signed it.
pub fn verify(
    keys: &Keys,
    method: &str,
    uri: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<String, ApiError> {
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::MissingAuthenticationToken(
                "Missing Authentication Token: the request is not signed".into(),
            )
        })?
        .to_str()
        .map_err(|_| ApiError::IncompleteSignature("Authorization header is not ASCII".into()))?;
    let auth = parse_authorization(auth)?;
    if auth.service != SERVICE {
        return Err(ApiError::InvalidSignature(format!(
            "Credential should be scoped to correct service: '{SERVICE}', not '{}'",
            auth.service
        )));
    }
    let secret = keys.secret(auth.access_key_id).ok_or_else(|| {
        ApiError::UnrecognizedClient(format!(
            "The security token included in the request is invalid: access key id {} is not known",
            auth.access_key_id
        ))
    })?;
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::IncompleteSignature("missing X-Amz-Date header".into()))?;
    let signed_at = parse_amz_date(amz_date)?;
    if !amz_date.starts_with(auth.date) {
        return Err(ApiError::InvalidSignature(format!(
            "Credential date {} does not match X-Amz-Date {amz_date}",
            auth.date
        )));
    }
    let skew = now
        .duration_since(signed_at)
        .or_else(|e| Ok::<_, ApiError>(e.duration()))?;
    if skew > MAX_SKEW {
        return Err(ApiError::InvalidSignature(format!(
            "Signature expired: {amz_date} is more than {} minutes from the server's time",
            MAX_SKEW.as_secs() / 60
        )));
    }
    if !auth.signed_headers.contains(&"host") {
        return Err(ApiError::IncompleteSignature(
            "SignedHeaders must include host".into(),
        ));
    }
    let mut signed = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        if *name == "x-amz-date" {
            continue; // the signer adds it from the signing time
        }
        for value in headers.get_all(*name) {
            let value = value.to_str().map_err(|_| {
                ApiError::IncompleteSignature(format!("signed header {name} is not ASCII"))
            })?;
            signed.push((*name, value));
        }
        if headers.get(*name).is_none() {
            return Err(ApiError::IncompleteSignature(format!(
                "signed header {name} is missing from the request"
            )));
        }
    }
    let expected = compute_signature(
        auth.access_key_id,
        secret,
        auth.region,
        method,
        uri,
        &signed,
        body,
        signed_at,
    )?;
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(ApiError::InvalidSignature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."
                .into(),
        ));
    }
    Ok(auth.access_key_id.to_owned())
}

#[allow(clippy::too_many_arguments)]
fn compute_signature(
    access_key_id: &str,
    secret: &str,
    region: &str,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    time: SystemTime,
) -> Result<String, ApiError> {
    let identity = Credentials::new(access_key_id, secret, None, None, "appliance").into();
    let mut settings = SigningSettings::default();
    // Sign exactly the headers the client listed, whatever they are.
    settings.excluded_headers = Some(Vec::new());
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| {
            ApiError::IncompleteSignature(format!("cannot build signing parameters: {e}"))
        })?
        .into();
    let request = SignableRequest::new(
        method,
        uri,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| ApiError::IncompleteSignature(format!("request cannot be canonicalised: {e}")))?;
    let (_, signature) = sign(request, &params)
        .map_err(|e| {
            ApiError::IncompleteSignature(format!("request cannot be canonicalised: {e}"))
        })?
        .into_parts();
    Ok(signature)
}

fn parse_amz_date(value: &str) -> Result<SystemTime, ApiError> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let t = time::PrimitiveDateTime::parse(value, format).map_err(|_| {
        ApiError::IncompleteSignature(format!("X-Amz-Date {value:?} is not yyyyMMddTHHmmssZ"))
    })?;
    Ok(t.assume_utc().into())
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        let mut k = Keys::default();
        k.insert(
            "AKIDEXAMPLE".into(),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        );
        k
    }

    /// Signs like a client would, with the same crate, so the test covers our parsing and
    /// header selection rather than the crate's arithmetic.
    fn signed_headers(method: &str, uri: &str, body: &[u8], at: SystemTime) -> HeaderMap {
        let amz = time::OffsetDateTime::from(at)
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .unwrap();
        let sig = compute_signature(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "us-west-2",
            method,
            uri,
            &[
                ("host", "127.0.0.1:7070"),
                ("content-type", "application/json"),
            ],
            body,
            at,
        )
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("host", "127.0.0.1:7070".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert("x-amz-date", amz.parse().unwrap());
        h.insert(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{}/us-west-2/appmesh/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={sig}",
                &amz[..8]
            )
            .parse()
            .unwrap(),
        );
        h
    }

    #[test]
    fn a_correctly_signed_request_is_accepted() {
        let now = SystemTime::now();
        let h = signed_headers("PUT", "/v20190125/meshes", b"{}", now);
        assert_eq!(
            verify(&keys(), "PUT", "/v20190125/meshes", &h, b"{}", now).unwrap(),
            "AKIDEXAMPLE"
        );
    }

    #[test]
    fn a_changed_body_fails_the_signature() {
        let now = SystemTime::now();
        let h = signed_headers("PUT", "/v20190125/meshes", b"{}", now);
        let err = verify(&keys(), "PUT", "/v20190125/meshes", &h, b"{\"x\":1}", now).unwrap_err();
        assert!(matches!(err, ApiError::InvalidSignature(_)), "{err:?}");
    }

    #[test]
    fn an_unknown_key_is_unrecognized() {
        let now = SystemTime::now();
        let h = signed_headers("GET", "/v20190125/meshes", b"", now);
        let err = verify(&Keys::default(), "GET", "/v20190125/meshes", &h, b"", now).unwrap_err();
        assert!(matches!(err, ApiError::UnrecognizedClient(_)), "{err:?}");
    }

    #[test]
    fn a_request_signed_an_hour_ago_is_expired() {
        let then = SystemTime::now() - Duration::from_secs(3600);
        let h = signed_headers("GET", "/v20190125/meshes", b"", then);
        let err = verify(
            &keys(),
            "GET",
            "/v20190125/meshes",
            &h,
            b"",
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("Signature expired"), "{err}");
    }

    #[test]
    fn an_unsigned_request_is_missing_its_token() {
        let err = verify(
            &keys(),
            "GET",
            "/",
            &HeaderMap::new(),
            b"",
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(matches!(err, ApiError::MissingAuthenticationToken(_)));
    }

    #[test]
    fn malformed_authorization_headers_are_incomplete() {
        for bad in [
            "Basic abc",
            "AWS4-HMAC-SHA256 Credential=a/b",
            "AWS4-HMAC-SHA256 Credential=A/1/r/appmesh/aws4_request",
        ] {
            assert!(
                matches!(
                    parse_authorization(bad),
                    Err(ApiError::IncompleteSignature(_))
                ),
                "{bad}"
            );
        }
    }
}
