//! Files the appliance writes for itself (keys, certificates, credentials, the proxy's cache):
//! each is written whole to a temporary file with its final mode, synced, then moved into
//! place and the directory synced, so a crash leaves the old file or the new one, never half.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Replaces `path` with `contents`, created with `mode` from the first byte.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = write_temp(path, contents, mode)?;
    std::fs::rename(&tmp, path)?;
    sync_dir(path);
    Ok(())
}

/// Creates `path` with `contents` only if nothing is there: `Ok(false)` when a file already
/// was (it is left as it was). Linking the finished temporary file into place is what makes
/// "create if absent" atomic: the name never points at a half-written file.
pub fn create_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<bool> {
    let tmp = write_temp(path, contents, mode)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(path);
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

fn write_temp(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<PathBuf> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(name);
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    let mut f = opts.open(&tmp)?;
    let written = f.write_all(contents).and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Makes a rename or link durable: the entry lives in the directory, which is synced too.
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn write_atomic_replaces_the_file_with_the_mode_given() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.pem");
        std::fs::write(&p, "old").unwrap();
        write_atomic(&p, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp left"
        );
    }

    #[test]
    fn create_atomic_leaves_an_existing_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("credentials");
        assert!(create_atomic(&p, b"first", 0o600).unwrap());
        assert!(!create_atomic(&p, b"second", 0o600).unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "first");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp left"
        );
    }
}
