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
//! <httpRoot>.objects/index             the last build's index (see `Index`)
//! ```
//! The directories that change only with the menus and the MAC assignments
//! (`pxelinux.cfg/` and `ipxe/` of the TFTP tree, `ipxe/` of the HTTP tree) are shared
//! the same way, named `d-<hash of their content>`; their per-MAC links reach the
//! machine's files through the root symlink (`../../tftp/pxeserver/machines/…`), so a
//! new generation of a machine does not change them. A rebuild after one machine
//! changed thus writes that machine's object, replaces its links in the spare tree's
//! big directories (`boot/`, `pxeserver/machines/`, the HTTP root; see [`DirRecord`]
//! and `publish`) and writes `machines.json`, mostly copied by the kernel from the
//! served one (see [`ObjectStore::machines_json`]).
//!
//! The content of an object or a shared directory is rendered elsewhere (`render`) as
//! a [`DirSpec`]; this store only names, saves, finds and removes it. Where objects sit
//! and how the trees link to them: `layout`.
//!
//! Objects are written under `<key>.tmp` and renamed into place, so an object that
//! exists is complete. After a successful publication, objects the new trees do not use
//! are removed; after a failed one, the objects made by that build are.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::{NetbootConfig, TimeZone};
use super::layout::{Layout, Side};
use super::render::MachineContent;
use super::tree::{DirRecord, DirSpec, FileParts, Stamp, io_err, remove_path};
use super::{Fault, NetbootError, PublishedMachine, http};
use crate::carrier::profiles::ProfileLinks;

/// Bump when the rendered output changes, so old objects are not reused. 2: values of
/// dists checked against strict character sets, dist files confined to the store.
const FORMAT: &str = "carrier-netboot-objects-2";

/// Bytes of SHA-256 in an object key (24 hex digits; 96 bits keep collisions out of
/// reach for any number of machines). Short keys keep the trees' links to the objects
/// (`../../../tftp.objects/<key>/menus`, 52 bytes) under 60 bytes, which ext4 stores in
/// the inode ("fast" symlinks); a longer target costs a data block per link, written
/// and freed again by every build.
const KEY_BYTES: usize = 12;

/// What a build needs of a machine without reading its object's files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Meta {
    pub machine: PublishedMachine,
    /// Faults that did not leave the machine out (a skipped generation, an invalid MAC).
    pub faults: Vec<Fault>,
}

/// The served `machines.json`, open, and the byte range of each key's entry in it.
type Pack = (Arc<File>, HashMap<String, (u64, u64)>);

/// The index file in the HTTP objects directory (see [`Index`]), in postcard's binary
/// format: it is read by every build, and parsing JSON of that size costs more than
/// the rest of a small rebuild.
const INDEX: &str = "index";

/// What the previous build published, so that a rebuild reads two files instead of two
/// per machine: the [`Meta`] of every object the trees use, and where each machine's
/// entry sits in the `machines.json` written with it (which holds them all). Both are
/// only a cache of the objects' `meta.json` and `entry.json`: an index of another
/// format, or one whose `machines.json` is not the one served (by its [`Stamp`]), is not
/// used for entries.
#[derive(Serialize, Deserialize)]
struct Index {
    format: String,
    machines_json: Stamp,
    /// Per key: the summary, and the byte range of the entry in `machines.json`.
    objects: HashMap<String, (Meta, u64, u64)>,
    /// Per tree directory (the path of `<root>.<suffix>`), its [`DirRecord`]s.
    trees: HashMap<String, Vec<DirRecord>>,
}

pub(super) struct ObjectStore {
    layout: Layout,
    tftp: PathBuf,
    http: PathBuf,
    /// The configuration part of every key.
    settings_key: Vec<u8>,
    /// Keys of the objects this build made (removed again if it fails).
    created: Mutex<Vec<String>>,
    /// Keys of the shared directories the new trees use.
    shared_used: Mutex<Vec<String>>,
    /// Names in the TFTP and HTTP objects directories when the store was opened.
    tftp_names: HashSet<String>,
    http_names: HashSet<String>,
    /// The previous build's summaries (empty when the index is missing or unreadable).
    index: Mutex<HashMap<String, Meta>>,
    /// The served `machines.json` and the ranges of the entries in it, when the index
    /// describes it.
    pack: Option<Pack>,
    /// The [`DirRecord`]s of the trees written by the last two builds.
    trees: HashMap<String, Vec<DirRecord>>,
}

impl ObjectStore {
    /// Opens (creates) the object directories, removes unfinished objects and reads the
    /// index.
    pub(super) fn open(cfg: &NetbootConfig) -> Result<Self, NetbootError> {
        let layout = Layout::new(cfg);
        let tftp = layout.objects(Side::Tftp).to_path_buf();
        let http = layout.objects(Side::Http).to_path_buf();
        let mut names = [HashSet::new(), HashSet::new()];
        for (dir, names) in [&tftp, &http].into_iter().zip(&mut names) {
            std::fs::create_dir_all(dir)
                .map_err(io_err(format!("creating '{}'", dir.display())))?;
            for entry in std::fs::read_dir(dir)
                .map_err(io_err(format!("reading '{}'", dir.display())))?
                .flatten()
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".tmp") {
                    let _ = remove_path(&entry.path());
                } else {
                    names.insert(name);
                }
            }
        }
        let [tftp_names, http_names] = names;
        // A missing or damaged index only costs reading each object's files.
        let (index, pack, trees) = match std::fs::read(http.join(INDEX))
            .ok()
            .and_then(|bytes| postcard::from_bytes::<Index>(&bytes).ok())
            .filter(|index| index.format == FORMAT)
        {
            None => (HashMap::new(), None, HashMap::new()),
            Some(index) => {
                let pack = File::open(cfg.http_root.join("machines.json"))
                    .ok()
                    .filter(|f| f.metadata().is_ok_and(|m| Stamp::of(&m) == index.machines_json));
                let mut metas = HashMap::with_capacity(index.objects.len());
                let mut ranges = HashMap::with_capacity(index.objects.len());
                for (key, (meta, start, end)) in index.objects {
                    ranges.insert(key.clone(), (start, end));
                    metas.insert(key, meta);
                }
                let size = index.machines_json.size;
                let pack = pack.filter(|_| ranges.values().all(|&(a, b)| a <= b && b <= size));
                (metas, pack.map(|file| (Arc::new(file), ranges)), index.trees)
            }
        };
        Ok(ObjectStore {
            layout,
            tftp,
            http,
            settings_key: settings_key(cfg),
            created: Mutex::new(Vec::new()),
            shared_used: Mutex::new(Vec::new()),
            tftp_names,
            http_names,
            index: Mutex::new(index),
            pack,
            trees,
        })
    }

    /// The key of a profile's object.
    pub(super) fn key(&self, profile: &ProfileLinks) -> String {
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

    /// The object's summary, when a complete object exists for `key`: from the index
    /// (taken out of it: call once per key), else from the object's `meta.json`.
    pub(super) fn load(&self, key: &str) -> Option<Meta> {
        if !(self.tftp_names.contains(key) && self.http_names.contains(key)) {
            return None;
        }
        if let Some(meta) = self.index.lock().expect("the index").remove(key) {
            return Some(meta);
        }
        let bytes = std::fs::read(self.http.join(key).join("meta.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// `machines.json` of the published machines, and where each entry sits in it.
    /// Entries come from the served `machines.json` when the index describes it (copied
    /// by the kernel, in runs), else from the objects' `entry.json`.
    pub(super) fn machines_json(
        &self,
        published: &[(String, Meta)],
    ) -> Result<(FileParts, Vec<Range<u64>>), NetbootError> {
        let entries = published
            .iter()
            .map(|(key, _)| {
                if let Some((file, ranges)) = &self.pack
                    && let Some(&(start, end)) = ranges.get(key)
                {
                    return Ok(http::Entry::InFile(file.clone(), start..end));
                }
                let path = self.http.join(key).join("entry.json");
                std::fs::read(&path)
                    .map(http::Entry::Bytes)
                    .map_err(io_err(format!("reading '{}'", path.display())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(http::machines_json(entries))
    }

    /// The [`DirRecord`]s of the trees written by the last two builds, by tree directory
    /// path.
    pub(super) fn tree_records(&self) -> &HashMap<String, Vec<DirRecord>> {
        &self.trees
    }

    /// Records, for the next build, the summaries of the published machines, where
    /// their entries sit in `machines_json` (the file just published, its entries at
    /// `ranges`, in the order of `published`) and the trees' `records`. Written under a
    /// temporary name and renamed, so a reader sees the old index or the new one.
    pub(super) fn save_index(
        &self,
        published: &[(String, Meta)],
        ranges: &[Range<u64>],
        machines_json: &Path,
        records: &HashMap<String, Vec<DirRecord>>,
    ) -> Result<(), std::io::Error> {
        let objects = published
            .iter()
            .zip(ranges)
            .map(|((key, meta), r)| (key.as_str(), (meta, r.start, r.end)))
            .collect::<HashMap<_, _>>();
        #[derive(Serialize)]
        struct IndexOut<'a> {
            format: &'a str,
            machines_json: Stamp,
            objects: HashMap<&'a str, (&'a Meta, u64, u64)>,
            trees: &'a HashMap<String, Vec<DirRecord>>,
        }
        let machines_json = Stamp::of_path(machines_json)?;
        let out = IndexOut { format: FORMAT, machines_json, objects, trees: records };
        let bytes = postcard::to_stdvec(&out).map_err(std::io::Error::other)?;
        let tmp = self.http.join(format!("{INDEX}.tmp"));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, self.http.join(INDEX))
    }

    /// A directory of a tree that rarely changes (`pxelinux.cfg/`, `ipxe/`), shared by
    /// successive trees while its content stays the same: written once under a key made
    /// of its content. Returns the symlink target for `<tree root>/<name>`. Relative
    /// links inside it must not lead out of it (they would resolve from the objects
    /// directory); links that reach into the tree go through the root symlink
    /// ([`Layout::via_root`]).
    pub(super) fn shared_dir(&self, side: Side, spec: &DirSpec) -> Result<PathBuf, NetbootError> {
        let mut h = Sha256::new();
        h.update(FORMAT);
        h.update(b"\0shared dir\0");
        spec.hash(&mut h);
        let key = format!("d-{}", hex::encode(&h.finalize()[..KEY_BYTES]));
        let objects = self.layout.objects(side);
        let dir = objects.join(&key);
        if !dir.is_dir() {
            let tmp = objects.join(format!("{key}.tmp"));
            let _ = remove_path(&tmp);
            spec.create(&tmp)?;
            std::fs::rename(&tmp, &dir).map_err(io_err(format!("renaming '{}'", tmp.display())))?;
            self.created.lock().expect("created keys").push(key.clone());
        }
        self.shared_used.lock().expect("used keys").push(key.clone());
        Ok(self.layout.shared_target(side, &key))
    }

    /// Keys of the shared directories used by the trees written in this build.
    pub(super) fn shared_used(&self) -> Vec<String> {
        self.shared_used.lock().expect("used keys").clone()
    }

    /// Where the objects are and how the trees link to them.
    pub(super) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Saves a machine's rendered `content` (with `meta.json` from `meta`) as the object
    /// `key`. Safe to call from several threads for different keys.
    pub(super) fn save(
        &self,
        key: &str,
        content: MachineContent,
        meta: &Meta,
    ) -> Result<(), NetbootError> {
        let MachineContent { tftp, mut http } = content;
        http.file("meta.json", serde_json::to_vec(meta).expect("meta serializes"));
        // Both parts written, then into place: the TFTP part first, the HTTP part
        // (holding meta.json) last.
        let parts = [(&tftp, &self.tftp), (&http, &self.http)]
            .map(|(spec, objects)| (spec, objects.join(format!("{key}.tmp")), objects.join(key)));
        for (spec, tmp, _) in &parts {
            let _ = remove_path(tmp);
            spec.create(tmp)?;
        }
        for (_, tmp, dir) in &parts {
            let _ = remove_path(dir);
            std::fs::rename(tmp, dir).map_err(io_err(format!("renaming '{}'", tmp.display())))?;
        }
        self.created.lock().expect("created keys").push(key.to_string());
        Ok(())
    }

    /// Removes every object not in `keep` (the index stays).
    pub(super) fn collect_garbage(&self, keep: &HashSet<String>, warnings: &mut Vec<String>) {
        let created = self.created.lock().expect("created keys");
        for (dir, names) in [(&self.tftp, &self.tftp_names), (&self.http, &self.http_names)] {
            for name in names.iter().chain(created.iter()) {
                if keep.contains(name) || name == INDEX {
                    continue;
                }
                let path = dir.join(name);
                if let Err(e) = remove_path(&path) {
                    warnings.push(format!(
                        "could not remove the unused object '{}': {e}",
                        path.display()
                    ));
                }
            }
        }
    }

    /// Removes the objects made by this build (whose publication failed).
    pub(super) fn discard_created(&self) {
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
    // Absent, it adds nothing: the keys of configurations without it stay as they were.
    if let Some(c) = &cfg.checkin {
        for part in ["checkin", &c.url, &c.carrier, &c.secret.fingerprint()] {
            h.update(part);
            h.update([0]);
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
