//! Loading a configuration directory into a [`Cluster`]: discovery of
//! `cluster/**/module.nix`, evaluation through carrier's Nix evaluator, and a cache of
//! the evaluated inventory keyed by the content of the configuration's files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::expand::{expand, Definitions};
use super::{Cluster, InventoryError, MetaConfig};
use crate::nix::{self, NixError};

/// Reads configuration directories (confctl's "conf dir": the directory holding
/// `cluster/`). Cheap to share; it remembers what it last loaded (a cluster or the
/// configuration's error).
pub struct Inventory {
    cache_dir: PathBuf,
    /// What the last evaluated content key gave: a cluster, or the configuration's error.
    last: Mutex<Option<Outcome>>,
    /// Held while a load misses `last`: concurrent callers wait for one evaluation.
    evaluating: Mutex<()>,
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

/// What one content of a configuration evaluates to. An error in the configuration (Nix
/// rejects it, or its values do not form a valid cluster) is remembered by content key
/// like a cluster is: asking again before a file changes returns it without running Nix.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Content key of the configuration files.
    pub key: String,
    /// False when Nix ran for this call.
    pub cached: bool,
    pub cluster: Result<Arc<Cluster>, InventoryError>,
}

/// The evaluator's output, read untyped to find the machine a typed read fails on.
#[derive(Deserialize)]
struct EvalOutput {
    machines: BTreeMap<String, Value>,
}

impl Inventory {
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Inventory { cache_dir: cache_dir.into(), last: Mutex::new(None), evaluating: Mutex::new(()) }
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
        let Outcome { key, cached, cluster } = self.load_outcome(conf_dir)?;
        Ok(Loaded { cluster: cluster?, key, cached })
    }

    /// Like [`Inventory::load`], keeping apart errors in the configuration (in the
    /// [`Outcome`], remembered by content key) and errors of the surroundings (`Err`: no
    /// cluster directory, unreadable files, Nix missing; tried again on the next call).
    pub fn load_outcome(&self, conf_dir: &Path) -> Result<Outcome, InventoryError> {
        let conf_dir = std::path::absolute(conf_dir)
            .map_err(|e| InventoryError::io(format!("resolving {}", conf_dir.display()), e))?;
        let cluster_dir = conf_dir.join("cluster");
        if !cluster_dir.is_dir() {
            return Err(InventoryError::MissingClusterDir(cluster_dir));
        }
        let memo_file = self.cache_dir.join("hashes").join(format!(
            "{}.json",
            &hex::encode(Sha256::digest(conf_dir.as_os_str().as_encoded_bytes()))[..32]
        ));
        let mut memo: FileHashes = std::fs::read(&memo_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let key = content_key(&conf_dir, &mut memo)?;
        if memo.changed {
            // a cache: losing it only costs re-reading files
            let _ = write_atomically(&memo_file, &serde_json::to_vec(&memo).expect("hashes serialize"));
        }
        if let Some(outcome) = self.remembered(&key) {
            return Ok(outcome);
        }
        let _evaluating = self.evaluating.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(outcome) = self.remembered(&key) {
            return Ok(outcome);
        }
        let cache_file = self.cache_dir.join("inventory").join(format!("{key}.json"));
        let (raw, cached) = match std::fs::read(&cache_file) {
            Ok(bytes) => (Ok(bytes), true),
            Err(_) => match self.evaluate(&conf_dir, &cluster_dir) {
                Ok(raw) => (Ok(raw), false),
                Err(e @ InventoryError::Eval { .. }) => (Err(e), false),
                Err(e) => return Err(e),
            },
        };
        let cluster = raw.and_then(|raw| {
            let cluster = Arc::new(expand(&parse_output(&raw)?)?);
            if !cached {
                // a cache: failing to keep it only costs the next load an evaluation
                let _ = write_atomically(&cache_file, &raw);
            }
            Ok(cluster)
        });
        // Only in memory: a failure is not written to the on-disk cache, so a restart
        // evaluates again (a broken Nix installation fixed meanwhile is noticed).
        let outcome = Outcome { key, cached, cluster };
        *self.last.lock().expect("inventory lock") = Some(outcome.clone());
        Ok(outcome)
    }

    fn remembered(&self, key: &str) -> Option<Outcome> {
        match &*self.last.lock().expect("inventory lock") {
            Some(last) if last.key == key => Some(Outcome { cached: true, ..last.clone() }),
            _ => None,
        }
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
        NixError::Io { context, source } => InventoryError::Io { context, source: Arc::new(source) },
    }
}

fn parse_output(raw: &[u8]) -> Result<Definitions, InventoryError> {
    #[derive(Deserialize)]
    struct Typed {
        machines: BTreeMap<String, MetaConfig>,
        files: BTreeMap<String, Vec<String>>,
    }
    let out: Typed = match serde_json::from_slice(raw) {
        Ok(out) => out,
        Err(e) => return Err(explain_output_error(raw, e)),
    };
    let mut files = out.files;
    Ok(out
        .machines
        .into_iter()
        .map(|(name, meta)| {
            let files = files.remove(&name).unwrap_or_default();
            (name, (meta, files))
        })
        .collect())
}

/// Names the machine whose values do not fit the model (the slow path, on errors only).
fn explain_output_error(raw: &[u8], e: serde_json::Error) -> InventoryError {
    if let Ok(out) = serde_json::from_slice::<EvalOutput>(raw) {
        for (name, value) in out.machines {
            if let Err(e) = serde_json::from_value::<MetaConfig>(value) {
                return InventoryError::Output(format!("machine '{name}': {e}"));
            }
        }
    }
    InventoryError::Output(e.to_string())
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
        let Ok(mut kind) = entry.file_type() else { continue };
        if kind.is_symlink() {
            // follow it; a dangling link is skipped
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            kind = meta.file_type();
        }
        if kind.is_dir() {
            walk(&path, depth + 1, visit)?;
        } else if kind.is_file() {
            visit(&path);
        }
    }
    Ok(())
}

/// The cache key: the evaluator's digest plus the path and content of every `*.nix`
/// and `*.json` file of the configuration directory (hidden entries and `result*`
/// links skipped), so an edit anywhere a module could import from invalidates it.
///
/// File contents are hashed once and remembered with the file's stat data (size,
/// mtime, ctime, inode, as git's index does); an unchanged stat reuses the hash.
/// Files modified in the last two seconds are not remembered (timestamps are coarse).
fn content_key(conf_dir: &Path, memo: &mut FileHashes) -> Result<String, InventoryError> {
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
    let recent = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(i64::MAX, |d| d.as_secs() as i64 - 2);
    let mut h = Sha256::new();
    h.update(nix::evaluator_digest().as_bytes());
    h.update(conf_dir.as_os_str().as_encoded_bytes());
    let mut seen = BTreeMap::new();
    for path in files {
        let read_err = |e| InventoryError::io(format!("reading {}", path.display()), e);
        let meta = std::fs::metadata(&path).map_err(read_err)?;
        let stamp = Stamp::of(&meta);
        let key = path.display().to_string();
        let digest = match memo.files.get(&key) {
            Some((s, d)) if *s == stamp => d.clone(),
            _ => hex::encode(Sha256::digest(std::fs::read(&path).map_err(read_err)?)),
        };
        h.update([0]);
        h.update(path.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(digest.as_bytes());
        if stamp.mtime < recent {
            seen.insert(key, (stamp, digest));
        }
    }
    memo.changed = seen != memo.files;
    memo.files = seen;
    Ok(hex::encode(h.finalize()))
}

/// What identifies an unchanged file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    len: u64,
    mtime: i64,
    mtime_ns: i64,
    ctime: i64,
    ctime_ns: i64,
    ino: u64,
    dev: u64,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: m.len(),
            mtime: m.mtime(),
            mtime_ns: m.mtime_nsec(),
            ctime: m.ctime(),
            ctime_ns: m.ctime_nsec(),
            ino: m.ino(),
            dev: m.dev(),
        }
    }
}

/// Content hashes of a configuration directory's files, by path.
#[derive(Debug, Default, Serialize, Deserialize)]
struct FileHashes {
    files: BTreeMap<String, (Stamp, String)>,
    #[serde(skip)]
    changed: bool,
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), InventoryError> {
    let dir = path.parent().expect("cache file has a parent");
    std::fs::create_dir_all(dir).map_err(|e| InventoryError::io(format!("creating {}", dir.display()), e))?;
    let io = |e| InventoryError::io(format!("writing {}", path.display()), e);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
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
        let key = |memo: &mut FileHashes| content_key(tmp.path(), memo).unwrap();
        let mut memo = FileHashes::default();
        let k1 = key(&mut memo);
        assert_eq!(k1, key(&mut memo));
        std::fs::write(tmp.path().join("lib.nix"), "1").unwrap();
        let k2 = key(&mut memo);
        assert_ne!(k1, k2);
        std::fs::write(tmp.path().join("notes.txt"), "x").unwrap();
        assert_eq!(k2, key(&mut memo), "other files are not part of the key");
        std::fs::write(c.join("module.nix"), "{ }").unwrap();
        assert_ne!(k2, key(&mut memo));
    }

    #[test]
    fn remembered_hashes_are_used_only_while_the_stat_is_unchanged() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("cluster/a/module.nix");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "{ a = 1; }").unwrap();
        // age the file so its hash may be remembered
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(old).unwrap();
        let mut memo = FileHashes::default();
        let k1 = content_key(tmp.path(), &mut memo).unwrap();
        assert!(memo.changed && memo.files.len() == 1, "the hash is remembered");
        // a remembered hash is trusted while the stat matches...
        let (_, digest) = memo.files.values_mut().next().unwrap();
        *digest = "0".repeat(64);
        assert_ne!(content_key(tmp.path(), &mut memo).unwrap(), k1, "the remembered hash was used");
        // ...and a changed file (new ctime) is read again
        let mut memo = FileHashes::default();
        let k1 = content_key(tmp.path(), &mut memo).unwrap();
        std::fs::write(&file, "{ a = 2; }").unwrap();
        let k2 = content_key(tmp.path(), &mut memo).unwrap();
        assert_ne!(k1, k2);
        assert!(memo.files.is_empty(), "a file written just now is not remembered");
        assert_ne!(content_key(tmp.path(), &mut memo).unwrap(), k1);
    }

    #[test]
    fn missing_cluster_dir_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let inv = Inventory::new(tmp.path().join("cache"));
        let err = inv.load(&tmp.path().join("nope")).unwrap_err().to_string();
        assert!(err.contains("nope/cluster") && err.contains("does not exist"), "{err}");
    }
}
