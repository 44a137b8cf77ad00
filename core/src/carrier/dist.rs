//! The files of a carried artifact (a *dist*: `machine.json`, `kernel-params`, `bzImage`,
//! `initrd`, `root.squashfs`) as untrusted input.
//!
//! Whoever deploys a carried machine writes its dist, and a store path may hold symlinks
//! to anywhere, while the netboot builder and `carrier profile list` run as root on the
//! carrier. So a file of a dist is only read or linked when its real path lies inside a
//! store path (a symlink into another store path is fine, one to `/root/.ssh/id_ed25519`
//! is not) and it is a regular file; a file that is read is opened without following a
//! symlink and has a size cap.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The Nix store directory, as store paths name it.
pub const STORE_DIR: &str = "/nix/store";

/// The largest `machine.json` read, 1 MiB (real ones hold a few kilobytes).
pub const MACHINE_JSON_MAX: u64 = 1 << 20;

/// The largest `kernel-params` file read, 64 KiB (Linux takes a few kilobytes of command line).
pub const KERNEL_PARAMS_MAX: u64 = 64 << 10;

/// A file of a dist that is not read or linked. Every variant names the path as given
/// (for example `<profiles>/confctl-node1-3-link/kernel-params`).
#[derive(Debug, thiserror::Error)]
pub enum DistFileError {
    /// Including: it does not exist.
    #[error("cannot read '{}': {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "'{}' resolves to '{}', outside the Nix store {}: it is neither read nor served",
        path.display(), real.display(), store.display()
    )]
    OutsideStore { path: PathBuf, real: PathBuf, store: PathBuf },

    #[error("'{}' is not a regular file", path.display())]
    NotAFile { path: PathBuf },

    #[error(
        "'{}' is {size} bytes, more than the {max} bytes carrier reads of this file: it is not read",
        path.display()
    )]
    TooLarge { path: PathBuf, size: u64, max: u64 },
}

impl DistFileError {
    /// True when the error is "the file does not exist" (a dangling symlink included).
    pub fn is_not_found(&self) -> bool {
        matches!(self, DistFileError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    /// The path as given.
    pub fn path(&self) -> &Path {
        match self {
            DistFileError::Io { path, .. }
            | DistFileError::OutsideStore { path, .. }
            | DistFileError::NotAFile { path }
            | DistFileError::TooLarge { path, .. } => path,
        }
    }
}

/// The store the files of dists must lie in, by its real path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreDir {
    real: PathBuf,
}

impl StoreDir {
    /// [`STORE_DIR`], resolved: `/nix` may be a symlink to another disk.
    pub fn system() -> StoreDir {
        StoreDir::at(Path::new(STORE_DIR))
    }

    /// `dir` as the store (resolved when it exists).
    pub fn at(dir: &Path) -> StoreDir {
        StoreDir { real: std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()) }
    }

    /// The real path of `path` (every symlink resolved) when it is a store path or lies
    /// inside one.
    pub fn resolve(&self, path: &Path) -> Result<PathBuf, DistFileError> {
        // A store path named by the store's real path that is no symlink is its own real
        // path: one `lstat` instead of a resolution of every component (a toplevel).
        if path.parent() == Some(self.real.as_path())
            && std::fs::symlink_metadata(path).is_ok_and(|m| !m.file_type().is_symlink())
        {
            return Ok(path.to_path_buf());
        }
        let real = std::fs::canonicalize(path)
            .map_err(|source| DistFileError::Io { path: path.into(), source })?;
        self.check_inside(path, real)
    }

    /// `real` (the real path of `path`) when it lies inside a store path.
    fn check_inside(&self, path: &Path, real: PathBuf) -> Result<PathBuf, DistFileError> {
        match real.strip_prefix(&self.real) {
            Ok(rest) if rest.components().next().is_some() => Ok(real),
            _ => Err(DistFileError::OutsideStore {
                path: path.into(),
                real,
                store: self.real.clone(),
            }),
        }
    }

    /// The files of the dist linked at `link` (a generation link of a carried profile).
    /// The link is resolved once here; see [`Dist`].
    pub fn dist<'a>(&'a self, link: &'a Path) -> Dist<'a> {
        // nix-env's links hold absolute store paths: resolving the target is resolving
        // the link, without walking the profiles directory's path again.
        let real = match std::fs::read_link(link) {
            Ok(target) if target.is_absolute() => self.resolve(&target),
            _ => self.resolve(link),
        };
        Dist { store: self, link, real: real.ok() }
    }
}

/// The files of one dist, by name. Its link is resolved once: a file that is no symlink
/// has the real path `<real dist>/<name>` and needs one `lstat`, not a resolution of the
/// whole path per file (a netboot build reads five files of thousands of generations).
/// A file that is a symlink, and every file of a dist whose link does not resolve inside
/// the store, is resolved in full, so errors are the same either way. Errors name the path
/// as given, `<link>/<name>`.
#[derive(Debug)]
pub struct Dist<'a> {
    store: &'a StoreDir,
    link: &'a Path,
    /// The link's real path when it lies in the store.
    real: Option<PathBuf>,
}

impl Dist<'_> {
    /// `<link>/<name>`, the path errors name.
    pub fn path(&self, name: &str) -> PathBuf {
        self.link.join(name)
    }

    /// The real path of file `name` and, when it was no symlink, its metadata.
    fn resolve(&self, name: &str) -> Result<(PathBuf, Option<std::fs::Metadata>), DistFileError> {
        let given = self.path(name);
        let Some(dir) = &self.real else {
            return self.store.resolve(&given).map(|real| (real, None));
        };
        let candidate = dir.join(name);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                let real = std::fs::canonicalize(&candidate)
                    .map_err(|source| DistFileError::Io { path: given.clone(), source })?;
                self.store.check_inside(&given, real).map(|real| (real, None))
            }
            Ok(m) => Ok((candidate, Some(m))),
            Err(source) => Err(DistFileError::Io { path: given, source }),
        }
    }

    /// The real path of `name`, which must be a regular file (a boot file to link).
    pub fn resolve_file(&self, name: &str) -> Result<PathBuf, DistFileError> {
        let (real, meta) = self.resolve(name)?;
        let meta = match meta {
            Some(m) => m,
            None => std::fs::metadata(&real)
                .map_err(|source| DistFileError::Io { path: self.path(name), source })?,
        };
        if meta.is_file() {
            Ok(real)
        } else {
            Err(DistFileError::NotAFile { path: self.path(name) })
        }
    }

    /// The content of the regular file `name`, at most `max` bytes: a larger file is
    /// refused before anything is read. The real path is opened with `O_NOFOLLOW` (a
    /// symlink put there after resolving is not followed) and `O_NONBLOCK` (a FIFO does not
    /// hang the build).
    pub fn read(&self, name: &str, max: u64) -> Result<Vec<u8>, DistFileError> {
        let (real, _) = self.resolve(name)?;
        let path = self.path(name);
        let io = |source| DistFileError::Io { path: path.clone(), source };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&real)
            .map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(DistFileError::NotAFile { path });
        }
        if meta.len() > max {
            return Err(DistFileError::TooLarge { path, size: meta.len(), max });
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        // One byte more than allowed tells a file that grew since fstat.
        file.take(max + 1).read_to_end(&mut bytes).map_err(io)?;
        if bytes.len() as u64 > max {
            return Err(DistFileError::TooLarge { path, size: bytes.len() as u64, max });
        }
        Ok(bytes)
    }
}

/// Nix's base-32 alphabet, the characters of a store path's hash.
const NIX_BASE32: &str = "0123456789abcdfghijklmnpqrsvwxyz";

/// Checks that `s` is a plain store path `/nix/store/<hash>-<name>`, by Nix's rules: a
/// hash of 32 characters of Nix's base-32 alphabet, a name of 1 to 211 letters, digits
/// and `+-._?=` that does not start with `.`, and nothing after it. Returns why not.
pub fn check_store_path(s: &str) -> Result<(), String> {
    let Some(base) = s.strip_prefix(STORE_DIR).and_then(|r| r.strip_prefix('/')) else {
        return Err(format!("does not start with {STORE_DIR}/"));
    };
    if base.contains('/') {
        return Err("names a path inside a store path, not the store path itself".into());
    }
    let (hash, name) = base.split_at_checked(32).unwrap_or((base, ""));
    if hash.len() != 32 || !hash.chars().all(|c| NIX_BASE32.contains(c)) {
        return Err("has no hash of 32 characters of Nix's base-32 alphabet".into());
    }
    let Some(name) = name.strip_prefix('-') else {
        return Err("has no '-' after the hash".into());
    };
    if name.is_empty() || name.len() > 211 {
        return Err("has a name that is empty or longer than 211 characters".into());
    }
    if name.starts_with('.') {
        return Err("has a name that starts with '.'".into());
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "+-._?=".contains(*c))) {
        return Err(format!(
            "has '{}' in its name (allowed: letters, digits and +-._?=)",
            c.escape_default()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdfghijklmnpqrsvwxyz";

    #[test]
    fn store_paths() {
        assert_eq!(check_store_path(&format!("/nix/store/{HASH}-nixos-system-a-24.05")), Ok(()));
        assert_eq!(check_store_path(&format!("/nix/store/{HASH}-a+b_c?d=e")), Ok(()));
        let bad = |s: String| check_store_path(&s).unwrap_err();
        assert!(bad(format!("/nix/store/{HASH}-x/init")).contains("inside a store path"));
        assert!(bad(format!("/nix/store/{HASH}-x ; chain")).contains("has ' ' in its name"));
        assert!(
            bad(format!("/nix/store/{HASH}-x || chain http://e/")).contains("inside a store path")
        );
        assert!(bad(format!("/nix/store/{HASH}-x\nLABEL y")).contains("has '\\n' in its name"));
        assert!(bad(format!("/nix/store/{HASH}-x${{y}}")).contains("has '$'"));
        assert!(bad(format!("/nix/store/{HASH}-.x")).contains("starts with '.'"));
        assert!(bad(format!("/nix/store/{HASH}-")).contains("empty"));
        assert!(bad(format!("/nix/store/{HASH}-{}", "a".repeat(212))).contains("longer than 211"));
        assert!(bad(format!("/nix/store/{HASH}x")).contains("no '-'"));
        let not_base32 = "/nix/store/0123456789abcdefghijklmnopqrstuv-x";
        assert!(bad(not_base32.into()).contains("hash"), "e, o, t, u are not base-32");
        assert!(bad("/nix/store/short-x".into()).contains("hash"));
        assert!(bad(format!("/nix/store2/{HASH}-x")).contains("does not start with /nix/store/"));
        assert!(bad(format!("/tmp/{HASH}-x")).contains("does not start with /nix/store/"));
        assert!(
            bad(format!("/nix/store/{}-x", "é".repeat(16))).contains("hash"),
            "not split inside a character"
        );
    }

    /// A fake store with a store path holding a file, a link into another store path, a
    /// link out of the store and a directory; a secret next to the store.
    fn fixture() -> (tempfile::TempDir, StoreDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let store = t.path().join("store");
        let dist = store.join("aaaa-dist");
        std::fs::create_dir_all(store.join("bbbb-kernel")).unwrap();
        std::fs::create_dir_all(dist.join("dir")).unwrap();
        std::fs::write(t.path().join("secret"), "secret").unwrap();
        std::fs::write(store.join("bbbb-kernel/bzImage"), "kernel").unwrap();
        std::fs::write(dist.join("kernel-params"), "quiet").unwrap();
        std::os::unix::fs::symlink("../bbbb-kernel/bzImage", dist.join("bzImage")).unwrap();
        std::os::unix::fs::symlink(t.path().join("secret"), dist.join("initrd")).unwrap();
        std::os::unix::fs::symlink("../../secret", dist.join("machine.json")).unwrap();
        std::os::unix::fs::symlink("..", dist.join("up")).unwrap();
        let store_dir = StoreDir::at(&store);
        (t, store_dir, dist)
    }

    #[test]
    fn files_resolve_only_inside_the_store() {
        let (t, store, link) = fixture();
        let dist = store.dist(&link);
        let real = |p: &str| std::fs::canonicalize(t.path().join(p)).unwrap();
        let resolved = |name| dist.resolve(name).map(|(real, _)| real);
        assert_eq!(resolved("kernel-params").unwrap(), real("store/aaaa-dist/kernel-params"));
        let in_store = real("store").join("bbbb-kernel");
        assert_eq!(store.resolve(&in_store).unwrap(), in_store, "a store path is its real path");
        let up = real("store").join("aaaa-dist/up");
        assert!(matches!(store.resolve(&up), Err(DistFileError::OutsideStore { .. })));
        assert_eq!(dist.resolve_file("bzImage").unwrap(), real("store/bbbb-kernel/bzImage"));
        for name in ["initrd", "machine.json"] {
            let e = resolved(name).unwrap_err();
            assert!(matches!(e, DistFileError::OutsideStore { .. }), "{name}: {e}");
            assert_eq!(e.path(), link.join(name));
            assert!(e.to_string().contains(&real("secret").display().to_string()), "{e}");
        }
        // The store directory itself is no store path.
        assert!(matches!(resolved("up"), Err(DistFileError::OutsideStore { .. })));
        assert!(matches!(dist.resolve_file("dir"), Err(DistFileError::NotAFile { .. })));
        assert!(resolved("missing").unwrap_err().is_not_found());
    }

    /// A generation link is resolved once; the files of a link that leads out of the
    /// store are refused like files that do, by their real path.
    #[test]
    fn the_link_of_a_dist_is_checked_too() {
        let (t, store, link) = fixture();
        let profiles = t.path().join("profiles");
        std::fs::create_dir(&profiles).unwrap();
        std::os::unix::fs::symlink(&link, profiles.join("confctl-a-1-link")).unwrap();
        std::os::unix::fs::symlink(t.path(), profiles.join("confctl-b-1-link")).unwrap();
        let inside = profiles.join("confctl-a-1-link");
        let dist = store.dist(&inside);
        assert_eq!(dist.read("kernel-params", 100).unwrap(), b"quiet");
        assert_eq!(dist.path("kernel-params"), inside.join("kernel-params"));
        let outside = profiles.join("confctl-b-1-link");
        let e = store.dist(&outside).read("secret", 100).unwrap_err();
        assert!(matches!(e, DistFileError::OutsideStore { .. }), "{e}");
        assert_eq!(e.path(), outside.join("secret"));
    }

    #[test]
    fn reads_are_confined_and_capped() {
        let (_t, store, link) = fixture();
        let dist = store.dist(&link);
        assert_eq!(dist.read("kernel-params", 5).unwrap(), b"quiet");
        let e = dist.read("kernel-params", 4).unwrap_err();
        assert!(matches!(e, DistFileError::TooLarge { size: 5, max: 4, .. }), "{e}");
        assert!(e.to_string().contains("is 5 bytes, more than the 4 bytes"), "{e}");
        assert_eq!(dist.read("bzImage", 100).unwrap(), b"kernel", "a link into another store path");
        let e = dist.read("machine.json", 100).unwrap_err();
        assert!(matches!(e, DistFileError::OutsideStore { .. }), "{e}");
        assert!(matches!(dist.read("dir", 100), Err(DistFileError::NotAFile { .. })));
        assert!(dist.read("missing", 100).unwrap_err().is_not_found());
    }
}
