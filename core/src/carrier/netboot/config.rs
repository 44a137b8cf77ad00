//! The builder's configuration file: upstream's baked builder config (`tftpRoot`,
//! `httpRoot`, `hostName`, `httpUrl`, `syslinux`, `memtest`, `isoImages`) plus carrier's
//! `profilesDir`, `lockFile`, `timeZone` and `checkin`. docs/netboot.md describes every key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::NetbootError;
use super::model::check_word;
use crate::carrier::json_fields::{FieldError, Fields, expected, object_at, strings_at};
use crate::checkin::Secret;

/// The files copied from syslinux into the TFTP root, in upstream's order.
pub const SYSLINUX_FILES: [&str; 7] = [
    "pxelinux.0",
    "ldlinux.c32",
    "libcom32.c32",
    "libutil.c32",
    "memdisk",
    "menu.c32",
    "reboot.c32",
];

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
    /// Where netbooted machines report what they booted; None: no check-in parameters.
    pub checkin: Option<Checkin>,
}

/// The check-in section: each machine's own generation entries get
/// `carrier.checkin=<url> carrier.carrier=<carrier> carrier.machine=<profile>
/// carrier.generation=<n> carrier.token=<token>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkin {
    /// `carrier serve`'s check-in endpoint, e.g. `http://10.0.0.1:3000/api/checkin`.
    pub url: String,
    /// This carrier's machine name in the cluster configuration (selects the secret the
    /// server verifies with).
    pub carrier: String,
    pub secret_file: PathBuf,
    pub secret: Secret,
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
        let text = std::fs::read(path).map_err(|e| NetbootError::Config {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let value: Value = serde_json::from_slice(&text).map_err(|e| NetbootError::Config {
            file: path.to_path_buf(),
            message: format!("not valid JSON: {e}"),
        })?;
        Self::from_value(path, value)
    }

    /// Checks an already parsed configuration; `file` is only used in error messages.
    /// Relative paths are taken relative to the file's directory.
    pub fn from_value(file: &Path, value: Value) -> Result<Self, NetbootError> {
        let mut f = Fields::top(value).map_err(|found| NetbootError::Config {
            file: file.to_path_buf(),
            message: format!("expected a JSON object, found {found}"),
        })?;
        Self::from_fields(file, &mut f).map_err(|e| NetbootError::Config {
            file: file.to_path_buf(),
            message: format!("`{}`: {}", e.key, e.message),
        })
    }

    fn from_fields(file: &Path, f: &mut Fields) -> Result<Self, FieldError> {
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let abs = |p: &str| -> PathBuf {
            if Path::new(p).is_absolute() { p.into() } else { base.join(p) }
        };
        let required = |f: &mut Fields, key: &str| {
            f.non_empty_string(key)?.ok_or_else(|| f.error(key, "missing (required)"))
        };

        let tftp_root = abs(&required(f, "tftpRoot")?);
        let http_root = abs(&required(f, "httpRoot")?);
        let host_name = required(f, "hostName")?;
        let http_url = required(f, "httpUrl")?.trim_end_matches('/').to_string();
        if !(http_url.starts_with("http://") || http_url.starts_with("https://")) {
            return Err(f.error(
                "httpUrl",
                format!("expected an http:// or https:// URL, got '{http_url}'"),
            ));
        }

        let syslinux = match f.take("syslinux") {
            None => return Err(f.error("syslinux", "missing (required)")),
            Some(Value::String(s)) => Syslinux::Dirs(vec![abs(&s)]),
            Some(list @ Value::Array(_)) => {
                let dirs = strings_at(&f.path("syslinux"), list)?;
                if dirs.is_empty() {
                    return Err(f.error("syslinux", "the list of directories is empty"));
                }
                Syslinux::Dirs(dirs.iter().map(|d| abs(d)).collect())
            }
            Some(Value::Object(files)) => {
                let mut paths = BTreeMap::new();
                for (name, v) in files {
                    let key = format!("syslinux.{name}");
                    if !SYSLINUX_FILES.contains(&name.as_str()) {
                        return Err(f.error(
                            &key,
                            format!("unknown file (expected one of {})", SYSLINUX_FILES.join(", ")),
                        ));
                    }
                    let Value::String(p) = v else {
                        return Err(f.error(&key, expected("a path", &v)));
                    };
                    paths.insert(name, abs(&p));
                }
                if let Some(missing) =
                    SYSLINUX_FILES.iter().find(|name| !paths.contains_key(**name))
                {
                    return Err(f.error(
                        &format!("syslinux.{missing}"),
                        "missing (every file needs a path)",
                    ));
                }
                Syslinux::Files(paths)
            }
            Some(other) => {
                let what = "a directory, a list of directories or an object of files";
                return Err(f.error("syslinux", expected(what, &other)));
            }
        };

        let memtest = match f.object("memtest", "{package|file, params} or null")? {
            None => None,
            Some(mut m) => {
                let params = m.strings("params")?;
                let package = m.non_empty_string("package")?;
                let file = m.non_empty_string("file")?;
                m.no_others("package, file, params")?;
                let file = match (package, file) {
                    (Some(p), None) => abs(&p).join("memtest.bin"),
                    (None, Some(file)) => abs(&file),
                    (Some(_), Some(_)) => {
                        return Err(f.error("memtest", "give either `package` or `file`, not both"));
                    }
                    (None, None) => return Err(f.error("memtest", "needs `package` or `file`")),
                };
                Some(Memtest { file, params })
            }
        };

        let iso_images = match f.take("isoImages") {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut images = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    let mut m =
                        object_at(&f.path(&format!("isoImages[{i}]")), item, "{file, label}")?;
                    let file = m
                        .non_empty_string("file")?
                        .ok_or_else(|| m.error("file", "missing (required)"))?;
                    let label = m.string("label")?.unwrap_or_default();
                    m.no_others("file, label")?;
                    let file = abs(&file);
                    let label = if label.is_empty() {
                        file.file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default()
                    } else {
                        label
                    };
                    images.push(IsoImage { file, label });
                }
                images
            }
            Some(other) => return Err(f.error("isoImages", expected("a list", &other))),
        };

        let profiles_dir = f
            .non_empty_string("profilesDir")?
            .map(|p| abs(&p))
            .unwrap_or_else(|| PathBuf::from(crate::profile_name::PROFILES_DIR));
        let lock_file = f
            .non_empty_string("lockFile")?
            .map(|p| abs(&p))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LOCK_FILE));
        let time_zone = match f.non_empty_string("timeZone")?.as_deref() {
            None | Some("local") => TimeZone::Local,
            Some("UTC") | Some("utc") => TimeZone::Utc,
            Some(other) => {
                return Err(
                    f.error("timeZone", format!("expected \"local\" or \"UTC\", got '{other}'"))
                );
            }
        };
        let checkin = match f.object("checkin", "{url, carrier, secretFile} or null")? {
            None => None,
            Some(mut c) => {
                let mut required = |key: &str| {
                    let value = c
                        .non_empty_string(key)?
                        .ok_or_else(|| c.error(key, "missing (required)"))?;
                    check_word(&value).map_err(|why| c.error(key, why))?;
                    Ok::<_, FieldError>(value)
                };
                let url = required("url")?;
                let carrier = required("carrier")?;
                let secret_file = abs(&required("secretFile")?);
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(c.error(
                        "url",
                        format!("expected an http:// or https:// URL, got '{url}'"),
                    ));
                }
                c.no_others("url, carrier, secretFile")?;
                let secret =
                    Secret::read(&secret_file).map_err(|e| c.error("secretFile", e.to_string()))?;
                Some(Checkin { url, carrier, secret_file, secret })
            }
        };
        // Keys of upstream's baked config that carrier does not need.
        for ignored in ["ruby", "coreutils"] {
            f.take(ignored);
        }
        f.no_others(
            "tftpRoot, httpRoot, hostName, httpUrl, syslinux, memtest, isoImages, profilesDir, lockFile, timeZone, checkin",
        )?;
        if tftp_root == http_root {
            return Err(f.error("httpRoot", "must differ from `tftpRoot`"));
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
            checkin,
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
                            dirs.iter()
                                .map(|d| format!("'{}'", d.display()))
                                .collect::<Vec<_>>()
                                .join(", ")
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
                Syslinux::Files(f) => {
                    Value::Object(f.iter().map(|(k, v)| (k.clone(), p(v))).collect())
                }
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
                self.iso_images
                    .iter()
                    .map(|i| serde_json::json!({"file": p(&i.file), "label": i.label}))
                    .collect(),
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
        if let Some(c) = &self.checkin {
            m.insert(
                "checkin".into(),
                serde_json::json!({"url": c.url, "carrier": c.carrier, "secretFile": p(&c.secret_file)}),
            );
        }
        Value::Object(m)
    }
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
        NetbootConfig::from_value(Path::new("/etc/carrier/netboot.json"), v)
            .map_err(|e| e.to_string())
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
        assert_eq!(c.checkin, None);
    }

    /// A secret file of mode 0600 in a temporary directory.
    fn secret_file(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("checkin.secret");
        std::fs::write(&path, "01".repeat(crate::checkin::SECRET_LEN)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    #[test]
    fn checkin_section() {
        let dir = tempfile::tempdir().unwrap();
        let secret = secret_file(dir.path());
        let mut v = minimal();
        v["checkin"] = json!({"url": "http://10.0.0.1:3000/api/checkin", "carrier": "pxe",
                              "secretFile": secret});
        let c = load(v.clone()).unwrap();
        let checkin = c.checkin.as_ref().unwrap();
        assert_eq!(
            (checkin.url.as_str(), checkin.carrier.as_str()),
            ("http://10.0.0.1:3000/api/checkin", "pxe")
        );
        assert_eq!(checkin.secret, Secret::from_bytes([1; crate::checkin::SECRET_LEN]));
        assert_eq!(load(c.to_value()).unwrap(), c, "round trip");

        let with = |key: &str, value: Value| {
            let mut v = v.clone();
            v["checkin"][key] = value;
            load(v).unwrap_err()
        };
        assert!(with("url", json!("http://x/a b")).ends_with(
            "`checkin.url`: contains ' ' (allowed: letters, digits and !*+,-./:=?@[]^_~)"
        ));
        assert!(
            with("url", json!("ftp://x"))
                .ends_with("`checkin.url`: expected an http:// or https:// URL, got 'ftp://x'")
        );
        assert!(with("carrier", json!("p\"xe")).contains("`checkin.carrier`: contains '\\\"'"));
        assert!(
            with("secretFile", json!("/nonexistent/secret")).contains(
                "`checkin.secretFile`: reading the check-in secret '/nonexistent/secret'"
            )
        );
        assert!(
            with("token", json!("x"))
                .ends_with("`checkin.token`: unknown key (expected url, carrier, secretFile)")
        );
        let mut v = v.clone();
        v["checkin"].as_object_mut().unwrap().remove("carrier");
        assert!(load(v).unwrap_err().ends_with("`checkin.carrier`: missing (required)"));
    }

    #[test]
    fn upstream_shapes() {
        let mut v = minimal();
        v["memtest"] = json!({"package": "/nix/store/x-memtest86plus", "params": ["a", "b"]});
        v["isoImages"] =
            json!([{"file": "/isos/debian.iso", "label": ""}, {"file": "rel.iso", "label": "Rel"}]);
        v["ruby"] = json!("/nix/store/ruby");
        v["coreutils"] = json!("/nix/store/coreutils");
        v["syslinux"] =
            json!(["/usr/lib/PXELINUX", "/usr/lib/syslinux/modules/bios", "/usr/lib/syslinux"]);
        let c = load(v).unwrap();
        assert_eq!(
            c.memtest.unwrap().file,
            PathBuf::from("/nix/store/x-memtest86plus/memtest.bin")
        );
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

    #[test]
    fn type_errors_name_the_key_path_and_what_was_found() {
        let mut v = minimal();
        v["memtest"] = json!({"file": "/m.bin", "params": ["a", 2]});
        assert_eq!(
            load(v).unwrap_err(),
            "netboot configuration '/etc/carrier/netboot.json': `memtest.params[1]`: expected a string, found a number"
        );
        let mut v = minimal();
        v["isoImages"] = json!([{"file": "/a.iso"}, "/b.iso"]);
        assert!(
            load(v)
                .unwrap_err()
                .ends_with("`isoImages[1]`: expected an object {file, label}, found a string")
        );
        let mut v = minimal();
        v["hostName"] = json!(["pxe"]);
        assert!(load(v).unwrap_err().ends_with("`hostName`: expected a string, found a list"));
        let mut v = minimal();
        v["isoImages"] = json!([{"file": "/a.iso", "lable": "x"}]);
        assert!(
            load(v)
                .unwrap_err()
                .ends_with("`isoImages[0].lable`: unknown key (expected file, label)")
        );
    }
}
