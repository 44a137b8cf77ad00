//! Symlinks replaced atomically, and the random names such replacements use. Shared by
//! the netboot publisher (tree roots), local build generations (`current`, GC roots) and
//! the deploy engine (confirmation files).

use std::path::Path;

/// 6 random hex digits.
pub(crate) fn random_suffix() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 3];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).is_err() {
        let t =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mix = t.subsec_nanos() ^ std::process::id().rotate_left(12);
        bytes.copy_from_slice(&mix.to_le_bytes()[..3]);
    }
    hex::encode(bytes)
}

/// Points the symlink `link` at `target` atomically (a temporary link renamed over it).
pub(crate) fn swap_link(link: &Path, target: &Path) -> std::io::Result<()> {
    let mut tmp = link.as_os_str().to_os_string();
    tmp.push(format!(".{}.link", random_suffix()));
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// The target of the symlink `name` in the open directory `dir` (`readlinkat`): for
/// reading many links of one directory, without walking the directory's path each time.
pub(crate) fn read_link_at(
    dir: &std::fs::File,
    name: &std::ffi::OsStr,
) -> std::io::Result<std::path::PathBuf> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let name = std::ffi::CString::new(name.as_bytes()).map_err(std::io::Error::other)?;
    let mut buf = [0u8; libc::PATH_MAX as usize];
    // SAFETY: `name` is NUL-terminated, `buf` is writable for `buf.len()` bytes and the
    // descriptor belongs to an open `File`.
    let n = unsafe {
        libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(std::ffi::OsString::from_vec(buf[..n as usize].to_vec()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_links_relative_to_a_directory() {
        let t = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("../some/where", t.path().join("l")).unwrap();
        std::fs::write(t.path().join("f"), "x").unwrap();
        let dir = std::fs::File::open(t.path()).unwrap();
        assert_eq!(
            read_link_at(&dir, "l".as_ref()).unwrap(),
            std::path::PathBuf::from("../some/where")
        );
        assert_eq!(
            read_link_at(&dir, "f".as_ref()).unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
        assert_eq!(
            read_link_at(&dir, "gone".as_ref()).unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
    }
}
