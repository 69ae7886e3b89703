//! The CA's files under `DIR/certs/`: keys are created with mode 0600 from the first byte,
//! and every write goes to a temporary file that is synced and renamed into place, so a
//! crash leaves either the old file or the new one.

use std::path::{Path, PathBuf};

use super::CaError;

pub(super) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    crate::files::write_atomic(path, contents, mode).map_err(|source| CaError::Io {
        path: path.to_path_buf(),
        source,
    })
}

pub(super) fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|source| CaError::Io {
        path: path.to_path_buf(),
        source,
    })
}

pub(super) fn cert_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.pem"))
}

pub(super) fn key_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.key"))
}
