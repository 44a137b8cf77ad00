//! The trees' content, rendered from the model without touching the file system: a
//! machine's part of both trees ([`machine`], saved as an object by `objects`) and the
//! trees around the machines ([`tftp_tree`], [`http_tree`], published by `publish`).
//! Everything is a [`DirSpec`]; the file contents come from `tftp` (PXELINUX menus),
//! `ipxe` (iPXE scripts) and `http` (JSON).

use std::path::{Path, PathBuf};

use super::config::NetbootConfig;
use super::layout::{Layout, Side};
use super::model::{Machine, Spin};
use super::tree::{DirSpec, FileParts};
use super::{MachineSummary, http, ipxe, tftp};

/// How long the per-MAC iPXE script waits before booting the default entry.
pub const IPXE_AUTO_TIMEOUT_MS: u32 = 5000;

/// A machine's part of the trees: what `boot/<fqdn>`, `pxeserver/machines/<fqdn>` (TFTP)
/// and `<fqdn>` (HTTP) show, and its entry of `machines.json`.
#[derive(Debug)]
pub struct MachineContent {
    /// `boot/` (`<N>/bzImage`, `<N>/initrd`, `current`) and `menus/` (PXELINUX menus,
    /// `menu.ipxe`, `auto.ipxe`).
    pub tftp: DirSpec,
    /// `tree/` (`machine.json`, `current`, `<N>/…`, `menu.ipxe`, `auto.ipxe`) and
    /// `entry.json` (the machine's object as it appears in `machines.json`).
    pub http: DirSpec,
}

/// Renders a machine's part of both trees. Depends only on `m` and on the settings of
/// `cfg` that the object key covers (`httpUrl`, memtest; the time zone is in `m`).
pub fn machine(m: &Machine, cfg: &NetbootConfig) -> MachineContent {
    let memtest = cfg.memtest.as_ref().map(|mt| mt.params.as_slice());
    let current = m.current().number.to_string();

    let mut boot = DirSpec::default();
    for g in &m.generations {
        let mut gdir = DirSpec::default();
        for f in g.boot_files.iter().filter(|f| f.name != "root.squashfs") {
            gdir.link(f.name, &f.path);
        }
        boot.dir(g.number.to_string(), gdir);
    }
    boot.link("current", &current);
    let mut menus = DirSpec::default();
    for (name, content) in tftp::machine_files(m, memtest) {
        menus.file(name, content);
    }
    menus.file("menu.ipxe", ipxe::machine_script(ipxe::Tree::Tftp, m, 0));
    menus.file("auto.ipxe", ipxe::machine_script(ipxe::Tree::Tftp, m, IPXE_AUTO_TIMEOUT_MS));
    let mut tftp = DirSpec::default();
    tftp.dir("boot", boot);
    tftp.dir("menus", menus);

    let mut tree = DirSpec::default();
    let machine_json = http::machine_json(m);
    let entry = http::machines_entry(&machine_json);
    tree.file("machine.json", machine_json);
    tree.link("current", &current);
    for g in &m.generations {
        let mut gdir = DirSpec::default();
        for f in &g.boot_files {
            gdir.link(f.name, &f.path);
        }
        gdir.file("generation.json", http::generation_json(m, g));
        gdir.file("kernel-params", g.kernel_params.join(" "));
        tree.dir(g.number.to_string(), gdir);
    }
    let http_tree = ipxe::Tree::Http { url: &cfg.http_url };
    tree.file("menu.ipxe", ipxe::machine_script(http_tree, m, 0));
    tree.file("auto.ipxe", ipxe::machine_script(http_tree, m, IPXE_AUTO_TIMEOUT_MS));
    let mut http = DirSpec::default();
    http.dir("tree", tree);
    http.file("entry.json", entry);
    MachineContent { tftp, http }
}

/// A tree's content, and the directories at its root that are shared between successive
/// trees while they stay the same (saved as objects, then linked at their name).
#[derive(Debug)]
pub struct TreeContent {
    pub tree: DirSpec,
    pub shared: Vec<(&'static str, DirSpec)>,
}

/// A published machine: its object key and summary, in profile name order.
pub type Published<'a> = (&'a str, &'a MachineSummary);

/// The TFTP tree: the syslinux files (`(name, content)`), menus, links to the machines'
/// objects; `pxelinux.cfg/` and `ipxe/` shared.
pub fn tftp_tree(
    cfg: &NetbootConfig,
    layout: &Layout,
    syslinux: Vec<(&'static str, Vec<u8>)>,
    published: &[Published],
) -> TreeContent {
    let mut tree = DirSpec::default();
    let memtest = cfg.memtest.as_ref().map(|m| m.params.as_slice());
    let isos = iso_names(cfg);
    for (name, content) in syslinux {
        tree.file(name, content);
    }
    let spins = spins_of(published);
    let mut pxeserver = DirSpec::default();
    for spin in &spins {
        let entries: Vec<(&str, &str)> = published
            .iter()
            .filter(|(_, m)| m.spin == *spin)
            .map(|(_, m)| (m.fqdn.as_str(), m.label.as_str()))
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
    for (key, m) in published {
        boot.link(m.fqdn.clone(), layout.tftp_boot_target(key));
        machines.link(m.fqdn.clone(), layout.tftp_menus_target(key));
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
    for (_, m) in published {
        for mac in &m.macs {
            let auto = format!("pxeserver/machines/{}/auto", m.fqdn);
            pxelinux_cfg.link(format!("01-{mac}"), layout.via_root(Side::Tftp, &format!("{auto}.cfg")));
            ipxe_dir.link(format!("01-{mac}.ipxe"), layout.via_root(Side::Tftp, &format!("{auto}.ipxe")));
        }
    }
    ipxe_menus(cfg, ipxe::Tree::Tftp, published, &isos, &mut ipxe_dir);
    TreeContent { tree, shared: vec![("pxelinux.cfg", pxelinux_cfg), ("ipxe", ipxe_dir)] }
}

/// The HTTP tree: `machines_json` (made by `objects`, mostly ranges of the served one),
/// links to the machines' objects, `ipxe/` shared.
pub fn http_tree(
    cfg: &NetbootConfig,
    layout: &Layout,
    memdisk: &Path,
    machines_json: FileParts,
    published: &[Published],
) -> TreeContent {
    let mut tree = DirSpec::default();
    tree.parts("machines.json", machines_json);
    for (key, m) in published {
        tree.link(m.fqdn.clone(), layout.http_target(key));
    }

    let mut ipxe_dir = DirSpec::default();
    for (_, m) in published {
        for mac in &m.macs {
            let auto = format!("{}/auto.ipxe", m.fqdn);
            ipxe_dir.link(format!("01-{mac}.ipxe"), layout.via_root(Side::Http, &auto));
        }
    }
    ipxe_dir.link("memdisk", memdisk);
    if let Some(mt) = &cfg.memtest {
        ipxe_dir.link("memtest.bin", &mt.file);
    }
    let isos = iso_names(cfg);
    if !isos.is_empty() {
        ipxe_dir.dir("iso-images", iso_images_dir(cfg, &isos));
    }
    ipxe_menus(cfg, ipxe::Tree::Http { url: &cfg.http_url }, published, &isos, &mut ipxe_dir);
    TreeContent { tree, shared: vec![("ipxe", ipxe_dir)] }
}

/// `boot.ipxe` and `menu.ipxe` of an `ipxe/` directory.
fn ipxe_menus(cfg: &NetbootConfig, tree: ipxe::Tree, published: &[Published], isos: &[(String, String)], dir: &mut DirSpec) {
    let machines: Vec<(Spin, &str, &str)> =
        published.iter().map(|(_, m)| (m.spin, m.fqdn.as_str(), m.label.as_str())).collect();
    let memtest = cfg.memtest.as_ref().map(|m| m.params.as_slice());
    dir.file("boot.ipxe", ipxe::boot_script());
    dir.file("menu.ipxe", ipxe::main_menu(tree, &cfg.host_name, &machines, isos, memtest));
}

/// Spins in first-appearance order over the machines (sorted by name).
fn spins_of(published: &[Published]) -> Vec<Spin> {
    let mut spins = Vec::new();
    for (_, m) in published {
        if !spins.contains(&m.spin) {
            spins.push(m.spin);
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
        images.link(file.clone(), PathBuf::from(&img.file));
    }
    images
}
