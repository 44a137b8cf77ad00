//! Loading a configuration directory into a [`Cluster`]: discovery of
//! `cluster/**/module.nix`, evaluation through carrier's Nix evaluator (or, for a flake
//! configuration, its `.#confctl.machinesJson`), and a cache of the evaluated inventory
//! keyed by the content of the configuration's files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::expand::{Definitions, expand};
use super::{Cluster, InventoryError, MetaConfig};
use crate::conf_dir::ConfDir;
use crate::nix::{self, NixError};
use crate::private_dir;

/// Reads configuration directories (confctl's "conf dir": the directory holding
/// `cluster/`). Cheap to share; it remembers what it last loaded (a cluster or the
/// configuration's error).
pub struct Inventory {
    cache_dir: PathBuf,
    /// What the last evaluated content key gave: a cluster, or the configuration's error.
    last: Mutex<Option<LoadOutcome>>,
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
pub struct LoadOutcome {
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
        Inventory {
            cache_dir: cache_dir.into(),
            last: Mutex::new(None),
            evaluating: Mutex::new(()),
        }
    }

    /// `$CARRIER_CACHE_DIR`, else `$XDG_CACHE_HOME/carrier`, else `~/.cache/carrier`;
    /// never a shared directory such as `/tmp` (whoever else can write there could plant
    /// the evaluator or a cached inventory), so with none of them set it is an error.
    pub fn default_cache_dir() -> Result<PathBuf, InventoryError> {
        cache_dir_from(|k| std::env::var_os(k))
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Loads the cluster of `conf_dir`, evaluating with Nix only when a file changed.
    ///
    /// The files are hashed again after each evaluation: a result is cached (and
    /// remembered) only when nothing changed while Nix ran, so an edit made during an
    /// evaluation never gets the newer result stored under the older content's key.
    /// Files still changing after [`EVALUATIONS`] evaluations: the last result is
    /// returned, but not cached.
    pub fn load(&self, conf_dir: &ConfDir) -> Result<Loaded, InventoryError> {
        let LoadOutcome { key, cached, cluster } = self.load_outcome(conf_dir)?;
        Ok(Loaded { cluster: cluster?, key, cached })
    }

    /// Like [`Inventory::load`], keeping apart errors in the configuration (in the
    /// [`LoadOutcome`], remembered by content key) and errors of the surroundings (`Err`: no
    /// cluster directory, unreadable files, Nix missing; tried again on the next call).
    pub fn load_outcome(&self, conf_dir: &ConfDir) -> Result<LoadOutcome, InventoryError> {
        let cluster_dir = conf_dir.cluster_dir();
        let conf_dir = conf_dir.path();
        if !cluster_dir.is_dir() {
            return Err(InventoryError::MissingClusterDir(cluster_dir));
        }
        private_dir::ensure(&self.cache_dir)?;
        let mut before = self.snapshot(conf_dir)?;
        if let Some(outcome) = self.remembered(&before.key) {
            return Ok(outcome);
        }
        let _evaluating = self.evaluating.lock().unwrap_or_else(|e| e.into_inner());
        for attempt in 1..=EVALUATIONS {
            if let Some(outcome) = self.remembered(&before.key) {
                return Ok(outcome);
            }
            let cache_file = self.cache_dir.join("inventory").join(format!("{}.json", before.key));
            if let Ok(raw) = std::fs::read(&cache_file) {
                let cluster = parse_output(&raw).and_then(|output| expand(&output)).map(Arc::new);
                return Ok(self.remember(before.key, cluster, true));
            }
            let raw = match self.evaluate(conf_dir, &cluster_dir) {
                Ok(raw) => Ok(raw),
                Err(e @ InventoryError::Eval { .. }) => Err(e),
                Err(e) => return Err(e),
            };
            let after = self.snapshot(conf_dir)?;
            if after == before || attempt == EVALUATIONS {
                let unchanged = after == before;
                let cluster = raw.and_then(|raw| {
                    let cluster = Arc::new(expand(&parse_output(&raw)?)?);
                    if unchanged {
                        // a cache: failing to keep it only costs the next load an evaluation
                        let _ = write_atomically(&cache_file, &raw);
                    }
                    Ok(cluster)
                });
                if !unchanged {
                    return Ok(LoadOutcome { key: before.key, cached: false, cluster });
                }
                return Ok(self.remember(before.key, cluster, false));
            }
            before = after;
        }
        unreachable!("the last attempt returns")
    }

    /// Remembers what `key` gave, in memory only: a failure is not written to the on-disk
    /// cache, so a restart evaluates again (a broken Nix installation fixed meanwhile is
    /// noticed).
    fn remember(
        &self,
        key: String,
        cluster: Result<Arc<Cluster>, InventoryError>,
        cached: bool,
    ) -> LoadOutcome {
        let outcome = LoadOutcome { key, cached, cluster };
        *self.last.lock().expect("inventory lock") = Some(outcome.clone());
        outcome
    }

    /// The content key of `conf_dir` now, through (and updating) the remembered hashes.
    fn snapshot(&self, conf_dir: &Path) -> Result<Snapshot, InventoryError> {
        let memo_file = self.cache_dir.join("hashes").join(format!(
            "{}.json",
            &hex::encode(Sha256::digest(conf_dir.as_os_str().as_encoded_bytes()))[..32]
        ));
        let mut memo: FileHashes = std::fs::read(&memo_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let snapshot = content_key(conf_dir, &mut memo)?;
        if memo.changed {
            // a cache: losing it only costs re-reading files
            let _ =
                write_atomically(&memo_file, &serde_json::to_vec(&memo).expect("hashes serialize"));
        }
        Ok(snapshot)
    }

    fn remembered(&self, key: &str) -> Option<LoadOutcome> {
        match &*self.last.lock().expect("inventory lock") {
            Some(last) if last.key == key => Some(LoadOutcome { cached: true, ..last.clone() }),
            _ => None,
        }
    }

    fn evaluate(&self, conf_dir: &Path, cluster_dir: &Path) -> Result<Vec<u8>, InventoryError> {
        if is_flake(conf_dir) {
            return evaluate_flake(conf_dir);
        }
        let modules = discover_module_files(cluster_dir)?;
        let modules_json = serde_json::to_string(&modules).expect("paths serialize");
        let evaluator =
            nix::materialize_evaluator(&self.cache_dir).map_err(|e| nix_error(e, conf_dir))?;
        let conf = conf_dir.display().to_string();
        let argv = nix::eval_json_argv(
            &evaluator.join("eval-cluster.nix"),
            &[("confDir", conf.as_str()), ("moduleFilesJson", modules_json.as_str())],
        );
        nix::run(&argv).map_err(|e| nix_error(e, conf_dir))
    }
}

/// A flake configuration (spec Appendix A: `flake.nix` in the configuration directory).
pub fn is_flake(conf_dir: &Path) -> bool {
    conf_dir.join("flake.nix").is_file()
}

/// `<conf_dir>#<attr>`: the configuration's flake output, as `.#<attr>` in the directory
/// (a git checkout is read as git does, untracked files left out).
pub fn flake_installable(conf_dir: &Path, attr: &str) -> Result<String, InventoryError> {
    let dir = conf_dir.display().to_string();
    if dir.contains(['#', '?']) {
        return Err(InventoryError::Eval {
            conf_dir: conf_dir.to_path_buf(),
            message: "a flake configuration's path must not contain '#' or '?'".into(),
        });
    }
    Ok(format!("{dir}#{attr}"))
}

/// `nix <command> …` on a flake configuration: flakes enabled whatever nix.conf says, the
/// lock file never written (spec Appendix A).
pub fn flake_argv(command: &[&str]) -> Vec<String> {
    let mut argv: Vec<String> =
        vec!["nix".into(), "--extra-experimental-features".into(), "nix-command flakes".into()];
    argv.extend(command.iter().map(|s| s.to_string()));
    argv.push("--no-write-lock-file".into());
    argv
}

/// The inventory of a flake configuration: `.#confctl.machinesJson` (spec 1.4), its
/// source machines (the carried ones are expanded again by [`expand`], as in legacy
/// mode) in the evaluator's output format. The flake gives no definition files.
fn evaluate_flake(conf_dir: &Path) -> Result<Vec<u8>, InventoryError> {
    #[derive(Deserialize)]
    struct Built {
        outputs: BTreeMap<String, PathBuf>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Record {
        carrier: Option<String>,
        meta_config: Value,
    }
    let mut argv = flake_argv(&["build", "--json", "--no-link"]);
    argv.push(flake_installable(conf_dir, "confctl.machinesJson")?);
    let out = nix::run(&argv).map_err(|e| nix_error(e, conf_dir))?;
    let bad = |what: String| {
        InventoryError::Output(format!("{}#confctl.machinesJson: {what}", conf_dir.display()))
    };
    let built: Vec<Built> = serde_json::from_slice(&out).map_err(|e| bad(e.to_string()))?;
    let file =
        built.first().and_then(|b| b.outputs.get("out")).ok_or_else(|| bad("no output".into()))?;
    let text = std::fs::read(file)
        .map_err(|e| InventoryError::io(format!("reading {}", file.display()), e))?;
    let records: BTreeMap<String, Record> =
        serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    let machines: BTreeMap<String, Value> = records
        .into_iter()
        .filter(|(_, r)| r.carrier.is_none())
        .map(|(name, r)| (name, r.meta_config))
        .collect();
    Ok(serde_json::to_vec(&serde_json::json!({ "machines": machines, "files": {} })).expect("JSON"))
}

/// How often `load` evaluates while the files keep changing under it.
pub(super) const EVALUATIONS: usize = 3;

/// `$CARRIER_CACHE_DIR`, else `$XDG_CACHE_HOME/carrier`, else `$HOME/.cache/carrier`,
/// from `env`.
fn cache_dir_from(
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<PathBuf, InventoryError> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("CARRIER_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("carrier")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/carrier")))
        .ok_or(InventoryError::NoCacheDir)
}

fn nix_error(e: NixError, conf_dir: &Path) -> InventoryError {
    match e {
        NixError::NotInstalled { program } => InventoryError::NixNotInstalled { program },
        NixError::CacheDir(e) => InventoryError::from(e),
        NixError::Failed { message } => {
            InventoryError::Eval { conf_dir: conf_dir.to_path_buf(), message }
        }
        NixError::Io { context, source } => {
            InventoryError::Io { context, source: Arc::new(source) }
        }
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

/// Visits regular files below `dir`, skipping hidden entries. Symlinks to files are
/// visited (their target's content counts); symlinked directories are never entered
/// (an `x -> .` loop, a `result` link into the store).
fn walk(dir: &Path, depth: usize, visit: &mut dyn FnMut(&Path)) -> Result<(), InventoryError> {
    if depth > 32 {
        return Err(InventoryError::io(
            format!("reading {}", dir.display()),
            std::io::Error::other("directories nested more than 32 levels deep (a symlink loop?)"),
        ));
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| InventoryError::io(format!("reading {}", dir.display()), e))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| InventoryError::io(format!("reading {}", dir.display()), e))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        match entry_kind(&entry) {
            EntryKind::Dir => walk(&path, depth + 1, visit)?,
            EntryKind::File => visit(&path),
            EntryKind::Other => {}
        }
    }
    Ok(())
}

enum EntryKind {
    /// A real directory (not a symlink to one).
    Dir,
    /// A regular file, or a symlink to one.
    File,
    /// Anything else: symlinked directories, dangling links, FIFOs, sockets, devices.
    Other,
}

fn entry_kind(entry: &std::fs::DirEntry) -> EntryKind {
    match entry.file_type() {
        Ok(t) if t.is_dir() => EntryKind::Dir,
        Ok(t) if t.is_file() => EntryKind::File,
        Ok(t) if t.is_symlink() && std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) => {
            EntryKind::File
        }
        _ => EntryKind::Other,
    }
}

/// The content key of a configuration directory at one moment, and the stat data of
/// the files it covers (an edit that restores the old content still changes those).
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    key: String,
    stamps: String,
}

/// The cache key: the evaluator's digest plus the path and content of every `*.nix`
/// and `*.json` file of the configuration directory (hidden entries, `result*` and
/// symlinked directories skipped, see [`walk`]), so an edit anywhere a module could
/// import from invalidates it.
///
/// File contents are hashed once and remembered with the file's stat data (size,
/// mtime, ctime, inode, as git's index does); an unchanged stat reuses the hash.
/// Files modified in the last two seconds are not remembered (timestamps are coarse).
fn content_key(conf_dir: &Path, memo: &mut FileHashes) -> Result<Snapshot, InventoryError> {
    let mut files = Vec::new();
    for top in std::fs::read_dir(conf_dir)
        .map_err(|e| InventoryError::io(format!("reading {}", conf_dir.display()), e))?
    {
        let top =
            top.map_err(|e| InventoryError::io(format!("reading {}", conf_dir.display()), e))?;
        let name = top.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.starts_with("result") {
            continue;
        }
        let path = top.path();
        match entry_kind(&top) {
            EntryKind::Dir => walk(&path, 1, &mut |p| files.push(p.to_path_buf()))?,
            EntryKind::File => files.push(path),
            EntryKind::Other => {}
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
    let mut stamps = Sha256::new();
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
        stamps.update(serde_json::to_vec(&stamp).expect("stamps serialize"));
        if stamp.mtime < recent {
            seen.insert(key, (stamp, digest));
        }
    }
    memo.changed = seen != memo.files;
    memo.files = seen;
    Ok(Snapshot { key: hex::encode(h.finalize()), stamps: hex::encode(stamps.finalize()) })
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
    use std::os::unix::fs::DirBuilderExt;
    let dir = path.parent().expect("cache file has a parent");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| InventoryError::io(format!("creating {}", dir.display()), e))?;
    private_dir::write_file(path, bytes, 0o600)
        .map_err(|e| InventoryError::io(format!("writing {}", path.display()), e))
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
        let rel: Vec<_> =
            got.iter().map(|p| p.strip_prefix(&c.display().to_string()).unwrap()).collect();
        assert_eq!(rel, ["/a/module.nix", "/b/module.nix", "/prg/node1/module.nix"]);
    }

    #[test]
    fn content_key_changes_with_any_nix_file() {
        let tmp = tempfile::tempdir().unwrap();
        let c = tmp.path().join("cluster/a");
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(c.join("module.nix"), "{}").unwrap();
        let key = |memo: &mut FileHashes| content_key(tmp.path(), memo).unwrap().key;
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
        let k1 = content_key(tmp.path(), &mut memo).unwrap().key;
        assert!(memo.changed && memo.files.len() == 1, "the hash is remembered");
        // a remembered hash is trusted while the stat matches...
        let (_, digest) = memo.files.values_mut().next().unwrap();
        *digest = "0".repeat(64);
        assert_ne!(
            content_key(tmp.path(), &mut memo).unwrap().key,
            k1,
            "the remembered hash was used"
        );
        // ...and a changed file (new ctime) is read again
        let mut memo = FileHashes::default();
        let k1 = content_key(tmp.path(), &mut memo).unwrap().key;
        std::fs::write(&file, "{ a = 2; }").unwrap();
        let k2 = content_key(tmp.path(), &mut memo).unwrap().key;
        assert_ne!(k1, k2);
        assert!(memo.files.is_empty(), "a file written just now is not remembered");
        assert_ne!(content_key(tmp.path(), &mut memo).unwrap().key, k1);
    }

    #[test]
    fn missing_cluster_dir_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let inv = Inventory::new(tmp.path().join("cache"));
        std::fs::create_dir(tmp.path().join("conf")).unwrap();
        let conf = ConfDir::resolve(&tmp.path().join("conf")).unwrap();
        let err = inv.load(&conf).unwrap_err().to_string();
        assert!(err.contains("conf/cluster") && err.contains("does not exist"), "{err}");
    }

    #[test]
    fn cache_dir_comes_from_the_environment_or_nowhere() {
        let from = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> =
                vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            cache_dir_from(move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.into()))
        };
        assert_eq!(from(&[("HOME", "/h"), ("CARRIER_CACHE_DIR", "/c")]).unwrap(), Path::new("/c"));
        assert_eq!(
            from(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]).unwrap(),
            Path::new("/x/carrier")
        );
        assert_eq!(
            from(&[("HOME", "/h"), ("XDG_CACHE_HOME", "")]).unwrap(),
            Path::new("/h/.cache/carrier")
        );
        let e = from(&[("TMPDIR", "/tmp")]).unwrap_err().to_string();
        assert!(e.starts_with("no cache directory: set CARRIER_CACHE_DIR"), "{e}");
    }

    #[test]
    fn symlinked_directories_are_not_entered() {
        let tmp = tempfile::tempdir().unwrap();
        let c = tmp.path().join("cluster");
        std::fs::create_dir_all(c.join("a")).unwrap();
        std::fs::write(c.join("a/module.nix"), "{}").unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let outside = elsewhere.path();
        std::fs::write(outside.join("module.nix"), "{}").unwrap();
        std::fs::write(outside.join("shared.nix"), "1").unwrap();
        std::os::unix::fs::symlink(".", c.join("loop")).unwrap();
        std::os::unix::fs::symlink("..", c.join("a/up")).unwrap();
        std::os::unix::fs::symlink(outside, c.join("linked")).unwrap();
        // A symlink to a file counts, with its target's content.
        std::os::unix::fs::symlink(outside.join("shared.nix"), c.join("a/shared.nix")).unwrap();
        let got = discover_module_files(&c).unwrap();
        assert_eq!(got, [c.join("a/module.nix").display().to_string()]);
        let mut memo = FileHashes::default();
        let k1 = content_key(tmp.path(), &mut memo).unwrap().key;
        std::fs::write(outside.join("module.nix"), "{ x = 1; }").unwrap();
        assert_eq!(
            content_key(tmp.path(), &mut memo).unwrap().key,
            k1,
            "linked directories are not hashed"
        );
        std::fs::write(outside.join("shared.nix"), "2").unwrap();
        assert_ne!(content_key(tmp.path(), &mut memo).unwrap().key, k1, "linked files are");
    }
}
