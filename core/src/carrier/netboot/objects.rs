//! Per-machine output kept between builds, so a rebuild only renders the machines whose
//! profile changed.
//!
//! A machine's part of the trees (TFTP `boot/<fqdn>/` and `pxeserver/machines/<fqdn>/`,
//! HTTP `<fqdn>/`) is written once into an *object* named by a fingerprint of everything
//! it depends on: the profile's links (generation numbers, their inodes and targets, the
//! profile link's target) and the settings that appear in it (`httpUrl`, memtest, time
//! zone). Store paths never change, so equal fingerprints mean equal output. Each tree
//! links `boot/<fqdn>`, `pxeserver/machines/<fqdn>` and `<fqdn>` to the object with a
//! relative symlink; TFTP servers and nginx follow them like the store links.
//!
//! Layout, next to the roots:
//! ```text
//! <tftpRoot>.objects/<key>/boot/       <N>/bzImage, <N>/initrd, current
//! <tftpRoot>.objects/<key>/menus/      menu.cfg, auto.cfg, … , menu.ipxe, auto.ipxe
//! <httpRoot>.objects/<key>/tree/       machine.json, current, <N>/…, menu.ipxe, auto.ipxe
//! <httpRoot>.objects/<key>/meta.json   what the main menus and the report need
//! <httpRoot>.objects/<key>/entry.json  the machine's object for machines.json
//! <tftpRoot>.objects/d-<hash>/         a shared pxelinux.cfg/ or ipxe/
//! <httpRoot>.objects/d-<hash>/         the shared ipxe/ of the HTTP tree
//! ```
//! The directories that change only with the menus and the MAC assignments
//! (`pxelinux.cfg/` and `ipxe/` of the TFTP tree, `ipxe/` of the HTTP tree) are shared
//! the same way, named `d-<hash of their content>`; their per-MAC links reach the
//! machine's files through the root symlink (`../../tftp/pxeserver/machines/…`), so a
//! new generation of a machine does not change them. A rebuild after one machine
//! changed thus writes that machine's object, one symlink per machine per big directory
//! (`boot/`, `pxeserver/machines/`, the HTTP root) and `machines.json`.
//!
//! Objects are written under `<key>.tmp` and renamed into place, so an object that
//! exists is complete. After a successful publication, objects the new trees do not use
//! are removed; after a failed one, the objects made by that build are.

use std::collections::HashSet;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::{NetbootConfig, TimeZone};
use super::model::Machine;
use super::publish::remove_path;
use super::{Fault, GenerationSummary, MachineSummary, NetbootError, http, ipxe, tftp};
use crate::carrier::profiles::ProfileLinks;

/// Bump when the rendered output changes, so old objects are not reused.
const FORMAT: &str = "carrier-netboot-objects-1";

/// Bytes of SHA-256 in an object key (24 hex digits; 96 bits keep collisions out of
/// reach for any number of machines). Short keys keep the trees' links to the objects
/// (`../../../tftp.objects/<key>/menus`, 52 bytes) under 60 bytes, which ext4 stores in
/// the inode ("fast" symlinks); a longer target costs a data block per link, written
/// and freed again by every build.
const KEY_BYTES: usize = 12;

/// How long the per-MAC iPXE script waits before booting the default entry.
pub const IPXE_AUTO_TIMEOUT_MS: u32 = 5000;

/// What a build needs of a machine without reading its object's files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub machine: MachineSummary,
    /// Faults that did not leave the machine out (a skipped generation, an invalid MAC).
    pub faults: Vec<Fault>,
}

pub struct ObjectStore {
    tftp: PathBuf,
    http: PathBuf,
    tftp_name: String,
    http_name: String,
    /// The configuration part of every key.
    settings_key: Vec<u8>,
    /// Keys of the objects this build made (removed again if it fails).
    created: Mutex<Vec<String>>,
    /// Keys of the shared directories the new trees use.
    shared_used: Mutex<Vec<String>>,
}

/// Which tree an object belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Tftp,
    Http,
}

/// The content of a shared directory (see [`ObjectStore::shared_dir`]).
#[derive(Debug, Default)]
pub struct DirSpec {
    entries: Vec<(String, Node)>,
}

#[derive(Debug)]
enum Node {
    File(Vec<u8>),
    Link(PathBuf),
    Dir(DirSpec),
}

impl DirSpec {
    pub fn file(&mut self, name: impl Into<String>, content: impl Into<Vec<u8>>) {
        self.entries.push((name.into(), Node::File(content.into())));
    }

    pub fn link(&mut self, name: impl Into<String>, target: impl Into<PathBuf>) {
        self.entries.push((name.into(), Node::Link(target.into())));
    }

    pub fn dir(&mut self, name: impl Into<String>, spec: DirSpec) {
        self.entries.push((name.into(), Node::Dir(spec)));
    }

    fn hash(&self, h: &mut Sha256) {
        for (name, node) in &self.entries {
            let (tag, bytes): (u8, &[u8]) = match node {
                Node::File(c) => (b'f', c),
                Node::Link(t) => (b'l', t.as_os_str().as_encoded_bytes()),
                Node::Dir(_) => (b'd', b""),
            };
            h.update([tag]);
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
            if let Node::Dir(d) = node {
                d.hash(h);
                h.update(b"end");
            }
        }
    }

    fn write(&self, dir: &Path) -> Result<(), NetbootError> {
        let w = Writer;
        w.dir(dir)?;
        for (name, node) in &self.entries {
            let path = dir.join(name);
            match node {
                Node::File(c) => w.file(&path, c)?,
                Node::Link(t) => w.link(t, &path)?,
                Node::Dir(d) => d.write(&path)?,
            }
        }
        Ok(())
    }
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> NetbootError {
    move |source| NetbootError::Io { context, source }
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

impl ObjectStore {
    /// Opens (creates) the object directories and removes unfinished objects.
    pub fn open(cfg: &NetbootConfig) -> Result<Self, NetbootError> {
        let tftp = cfg.tftp_objects();
        let http = cfg.http_objects();
        for dir in [&tftp, &http] {
            std::fs::create_dir_all(dir).map_err(io_err(format!("creating '{}'", dir.display())))?;
            for entry in std::fs::read_dir(dir).map_err(io_err(format!("reading '{}'", dir.display())))?.flatten() {
                if entry.file_name().to_string_lossy().ends_with(".tmp") {
                    let _ = remove_path(&entry.path());
                }
            }
        }
        Ok(ObjectStore {
            tftp_name: file_name(&tftp),
            http_name: file_name(&http),
            tftp,
            http,
            settings_key: settings_key(cfg),
            created: Mutex::new(Vec::new()),
            shared_used: Mutex::new(Vec::new()),
        })
    }

    /// The key of a profile's object.
    pub fn key(&self, profile: &ProfileLinks) -> String {
        let mut h = Sha256::new();
        h.update(&self.settings_key);
        let mut field = |b: &[u8]| {
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        };
        field(profile.name.as_bytes());
        field(profile.path.as_os_str().as_encoded_bytes());
        match &profile.target {
            Some(t) => field(t.as_os_str().as_encoded_bytes()),
            None => field(b"\0none"),
        }
        for g in &profile.generations {
            field(&g.number.to_le_bytes());
            field(&g.inode.to_le_bytes());
            field(g.target.as_os_str().as_encoded_bytes());
        }
        hex::encode(&h.finalize()[..KEY_BYTES])
    }

    /// The object's summary, when a complete object exists for `key`.
    pub fn load(&self, key: &str) -> Option<Meta> {
        let bytes = std::fs::read(self.http.join(key).join("meta.json")).ok()?;
        let meta: Meta = serde_json::from_slice(&bytes).ok()?;
        self.tftp.join(key).is_dir().then_some(meta)
    }

    /// The file holding the machine's object for `machines.json` (see
    /// [`http::machines_entry`]).
    pub fn entry_file(&self, key: &str) -> PathBuf {
        self.http.join(key).join("entry.json")
    }

    /// A directory of a tree that rarely changes (`pxelinux.cfg/`, `ipxe/`), shared by
    /// successive trees while its content stays the same: written once under a key made
    /// of its content. Returns the symlink target for `<tree root>/<name>`. Relative
    /// links inside it must not lead out of it (they would resolve from the objects
    /// directory); links that reach into the tree go through the root symlink
    /// ([`ObjectStore::via_root`]).
    pub fn shared_dir(&self, side: Side, spec: &DirSpec) -> Result<PathBuf, NetbootError> {
        let mut h = Sha256::new();
        h.update(FORMAT);
        h.update(b"\0shared dir\0");
        spec.hash(&mut h);
        let key = format!("d-{}", hex::encode(&h.finalize()[..KEY_BYTES]));
        let (objects, name) = match side {
            Side::Tftp => (&self.tftp, &self.tftp_name),
            Side::Http => (&self.http, &self.http_name),
        };
        let dir = objects.join(&key);
        if !dir.is_dir() {
            let tmp = objects.join(format!("{key}.tmp"));
            let _ = remove_path(&tmp);
            spec.write(&tmp)?;
            std::fs::rename(&tmp, &dir).map_err(io_err(format!("renaming '{}'", tmp.display())))?;
            self.created.lock().expect("created keys").push(key.clone());
        }
        self.shared_used.lock().expect("used keys").push(key.clone());
        Ok(PathBuf::from(format!("../{name}/{key}")))
    }

    /// A link target from inside a shared directory to `path` (relative to the tree
    /// root) in the tree being served: through the root symlink `root_name`, which
    /// sits next to the objects directory.
    pub fn via_root(root_name: &str, path: &str) -> PathBuf {
        PathBuf::from(format!("../../{root_name}/{path}"))
    }

    /// Keys of the shared directories used by the trees written in this build.
    pub fn shared_used(&self) -> Vec<String> {
        self.shared_used.lock().expect("used keys").clone()
    }

    /// `boot/<fqdn>` → the object's TFTP boot directory, relative.
    pub fn tftp_boot_target(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("../../{}/{key}/boot", self.tftp_name))
    }

    /// `pxeserver/machines/<fqdn>` → the object's menus, relative.
    pub fn tftp_menus_target(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("../../../{}/{key}/menus", self.tftp_name))
    }

    /// `<fqdn>` in the HTTP tree → the object's tree, relative.
    pub fn http_target(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("../{}/{key}/tree", self.http_name))
    }

    /// Renders `machine` into a new object. Safe to call from several threads for
    /// different keys.
    pub fn create(
        &self,
        key: &str,
        m: &Machine,
        faults: Vec<Fault>,
        cfg: &NetbootConfig,
    ) -> Result<Meta, NetbootError> {
        let memtest = cfg.memtest.as_ref().map(|mt| mt.params.as_slice());
        let meta = Meta { machine: summary(m), faults };

        // TFTP part.
        let t_tmp = self.tftp.join(format!("{key}.tmp"));
        let _ = remove_path(&t_tmp);
        let w = Writer;
        w.dir(&t_tmp)?;
        let boot = t_tmp.join("boot");
        w.dir(&boot)?;
        for g in &m.generations {
            let gdir = boot.join(g.number.to_string());
            w.dir(&gdir)?;
            for f in g.boot_files.iter().filter(|f| f.name != "root.squashfs") {
                w.link(&f.path, &gdir.join(f.name))?;
            }
        }
        w.link(Path::new(&m.current().number.to_string()), &boot.join("current"))?;
        let menus = t_tmp.join("menus");
        w.dir(&menus)?;
        for (name, content) in tftp::machine_files(m, memtest) {
            w.file(&menus.join(name), content.as_bytes())?;
        }
        w.file(&menus.join("menu.ipxe"), ipxe::machine_script(ipxe::Tree::Tftp, m, 0).as_bytes())?;
        w.file(&menus.join("auto.ipxe"), ipxe::machine_script(ipxe::Tree::Tftp, m, IPXE_AUTO_TIMEOUT_MS).as_bytes())?;

        // HTTP part.
        let h_tmp = self.http.join(format!("{key}.tmp"));
        let _ = remove_path(&h_tmp);
        w.dir(&h_tmp)?;
        let tree = h_tmp.join("tree");
        w.dir(&tree)?;
        let machine_json = http::machine_json(m);
        w.file(&tree.join("machine.json"), machine_json.as_bytes())?;
        w.link(Path::new(&m.current().number.to_string()), &tree.join("current"))?;
        for g in &m.generations {
            let gdir = tree.join(g.number.to_string());
            w.dir(&gdir)?;
            for f in &g.boot_files {
                w.link(&f.path, &gdir.join(f.name))?;
            }
            w.file(&gdir.join("generation.json"), http::generation_json(m, g).as_bytes())?;
            w.file(&gdir.join("kernel-params"), g.kernel_params.join(" ").as_bytes())?;
        }
        let http_tree = ipxe::Tree::Http { url: &cfg.http_url };
        w.file(&tree.join("menu.ipxe"), ipxe::machine_script(http_tree, m, 0).as_bytes())?;
        w.file(&tree.join("auto.ipxe"), ipxe::machine_script(http_tree, m, IPXE_AUTO_TIMEOUT_MS).as_bytes())?;
        w.file(&h_tmp.join("entry.json"), http::machines_entry(&machine_json).as_bytes())?;
        w.file(&h_tmp.join("meta.json"), &serde_json::to_vec(&meta).expect("meta serializes"))?;

        // Into place: the TFTP part first, the HTTP part (holding meta.json) last.
        for (tmp, dir) in [(&t_tmp, self.tftp.join(key)), (&h_tmp, self.http.join(key))] {
            let _ = remove_path(&dir);
            std::fs::rename(tmp, &dir).map_err(io_err(format!("renaming '{}'", tmp.display())))?;
        }
        self.created.lock().expect("created keys").push(key.to_string());
        Ok(meta)
    }

    /// Removes every object not in `keep`.
    pub fn collect_garbage(&self, keep: &HashSet<String>, warnings: &mut Vec<String>) {
        for dir in [&self.tftp, &self.http] {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !keep.contains(&name)
                    && let Err(e) = remove_path(&entry.path())
                {
                    warnings.push(format!("could not remove the unused object '{}': {e}", entry.path().display()));
                }
            }
        }
    }

    /// Removes the objects made by this build (whose publication failed).
    pub fn discard_created(&self) {
        for key in self.created.lock().expect("created keys").iter() {
            let _ = remove_path(&self.tftp.join(key));
            let _ = remove_path(&self.http.join(key));
        }
    }
}

/// The settings that appear in per-machine output.
fn settings_key(cfg: &NetbootConfig) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(FORMAT);
    h.update([0]);
    h.update(&cfg.http_url);
    h.update([0]);
    match &cfg.memtest {
        None => h.update(b"no memtest\0"),
        Some(mt) => {
            h.update(b"memtest\0");
            for p in &mt.params {
                h.update(p);
                h.update([0]);
            }
        }
    }
    match cfg.time_zone {
        TimeZone::Utc => h.update(b"UTC\0"),
        TimeZone::Local => {
            // The local zone is whatever TZ and /etc/localtime say now.
            h.update(b"local\0");
            h.update(std::env::var_os("TZ").unwrap_or_default().as_encoded_bytes());
            h.update([0]);
            let link = std::fs::read_link("/etc/localtime").unwrap_or_default();
            h.update(link.as_os_str().as_encoded_bytes());
            h.update([0]);
            if let Ok(m) = std::fs::metadata("/etc/localtime") {
                use std::os::unix::fs::MetadataExt;
                h.update(m.ino().to_le_bytes());
                h.update(m.mtime().to_le_bytes());
            }
        }
    }
    h.finalize().to_vec()
}

fn summary(m: &Machine) -> MachineSummary {
    MachineSummary {
        name: m.name.clone(),
        spin: m.spin,
        fqdn: m.fqdn.clone(),
        label: m.label.clone(),
        macs: m.macs.clone(),
        generations: m
            .generations
            .iter()
            .map(|g| GenerationSummary {
                number: g.number,
                time: g.time,
                time_s: g.time_s.clone(),
                version: g.version.clone(),
                shortrev: g.shortrev.clone(),
                store_path: g.store_path.clone(),
                current: g.current,
            })
            .collect(),
    }
}

/// File system writes with errors that name the path.
pub(crate) struct Writer;

impl Writer {
    pub(crate) fn dir(&self, p: &Path) -> Result<(), NetbootError> {
        std::fs::create_dir(p).map_err(io_err(format!("creating '{}'", p.display())))
    }

    pub(crate) fn file(&self, p: &Path, content: &[u8]) -> Result<(), NetbootError> {
        std::fs::write(p, content).map_err(io_err(format!("writing '{}'", p.display())))
    }

    pub(crate) fn link(&self, target: &Path, p: &Path) -> Result<(), NetbootError> {
        symlink(target, p).map_err(io_err(format!("creating the symlink '{}'", p.display())))
    }

    pub(crate) fn copy(&self, from: &Path, to: &Path) -> Result<(), NetbootError> {
        std::fs::copy(from, to).map(|_| ()).map_err(io_err(format!(
            "copying '{}' to '{}'",
            from.display(),
            to.display()
        )))
    }
}
