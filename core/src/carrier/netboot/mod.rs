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
//! generations), `render` (the trees' content from the model, without the file system:
//! a machine's part and the trees around the machines), `tftp` (PXELINUX menus),
//! `ipxe` (iPXE scripts), `http` (JSON), `tree` (tree content as data and the one writer
//! of it: create, sync, directory records), `layout` (where objects sit, the relative
//! links to them), `objects` (per-machine objects reused between builds, shared
//! directories, the index), `publish` (the spare tree patched, atomic swap, lock,
//! coalescing), `preview` (what a MAC gets from the published trees, read from them).
//! Imports go one way: render → tftp/ipxe/http → tree; objects and publish → tree;
//! nothing imports objects or publish but this module.

pub mod config;
mod http;
mod ipxe;
mod layout;
pub mod model;
mod objects;
mod preview;
mod publish;
mod render;
mod tftp;
mod tree;

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use config::{
    DEFAULT_LOCK_FILE, IsoImage, Memtest, NetbootConfig, SYSLINUX_FILES, Syslinux, TimeZone,
};
pub use model::{VPSADMINOS_VARIANTS, Variant};
pub use preview::{
    BootPreview, PreviewFile, PreviewGeneration, PreviewMachine, parse_mac, preview,
};
pub use publish::{LastBuild, LastOutcome, RequestOutcome, last_build};
pub use render::IPXE_AUTO_TIMEOUT_MS;

use crate::carrier::dist::StoreDir;
use crate::carrier::profiles::{self, ProfileError};
use crate::cluster::Spin;
use crate::remote::HostError;
use layout::Side;
use objects::{Meta, ObjectStore};
use rayon::prelude::*;
use tree::{DirSpec, io_err};

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

    #[error("'{value}' is not a MAC address (six hex octets separated all by ':' or all by '-')")]
    InvalidMac { value: String },

    #[error("'{}' does not exist: the netboot trees were not built yet", root.display())]
    NotPublished { root: PathBuf },

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
pub struct PublishedMachine {
    /// The profile name.
    pub name: String,
    pub spin: Spin,
    pub fqdn: String,
    pub label: String,
    /// Normalised (`aa-bb-cc-dd-ee-ff`), from the current generation.
    pub macs: Vec<String>,
    /// Published generations, newest first.
    pub generations: Vec<PublishedGeneration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedGeneration {
    pub number: u64,
    pub time: i64,
    pub time_s: String,
    pub version: Option<String>,
    pub shortrev: Option<String>,
    pub store_path: PathBuf,
    pub current: bool,
}

impl PublishedMachine {
    pub fn current(&self) -> Option<&PublishedGeneration> {
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
    pub machines: Vec<PublishedMachine>,
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

/// `carrier netboot build --json` on a carrier through `host`, with the carrier's own
/// netboot configuration (its `CARRIER_NETBOOT_CONFIG`, else the default path: what its
/// on-change hook builds). Its report, faults included (the command then exits non-zero);
/// an error when the command fails without one.
pub async fn build_on(host: &impl crate::remote::Host) -> Result<BuildReport, HostError> {
    let argv = ["carrier", "netboot", "build", "--json"];
    let out = host.output(&argv).await?;
    let report = serde_json::from_slice::<BuildReport>(&out.stdout);
    match report {
        Ok(report) if out.status.success() || !report.is_clean() => Ok(report),
        Ok(_) | Err(_) => Err(HostError::Run {
            host: host.name().to_string(),
            command: argv.join(" "),
            message: if out.status.success() {
                format!("not a build report: '{}'", String::from_utf8_lossy(&out.stdout).trim())
            } else {
                crate::remote::failure_message(&out)
            },
        }),
    }
}

/// Builds and publishes the netboot trees, holding the build lock; a call that arrives
/// while another build runs waits for one more build that covers it (never one build
/// per caller). `Ok` even when machines were left out: check `faults`.
pub fn build(cfg: &NetbootConfig) -> Result<BuildReport, NetbootError> {
    match request_build(cfg, true)? {
        RequestOutcome::Built(r) | RequestOutcome::Covered(r) => Ok(r),
        RequestOutcome::Queued => unreachable!("a waiting request is never only queued"),
    }
}

/// Like [`build`]; with `wait` false, a call that finds a build running only asks for
/// one more build and returns [`RequestOutcome::Queued`].
pub fn request_build(cfg: &NetbootConfig, wait: bool) -> Result<RequestOutcome, NetbootError> {
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
    let ctx = model::Context {
        http_url: &cfg.http_url,
        time_zone: cfg.time_zone,
        store: &nix_store,
        checkin: cfg.checkin.as_ref(),
    };
    let rendered: Vec<_> =
        todo.par_iter().map(|&i| render_profile(&store, &links[i], &keys[i], &ctx, cfg)).collect();
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
    // The trees' content (their shared directories saved as they are made), then
    // publication.
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
    if let Err(e) = store.save_index(&published, &ranges, &dirs[1].join("machines.json"), &records)
    {
        warnings.push(format!("could not save the object index: {e}"));
    }
    let keep: HashSet<String> =
        published.iter().map(|(k, _)| k.clone()).chain(store.shared_used()).collect();
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

/// Resolves a profile without a reusable object, renders its part of the trees and
/// saves it as the object `key`.
fn render_profile(
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
        (Some(machine), faults) => {
            let meta = Meta { machine: machine.summary(), faults };
            store.save(key, render::machine(&machine, cfg), &meta)?;
            Ok(Rendered::Machine(meta))
        }
        (None, faults) => Ok(Rendered::LeftOut(faults)),
    }
}

/// Keeps one machine per fqdn and per MAC: the one whose current generation was created
/// first (then the smaller profile name), which is the one already being served when a
/// newly deployed machine brings the collision. Returns the kept machines by name.
fn resolve_collisions(
    mut candidates: Vec<(String, Meta)>,
    faults: &mut Vec<Fault>,
) -> Vec<(String, Meta)> {
    let current_time = |m: &Meta| m.machine.current().map(|g| g.time).unwrap_or(i64::MAX);
    candidates.sort_by(|a, b| {
        (current_time(&a.1), &a.1.machine.name).cmp(&(current_time(&b.1), &b.1.machine.name))
    });
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
            faults.push(mac_collision(&m.name, current, mac, owner));
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

/// The fault of a machine left out because `owner` keeps its `mac` (the boot preview
/// reports the same).
fn mac_collision(profile: &str, generation: Option<u64>, mac: &str, owner: &str) -> Fault {
    Fault {
        profile: profile.to_string(),
        generation,
        kind: FaultKind::MacCollision,
        message: format!(
            "MAC {mac} is also a MAC of profile '{owner}', which had it first and keeps it"
        ),
        left_out: true,
    }
}

/// The machines as the tree renderers take them.
fn published_of(published: &[(String, Meta)]) -> Vec<render::Published<'_>> {
    published.iter().map(|(key, meta)| (key.as_str(), &meta.machine)).collect()
}

/// The tree of `content` with its shared directories saved and linked at their names.
fn save_shared(
    store: &ObjectStore,
    side: Side,
    content: render::TreeContent,
) -> Result<DirSpec, NetbootError> {
    let render::TreeContent { mut tree, shared } = content;
    for (name, spec) in shared {
        tree.link(name, store.shared_dir(side, &spec)?);
    }
    Ok(tree)
}

/// The TFTP tree: the syslinux files copied, the rest rendered.
fn tftp_tree(
    cfg: &NetbootConfig,
    syslinux: &[(&'static str, PathBuf)],
    store: &ObjectStore,
    published: &[(String, Meta)],
) -> Result<DirSpec, NetbootError> {
    let files = syslinux
        .iter()
        .map(|(name, path)| {
            let content = std::fs::read(path)
                .map_err(io_err(format!("reading the syslinux file '{}'", path.display())))?;
            Ok((*name, content))
        })
        .collect::<Result<Vec<_>, NetbootError>>()?;
    let content = render::tftp_tree(cfg, store.layout(), files, &published_of(published));
    save_shared(store, Side::Tftp, content)
}

/// The HTTP tree, and where each machine's entry sits in its `machines.json`.
fn http_tree(
    cfg: &NetbootConfig,
    syslinux: &[(&'static str, PathBuf)],
    store: &ObjectStore,
    published: &[(String, Meta)],
) -> Result<(DirSpec, Vec<Range<u64>>), NetbootError> {
    let (machines_json, ranges) = store.machines_json(published)?;
    let memdisk = syslinux
        .iter()
        .find(|(n, _)| *n == "memdisk")
        .map(|(_, p)| p)
        .expect("memdisk is a syslinux file");
    let content =
        render::http_tree(cfg, store.layout(), memdisk, machines_json, &published_of(published));
    Ok((save_shared(store, Side::Http, content)?, ranges))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::fake::{FakeHost, Reply};

    #[tokio::test]
    async fn a_remote_build_reads_the_report_faults_included() {
        let host = FakeHost::new("pxe");
        let faulty = BuildReport {
            faults: vec![Fault {
                profile: "node2".into(),
                generation: None,
                kind: FaultKind::NoCurrentGeneration,
                message: "x".into(),
                left_out: true,
            }],
            ..BuildReport::default()
        };
        let faulty = serde_json::to_string(&faulty).unwrap();
        host.reply(
            "carrier netboot build",
            [
                Reply::ok(&serde_json::to_string(&BuildReport::default()).unwrap()),
                Reply::fail(&faulty),
                Reply::fail("error: no such file /etc/carrier/netboot.json"),
            ],
        );
        assert!(build_on(host.as_ref()).await.unwrap().is_clean());
        assert_eq!(
            build_on(host.as_ref()).await.unwrap().faults.len(),
            1,
            "left out: still a report"
        );
        let e = build_on(host.as_ref()).await.unwrap_err().to_string();
        assert!(e.contains("netboot.json") && e.contains("exit status 1"), "{e}");
        assert_eq!(host.logged("carrier netboot build").len(), 3);
        assert_eq!(host.log()[0], "carrier netboot build --json");
    }
}
