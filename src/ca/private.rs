//! Directories and files that hold keys, credentials and the store: created owner-only,
//! never reached through a symbolic link, never taken over from another user. A planted
//! link would otherwise make the appliance chmod, write or print a file of the planter's
//! choosing. Used by the control plane's data directory, the CA, proxies' state
//! directories and the demo.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a private directory or file is refused.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFsError {
    /// The path is a symbolic link. Keys are kept only where the operator pointed, so a
    /// link planted in a shared directory cannot redirect them.
    #[error("{0}: is a symbolic link; refusing to keep keys or state through it (name the real path instead)")]
    Symlink(PathBuf),
    /// A directory was expected.
    #[error("{0}: exists and is not a directory")]
    NotADirectory(PathBuf),
    /// It exists and belongs to another user, who could read or replace what goes in it.
    #[error("{path}: belongs to uid {owner}, not to this process (uid {me}); refusing to keep secrets in it")]
    Foreign { path: PathBuf, owner: u32, me: u32 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PrivateFsError + '_ {
    move |source| PrivateFsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The process's effective uid, read from /proc (no libc binding needed); `None` off Linux.
#[cfg(unix)]
fn my_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Checks what is at `path` already: not a link, and (on unix) ours.
fn check_existing(path: &Path, meta: &std::fs::Metadata) -> Result<(), PrivateFsError> {
    if meta.file_type().is_symlink() {
        return Err(PrivateFsError::Symlink(path.to_path_buf()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Some(me) = my_uid() {
            if meta.uid() != me {
                return Err(PrivateFsError::Foreign {
                    path: path.to_path_buf(),
                    owner: meta.uid(),
                    me,
                });
            }
        }
    }
    Ok(())
}

/// Opens `dir` as a private directory: creates it 0700 (and its missing parents, with the
/// default mode) or, if it exists, checks that it is a real directory owned by this user
/// and sets it to 0700.
pub fn open_private_dir(dir: &Path) -> Result<(), PrivateFsError> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) => {
            check_existing(dir, &meta)?;
            if !meta.is_dir() {
                return Err(PrivateFsError::NotADirectory(dir.to_path_buf()));
            }
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(io(dir))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let mut builder = std::fs::DirBuilder::new();
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(io(dir))
        }
        Err(e) => Err(io(dir)(e)),
    }
}

/// Refuses `path` if it is a symbolic link or another user's file; a missing path is fine.
pub fn refuse_link(path: &Path) -> Result<(), PrivateFsError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => check_existing(path, &meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

/// Creates `path` afresh with `mode` (`O_EXCL`, so never through a link): an earlier file of
/// ours is removed first; a link or another user's file is refused.
pub fn create_fresh(path: &Path, mode: u32) -> Result<File, PrivateFsError> {
    refuse_link(path)?;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(path)(e)),
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    #[cfg(not(unix))]
    let _ = mode;
    opts.open(path).map_err(io(path))
}

/// `create_fresh`, then writes `contents`.
pub fn write_fresh(path: &Path, contents: &[u8], mode: u32) -> Result<(), PrivateFsError> {
    let mut f = create_fresh(path, mode)?;
    f.write_all(contents).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_private_dir_is_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        open_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn a_symlinked_dir_is_refused_and_its_target_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = open_private_dir(&link).unwrap_err();
        assert!(matches!(err, PrivateFsError::Symlink(_)), "{err}");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "the link's target was not chmodded");
    }

    #[test]
    fn a_fresh_file_replaces_ours_but_never_writes_through_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("secret");
        std::fs::write(&file, "old").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_fresh(&file, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let elsewhere = tmp.path().join("elsewhere");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        assert!(matches!(
            write_fresh(&link, b"x", 0o600),
            Err(PrivateFsError::Symlink(_))
        ));
        assert!(!elsewhere.exists(), "nothing was created through the link");
    }
}
