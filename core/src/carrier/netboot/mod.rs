//! The netboot server of a carrier: from the carried profiles to a TFTP tree (PXELINUX
//! menus and iPXE scripts) and an HTTP tree (JSON for kexec-netboot, boot files, iPXE
//! scripts), published atomically (spec 3.2 to 3.6; decisions in docs/netboot.md).
//!
//! [`build`] is upstream's `build-netboot-server`: lock, scan, render, publish. It
//! differs where the specification lists quirks: a machine with a problem (its
//! `machine.json`, no current generation, an unknown spin, an fqdn or MAC another
//! machine already has) is reported in [`BuildReport::faults`] and left out, and every
//! other machine is still published. Only problems that stop publishing altogether (the
//! configuration, the syslinux files, the file system) are errors.
//!
//! Module map: `config` (the configuration file), `model` (profile → machine and
//! generations), `tftp` (PXELINUX menus), `ipxe` (iPXE scripts), `http` (JSON),
//! `objects` (per-machine output reused between builds, the index, tree content and its
//! sync), `publish` (the spare tree patched, atomic swap, lock, coalescing).

pub mod config;
mod http;
mod ipxe;
pub mod model;
mod objects;
mod publish;
mod tftp;

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use config::{DEFAULT_LOCK_FILE, IsoImage, Memtest, NetbootConfig, SYSLINUX_FILES, Syslinux, TimeZone};
pub use model::{Spin, VPSADMINOS_VARIANTS, Variant};
pub use objects::IPXE_AUTO_TIMEOUT_MS;
pub use publish::Outcome;

use rayon::prelude::*;
use crate::carrier::dist::StoreDir;
use crate::carrier::profiles::{self, ProfileError};
use objects::{DirSpec, Meta, ObjectStore, Side};

/// Failures that prevent publishing anything. The trees being served stay as they are.
#[derive(Debug, thiserror::Error)]
pub enum NetbootError {
    #[error("netboot configuration '{}': {message}", file.display())]
    Config { file: PathBuf, message: String },

    #[error("syslinux file {file}: {message}")]
    Syslinux { file: String, message: String },

    #[error(transparent)]
    Profiles(#[from] ProfileError),

    #[error(
        "'{}' is a directory, not a symlink: the builder manages each root as a symlink to its \
         current tree; move the directory away",
        path.display()
    )]
    RootNotSymlink { path: PathBuf },

    #[error("locking '{}': {source}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// This call was covered by another call's build, and that build failed.
    #[error("the netboot build that covered this request failed: {message}")]
    Coalesced { message: String },
}

/// A problem with one carried profile. The machine is left out (`left_out`), or only a
/// generation or a MAC of it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// The profile name (`confctl-<profile>`).
    pub profile: String,
    /// The generation concerned, if one is.
    pub generation: Option<u64>,
    pub kind: FaultKind,
    /// What is wrong, naming the file or the other profile concerned.
    pub message: String,
    /// The whole machine is left out of the trees.
    pub left_out: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// The profile link is missing or points to none of the generations.
    NoCurrentGeneration,
    MissingMachineJson,
    /// Not JSON, or a field is missing (`toplevel`) or has the wrong type.
    InvalidMachineJson,
    /// No `bzImage` or `initrd` in the generation.
    MissingBootFile,
    /// A file of the dist (`machine.json`, `kernel-params`, a boot file) resolves outside
    /// the Nix store: it is neither read nor served.
    OutsideStore,
    /// A file of the dist that is read is larger than its cap: it is not read.
    TooLarge,
    UnknownSpin,
    /// The fqdn cannot be a directory name or menu label.
    InvalidFqdn,
    /// A value outside its character set (a label, a kernel parameter, `toplevel`,
    /// `version`, `revision`, the kernel version): it could add a directive to a PXELINUX
    /// menu or a command to an iPXE script.
    InvalidValue,
    /// A MAC that is not six hex octets; only that MAC is skipped.
    InvalidMac,
    /// A link or file that exists but cannot be read, or is not a regular file.
    Unreadable,
    /// Another machine has the same fqdn and keeps it.
    FqdnCollision,
    /// Another machine has one of the MACs and keeps it.
    MacCollision,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "profile '{}': {}", self.profile, self.message)?;
        if self.left_out {
            f.write_str(" [machine left out]")?;
        } else if self.kind != FaultKind::InvalidMac {
            f.write_str(" [generation left out]")?;
        }
        Ok(())
    }
}

/// A published machine, as the report and the main menus need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineSummary {
    /// The profile name.
    pub name: String,
    pub spin: Spin,
    pub fqdn: String,
    pub label: String,
    /// Normalised (`aa-bb-cc-dd-ee-ff`), from the current generation.
    pub macs: Vec<String>,
    /// Published generations, newest first.
    pub generations: Vec<GenerationSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationSummary {
    pub number: u64,
    pub time: i64,
    pub time_s: String,
    pub version: Option<String>,
    pub shortrev: Option<String>,
    pub store_path: PathBuf,
    pub current: bool,
}

impl MachineSummary {
    pub fn current(&self) -> Option<&GenerationSummary> {
        self.generations.iter().find(|g| g.current)
    }
}

/// What a build published and what it left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildReport {
    /// The TFTP tree directory now served (`<tftpRoot>.<suffix>`).
    pub tftp_dir: PathBuf,
    /// The HTTP tree directory now served.
    pub http_dir: PathBuf,
    /// Published machines, by profile name.
    pub machines: Vec<MachineSummary>,
    /// Everything left out, by profile name. Non-empty means the caller should exit
    /// non-zero.
    pub faults: Vec<Fault>,
    /// Problems that did not affect what is served (a leftover tree or an unused object that
    /// could not be removed, an index that could not be saved).
    pub warnings: Vec<String>,
    /// Machines rendered by this build; the others reused their previous output.
    pub machines_rendered: usize,
    pub machines_reused: usize,
    /// Builds this call ran: 1, more when requests arrived during the build, 0 when
    /// another call's build covered this one.
    pub builds: u32,
}

impl BuildReport {
    /// True when every carried profile was published whole.
    pub fn is_clean(&self) -> bool {
        self.faults.is_empty()
    }

    /// A few lines for the end of a CLI run: what was published, then every fault.
    pub fn summary(&self) -> String {
        let left_out = self.faults.iter().filter(|f| f.left_out).count();
        let partial = self.faults.len() - left_out;
        let mut out = format!(
            "published {} machine{} ({} rendered, {} reused)",
            self.machines.len(),
            if self.machines.len() == 1 { "" } else { "s" },
            self.machines_rendered,
            self.machines_reused
        );
        if !self.faults.is_empty() {
            out.push_str(&format!("; {left_out} left out, {partial} published in part:"));
            for f in &self.faults {
                out.push_str(&format!("\n  - {f}"));
            }
        }
        for w in &self.warnings {
            out.push_str(&format!("\nwarning: {w}"));
        }
        out
    }

    /// Upstream's progress output: per machine its fqdn, then
    /// `  - <time_s> - <version>[ (current)]` per generation, then a blank line.
    pub fn progress(&self) -> String {
        let mut out = String::new();
        for m in &self.machines {
            out.push_str(&m.fqdn);
            out.push('\n');
            for g in &m.generations {
                out.push_str(&format!(
                    "  - {} - {}{}\n",
                    g.time_s,
                    g.version.as_deref().unwrap_or(""),
                    if g.current { " (current)" } else { "" }
                ));
            }
            out.push('\n');
        }
        out
    }
}

/// Builds and publishes the netboot trees, holding the build lock; a call that arrives
/// while another build runs waits for one more build that covers it (never one build
/// per caller). `Ok` even when machines were left out: check `faults`.
pub fn build(cfg: &NetbootConfig) -> Result<BuildReport, NetbootError> {
    match request_build(cfg, true)? {
        Outcome::Built(r) | Outcome::Covered(r) => Ok(r),
        Outcome::Queued => unreachable!("a waiting request is never only queued"),
    }
}

/// Like [`build`]; with `wait` false, a call that finds a build running only asks for
/// one more build and returns [`Outcome::Queued`].
pub fn request_build(cfg: &NetbootConfig, wait: bool) -> Result<Outcome, NetbootError> {
    publish::coalesced(&cfg.lock_file, wait, || build_once(cfg))
}

/// One build, without the lock (the caller holds it).
fn build_once(cfg: &NetbootConfig) -> Result<BuildReport, NetbootError> {
    let syslinux = cfg.syslinux_files()?;
    // Scanning the profiles and reading the previous build's index are independent.
    let (links, store) = std::thread::scope(|s| {
        let store = s.spawn(|| ObjectStore::open(cfg));
        let links = profiles::scan_links(&cfg.profiles_dir);
        (links, store.join().expect("opening the object store does not panic"))
    });
    let (links, store) = (links?, store?);
    let keys: Vec<String> = links.iter().map(|pl| store.key(pl)).collect();

    // Reuse the objects of unchanged profiles; render the others (in parallel: each
    // machine is independent and rendering is mostly file system calls).
    let loaded: Vec<Option<Meta>> = keys.par_iter().map(|key| store.load(key)).collect();
    let todo: Vec<usize> = (0..links.len()).filter(|i| loaded[*i].is_none()).collect();
    let nix_store = StoreDir::system();
    let ctx = model::Context { http_url: &cfg.http_url, time_zone: cfg.time_zone, store: &nix_store };
    let rendered: Vec<_> = todo.par_iter().map(|&i| render(&store, &links[i], &keys[i], &ctx, cfg)).collect();
    let machines_reused = loaded.iter().filter(|m| m.is_some()).count();
    let mut machines_rendered = 0;
    let mut rendered_by_index: Vec<Option<Rendered>> = (0..links.len()).map(|_| None).collect();
    for (&i, r) in todo.iter().zip(rendered) {
        match r {
            Ok(r) => {
                machines_rendered += usize::from(matches!(r, Rendered::Machine(_)));
                rendered_by_index[i] = Some(r);
            }
            Err(e) => {
                store.discard_created();
                return Err(e);
            }
        }
    }

    let mut faults = Vec::new();
    let mut candidates: Vec<(String, Meta)> = Vec::with_capacity(links.len());
    for ((key, meta), rendered) in keys.into_iter().zip(loaded).zip(rendered_by_index) {
        let meta = match (meta, rendered) {
            (Some(meta), _) | (None, Some(Rendered::Machine(meta))) => meta,
            (None, Some(Rendered::LeftOut(f))) => {
                faults.extend(f);
                continue;
            }
            (None, None) => unreachable!("every profile without an object was rendered"),
        };
        faults.extend(meta.faults.iter().cloned());
        candidates.push((key, meta));
    }
    let published = resolve_collisions(candidates, &mut faults);

    let mut warnings = Vec::new();
    // The trees' content, then publication (objects and shared directories are written
    // while the specs are made).
    let trees = std::thread::scope(|s| {
        let http = s.spawn(|| http_tree(cfg, &syslinux, &store, &published));
        let tftp = tftp_tree(cfg, &syslinux, &store, &published);
        Ok::<_, NetbootError>((tftp?, http.join().expect("the HTTP tree spec does not panic")?))
    });
    let published_dirs = trees.and_then(|(tftp, (http, ranges))| {
        let trees = [(cfg.tftp_root.as_path(), &tftp), (cfg.http_root.as_path(), &http)];
        Ok((publish::publish(&trees, store.tree_records(), &mut warnings)?, ranges))
    });
    let (publish::Published { dirs, records }, ranges) = match published_dirs {
        Ok(p) => p,
        Err(e) => {
            store.discard_created();
            return Err(e);
        }
    };
    if let Err(e) = store.save_index(&published, &ranges, &dirs[1].join("machines.json"), &records) {
        warnings.push(format!("could not save the object index: {e}"));
    }
    let keep: HashSet<String> = published.iter().map(|(k, _)| k.clone()).chain(store.shared_used()).collect();
    store.collect_garbage(&keep, &mut warnings);
    faults.sort_by(|a, b| (&a.profile, a.generation).cmp(&(&b.profile, b.generation)));
    Ok(BuildReport {
        tftp_dir: dirs[0].clone(),
        http_dir: dirs[1].clone(),
        machines: published.into_iter().map(|(_, m)| m.machine).collect(),
        faults,
        warnings,
        machines_rendered,
        machines_reused,
        builds: 1,
    })
}

/// A profile without a reusable object, rendered.
enum Rendered {
    /// Its new object.
    Machine(Meta),
    /// Left out, with the reasons.
    LeftOut(Vec<Fault>),
}

fn render(
    store: &ObjectStore,
    links: &profiles::ProfileLinks,
    key: &str,
    ctx: &model::Context,
    cfg: &NetbootConfig,
) -> Result<Rendered, NetbootError> {
    let profile = match links.resolve() {
        Ok(p) => p,
        Err(e) => {
            return Ok(Rendered::LeftOut(vec![Fault {
                profile: links.name.clone(),
                generation: None,
                kind: FaultKind::Unreadable,
                message: e.to_string(),
                left_out: true,
            }]));
        }
    };
    match model::resolve(&profile, ctx) {
        (Some(machine), faults) => Ok(Rendered::Machine(store.create(key, &machine, faults, cfg)?)),
        (None, faults) => Ok(Rendered::LeftOut(faults)),
    }
}

/// Keeps one machine per fqdn and per MAC: the one whose current generation was created
/// first (then the smaller profile name), which is the one already being served when a
/// newly deployed machine brings the collision. Returns the kept machines by name.
fn resolve_collisions(mut candidates: Vec<(String, Meta)>, faults: &mut Vec<Fault>) -> Vec<(String, Meta)> {
    let current_time = |m: &Meta| m.machine.current().map(|g| g.time).unwrap_or(i64::MAX);
    candidates.sort_by(|a, b| (current_time(&a.1), &a.1.machine.name).cmp(&(current_time(&b.1), &b.1.machine.name)));
    let mut fqdns: HashMap<String, String> = HashMap::new();
    let mut macs: HashMap<String, String> = HashMap::new();
    let mut kept = Vec::with_capacity(candidates.len());
    for (key, meta) in candidates {
        let m = &meta.machine;
        let current = m.current().map(|g| g.number);
        if let Some(owner) = fqdns.get(&m.fqdn) {
            faults.push(Fault {
                profile: m.name.clone(),
                generation: current,
                kind: FaultKind::FqdnCollision,
                message: format!(
                    "fqdn '{}' is also the fqdn of profile '{owner}', which had it first and keeps it",
                    m.fqdn
                ),
                left_out: true,
            });
            continue;
        }
        if let Some((mac, owner)) = m.macs.iter().find_map(|mac| macs.get(mac).map(|o| (mac, o))) {
            faults.push(Fault {
                profile: m.name.clone(),
                generation: current,
                kind: FaultKind::MacCollision,
                message: format!("MAC {mac} is also a MAC of profile '{owner}', which had it first and keeps it"),
                left_out: true,
            });
            continue;
        }
        fqdns.insert(m.fqdn.clone(), m.name.clone());
        for mac in &m.macs {
            macs.insert(mac.clone(), m.name.clone());
        }
        kept.push((key, meta));
    }
    kept.sort_by(|a, b| a.1.machine.name.cmp(&b.1.machine.name));
    kept
}

/// Spins in first-appearance order over the machines (sorted by name).
fn spins_of(published: &[(String, Meta)]) -> Vec<Spin> {
    let mut spins = Vec::new();
    for (_, m) in published {
        if !spins.contains(&m.machine.spin) {
            spins.push(m.machine.spin);
        }
    }
    spins
}

/// `NN-<basename>` of each ISO image, with its label.
fn iso_names(cfg: &NetbootConfig) -> Vec<(String, String)> {
    cfg.iso_images
        .iter()
        .enumerate()
        .map(|(i, img)| {
            let base = img.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (format!("{i:02}-{base}"), img.label.clone())
        })
        .collect()
}

/// `iso-images/`: a link per ISO image, named as [`iso_names`] names it.
fn iso_images_dir(cfg: &NetbootConfig, isos: &[(String, String)]) -> DirSpec {
    let mut images = DirSpec::default();
    for ((file, _), img) in isos.iter().zip(&cfg.iso_images) {
        images.link(file.clone(), &img.file);
    }
    images
}

/// The TFTP tree: syslinux files, menus, links to the machines' objects.
fn tftp_tree(
    cfg: &NetbootConfig,
    syslinux: &[(&'static str, PathBuf)],
    store: &ObjectStore,
    published: &[(String, Meta)],
) -> Result<DirSpec, NetbootError> {
    let mut tree = DirSpec::default();
    let memtest = cfg.memtest.as_ref().map(|m| m.params.as_slice());
    let isos = iso_names(cfg);
    let root_name = file_name(&cfg.tftp_root);
    for (name, path) in syslinux {
        let content = std::fs::read(path).map_err(|source| NetbootError::Io {
            context: format!("reading the syslinux file '{}'", path.display()),
            source,
        })?;
        tree.file(*name, content);
    }
    let spins = spins_of(published);
    let mut pxeserver = DirSpec::default();
    for spin in &spins {
        let entries: Vec<(&str, &str)> = published
            .iter()
            .filter(|(_, m)| m.machine.spin == *spin)
            .map(|(_, m)| (m.machine.fqdn.as_str(), m.machine.label.as_str()))
            .collect();
        pxeserver.file(format!("{}.cfg", spin.as_str()), tftp::spin_menu(*spin, &entries));
    }
    let mut boot = DirSpec::default();
    if !isos.is_empty() {
        pxeserver.file("iso-images.cfg", tftp::iso_menu(&isos));
        boot.dir("iso-images", iso_images_dir(cfg, &isos));
    }
    if let Some(mt) = &cfg.memtest {
        let mut memtest86 = DirSpec::default();
        memtest86.link("memtest.bin", &mt.file);
        boot.dir("memtest86", memtest86);
    }
    let mut machines = DirSpec::default();
    for (key, meta) in published {
        let m = &meta.machine;
        boot.link(m.fqdn.clone(), store.tftp_boot_target(key));
        machines.link(m.fqdn.clone(), store.tftp_menus_target(key));
    }
    pxeserver.dir("machines", machines);
    tree.dir("pxeserver", pxeserver);
    tree.dir("boot", boot);

    // pxelinux.cfg/ and ipxe/ change only with the menus and the MAC assignments, so
    // they are shared directories; their per-MAC links reach the machine's files
    // through the root symlink.
    let mut pxelinux_cfg = DirSpec::default();
    pxelinux_cfg.file("default", tftp::main_menu(&cfg.host_name, &spins, !isos.is_empty(), memtest));
    let mut ipxe_dir = DirSpec::default();
    for (_, meta) in published {
        let m = &meta.machine;
        for mac in &m.macs {
            let auto = format!("pxeserver/machines/{}/auto", m.fqdn);
            pxelinux_cfg.link(format!("01-{mac}"), ObjectStore::via_root(&root_name, &format!("{auto}.cfg")));
            ipxe_dir.link(format!("01-{mac}.ipxe"), ObjectStore::via_root(&root_name, &format!("{auto}.ipxe")));
        }
    }
    ipxe_menus(cfg, ipxe::Tree::Tftp, published, &isos, &mut ipxe_dir);
    tree.link("pxelinux.cfg", store.shared_dir(Side::Tftp, &pxelinux_cfg)?);
    tree.link("ipxe", store.shared_dir(Side::Tftp, &ipxe_dir)?);
    Ok(tree)
}

/// The HTTP tree: `machines.json`, links to the machines' objects, `ipxe/`. Also
/// returns where each machine's entry sits in `machines.json`.
fn http_tree(
    cfg: &NetbootConfig,
    syslinux: &[(&'static str, PathBuf)],
    store: &ObjectStore,
    published: &[(String, Meta)],
) -> Result<(DirSpec, Vec<Range<u64>>), NetbootError> {
    let mut tree = DirSpec::default();
    let root_name = file_name(&cfg.http_root);
    let (machines_json, ranges) = store.machines_json(published)?;
    tree.parts("machines.json", machines_json);
    for (key, meta) in published {
        tree.link(meta.machine.fqdn.clone(), store.http_target(key));
    }

    let mut ipxe_dir = DirSpec::default();
    for (_, meta) in published {
        for mac in &meta.machine.macs {
            let auto = format!("{}/auto.ipxe", meta.machine.fqdn);
            ipxe_dir.link(format!("01-{mac}.ipxe"), ObjectStore::via_root(&root_name, &auto));
        }
    }
    let memdisk = syslinux.iter().find(|(n, _)| *n == "memdisk").map(|(_, p)| p).expect("memdisk is a syslinux file");
    ipxe_dir.link("memdisk", memdisk);
    if let Some(mt) = &cfg.memtest {
        ipxe_dir.link("memtest.bin", &mt.file);
    }
    let isos = iso_names(cfg);
    if !isos.is_empty() {
        ipxe_dir.dir("iso-images", iso_images_dir(cfg, &isos));
    }
    ipxe_menus(cfg, ipxe::Tree::Http { url: &cfg.http_url }, published, &isos, &mut ipxe_dir);
    tree.link("ipxe", store.shared_dir(Side::Http, &ipxe_dir)?);
    Ok((tree, ranges))
}

/// `boot.ipxe` and `menu.ipxe` of an `ipxe/` directory.
fn ipxe_menus(
    cfg: &NetbootConfig,
    tree: ipxe::Tree,
    published: &[(String, Meta)],
    isos: &[(String, String)],
    dir: &mut DirSpec,
) {
    let machines: Vec<(Spin, &str, &str)> =
        published.iter().map(|(_, m)| (m.machine.spin, m.machine.fqdn.as_str(), m.machine.label.as_str())).collect();
    let memtest = cfg.memtest.as_ref().map(|m| m.params.as_slice());
    dir.file("boot.ipxe", ipxe::boot_script());
    dir.file("menu.ipxe", ipxe::main_menu(tree, &cfg.host_name, &machines, isos, memtest));
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}
