//! Who may call the API: the access keys in `DIR/credentials` (an AWS shared-credentials
//! file, created with a fresh key on first start), checked by SigV4 on every request.

use std::path::Path;
use std::time::SystemTime;

use axum::http::{HeaderMap, Method};
use rand::distributions::{Alphanumeric, DistString};

use super::sigv4::{self, Keys};
use super::AppState;
use crate::model::ApiError;

/// The file name under the data directory.
pub const CREDENTIALS_FILE: &str = "credentials";

pub(super) fn verify_request(
    state: &AppState,
    method: &Method,
    uri: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<String, ApiError> {
    sigv4::verify(&state.keys, method.as_str(), uri, headers, body, now)
}

/// Reads `DIR/credentials`, creating it (mode 0600, profile `[default]`, a new key) if absent.
pub fn load_or_create_credentials(dir: &Path) -> anyhow::Result<Keys> {
    let path = dir.join(CREDENTIALS_FILE);
    if !path.exists() {
        let id = format!(
            "AKIA{}",
            Alphanumeric
                .sample_string(&mut rand::thread_rng(), 16)
                .to_uppercase()
        );
        let secret = Alphanumeric.sample_string(&mut rand::thread_rng(), 40);
        let text =
            format!("[default]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n");
        // Whole or not at all: a crash mid-write must not leave a file the next start cannot
        // parse. If another process created it meanwhile, its keys win.
        crate::files::create_atomic(&path, text.as_bytes(), 0o600)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", path.display()))?;
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let keys = parse_credentials(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(keys)
}

/// Why a shared-credentials file could not be read as key pairs.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// A profile names an access key id without its secret, or the other way round.
    #[error("profile [{profile}] needs both aws_access_key_id and aws_secret_access_key")]
    HalfKeyPair { profile: String },
    /// A line that is neither a comment, a `[profile]` header nor `key = value`.
    #[error("line {line}: expected key = value")]
    NotKeyValue { line: usize },
}

/// Every profile's key pair from an AWS shared-credentials file.
pub fn parse_credentials(text: &str) -> Result<Keys, CredentialsError> {
    let mut keys = Keys::default();
    let (mut profile, mut id, mut secret) = (None::<String>, None::<String>, None::<String>);
    let mut flush = |profile: &Option<String>,
                     id: &mut Option<String>,
                     secret: &mut Option<String>|
     -> Result<(), CredentialsError> {
        match (id.take(), secret.take()) {
            (Some(i), Some(s)) => {
                keys.insert(i, s);
                Ok(())
            }
            (None, None) => Ok(()),
            _ => Err(CredentialsError::HalfKeyPair {
                profile: profile.as_deref().unwrap_or("?").to_owned(),
            }),
        }
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            flush(&profile, &mut id, &mut secret)?;
            profile = Some(name.trim().to_owned());
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or(CredentialsError::NotKeyValue { line: n + 1 })?;
        match k.trim() {
            "aws_access_key_id" => id = Some(v.trim().to_owned()),
            "aws_secret_access_key" => secret = Some(v.trim().to_owned()),
            _ => {}
        }
    }
    flush(&profile, &mut id, &mut secret)?;
    Ok(keys)
}
