//! The builder's configuration file: upstream's baked builder config (`tftpRoot`,
//! `httpRoot`, `hostName`, `httpUrl`, `syslinux`, `memtest`, `isoImages`) plus carrier's
//! `profilesDir`, `lockFile` and `timeZone`. docs/netboot.md describes every key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::NetbootError;

/// The files copied from syslinux into the TFTP root, in upstream's order.
pub const SYSLINUX_FILES: [&str; 7] =
    ["pxelinux.0", "ldlinux.c32", "libcom32.c32", "libutil.c32", "memdisk", "menu.c32", "reboot.c32"];

/// Where the lock lives when the configuration does not say (upstream's path).
pub const DEFAULT_LOCK_FILE: &str = "/run/confctl/build-netboot-server.lock";

#[derive(Debug, Clone, PartialEq)]
pub struct NetbootConfig {
    /// The TFTP root: a symlink the builder swaps (`<tftpRoot>.<random>` directories).
    pub tftp_root: PathBuf,
    /// The HTTP root: a symlink the builder swaps.
    pub http_root: PathBuf,
    /// The title of the main menu (upstream: the carrier's `networking.hostName`).
    pub host_name: String,
    /// The base URL of the HTTP tree, without a trailing `/` (e.g. `http://192.168.100.1`).
    pub http_url: String,
    /// Where the syslinux files come from.
    pub syslinux: Syslinux,
    /// Memtest86+; None disables the memtest entries.
    pub memtest: Option<Memtest>,
    pub iso_images: Vec<IsoImage>,
    /// Where the `confctl-*` profiles are (default `/nix/var/nix/profiles`).
    pub profiles_dir: PathBuf,
    /// Held (flock) for the whole build; `<lockFile>.pending` and `<lockFile>.last` sit
    /// next to it (coalescing, see the `publish` module).
    pub lock_file: PathBuf,
    /// The zone of `time_s` in menus and JSON.
    pub time_zone: TimeZone,
}

/// Where the syslinux files are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Syslinux {
    /// Directories searched in order for each file; for each directory `d`,
    /// `d/share/syslinux` is tried first, so a Nix syslinux package can be given as is.
    Dirs(Vec<PathBuf>),
    /// An explicit path for each of [`SYSLINUX_FILES`].
    Files(BTreeMap<String, PathBuf>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memtest {
    /// The memtest binary (`<package>/memtest.bin` when given as `package`).
    pub file: PathBuf,
    /// Joined with spaces into memtest's `APPEND`.
    pub params: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoImage {
    pub file: PathBuf,
    /// The menu label; the file's base name when the configuration gives none or "".
    pub label: String,
}

/// The time zone `time_s` is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeZone {
    /// The carrier's local time (`TZ`, else `/etc/localtime`), as upstream.
    Local,
    Utc,
}

impl NetbootConfig {
    /// Reads the configuration file `path`. Errors name the file and the key.
    pub fn load(path: &Path) -> Result<Self, NetbootError> {
        let text = std::fs::read(path)
            .map_err(|e| NetbootError::Config { file: path.to_path_buf(), message: e.to_string() })?;
        let value: Value = serde_json::from_slice(&text)
            .map_err(|e| NetbootError::Config { file: path.to_path_buf(), message: format!("not valid JSON: {e}") })?;
        Self::from_value(path, value)
    }

    /// Checks an already parsed configuration; `file` is only used in error messages.
    /// Relative paths are taken relative to the file's directory.
    pub fn from_value(file: &Path, value: Value) -> Result<Self, NetbootError> {
        let err = |key: &str, message: String| NetbootError::Config {
            file: file.to_path_buf(),
            message: format!("`{key}`: {message}"),
        };
        let Value::Object(mut map) = value else {
            return Err(NetbootError::Config { file: file.to_path_buf(), message: "expected a JSON object".into() });
        };
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let abs = |p: &str| -> PathBuf { if Path::new(p).is_absolute() { p.into() } else { base.join(p) } };
        let mut take = |key: &str| map.remove(key).filter(|v| !v.is_null());
        let string = |key: &str, v: Option<Value>| -> Result<Option<String>, NetbootError> {
            match v {
                None => Ok(None),
                Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
                Some(Value::String(_)) => Err(err(key, "must not be empty".into())),
                Some(_) => Err(err(key, "expected a string".into())),
            }
        };
        let required = |key: &str, v: Option<Value>| -> Result<String, NetbootError> {
            string(key, v)?.ok_or_else(|| err(key, "missing (required)".into()))
        };
        let string_list = |key: &str, v: Option<Value>| -> Result<Vec<String>, NetbootError> {
            match v {
                None => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Value::String(s) => Ok(s),
                        _ => Err(err(&format!("{key}[{i}]"), "expected a string".into())),
                    })
                    .collect(),
                Some(_) => Err(err(key, "expected a list of strings".into())),
            }
        };

        let tftp_root = abs(&required("tftpRoot", take("tftpRoot"))?);
        let http_root = abs(&required("httpRoot", take("httpRoot"))?);
        let host_name = required("hostName", take("hostName"))?;
        let http_url = required("httpUrl", take("httpUrl"))?.trim_end_matches('/').to_string();
        if !(http_url.starts_with("http://") || http_url.starts_with("https://")) {
            return Err(err("httpUrl", format!("expected an http:// or https:// URL, got '{http_url}'")));
        }

        let syslinux = match take("syslinux") {
            None => return Err(err("syslinux", "missing (required)".into())),
            Some(Value::String(s)) => Syslinux::Dirs(vec![abs(&s)]),
            Some(Value::Array(items)) => {
                let dirs = string_list("syslinux", Some(Value::Array(items)))?;
                if dirs.is_empty() {
                    return Err(err("syslinux", "the list of directories is empty".into()));
                }
                Syslinux::Dirs(dirs.iter().map(|d| abs(d)).collect())
            }
            Some(Value::Object(files)) => {
                let mut paths = BTreeMap::new();
                for (name, v) in files {
                    if !SYSLINUX_FILES.contains(&name.as_str()) {
                        return Err(err(
                            &format!("syslinux.{name}"),
                            format!("unknown file (expected one of {})", SYSLINUX_FILES.join(", ")),
                        ));
                    }
                    let Value::String(p) = v else {
                        return Err(err(&format!("syslinux.{name}"), "expected a path".into()));
                    };
                    paths.insert(name, abs(&p));
                }
                if let Some(missing) = SYSLINUX_FILES.iter().find(|f| !paths.contains_key(**f)) {
                    return Err(err(&format!("syslinux.{missing}"), "missing (every file needs a path)".into()));
                }
                Syslinux::Files(paths)
            }
            Some(_) => {
                return Err(err(
                    "syslinux",
                    "expected a directory, a list of directories or an object of files".into(),
                ));
            }
        };

        let memtest = match take("memtest") {
            None => None,
            Some(Value::Object(mut m)) => {
                let params = string_list("memtest.params", m.remove("params").filter(|v| !v.is_null()))?;
                let package = string("memtest.package", m.remove("package").filter(|v| !v.is_null()))?;
                let file = string("memtest.file", m.remove("file").filter(|v| !v.is_null()))?;
                if let Some(k) = m.keys().next() {
                    return Err(err(&format!("memtest.{k}"), "unknown key (expected package, file, params)".into()));
                }
                let file = match (package, file) {
                    (Some(p), None) => abs(&p).join("memtest.bin"),
                    (None, Some(f)) => abs(&f),
                    (Some(_), Some(_)) => {
                        return Err(err("memtest", "give either `package` or `file`, not both".into()));
                    }
                    (None, None) => return Err(err("memtest", "needs `package` or `file`".into())),
                };
                Some(Memtest { file, params })
            }
            Some(_) => return Err(err("memtest", "expected an object {package|file, params} or null".into())),
        };

        let iso_images = match take("isoImages") {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut images = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    let key = format!("isoImages[{i}]");
                    let Value::Object(mut m) = item else {
                        return Err(err(&key, "expected an object {file, label}".into()));
                    };
                    let file = string(&format!("{key}.file"), m.remove("file").filter(|v| !v.is_null()))?
                        .ok_or_else(|| err(&format!("{key}.file"), "missing (required)".into()))?;
                    let label = match m.remove("label").filter(|v| !v.is_null()) {
                        None => String::new(),
                        Some(Value::String(s)) => s,
                        Some(_) => return Err(err(&format!("{key}.label"), "expected a string".into())),
                    };
                    if let Some(k) = m.keys().next() {
                        return Err(err(&format!("{key}.{k}"), "unknown key (expected file, label)".into()));
                    }
                    let file = abs(&file);
                    let label = if label.is_empty() {
                        file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
                    } else {
                        label
                    };
                    images.push(IsoImage { file, label });
                }
                images
            }
            Some(_) => return Err(err("isoImages", "expected a list".into())),
        };

        let profiles_dir = string("profilesDir", take("profilesDir"))?
            .map(|p| abs(&p))
            .unwrap_or_else(|| PathBuf::from(crate::carrier::profiles::DEFAULT_PROFILES_DIR));
        let lock_file =
            string("lockFile", take("lockFile"))?.map(|p| abs(&p)).unwrap_or_else(|| PathBuf::from(DEFAULT_LOCK_FILE));
        let time_zone = match string("timeZone", take("timeZone"))?.as_deref() {
            None | Some("local") => TimeZone::Local,
            Some("UTC") | Some("utc") => TimeZone::Utc,
            Some(other) => return Err(err("timeZone", format!("expected \"local\" or \"UTC\", got '{other}'"))),
        };
        // Keys of upstream's baked config that carrier does not need.
        for ignored in ["ruby", "coreutils"] {
            map.remove(ignored);
        }
        if let Some(k) = map.keys().next() {
            return Err(err(k, unknown_key_message()));
        }
        if tftp_root == http_root {
            return Err(err("httpRoot", "must differ from `tftpRoot`".into()));
        }
        Ok(NetbootConfig {
            tftp_root,
            http_root,
            host_name,
            http_url,
            syslinux,
            memtest,
            iso_images,
            profiles_dir,
            lock_file,
            time_zone,
        })
    }

    /// The path of each syslinux file, in [`SYSLINUX_FILES`] order. With directories,
    /// fails naming the first file found in none of them; explicit paths are taken as
    /// given (a missing one fails the build when it is copied, naming the path).
    pub fn syslinux_files(&self) -> Result<Vec<(&'static str, PathBuf)>, NetbootError> {
        let mut out = Vec::new();
        for name in SYSLINUX_FILES {
            let path = match &self.syslinux {
                Syslinux::Files(files) => files[name].clone(),
                Syslinux::Dirs(dirs) => dirs
                    .iter()
                    .flat_map(|d| [d.join("share/syslinux").join(name), d.join(name)])
                    .find(|p| p.is_file())
                    .ok_or_else(|| NetbootError::Syslinux {
                        file: name.to_string(),
                        message: format!(
                            "not found in {}",
                            dirs.iter().map(|d| format!("'{}'", d.display())).collect::<Vec<_>>().join(", ")
                        ),
                    })?,
            };
            out.push((name, path));
        }
        Ok(out)
    }

    /// The directory holding per-machine output shared by successive TFTP trees.
    pub fn tftp_objects(&self) -> PathBuf {
        sibling(&self.tftp_root, "objects")
    }

    /// The directory holding per-machine output shared by successive HTTP trees.
    pub fn http_objects(&self) -> PathBuf {
        sibling(&self.http_root, "objects")
    }

    /// A JSON object of this configuration with the keys of the file (paths absolute).
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        let p = |p: &Path| Value::String(p.display().to_string());
        m.insert("tftpRoot".into(), p(&self.tftp_root));
        m.insert("httpRoot".into(), p(&self.http_root));
        m.insert("hostName".into(), self.host_name.clone().into());
        m.insert("httpUrl".into(), self.http_url.clone().into());
        m.insert(
            "syslinux".into(),
            match &self.syslinux {
                Syslinux::Dirs(d) => Value::Array(d.iter().map(|d| p(d)).collect()),
                Syslinux::Files(f) => Value::Object(f.iter().map(|(k, v)| (k.clone(), p(v))).collect()),
            },
        );
        m.insert(
            "memtest".into(),
            match &self.memtest {
                None => Value::Null,
                Some(mt) => serde_json::json!({"file": p(&mt.file), "params": mt.params}),
            },
        );
        m.insert(
            "isoImages".into(),
            Value::Array(
                self.iso_images.iter().map(|i| serde_json::json!({"file": p(&i.file), "label": i.label})).collect(),
            ),
        );
        m.insert("profilesDir".into(), p(&self.profiles_dir));
        m.insert("lockFile".into(), p(&self.lock_file));
        m.insert(
            "timeZone".into(),
            match self.time_zone {
                TimeZone::Local => "local",
                TimeZone::Utc => "UTC",
            }
            .into(),
        );
        Value::Object(m)
    }
}

fn unknown_key_message() -> String {
    "unknown key (expected tftpRoot, httpRoot, hostName, httpUrl, syslinux, memtest, isoImages, \
     profilesDir, lockFile, timeZone)"
        .into()
}

/// `<path>.<suffix>` next to `path`.
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(v: Value) -> Result<NetbootConfig, String> {
        NetbootConfig::from_value(Path::new("/etc/carrier/netboot.json"), v).map_err(|e| e.to_string())
    }

    fn minimal() -> Value {
        json!({"tftpRoot": "/srv/tftp", "httpRoot": "/srv/http", "hostName": "pxe",
               "httpUrl": "http://10.0.0.1/", "syslinux": "/usr/lib/syslinux"})
    }

    #[test]
    fn defaults() {
        let c = load(minimal()).unwrap();
        assert_eq!(c.http_url, "http://10.0.0.1");
        assert_eq!(c.profiles_dir, PathBuf::from("/nix/var/nix/profiles"));
        assert_eq!(c.lock_file, PathBuf::from(DEFAULT_LOCK_FILE));
        assert_eq!(c.memtest, None);
        assert_eq!(c.time_zone, TimeZone::Local);
        assert_eq!(c.syslinux, Syslinux::Dirs(vec!["/usr/lib/syslinux".into()]));
        assert_eq!(c.tftp_objects(), PathBuf::from("/srv/tftp.objects"));
    }

    #[test]
    fn upstream_shapes() {
        let mut v = minimal();
        v["memtest"] = json!({"package": "/nix/store/x-memtest86plus", "params": ["a", "b"]});
        v["isoImages"] = json!([{"file": "/isos/debian.iso", "label": ""}, {"file": "rel.iso", "label": "Rel"}]);
        v["ruby"] = json!("/nix/store/ruby");
        v["coreutils"] = json!("/nix/store/coreutils");
        v["syslinux"] = json!(["/usr/lib/PXELINUX", "/usr/lib/syslinux/modules/bios", "/usr/lib/syslinux"]);
        let c = load(v).unwrap();
        assert_eq!(c.memtest.unwrap().file, PathBuf::from("/nix/store/x-memtest86plus/memtest.bin"));
        assert_eq!(c.iso_images[0].label, "debian.iso");
        assert_eq!(c.iso_images[1].file, PathBuf::from("/etc/carrier/rel.iso"));
        assert!(matches!(c.syslinux, Syslinux::Dirs(ref d) if d.len() == 3));
    }

    #[test]
    fn to_value_round_trips() {
        let mut v = minimal();
        v["memtest"] = json!({"file": "/boot/memtest.bin", "params": ["x"]});
        v["isoImages"] = json!([{"file": "/isos/a.iso", "label": "A"}]);
        v["timeZone"] = json!("UTC");
        let c = load(v).unwrap();
        assert_eq!(load(c.to_value()).unwrap(), c);
    }

    #[test]
    fn errors_name_file_and_key() {
        let mut v = minimal();
        v.as_object_mut().unwrap().remove("httpUrl");
        assert_eq!(
            load(v).unwrap_err(),
            "netboot configuration '/etc/carrier/netboot.json': `httpUrl`: missing (required)"
        );
        let mut v = minimal();
        v["isoImages"] = json!([{"label": "x"}]);
        assert!(load(v).unwrap_err().ends_with("`isoImages[0].file`: missing (required)"));
        let mut v = minimal();
        v["syslinux"] = json!({"pxelinux.0": "/a"});
        assert!(load(v).unwrap_err().contains("`syslinux.ldlinux.c32`: missing"));
        let mut v = minimal();
        v["tftpRot"] = json!("/x");
        assert!(load(v).unwrap_err().contains("`tftpRot`: unknown key"));
        let mut v = minimal();
        v["timeZone"] = json!("Europe/Prague");
        assert!(load(v).unwrap_err().contains("`timeZone`: expected"));
    }
}
