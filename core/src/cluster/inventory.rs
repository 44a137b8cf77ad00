//! Loading a configuration directory into a [`Cluster`]: discovery of
//! `cluster/**/module.nix`, evaluation through carrier's Nix evaluator, and a cache of
//! the evaluated inventory keyed by the content of the configuration's files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::expand::{expand, Definitions};
use super::{Cluster, InventoryError, MetaConfig};
use crate::nix::{self, NixError};

/// Reads configuration directories (confctl's "conf dir": the directory holding
/// `cluster/`). Cheap to share; it remembers the last cluster it loaded.
pub struct Inventory {
    cache_dir: PathBuf,
    last: Mutex<Option<(String, Arc<Cluster>)>>,
}

/// A loaded cluster and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub cluster: Arc<Cluster>,
    /// Content key of the configuration files the cluster was evaluated from.
    pub key: String,
    /// False when Nix ran for this load.
    pub cached: bool,
}

#[derive(Deserialize)]
struct EvalOutput {
    machines: BTreeMap<String, Value>,
    files: BTreeMap<String, Vec<String>>,
}

impl Inventory {
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Inventory { cache_dir: cache_dir.into(), last: Mutex::new(None) }
    }

    /// `$CARRIER_CACHE_DIR`, else `$XDG_CACHE_HOME/carrier`, else `~/.cache/carrier`.
    pub fn default_cache_dir() -> PathBuf {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        env("CARRIER_CACHE_DIR")
            .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("carrier")))
            .or_else(|| env("HOME").map(|d| d.join(".cache/carrier")))
            .unwrap_or_else(|| std::env::temp_dir().join("carrier-cache"))
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Loads the cluster of `conf_dir`, evaluating with Nix only when a file changed.
    pub fn load(&self, conf_dir: &Path) -> Result<Loaded, InventoryError> {
        let conf_dir = std::path::absolute(conf_dir)
            .map_err(|e| InventoryError::io(format!("resolving {}", conf_dir.display()), e))?;
        let cluster_dir = conf_dir.join("cluster");
        if !cluster_dir.is_dir() {
            return Err(InventoryError::MissingClusterDir(cluster_dir));
        }
        let key = content_key(&conf_dir)?;
        if let Some((last_key, cluster)) = &*self.last.lock().expect("inventory lock") {
            if *last_key == key {
                return Ok(Loaded { cluster: cluster.clone(), key, cached: true });
            }
        }
        let cache_file = self.cache_dir.join("inventory").join(format!("{key}.json"));
        let (raw, cached) = match std::fs::read(&cache_file) {
            Ok(bytes) => (bytes, true),
            Err(_) => (self.evaluate(&conf_dir, &cluster_dir)?, false),
        };
        let cluster = Arc::new(expand(&parse_output(&raw)?)?);
        if !cached {
            write_atomically(&cache_file, &raw)?;
        }
        *self.last.lock().expect("inventory lock") = Some((key.clone(), cluster.clone()));
        Ok(Loaded { cluster, key, cached })
    }

    fn evaluate(&self, conf_dir: &Path, cluster_dir: &Path) -> Result<Vec<u8>, InventoryError> {
        let modules = discover_module_files(cluster_dir)?;
        let modules_json = serde_json::to_string(&modules).expect("paths serialize");
        let evaluator = nix::materialize_evaluator(&self.cache_dir).map_err(|e| nix_error(e, conf_dir))?;
        let conf = conf_dir.display().to_string();
        let argv = nix::eval_json_argv(
            &evaluator.join("eval-cluster.nix"),
            &[("confDir", conf.as_str()), ("moduleFilesJson", modules_json.as_str())],
        );
        nix::run(&argv).map_err(|e| nix_error(e, conf_dir))
    }
}

fn nix_error(e: NixError, conf_dir: &Path) -> InventoryError {
    match e {
        NixError::NotInstalled { program } => InventoryError::NixNotInstalled { program },
        NixError::Failed { message } => InventoryError::Eval { conf_dir: conf_dir.to_path_buf(), message },
        NixError::Io { context, source } => InventoryError::Io { context, source },
    }
}

fn parse_output(raw: &[u8]) -> Result<Definitions, InventoryError> {
    let out: EvalOutput =
        serde_json::from_slice(raw).map_err(|e| InventoryError::Output(e.to_string()))?;
    let mut files = out.files;
    out.machines
        .into_iter()
        .map(|(name, value)| {
            let meta: MetaConfig = serde_json::from_value(value)
                .map_err(|e| InventoryError::Output(format!("machine '{name}': {e}")))?;
            let files = files.remove(&name).unwrap_or_default();
            Ok((name, (meta, files)))
        })
        .collect()
}

/// Every `module.nix` below `cluster_dir`, sorted, as absolute paths.
pub fn discover_module_files(cluster_dir: &Path) -> Result<Vec<String>, InventoryError> {
    let mut found = Vec::new();
    walk(cluster_dir, 0, &mut |path| {
        if path.file_name().is_some_and(|n| n == "module.nix") {
            found.push(path.display().to_string());
        }
    })?;
    found.sort();
    Ok(found)
}

/// Visits regular files below `dir`, skipping hidden entries.
fn walk(dir: &Path, depth: usize, visit: &mut dyn FnMut(&Path)) -> Result<(), InventoryError> {
    if depth > 32 {
        return Err(InventoryError::io(
            format!("reading {}", dir.display()),
            std::io::Error::other("directories nested more than 32 levels deep (a symlink loop?)"),
        ));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| InventoryError::io(format!("reading {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| InventoryError::io(format!("reading {}", dir.display()), e))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // follows symlinks; a dangling link is skipped
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.is_dir() {
            walk(&path, depth + 1, visit)?;
        } else if meta.is_file() {
            visit(&path);
        }
    }
    Ok(())
}

/// The cache key: the evaluator's digest plus the path and content of every `*.nix`
/// and `*.json` file of the configuration directory (hidden entries and `result*`
/// links skipped), so an edit anywhere a module could import from invalidates it.
fn content_key(conf_dir: &Path) -> Result<String, InventoryError> {
    let mut files = Vec::new();
    for top in std::fs::read_dir(conf_dir).map_err(|e| InventoryError::io(format!("reading {}", conf_dir.display()), e))? {
        let top = top.map_err(|e| InventoryError::io(format!("reading {}", conf_dir.display()), e))?;
        let name = top.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.starts_with("result") {
            continue;
        }
        let path = top.path();
        if path.is_dir() {
            walk(&path, 1, &mut |p| files.push(p.to_path_buf()))?;
        } else {
            files.push(path);
        }
    }
    files.retain(|p| p.extension().is_some_and(|e| e == "nix" || e == "json"));
    files.sort();
    let mut h = Sha256::new();
    h.update(nix::evaluator_digest().as_bytes());
    h.update(conf_dir.as_os_str().as_encoded_bytes());
    for path in files {
        let content =
            std::fs::read(&path).map_err(|e| InventoryError::io(format!("reading {}", path.display()), e))?;
        h.update([0]);
        h.update(path.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update((content.len() as u64).to_le_bytes());
        h.update(&content);
    }
    Ok(hex::encode(h.finalize()))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), InventoryError> {
    let dir = path.parent().expect("cache file has a parent");
    std::fs::create_dir_all(dir).map_err(|e| InventoryError::io(format!("creating {}", dir.display()), e))?;
    let tmp = dir.join(format!(".{}.{}", std::process::id(), path.file_name().unwrap().to_string_lossy()));
    std::fs::write(&tmp, bytes).map_err(|e| InventoryError::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| InventoryError::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_is_recursive_sorted_and_skips_hidden() {
        let tmp = tempfile::tempdir().unwrap();
        let c = tmp.path().join("cluster");
        for d in ["b", "a", "prg/node1", ".hidden"] {
            std::fs::create_dir_all(c.join(d)).unwrap();
            std::fs::write(c.join(d).join("module.nix"), "{}").unwrap();
        }
        std::fs::write(c.join("a/config.nix"), "{}").unwrap();
        let got = discover_module_files(&c).unwrap();
        let rel: Vec<_> = got.iter().map(|p| p.strip_prefix(&c.display().to_string()).unwrap()).collect();
        assert_eq!(rel, ["/a/module.nix", "/b/module.nix", "/prg/node1/module.nix"]);
    }

    #[test]
    fn content_key_changes_with_any_nix_file() {
        let tmp = tempfile::tempdir().unwrap();
        let c = tmp.path().join("cluster/a");
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(c.join("module.nix"), "{}").unwrap();
        let k1 = content_key(tmp.path()).unwrap();
        assert_eq!(k1, content_key(tmp.path()).unwrap());
        std::fs::write(tmp.path().join("lib.nix"), "1").unwrap();
        let k2 = content_key(tmp.path()).unwrap();
        assert_ne!(k1, k2);
        std::fs::write(tmp.path().join("notes.txt"), "x").unwrap();
        assert_eq!(k2, content_key(tmp.path()).unwrap(), "other files are not part of the key");
        std::fs::write(c.join("module.nix"), "{ }").unwrap();
        assert_ne!(k2, content_key(tmp.path()).unwrap());
    }

    #[test]
    fn missing_cluster_dir_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let inv = Inventory::new(tmp.path().join("cache"));
        let err = inv.load(&tmp.path().join("nope")).unwrap_err().to_string();
        assert!(err.contains("nope/cluster") && err.contains("does not exist"), "{err}");
    }
}
