//! The configuration directory, resolved once to its real path at the CLI or server
//! entry: where its cluster, build generations, build work directory, deploy lock and lab
//! live, and which paths lie inside it (shown relative to it).

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// A configuration directory (the one holding `cluster/<name>/module.nix`) by its real
/// path: every path carrier derives from it, hashes (the inventory's content key, the GC
/// roots directory) or shows relative to it agrees, however the directory was named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfDir {
    root: PathBuf,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfDirError {
    #[error("{}", missing_cluster_dir(.0))]
    Missing(PathBuf),

    #[error("the configuration directory '{}' is not a directory", .0.display())]
    NotADirectory(PathBuf),

    #[error("resolving the configuration directory '{}': {source}", path.display())]
    Resolve {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
}

/// What a configuration without its `cluster` directory is told.
pub(crate) fn missing_cluster_dir(cluster_dir: &Path) -> String {
    format!(
        "no cluster directory: '{}' does not exist (expected the configuration directory \
         holding cluster/<name>/module.nix)",
        cluster_dir.display()
    )
}

impl ConfDir {
    /// The real path of `path` (relative to the working directory, symlinks resolved).
    pub fn resolve(path: &Path) -> Result<ConfDir, ConfDirError> {
        let root = match std::fs::canonicalize(path) {
            Ok(root) => root,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
                return Err(ConfDirError::Missing(shown.join("cluster")));
            }
            Err(e) => {
                return Err(ConfDirError::Resolve {
                    path: path.to_path_buf(),
                    source: Arc::new(e),
                });
            }
        };
        if !root.is_dir() {
            return Err(ConfDirError::NotADirectory(root));
        }
        Ok(ConfDir { root })
    }

    /// The real path.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `cluster/`: one `<name>/module.nix` (and `config.nix`) per machine.
    pub fn cluster_dir(&self) -> PathBuf {
        self.root.join("cluster")
    }

    /// `.confctl/generations/`: the local build generations (spec 1.6).
    pub fn generations_dir(&self) -> PathBuf {
        self.root.join(".confctl").join("generations")
    }

    /// `.confctl/build/`: the build's work files (module lists, result links).
    pub fn build_dir(&self) -> PathBuf {
        self.root.join(".confctl").join("build")
    }

    /// `.confctl/deploy.lock`: one deploy per configuration at a time.
    pub fn deploy_lock(&self) -> PathBuf {
        self.root.join(".confctl").join("deploy.lock")
    }

    /// `.carrier-lab/`: the default state directory of `carrier lab`.
    pub fn lab_dir(&self) -> PathBuf {
        self.root.join(".carrier-lab")
    }

    /// `path` relative to the configuration directory; None for a relative path or one
    /// outside it (a `..` component counts as outside: it is not resolved here).
    pub fn relative<'a>(&self, path: &'a Path) -> Option<&'a Path> {
        let rest = path.strip_prefix(&self.root).ok()?;
        rest.components().all(|c| matches!(c, Component::Normal(_))).then_some(rest)
    }

    /// `path` for display: relative to the configuration directory when inside it, else
    /// as it is.
    pub fn display_relative(&self, path: &str) -> String {
        match self.relative(Path::new(path)) {
            Some(rest) if rest.as_os_str().is_empty() => ".".to_string(),
            Some(rest) => rest.display().to_string(),
            None => path.to_string(),
        }
    }

    /// `text` (a message) with the configuration directory's paths made relative to it
    /// and the directory itself shown as `.`.
    pub fn relative_message(&self, text: &str) -> String {
        let root = self.root.display().to_string();
        text.replace(&format!("{root}/"), "").replace(&root, ".")
    }
}

impl fmt::Display for ConfDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.display().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> (tempfile::TempDir, ConfDir) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("conf")).unwrap();
        let dir = ConfDir::resolve(&tmp.path().join("conf")).unwrap();
        (tmp, dir)
    }

    #[test]
    fn resolves_to_the_real_path() {
        let (tmp, dir) = conf();
        let real = std::fs::canonicalize(tmp.path().join("conf")).unwrap();
        assert_eq!(dir.path(), real);
        std::os::unix::fs::symlink(tmp.path().join("conf"), tmp.path().join("link")).unwrap();
        assert_eq!(ConfDir::resolve(&tmp.path().join("link")).unwrap(), dir);
        let dotted = tmp.path().join("conf/../conf/.");
        assert_eq!(ConfDir::resolve(&dotted).unwrap(), dir);
        assert_eq!(dir.generations_dir(), real.join(".confctl/generations"));
        assert_eq!(dir.build_dir(), real.join(".confctl/build"));
        assert_eq!(dir.deploy_lock(), real.join(".confctl/deploy.lock"));
        assert_eq!(dir.cluster_dir(), real.join("cluster"));
        assert_eq!(dir.lab_dir(), real.join(".carrier-lab"));
    }

    #[test]
    fn a_missing_or_non_directory_path_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let err = ConfDir::resolve(&tmp.path().join("nowhere")).unwrap_err().to_string();
        assert!(err.contains("nowhere/cluster' does not exist"), "{err}");
        std::fs::write(tmp.path().join("file"), "").unwrap();
        let err = ConfDir::resolve(&tmp.path().join("file")).unwrap_err().to_string();
        assert!(err.contains("file' is not a directory"), "{err}");
    }

    #[test]
    fn paths_inside_are_relative_and_outside_are_reported_as_such() {
        let (_tmp, dir) = conf();
        let inside = dir.path().join("cluster/node1/module.nix");
        assert_eq!(dir.relative(&inside), Some(Path::new("cluster/node1/module.nix")));
        assert_eq!(dir.relative(dir.path()), Some(Path::new("")));
        // outside: elsewhere, a sibling with the same prefix, `..`, relative paths
        assert_eq!(dir.relative(Path::new("/etc/passwd")), None);
        let sibling = PathBuf::from(format!("{}2/x.nix", dir.path().display()));
        assert_eq!(dir.relative(&sibling), None);
        assert_eq!(dir.relative(&dir.path().join("cluster/../../secret")), None);
        assert_eq!(dir.relative(Path::new("cluster/node1/module.nix")), None);

        let shown = |p: &Path| dir.display_relative(&p.display().to_string());
        assert_eq!(shown(&inside), "cluster/node1/module.nix");
        assert_eq!(shown(dir.path()), ".");
        assert_eq!(shown(Path::new("/etc/passwd")), "/etc/passwd");
    }

    #[test]
    fn messages_show_paths_relative_to_the_configuration() {
        let (_tmp, dir) = conf();
        let text = format!(
            "evaluating the cluster in '{}' failed: {}/cluster/a/module.nix:3",
            dir.path().display(),
            dir.path().display()
        );
        assert_eq!(
            dir.relative_message(&text),
            "evaluating the cluster in '.' failed: cluster/a/module.nix:3"
        );
    }
}
