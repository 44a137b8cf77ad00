//! Directories carrier keeps its own state in (the inventory cache, a lab's state
//! directory): owned by the caller and writable by nobody else, because what lies there
//! is trusted later (evaluator files, cached inventories, sshd configurations, PIDs to
//! signal). Files are written into them without following a link someone planted.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::path_io::PathIoError;

#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    #[error("'{}' is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error(
        "'{}' is owned by uid {owner}, not by you (uid {caller}): its owner could plant files \
         carrier would trust; use a directory of your own",
        path.display()
    )]
    NotOwned { path: PathBuf, owner: u32, caller: u32 },
    #[error(
        "'{}' is writable by {who} (mode {mode:04o}): they could plant files carrier would \
         trust; run `chmod go-w {}` or use another directory",
        path.display(),
        path.display()
    )]
    Writable { path: PathBuf, who: &'static str, mode: u32 },
    #[error(transparent)]
    Io(#[from] PathIoError),
}

/// Creates `path` when missing (mode 0700, parents included), then [`check`]s it.
pub fn ensure(path: &Path) -> Result<(), PrivateDirError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| PrivateDirError::Io(PathIoError::at("creating", path)(source)))?;
    check(path)
}

/// `path` is a directory owned by the effective user and not writable by group or others.
/// When `path` is a symlink, the link must be the caller's too (whoever owns it could
/// point it elsewhere later).
pub fn check(path: &Path) -> Result<(), PrivateDirError> {
    let io = |source| PrivateDirError::Io(PathIoError::at("reading", path)(source));
    // SAFETY: geteuid has no preconditions and cannot fail.
    let caller = unsafe { libc::geteuid() };
    let link = std::fs::symlink_metadata(path).map_err(io)?;
    if link.file_type().is_symlink() && link.uid() != caller {
        return Err(PrivateDirError::NotOwned {
            path: path.to_path_buf(),
            owner: link.uid(),
            caller,
        });
    }
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_dir() {
        return Err(PrivateDirError::NotADirectory { path: path.to_path_buf() });
    }
    if meta.uid() != caller {
        return Err(PrivateDirError::NotOwned {
            path: path.to_path_buf(),
            owner: meta.uid(),
            caller,
        });
    }
    let mode = meta.mode() & 0o7777;
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (false, false) => return Ok(()),
        (true, false) => "its group",
        (false, true) => "everyone",
        (true, true) => "its group and everyone",
    };
    Err(PrivateDirError::Writable { path: path.to_path_buf(), who, mode })
}

/// Replaces `path` with a new file holding `bytes`: written to a fresh name opened with
/// `O_CREAT|O_EXCL|O_NOFOLLOW`, then renamed over `path`. A symlink planted at `path`
/// is replaced, never written through; readers never see a half-written file.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(format!(".{}.tmp", crate::links::random_suffix()));
    let tmp = PathBuf::from(tmp);
    let result = create_new(&tmp, mode)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates `path` anew (`O_CREAT|O_EXCL|O_NOFOLLOW`) after removing whatever entry is
/// there (a planted link is removed, not followed): for files written as a stream.
pub fn create_file(path: &Path, mode: u32) -> std::io::Result<std::fs::File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    create_new(path, mode)
}

fn create_new(path: &Path, mode: u32) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn only_private_directories_of_the_caller_pass() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        ensure(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        chmod(&dir, 0o755);
        check(&dir).unwrap();
        chmod(&dir, 0o775);
        let e = check(&dir).unwrap_err().to_string();
        assert!(e.contains("writable by its group (mode 0775)") && e.contains("chmod go-w"), "{e}");
        chmod(&dir, 0o1777);
        let e = check(&dir).unwrap_err().to_string();
        assert!(e.contains("writable by its group and everyone (mode 1777)"), "{e}");
        chmod(&dir, 0o700);
        let file = tmp.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert!(check(&file).unwrap_err().to_string().ends_with("is not a directory"));
        // A link of the caller's to a private directory is fine.
        std::os::unix::fs::symlink(&dir, tmp.path().join("l")).unwrap();
        check(&tmp.path().join("l")).unwrap();
    }

    #[test]
    fn writes_replace_planted_links_instead_of_following_them() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let path = tmp.path().join("config");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_file(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::symlink_metadata(&path).unwrap().mode() & 0o777, 0o600);

        let log = tmp.path().join("log");
        std::os::unix::fs::symlink(&victim, &log).unwrap();
        create_file(&log, 0o644).unwrap().write_all(b"line").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(std::fs::symlink_metadata(&log).unwrap().is_file());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 3, "no temporary files left");
    }
}
