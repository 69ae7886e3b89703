//! Join tokens: how a new proxy proves who it may become, and how it knows the control
//! plane it reaches is the real one before it trusts anything else.
//!
//! `appliance-join-v1.<sha256 of the CA root, hex>.<32 random bytes, base64url>`. The store
//! keeps only the SHA-256 of the secret part, so a copy of the database enrols nobody.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

const PREFIX: &str = "appliance-join-v1";

#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the DER of the CA root the control plane's certificate must chain to.
    pub ca_pin: [u8; 32],
    secret: [u8; 32],
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_pin", &hex::encode(self.ca_pin))
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("join token: {0}")]
pub struct TokenFormatError(String);

impl JoinToken {
    pub fn generate(ca_pin: [u8; 32]) -> JoinToken {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        JoinToken { ca_pin, secret }
    }

    pub fn parse(text: &str) -> Result<JoinToken, TokenFormatError> {
        let text = text.trim();
        let mut parts = text.split('.');
        let (Some(prefix), Some(pin), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenFormatError(format!(
                "expected {PREFIX}.<ca sha256>.<secret>, got {} dot-separated parts",
                text.split('.').count()
            )));
        };
        if prefix != PREFIX {
            return Err(TokenFormatError(format!(
                "unknown token kind {prefix:?}; expected {PREFIX}"
            )));
        }
        let ca_pin = hex::decode(pin)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| TokenFormatError("the CA pin is not 64 hex digits".into()))?;
        let secret = URL_SAFE_NO_PAD
            .decode(secret)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| TokenFormatError("the secret is not 32 bytes of base64url".into()))?;
        Ok(JoinToken { ca_pin, secret })
    }

    /// What the store keys the token by.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.secret).into()
    }

    /// A short public handle for listing and revoking: the first 12 hex digits of the hash.
    pub fn id(&self) -> String {
        id_of(&self.hash())
    }
}

pub fn id_of(hash: &[u8; 32]) -> String {
    hex::encode(&hash[..6])
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{PREFIX}.{}.{}",
            hex::encode(self.ca_pin),
            URL_SAFE_NO_PAD.encode(self.secret)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_survives_its_text_form() {
        let t = JoinToken::generate([7; 32]);
        let back = JoinToken::parse(&t.to_string()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.hash(), t.hash());
        assert_eq!(t.id().len(), 12);
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        let t = JoinToken::generate([1; 32]).to_string();
        assert!(JoinToken::parse("nope").unwrap_err().0.contains("expected"));
        let other = t.replacen(PREFIX, "other-v9", 1);
        assert!(JoinToken::parse(&other)
            .unwrap_err()
            .0
            .contains("unknown token kind"));
        let bad_pin = format!("{PREFIX}.abcd.{}", t.rsplit('.').next().unwrap());
        assert!(JoinToken::parse(&bad_pin).unwrap_err().0.contains("CA pin"));
        let bad_secret = format!("{}.!!", t.rsplit_once('.').unwrap().0);
        assert!(JoinToken::parse(&bad_secret)
            .unwrap_err()
            .0
            .contains("secret"));
    }

    #[test]
    fn the_debug_form_does_not_show_the_secret() {
        let t = JoinToken::generate([2; 32]);
        let secret = t.to_string().rsplit('.').next().unwrap().to_owned();
        assert!(!format!("{t:?}").contains(&secret));
    }
}
