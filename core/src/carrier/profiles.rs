//! The carried profiles of a carrier: in a Nix profiles directory (by default
//! `/nix/var/nix/profiles`), every `confctl-<name>-<N>-link` is generation `N` of the
//! profile `confctl-<name>` (spec 3.2, steps 2 to 4), and each generation's store path
//! holds the `machine.json` of spec 1.5.
//!
//! Two levels of reading:
//! - [`scan_links`] only lists the directory and reads the links (one `readlink` per
//!   entry). The netboot builder fingerprints a profile with it, so an unchanged profile
//!   costs almost nothing.
//! - [`scan`] (= [`scan_links`] + [`ProfileLinks::resolve`]) adds each generation's
//!   creation time, its store path and which generation is current.
//!
//! A generation's `machine.json` is written by whoever deployed it: it is read through
//! [`StoreDir`] (only inside the Nix store, at most [`MACHINE_JSON_MAX`] bytes).

use std::collections::{BTreeMap, HashMap};
use std::io::ErrorKind;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;
use serde_json::{Map, Value};

use super::dist::{Dist, DistFileError, MACHINE_JSON_MAX, StoreDir};
use super::json_fields::{FieldError, Fields};
use crate::profile_name::{ProfileName, parse_generation_link};

/// Reading profiles or a `machine.json`. Every variant names the path concerned.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read the profiles directory '{}': {source}", dir.display())]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file or link could not be read (including: it does not exist).
    #[error("cannot read '{}': {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file is not JSON, or its top level is not an object.
    #[error("'{}' is not valid JSON: {message}", path.display())]
    InvalidJson { path: PathBuf, message: String },

    /// A field is missing or has the wrong type.
    #[error("'{}': field `{field}`: {message}", path.display())]
    Field { path: PathBuf, field: String, message: String },

    /// A file of a dist that is not read: missing, outside the store, too large
    /// (see [`super::dist`]).
    #[error(transparent)]
    DistFile(#[from] DistFileError),
}

impl ProfileError {
    /// The file or directory the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ProfileError::ReadDir { dir, .. } => dir,
            ProfileError::Read { path, .. }
            | ProfileError::InvalidJson { path, .. }
            | ProfileError::Field { path, .. } => path,
            ProfileError::DistFile(e) => e.path(),
        }
    }

    /// True when the error is "the file does not exist".
    pub fn is_not_found(&self) -> bool {
        match self {
            ProfileError::Read { source, .. } => source.kind() == ErrorKind::NotFound,
            ProfileError::DistFile(e) => e.is_not_found(),
            _ => false,
        }
    }
}

/// The links of one profile as found in the directory, before anything is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileLinks {
    /// The profile name: the carried alias with `/` replaced by `:`.
    pub name: String,
    /// `<dir>/confctl-<name>`.
    pub path: PathBuf,
    /// What the profile link points to (usually `confctl-<name>-<N>-link`); None when the
    /// profile link does not exist or is not a symlink.
    pub target: Option<PathBuf>,
    /// Ascending by number.
    pub generations: Vec<GenerationLink>,
}

/// One `confctl-<name>-<N>-link`, unresolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationLink {
    pub number: u64,
    /// `<dir>/confctl-<name>-<N>-link`.
    pub link: PathBuf,
    /// The link's inode number: a link deleted and created again gets a new one (in
    /// practice), which the netboot builder's fingerprint relies on.
    pub inode: u64,
    /// What the link points to (an absolute store path, as Nix writes it).
    pub target: PathBuf,
}

/// A carried profile with its generations resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The profile name: the carried alias with `/` replaced by `:`.
    pub name: String,
    /// `<dir>/confctl-<name>`.
    pub path: PathBuf,
    /// The real path of the profile link; None when it is missing or dangling.
    pub store_path: Option<PathBuf>,
    /// Ascending by number. At most one is `current`.
    pub generations: Vec<ProfileGeneration>,
}

/// One generation of a carried profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileGeneration {
    pub number: u64,
    /// `<dir>/confctl-<name>-<N>-link`.
    pub link: PathBuf,
    /// The real path of the link; for a dangling link (its store path was collected), the
    /// link's target as written.
    pub store_path: PathBuf,
    /// When the generation was created: the link's own mtime (lstat), epoch seconds.
    pub time: i64,
    /// The profile link points to this generation.
    pub current: bool,
}

impl Profile {
    /// The current generation, if the profile link points to one of the generations.
    pub fn current(&self) -> Option<&ProfileGeneration> {
        self.generations.iter().find(|g| g.current)
    }

    /// The generation with the given number.
    pub fn generation(&self, number: u64) -> Option<&ProfileGeneration> {
        self.generations.iter().find(|g| g.number == number)
    }

    /// Reads and checks the `machine.json` of one of this profile's generations (in the
    /// system's store).
    pub fn read_machine_json(
        &self,
        generation: &ProfileGeneration,
    ) -> Result<MachineJson, ProfileError> {
        generation.read_machine_json(&StoreDir::system())
    }
}

impl ProfileGeneration {
    /// `<link>/machine.json`.
    pub fn machine_json_path(&self) -> PathBuf {
        self.link.join("machine.json")
    }

    /// Reads and checks this generation's `machine.json`, a file of a dist in `store`.
    pub fn read_machine_json(&self, store: &StoreDir) -> Result<MachineJson, ProfileError> {
        MachineJson::read(&store.dist(&self.link))
    }
}

/// Lists the carried profiles of `dir`: every `confctl-<name>-<N>-link` symlink, grouped
/// by name, sorted by name (byte order), generations ascending. A profile appears when it
/// has at least one generation link, as upstream (a bare `confctl-<name>` without
/// generations is not a carried profile). One `readlink` per generation and profile
/// (spread over a few threads: a carrier may hold thousands).
pub fn scan_links(dir: &Path) -> Result<Vec<ProfileLinks>, ProfileError> {
    let read_dir = |source| ProfileError::ReadDir { dir: dir.to_path_buf(), source };
    // (profile name, number, link, inode); the file type comes with the listing.
    let mut found: Vec<(ProfileName, u64, PathBuf, u64)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir)? {
        let entry = entry.map_err(read_dir)?;
        let file_name = entry.file_name();
        let Some((name, number)) = file_name.to_str().and_then(parse_generation_link) else {
            continue;
        };
        if entry.file_type().is_ok_and(|t| !t.is_symlink()) {
            continue;
        }
        found.push((name, number, entry.path(), entry.ino()));
    }
    let mut names: Vec<ProfileName> = found.iter().map(|(n, ..)| n.clone()).collect();
    names.sort_unstable();
    names.dedup();
    let profile_links: Vec<PathBuf> = names.iter().map(|n| dir.join(n.file_name())).collect();
    // Links are read relative to the open directory: no walk of its path per link.
    let dir_file = std::fs::File::open(dir).map_err(read_dir)?;
    let read = |path: &PathBuf| match crate::links::read_link_at(
        &dir_file,
        path.file_name().unwrap_or_default(),
    ) {
        Ok(t) => Ok(Some(t)),
        // not a symlink (EINVAL), or removed since the listing
        Err(e) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::NotFound) => Ok(None),
        Err(source) => Err(ProfileError::Read { path: path.clone(), source }),
    };
    let generation_targets: Vec<_> = found.par_iter().map(|(_, _, link, _)| read(link)).collect();
    let profile_targets: Vec<_> = profile_links.par_iter().map(read).collect();

    let mut groups: BTreeMap<ProfileName, Vec<GenerationLink>> = BTreeMap::new();
    for ((name, number, link, inode), target) in found.into_iter().zip(generation_targets) {
        if let Some(target) = target? {
            groups.entry(name).or_default().push(GenerationLink { number, link, inode, target });
        }
    }
    let mut profiles = Vec::with_capacity(groups.len());
    for ((name, path), target) in names.into_iter().zip(profile_links).zip(profile_targets) {
        // None when every generation link vanished since the listing
        let Some(mut generations) = groups.remove(&name) else { continue };
        generations.sort_by_key(|g| g.number);
        profiles.push(ProfileLinks {
            name: name.into_string(),
            path,
            target: target?,
            generations,
        });
    }
    Ok(profiles)
}

/// Lists and resolves the carried profiles of `dir` (see [`scan_links`] and
/// [`ProfileLinks::resolve`]).
pub fn scan(dir: &Path) -> Result<Vec<Profile>, ProfileError> {
    let mut resolver = Resolver::default();
    scan_links(dir)?.iter().map(|p| p.resolve_with(&mut resolver)).collect()
}

impl ProfileLinks {
    /// Resolves the store paths and creation times, and marks the current generation:
    /// the one the profile link names (`confctl-<name>-<N>-link`); when the profile link
    /// points somewhere else, the highest-numbered generation whose store path is the
    /// profile's real path. Upstream marks "the first generation whose real path equals
    /// the profile's", which is ambiguous when two generations hold the same store path
    /// (`--set A`, `--set B`, `--set A`); this rule is the same in every other case.
    pub fn resolve(&self) -> Result<Profile, ProfileError> {
        self.resolve_with(&mut Resolver::default())
    }

    fn resolve_with(&self, resolver: &mut Resolver) -> Result<Profile, ProfileError> {
        let mut generations = Vec::with_capacity(self.generations.len());
        for g in &self.generations {
            let meta = std::fs::symlink_metadata(&g.link)
                .map_err(|source| ProfileError::Read { path: g.link.clone(), source })?;
            let store_path =
                resolver.resolve(&g.link, &g.target).unwrap_or_else(|| g.target.clone());
            generations.push(ProfileGeneration {
                number: g.number,
                link: g.link.clone(),
                store_path,
                time: meta.mtime(),
                current: false,
            });
        }
        let store_path = match &self.target {
            Some(t) => resolver.resolve(&self.path, t),
            None => None,
        };
        let named = self.target.as_ref().and_then(|t| {
            let parent_ok = match t.parent() {
                None => true,
                Some(p) if p.as_os_str().is_empty() => true,
                Some(p) => Some(p) == self.path.parent(),
            };
            let file = t.file_name()?;
            parent_ok.then(|| generations.iter().position(|g| g.link.file_name() == Some(file)))?
        });
        let current = named.or_else(|| {
            let sp = store_path.as_ref()?;
            generations.iter().rposition(|g| &g.store_path == sp)
        });
        if let Some(i) = current {
            generations[i].current = true;
        }
        Ok(Profile { name: self.name.clone(), path: self.path.clone(), store_path, generations })
    }
}

/// `realpath` of link targets with the canonical form of their parent directories
/// remembered: generation links all point into `/nix/store`, so a generation costs one
/// `lstat` instead of one per path component.
#[derive(Default)]
pub(crate) struct Resolver {
    parents: HashMap<PathBuf, Option<PathBuf>>,
}

impl Resolver {
    /// The real path of what the symlink `link` (whose target is `target`) points to;
    /// None when it does not resolve.
    pub(crate) fn resolve(&mut self, link: &Path, target: &Path) -> Option<PathBuf> {
        let full = if target.is_absolute() {
            target.to_path_buf()
        } else {
            link.parent().unwrap_or(Path::new("/")).join(target)
        };
        let simple =
            full.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        let (Some(parent), Some(name)) = (full.parent(), full.file_name()) else {
            return std::fs::canonicalize(&full).ok();
        };
        if !simple {
            return std::fs::canonicalize(&full).ok();
        }
        let canonical_parent = self
            .parents
            .entry(parent.to_path_buf())
            .or_insert_with(|| std::fs::canonicalize(parent).ok())
            .clone()?;
        let candidate = canonical_parent.join(name);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if !m.file_type().is_symlink() => Some(candidate),
            Ok(_) => std::fs::canonicalize(&candidate).ok(),
            Err(_) => None,
        }
    }
}

/// The `machine.json` of a carried artifact (spec 1.5), checked field by field. Unknown
/// keys are kept in `extra`. A `null` value counts as absent.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineJson {
    /// The system toplevel (required).
    pub toplevel: String,
    /// `nixos` when absent.
    pub spin: String,
    pub fqdn: Option<String>,
    pub label: Option<String>,
    pub version: Option<String>,
    pub revision: Option<String>,
    pub macs: Vec<String>,
    /// `kernelParams`.
    pub kernel_params: Vec<String>,
    /// `swpins-info`, passed through.
    pub swpins_info: Option<Value>,
    /// `inputs-info`, passed through.
    pub inputs_info: Option<Value>,
    /// Every other key.
    pub extra: Map<String, Value>,
}

impl MachineJson {
    /// Reads and checks the `machine.json` of `dist`: only when it lies in the store and
    /// holds at most [`MACHINE_JSON_MAX`] bytes (see [`super::dist`]).
    pub fn read(dist: &Dist) -> Result<Self, ProfileError> {
        let bytes = dist.read("machine.json", MACHINE_JSON_MAX)?;
        Self::parse(&dist.path("machine.json"), &bytes)
    }

    /// Checks the JSON text `bytes`; `path` is only used in error messages.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ProfileError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            ProfileError::InvalidJson { path: path.to_path_buf(), message: e.to_string() }
        })?;
        Self::from_value(path, value)
    }

    /// Checks an already parsed value; `path` is only used in error messages.
    pub fn from_value(path: &Path, value: Value) -> Result<Self, ProfileError> {
        let f = Fields::top(value).map_err(|found| ProfileError::InvalidJson {
            path: path.to_path_buf(),
            message: format!("expected an object at the top level, found {found}"),
        })?;
        Self::from_fields(f).map_err(|e| ProfileError::Field {
            path: path.to_path_buf(),
            field: e.key,
            message: e.message,
        })
    }

    fn from_fields(mut f: Fields) -> Result<Self, FieldError> {
        let toplevel = f.string("toplevel")?.ok_or_else(|| {
            f.error("toplevel", "missing (it is required: the system toplevel path)")
        })?;
        let spin = f.string("spin")?.unwrap_or_else(|| "nixos".to_string());
        let fqdn = f.string("fqdn")?;
        let label = f.string("label")?;
        let version = f.string("version")?;
        let revision = f.string("revision")?;
        let macs = f.strings("macs")?;
        let kernel_params = f.strings("kernelParams")?;
        let swpins_info = f.take("swpins-info");
        let inputs_info = f.take("inputs-info");
        Ok(MachineJson {
            toplevel,
            spin,
            fqdn,
            label,
            version,
            revision,
            macs,
            kernel_params,
            swpins_info,
            inputs_info,
            extra: f.into_rest(),
        })
    }

    /// `revision[0..9]`, else the last `.`-component of `version`, else None.
    pub fn shortrev(&self) -> Option<String> {
        shortrev(self.revision.as_deref(), self.version.as_deref())
    }

    /// The JSON object again, with upstream's key names (`kernelParams`, `swpins-info`…).
    pub fn to_value(&self) -> Value {
        let mut map = self.extra.clone();
        let mut put = |k: &str, v: Value| {
            map.insert(k.to_string(), v);
        };
        put("toplevel", Value::String(self.toplevel.clone()));
        put("spin", Value::String(self.spin.clone()));
        let opt = |v: &Option<String>| v.clone().map(Value::String).unwrap_or(Value::Null);
        put("fqdn", opt(&self.fqdn));
        put("label", opt(&self.label));
        put("version", opt(&self.version));
        put("revision", opt(&self.revision));
        put("macs", self.macs.clone().into());
        put("kernelParams", self.kernel_params.clone().into());
        if let Some(v) = &self.swpins_info {
            put("swpins-info", v.clone());
        }
        if let Some(v) = &self.inputs_info {
            put("inputs-info", v.clone());
        }
        Value::Object(map)
    }
}

impl serde::Serialize for MachineJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

/// Upstream's `shortrev`: the first 9 characters of the revision, else the last
/// `.`-separated component of the version.
pub fn shortrev(revision: Option<&str>, version: Option<&str>) -> Option<String> {
    if let Some(r) = revision {
        return Some(r.chars().take(9).collect());
    }
    version.and_then(|v| v.split('.').rfind(|s| !s.is_empty())).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn machine_json_defaults_and_errors() {
        let p = Path::new("/x/machine.json");
        let m = MachineJson::from_value(p, json!({"toplevel": "/t", "fqdn": null, "other": 1}))
            .unwrap();
        assert_eq!(m.spin, "nixos");
        assert_eq!(m.fqdn, None);
        assert!(m.macs.is_empty());
        assert_eq!(m.extra.get("other"), Some(&json!(1)));
        assert_eq!(m.shortrev(), None);

        let e = MachineJson::from_value(p, json!({"spin": "nixos"})).unwrap_err().to_string();
        assert_eq!(
            e,
            "'/x/machine.json': field `toplevel`: missing (it is required: the system toplevel path)"
        );
        let e = MachineJson::from_value(p, json!({"toplevel": "/t", "macs": ["a", 1]}))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "'/x/machine.json': field `macs[1]`: expected a string, found a number");
        let e = MachineJson::parse(p, b"{").unwrap_err().to_string();
        assert!(e.starts_with("'/x/machine.json' is not valid JSON: "), "{e}");
        let e = MachineJson::parse(p, b"[]").unwrap_err().to_string();
        assert!(e.contains("expected an object at the top level, found a list"), "{e}");
    }

    #[test]
    fn shortrev_rules() {
        assert_eq!(shortrev(Some("0123456789abcdef"), Some("24.05.x")), Some("012345678".into()));
        assert_eq!(shortrev(Some("abc"), None), Some("abc".into()));
        assert_eq!(shortrev(None, Some("24.05.20240101.abcdef0")), Some("abcdef0".into()));
        assert_eq!(shortrev(None, Some("24")), Some("24".into()));
        assert_eq!(shortrev(None, None), None);
    }

    #[test]
    fn machine_json_round_trip() {
        let p = Path::new("m.json");
        let v = json!({"toplevel": "/t", "spin": "vpsadminos", "fqdn": "a.b", "label": "A",
            "version": "1.2", "revision": "r", "macs": ["aa:bb:cc:dd:ee:ff"], "kernelParams": ["x"],
            "swpins-info": {"a": 1}, "inputs-info": {"b": 2}, "more": true});
        let m = MachineJson::from_value(p, v.clone()).unwrap();
        assert_eq!(m.to_value(), v);
    }
}

/// What `carrier profile list` reports for one profile (and what the dashboard reads
/// from a carrier through its JSON).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProfileListing {
    pub name: String,
    pub path: PathBuf,
    /// The store path the profile points to; None when the link is missing.
    pub current: Option<PathBuf>,
    /// Ascending by number.
    pub generations: Vec<GenerationListing>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GenerationListing {
    pub number: u64,
    /// Creation time, epoch seconds, and as RFC 3339 in UTC.
    pub time: i64,
    pub date: String,
    pub current: bool,
    pub store_path: PathBuf,
    /// The generation's `machine.json`, or why it could not be read.
    pub machine: Option<MachineJson>,
    pub error: Option<String>,
}

/// Every `confctl-*` profile of `dir` (or only `confctl-<only>`), with generations and
/// what their `machine.json` says.
pub fn list(dir: &Path, only: Option<&ProfileName>) -> Result<Vec<ProfileListing>, ProfileError> {
    let store = StoreDir::system();
    Ok(scan(dir)?
        .into_iter()
        .filter(|p| only.is_none_or(|name| p.name == name.as_str()))
        .map(|p| ProfileListing {
            generations: p
                .generations
                .iter()
                .map(|g| {
                    let (machine, error) = match g.read_machine_json(&store) {
                        Ok(m) => (Some(m), None),
                        Err(e) => (None, Some(e.to_string())),
                    };
                    GenerationListing {
                        number: g.number,
                        time: g.time,
                        date: jiff::Timestamp::from_second(g.time)
                            .map_or_else(|_| g.time.to_string(), |t| t.to_string()),
                        current: g.current,
                        store_path: g.store_path.clone(),
                        machine,
                        error,
                    }
                })
                .collect(),
            name: p.name,
            path: p.path,
            current: p.store_path,
        })
        .collect())
}

impl<'de> serde::Deserialize<'de> for MachineJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        MachineJson::from_value(Path::new("machine.json"), value).map_err(serde::de::Error::custom)
    }
}
