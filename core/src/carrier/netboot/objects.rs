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
//! A tree's content is a [`DirSpec`]; [`DirSpec::sync`] makes a directory match one.
//!
//! Objects are written under `<key>.tmp` and renamed into place, so an object that
//! exists is complete. After a successful publication, objects the new trees do not use
//! are removed; after a failed one, the objects made by that build are.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::ops::Range;
use std::sync::Arc;
use std::ffi::{OsStr, OsString};
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
use crate::links::read_link_at;

/// Bump when the rendered output changes, so old objects are not reused. 2: values of
/// dists checked against strict character sets, dist files confined to the store.
const FORMAT: &str = "carrier-netboot-objects-2";

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

/// Which file system object a path names, and whether it changed: device, inode, size,
/// modification and change time. Writing a file, or adding, removing or replacing an
/// entry of a directory, changes the times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        }
    }

    /// The stamp of `path` itself (a symlink is not followed).
    fn of_path(path: &Path) -> std::io::Result<Stamp> {
        std::fs::symlink_metadata(path).map(|m| Stamp::of(&m))
    }
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
    Parts(FileParts),
    Link(PathBuf),
    Dir(DirSpec),
}

/// The content of a file made of bytes and of ranges of another open file, which the
/// kernel copies (`copy_file_range`) without passing them through this process.
#[derive(Debug, Default)]
pub struct FileParts {
    pub(super) parts: Vec<Part>,
    len: u64,
}

#[derive(Debug)]
pub(super) enum Part {
    Bytes(Vec<u8>),
    /// `len` bytes of the file from `offset`.
    Range { file: Arc<File>, offset: u64, len: u64 },
}

impl FileParts {
    /// The length of the content so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn push_bytes(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if let Some(Part::Bytes(last)) = self.parts.last_mut() {
            last.extend_from_slice(bytes);
        } else {
            self.parts.push(Part::Bytes(bytes.to_vec()));
        }
    }

    /// Appends `len` bytes of `file` from `offset`; a range that continues the previous
    /// one in the same file extends it.
    pub fn push_range(&mut self, file: &Arc<File>, offset: u64, len: u64) {
        self.len += len;
        if let Some(Part::Range { file: f, offset: o, len: l }) = self.parts.last_mut()
            && Arc::ptr_eq(f, file)
            && *o + *l == offset
        {
            *l += len;
            return;
        }
        self.parts.push(Part::Range { file: file.clone(), offset, len });
    }

    /// Where the last part, if it is a range, ends in its file.
    pub fn last_range_end(&self, file: &Arc<File>) -> Option<u64> {
        match self.parts.last() {
            Some(Part::Range { file: f, offset, len }) if Arc::ptr_eq(f, file) => Some(offset + len),
            _ => None,
        }
    }

    fn hash(&self, h: &mut Sha256) {
        for part in &self.parts {
            match part {
                Part::Bytes(b) => h.update(b),
                Part::Range { file, offset, len } => {
                    use std::os::unix::fs::MetadataExt;
                    let ino = file.metadata().map(|m| m.ino()).unwrap_or_default();
                    h.update(ino.to_le_bytes());
                    h.update(offset.to_le_bytes());
                    h.update(len.to_le_bytes());
                }
            }
        }
    }

    /// Writes the content to the (empty) file `out`.
    pub fn write_to(&self, out: &mut File) -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::FileExt;
        let mut pos: u64 = 0;
        for part in &self.parts {
            match part {
                Part::Bytes(b) => {
                    out.write_all(b)?;
                    pos += b.len() as u64;
                }
                Part::Range { file, offset, len } => {
                    let (mut off_in, mut off_out) = (*offset as libc::loff_t, pos as libc::loff_t);
                    let end = pos + len;
                    while (off_out as u64) < end {
                        let left = (end - off_out as u64) as usize;
                        // SAFETY: both descriptors belong to open `File`s; the call only
                        // reads and updates the two offsets.
                        let n = unsafe {
                            libc::copy_file_range(file.as_raw_fd(), &mut off_in, out.as_raw_fd(), &mut off_out, left, 0)
                        };
                        if n < 0 {
                            let e = std::io::Error::last_os_error();
                            // Not between these file systems: copy through this process.
                            if matches!(e.raw_os_error(), Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL))
                            {
                                let mut buf = vec![0; left];
                                file.read_exact_at(&mut buf, off_in as u64)?;
                                out.write_all_at(&buf, off_out as u64)?;
                                break;
                            }
                            return Err(e);
                        }
                        if n == 0 {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "the file to copy from is shorter than recorded",
                            ));
                        }
                    }
                    // Explicit offsets leave the file position alone.
                    pos = end;
                    out.seek(SeekFrom::Start(pos))?;
                }
            }
        }
        Ok(())
    }
}

impl DirSpec {
    pub fn file(&mut self, name: impl Into<String>, content: impl Into<Vec<u8>>) {
        self.entries.push((name.into(), Node::File(content.into())));
    }

    pub fn parts(&mut self, name: impl Into<String>, parts: FileParts) {
        self.entries.push((name.into(), Node::Parts(parts)));
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
                Node::Parts(_) => (b'p', b""),
                Node::Link(t) => (b'l', t.as_os_str().as_encoded_bytes()),
                Node::Dir(_) => (b'd', b""),
            };
            h.update([tag]);
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
            match node {
                Node::Dir(d) => {
                    d.hash(h);
                    h.update(b"end");
                }
                Node::Parts(p) => p.hash(h),
                _ => {}
            }
        }
    }

    /// Makes the existing directory `dir` hold exactly this content, touching only what
    /// differs: a link with the wanted target, a file with the wanted bytes and a
    /// directory stay as they are; anything else in the way is removed and written anew,
    /// and entries the spec does not name are removed. Symlinks are never followed.
    pub fn sync(&self, dir: &Path) -> Result<(), NetbootError> {
        self.sync_recorded(dir, &[]).map(|_| ())
    }

    /// [`DirSpec::sync`], which also returns a [`DirRecord`] of every directory with
    /// many links, and trusts `known` records (of an earlier call on the same
    /// directory) whose directory was not modified since.
    pub fn sync_recorded(&self, dir: &Path, known: &[DirRecord]) -> Result<Vec<DirRecord>, NetbootError> {
        let mut records = Vec::new();
        self.sync_in(dir, "", known, &mut records)?;
        Ok(records)
    }

    fn sync_in(
        &self,
        dir: &Path,
        rel: &str,
        known: &[DirRecord],
        records: &mut Vec<DirRecord>,
    ) -> Result<(), NetbootError> {
        let links = self.entries.iter().filter(|(_, n)| matches!(n, Node::Link(_))).count();
        let recorded = links >= RECORD_MIN_LINKS;
        // The links this directory held when it was last recorded, if it has not been
        // modified since.
        let trusted = known
            .iter()
            .find(|r| recorded && r.path == rel)
            .filter(|r| Stamp::of_path(dir).is_ok_and(|s| s == r.stamp))
            .map(|r| r.links.as_slice());
        let mut hashes = Vec::with_capacity(if recorded { links } else { 0 });

        let listing = std::fs::read_dir(dir).map_err(io_err(format!("reading '{}'", dir.display())))?;
        let mut existing: HashMap<OsString, std::fs::FileType> = HashMap::new();
        for entry in listing {
            let entry = entry.map_err(io_err(format!("reading '{}'", dir.display())))?;
            let kind = entry.file_type().map_err(io_err(format!("inspecting '{}'", entry.path().display())))?;
            existing.insert(entry.file_name(), kind);
        }
        // Links are read relative to the open directory: no walk of its path per link.
        let dir_file = File::open(dir).map_err(io_err(format!("opening '{}'", dir.display())))?;
        let w = Writer;
        let clear = |path: &Path| remove_path(path).map_err(io_err(format!("removing '{}'", path.display())));
        for (name, node) in &self.entries {
            let path = dir.join(name);
            let have = existing.remove(OsStr::new(name));
            match node {
                Node::Link(target) => {
                    let hash = recorded.then(|| link_hash(name, target));
                    hashes.extend(hash);
                    if have.is_some_and(|k| k.is_symlink())
                        && (trusted.zip(hash).is_some_and(|(t, h)| t.binary_search(&h).is_ok())
                            || read_link_at(&dir_file, OsStr::new(name)).is_ok_and(|t| t == *target))
                    {
                        continue;
                    }
                    if have.is_some() {
                        clear(&path)?;
                    }
                    w.link(target, &path)?;
                }
                Node::File(content) => {
                    if have.is_some_and(|k| k.is_file()) {
                        if same_content(&path, content) {
                            continue;
                        }
                    } else if have.is_some() {
                        clear(&path)?;
                    }
                    w.file(&path, content)?;
                }
                Node::Parts(parts) => {
                    // Rewritten every time: comparing would read the whole file.
                    if have.is_some() {
                        clear(&path)?;
                    }
                    File::create_new(&path)
                        .and_then(|mut f| parts.write_to(&mut f))
                        .map_err(io_err(format!("writing '{}'", path.display())))?;
                }
                Node::Dir(spec) => {
                    if !have.is_some_and(|k| k.is_dir()) {
                        if have.is_some() {
                            clear(&path)?;
                        }
                        w.dir(&path)?;
                    }
                    let sub = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
                    spec.sync_in(&path, &sub, known, records)?;
                }
            }
        }
        for name in existing.into_keys() {
            clear(&dir.join(name))?;
        }
        if recorded {
            let stamp = Stamp::of_path(dir).map_err(io_err(format!("inspecting '{}'", dir.display())))?;
            hashes.sort_unstable();
            records.push(DirRecord { path: rel.to_string(), stamp, links: hashes });
        }
        Ok(())
    }
}

/// Directories with at least this many links get a [`DirRecord`].
const RECORD_MIN_LINKS: usize = 64;

/// What a directory with many links (`boot/`, `pxeserver/machines/`, the HTTP root: one
/// per machine) held when a build finished writing it. The build that next writes into
/// that directory (two builds later: it is the spare then) trusts the record while the
/// directory's [`Stamp`] is what it was, since adding, removing or replacing an entry
/// changes it, and symlinks cannot be changed in place: it need not read each link to
/// find the few that changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirRecord {
    /// Relative to the tree.
    path: String,
    stamp: Stamp,
    /// [`link_hash`] of every link, sorted.
    links: Vec<u64>,
}

/// 64 bits of SHA-256 of a link's name and target.
fn link_hash(name: &str, target: &Path) -> u64 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0]);
    h.update(target.as_os_str().as_encoded_bytes());
    u64::from_le_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

/// Whether the regular file at `path` holds exactly `content`.
fn same_content(path: &Path, content: &[u8]) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() == content.len() as u64)
        && std::fs::read(path).is_ok_and(|have| have == content)
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> NetbootError {
    move |source| NetbootError::Io { context, source }
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

impl ObjectStore {
    /// Opens (creates) the object directories, removes unfinished objects and reads the
    /// index.
    pub fn open(cfg: &NetbootConfig) -> Result<Self, NetbootError> {
        let tftp = cfg.tftp_objects();
        let http = cfg.http_objects();
        let mut names = [HashSet::new(), HashSet::new()];
        for (dir, names) in [&tftp, &http].into_iter().zip(&mut names) {
            std::fs::create_dir_all(dir).map_err(io_err(format!("creating '{}'", dir.display())))?;
            for entry in std::fs::read_dir(dir).map_err(io_err(format!("reading '{}'", dir.display())))?.flatten() {
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
            tftp_name: file_name(&tftp),
            http_name: file_name(&http),
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

    /// The object's summary, when a complete object exists for `key`: from the index
    /// (taken out of it: call once per key), else from the object's `meta.json`.
    pub fn load(&self, key: &str) -> Option<Meta> {
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
    pub fn machines_json(&self, published: &[(String, Meta)]) -> Result<(FileParts, Vec<Range<u64>>), NetbootError> {
        let entries = published
            .iter()
            .map(|(key, _)| {
                if let Some((file, ranges)) = &self.pack
                    && let Some(&(start, end)) = ranges.get(key)
                {
                    return Ok(http::Entry::InFile(file.clone(), start..end));
                }
                let path = self.http.join(key).join("entry.json");
                std::fs::read(&path).map(http::Entry::Bytes).map_err(io_err(format!("reading '{}'", path.display())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(http::machines_json(entries))
    }

    /// The [`DirRecord`]s of the trees written by the last two builds, by tree directory
    /// path.
    pub fn tree_records(&self) -> &HashMap<String, Vec<DirRecord>> {
        &self.trees
    }

    /// Records, for the next build, the summaries of the published machines, where
    /// their entries sit in `machines_json` (the file just published, its entries at
    /// `ranges`, in the order of `published`) and the trees' `records`. Written under a
    /// temporary name and renamed, so a reader sees the old index or the new one.
    pub fn save_index(
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
            Writer.dir(&tmp)?;
            spec.sync(&tmp)?;
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

    /// Removes every object not in `keep` (the index stays).
    pub fn collect_garbage(&self, keep: &HashSet<String>, warnings: &mut Vec<String>) {
        let created = self.created.lock().expect("created keys");
        for (dir, names) in [(&self.tftp, &self.tftp_names), (&self.http, &self.http_names)] {
            for name in names.iter().chain(created.iter()) {
                if keep.contains(name) || name == INDEX {
                    continue;
                }
                let path = dir.join(name);
                if let Err(e) = remove_path(&path) {
                    warnings.push(format!("could not remove the unused object '{}': {e}", path.display()));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn many_links(n: usize, changed: Option<usize>) -> DirSpec {
        let mut dir = DirSpec::default();
        for i in 0..n {
            let target = if Some(i) == changed { format!("../objects/new-{i}") } else { format!("../objects/{i}") };
            dir.link(format!("m{i:03}"), target);
        }
        let mut root = DirSpec::default();
        root.file("small", "x");
        root.dir("boot", dir);
        root
    }

    fn target(dir: &Path, name: &str) -> PathBuf {
        std::fs::read_link(dir.join("boot").join(name)).unwrap()
    }

    #[test]
    fn records_are_trusted_only_while_the_directory_is_unchanged() {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        let records = many_links(100, None).sync_recorded(&tree, &[]).unwrap();
        assert_eq!(records.len(), 1, "only the directory with many links is recorded: {records:?}");
        assert_eq!((records[0].path.as_str(), records[0].links.len()), ("boot", 100));

        // With its record, a directory is patched without reading the links: a changed
        // link is replaced...
        let records = many_links(100, Some(7)).sync_recorded(&tree, &records).unwrap();
        assert_eq!(target(&tree, "m007"), PathBuf::from("../objects/new-7"));
        // ...and the others are not read. To show it: a forged record that claims the old
        // target of m007, with the directory's current stamp, is believed.
        let mut forged = records.clone();
        forged[0].links = many_links(100, None).links_of("boot");
        forged[0].links.sort_unstable();
        forged[0].stamp = Stamp::of_path(&tree.join("boot")).unwrap();
        many_links(100, None).sync_recorded(&tree, &forged).unwrap();
        assert_eq!(target(&tree, "m007"), PathBuf::from("../objects/new-7"), "the record was trusted");

        // Any change in the directory (an entry added, removed or replaced) changes its
        // stamp, and the record is ignored: every link is read and fixed.
        std::fs::write(tree.join("boot/stray"), "").unwrap();
        let records = many_links(100, None).sync_recorded(&tree, &forged).unwrap();
        assert_eq!(target(&tree, "m007"), PathBuf::from("../objects/7"));
        assert!(!tree.join("boot/stray").exists());
        assert_eq!(records[0].stamp, Stamp::of_path(&tree.join("boot")).unwrap());
    }

    #[test]
    fn file_parts_copy_ranges_also_across_file_systems() {
        let t = tempfile::tempdir().unwrap();
        // /dev/shm is a tmpfs: the kernel may refuse to copy from there into this
        // directory's file system, and the copy goes through this process instead.
        let shm = Path::new("/dev/shm");
        let sources = [t.path().to_path_buf(), shm.to_path_buf()];
        for (i, dir) in sources.iter().enumerate().filter(|(_, d)| d.is_dir()) {
            let src = tempfile::NamedTempFile::new_in(dir).unwrap();
            std::fs::write(src.path(), b"0123456789abcdef").unwrap();
            let file = Arc::new(File::open(src.path()).unwrap());
            let mut parts = FileParts::default();
            parts.push_bytes(b"<");
            parts.push_range(&file, 2, 3);
            parts.push_range(&file, 5, 2);
            parts.push_bytes(b"|");
            parts.push_range(&file, 10, 6);
            parts.push_bytes(b">");
            assert_eq!(parts.parts.len(), 5, "the second range continues the first: {parts:?}");
            let out = t.path().join(format!("out-{i}"));
            parts.write_to(&mut File::create_new(&out).unwrap()).unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), b"<23456|abcdef>");
            assert_eq!(parts.len(), 14);
        }
    }

    impl DirSpec {
        /// The link hashes of the subdirectory `name`.
        fn links_of(&self, name: &str) -> Vec<u64> {
            let Some((_, Node::Dir(d))) = self.entries.iter().find(|(n, _)| n == name) else { panic!("no {name}") };
            d.entries
                .iter()
                .filter_map(|(n, node)| match node {
                    Node::Link(t) => Some(link_hash(n, t)),
                    _ => None,
                })
                .collect()
        }
    }
}
