//! Where `ctl` finds its signing key, in the AWS CLI's order: `--data-dir DIR/credentials`,
//! then `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, then the shared credentials file
//! (`AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`) for the chosen profile.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};

/// An access key pair. The secret never appears in `Debug`.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

pub fn resolve(data_dir: Option<&Path>, profile: Option<&str>) -> anyhow::Result<Credentials> {
    let profile = profile
        .map(str::to_owned)
        .or_else(|| std::env::var("AWS_PROFILE").ok())
        .unwrap_or_else(|| "default".to_owned());
    if let Some(dir) = data_dir {
        return from_file(&dir.join("credentials"), &profile);
    }
    if let (Ok(id), Ok(secret)) = (
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Ok(Credentials {
            access_key_id: id,
            secret_access_key: secret,
        });
    }
    let file = match std::env::var_os("AWS_SHARED_CREDENTIALS_FILE") {
        Some(f) => PathBuf::from(f),
        None => {
            let home = std::env::var_os("HOME")
                .ok_or_else(|| anyhow!("Unable to locate credentials: HOME is not set"))?;
            PathBuf::from(home).join(".aws/credentials")
        }
    };
    from_file(&file, &profile)
}

fn from_file(path: &Path, profile: &str) -> anyhow::Result<Credentials> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("Unable to locate credentials: reading {}", path.display()))?;
    parse_profile(&text, profile).ok_or_else(|| {
        anyhow!(
            "The config profile ({profile}) could not be found in {}",
            path.display()
        )
    })
}

/// The key pair of one profile in an INI-style credentials file.
pub fn parse_profile(text: &str, profile: &str) -> Option<Credentials> {
    let mut current: Option<&str> = None;
    let (mut id, mut secret) = (None, None);
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.trim());
            continue;
        }
        if current != Some(profile) {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "aws_access_key_id" => id = Some(v.trim().to_owned()),
                "aws_secret_access_key" => secret = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    Some(Credentials {
        access_key_id: id?,
        secret_access_key: secret?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_profile_is_read_and_others_ignored() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = S\n\n[other]\naws_access_key_id=B\naws_secret_access_key=T\n";
        assert_eq!(parse_profile(text, "other").unwrap().access_key_id, "B");
        assert_eq!(
            parse_profile(text, "default").unwrap().secret_access_key,
            "S"
        );
        assert!(parse_profile(text, "missing").is_none());
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = Credentials {
            access_key_id: "A".into(),
            secret_access_key: "SECRET".into(),
        };
        assert!(!format!("{c:?}").contains("SECRET"));
    }
}
