//! The trees' content, rendered from the model without touching the file system: a
//! machine's part of both trees ([`machine`], saved as an object by `objects`) and the
//! trees around the machines ([`tftp_tree`], [`http_tree`], published by `publish`).
//! Everything is a [`DirSpec`]; the file contents come from `tftp` (PXELINUX menus),
//! `ipxe` (iPXE scripts) and `http` (JSON).

use std::path::{Path, PathBuf};

use super::config::NetbootConfig;
use super::layout::{Layout, Side};
use super::model::BootMachine;
use super::tree::{DirSpec, FileParts};
use super::{PublishedMachine, http, ipxe, tftp};
use crate::cluster::Spin;

/// How long the per-MAC iPXE script waits before booting the default entry.
pub const IPXE_AUTO_TIMEOUT_MS: u32 = 5000;

/// A machine's part of the trees: what `boot/<fqdn>`, `pxeserver/machines/<fqdn>` (TFTP)
/// and `<fqdn>` (HTTP) show, and its entry of `machines.json`.
#[derive(Debug)]
pub(super) struct MachineContent {
    /// `boot/` (`<N>/bzImage`, `<N>/initrd`, `current`) and `menus/` (PXELINUX menus,
    /// `menu.ipxe`, `auto.ipxe`).
    pub tftp: DirSpec,
    /// `tree/` (`machine.json`, `current`, `<N>/…`, `menu.ipxe`, `auto.ipxe`) and
    /// `entry.json` (the machine's object as it appears in `machines.json`).
    pub http: DirSpec,
}

/// Renders a machine's part of both trees. Depends only on `m` and on the settings of
/// `cfg` that the object key covers (`httpUrl`, memtest; the time zone is in `m`).
pub(super) fn machine(m: &BootMachine, cfg: &NetbootConfig) -> MachineContent {
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
        gdir.file("kernel-params", g.kernel_params_file());
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
pub(super) struct TreeContent {
    pub tree: DirSpec,
    pub shared: Vec<(&'static str, DirSpec)>,
}

/// A published machine: its object key and summary, in profile name order.
pub(super) type Published<'a> = (&'a str, &'a PublishedMachine);

/// The TFTP tree: the syslinux files (`(name, content)`), menus, links to the machines'
/// objects; `pxelinux.cfg/` and `ipxe/` shared.
pub(super) fn tftp_tree(
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
    pxelinux_cfg
        .file("default", tftp::main_menu(&cfg.host_name, &spins, !isos.is_empty(), memtest));
    let mut ipxe_dir = DirSpec::default();
    for (_, m) in published {
        for mac in &m.macs {
            let auto = format!("pxeserver/machines/{}/auto", m.fqdn);
            pxelinux_cfg
                .link(format!("01-{mac}"), layout.via_root(Side::Tftp, &format!("{auto}.cfg")));
            ipxe_dir.link(
                format!("01-{mac}.ipxe"),
                layout.via_root(Side::Tftp, &format!("{auto}.ipxe")),
            );
        }
    }
    ipxe_menus(cfg, ipxe::Tree::Tftp, published, &isos, &mut ipxe_dir);
    TreeContent { tree, shared: vec![("pxelinux.cfg", pxelinux_cfg), ("ipxe", ipxe_dir)] }
}

/// The HTTP tree: `machines_json` (made by `objects`, mostly ranges of the served one),
/// links to the machines' objects, `ipxe/` shared.
pub(super) fn http_tree(
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
fn ipxe_menus(
    cfg: &NetbootConfig,
    tree: ipxe::Tree,
    published: &[Published],
    isos: &[(String, String)],
    dir: &mut DirSpec,
) {
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
            let base =
                img.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
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

#[cfg(test)]
mod tests {
    //! Golden tests of rendered content, without a file system: machines built in memory
    //! as `model::resolve` makes them from the dists of `core/tests/netboot.rs`'s main
    //! fixture, rendered, and compared with that fixture's golden trees, where the same
    //! machines appear (store hashes masked as `HASH`, which the paths here spell out).

    use super::*;
    use crate::carrier::netboot::config::TimeZone;
    use crate::carrier::netboot::model::{self, BootFile, BootGeneration};
    use crate::carrier::netboot::tree::{Golden, parse_golden};
    use crate::carrier::profiles::shortrev;
    use serde_json::{Value, json};

    const URL: &str = "http://192.168.100.1";
    const T0: i64 = 1_704_103_200;
    const DAY: i64 = 86_400;

    /// The settings of the main fixture that a machine's part depends on.
    fn config() -> NetbootConfig {
        let v = json!({"tftpRoot": "/srv/tftp", "httpRoot": "/srv/http", "hostName": "pxe-carrier",
            "httpUrl": URL, "syslinux": "/usr/lib/syslinux", "timeZone": "UTC",
            "memtest": {"file": "/srv/memtest.bin", "params": ["console=ttyS0,115200"]}});
        NetbootConfig::from_value(Path::new("/etc/carrier/netboot.json"), v).unwrap()
    }

    /// One generation, from a dist of the fixture named `dist` (`dist-<dist>`,
    /// `nixos-system-<dist>`) with the kernel `linux-<kernel>`.
    struct Dist {
        dist: &'static str,
        kernel: &'static str,
        time: i64,
        version: Option<&'static str>,
        revision: Option<&'static str>,
        macs: &'static [&'static str],
        params: &'static [&'static str],
        squashfs: bool,
        swpins_info: Option<Value>,
    }

    fn dist(
        dist: &'static str,
        time: i64,
        version: Option<&'static str>,
        macs: &'static [&'static str],
    ) -> Dist {
        let (kernel, revision, squashfs, swpins_info) = ("6.1.0", None, false, None);
        Dist { dist, kernel, time, version, revision, macs, params: &[], squashfs, swpins_info }
    }

    /// What `model::resolve` makes of a profile whose generations 1, 2, … are `dists`.
    fn resolved(name: &str, spin: Spin, fqdn: &str, dists: Vec<Dist>, current: u64) -> BootMachine {
        let url = format!("{URL}/{fqdn}");
        let mut generations: Vec<BootGeneration> = dists
            .into_iter()
            .zip(1..)
            .map(|(d, number)| {
                let store_path = PathBuf::from(format!("/nix/store/HASH-dist-{}", d.dist));
                let gurl = format!("{url}/{number}");
                let mut files = vec![
                    (
                        "bzImage",
                        PathBuf::from(format!("/nix/store/HASH-linux-{}/bzImage", d.kernel)),
                    ),
                    ("initrd", store_path.join("initrd")),
                ];
                if d.squashfs {
                    files.push(("root.squashfs", store_path.join("root.squashfs")));
                }
                let boot_files: Vec<BootFile> = files
                    .into_iter()
                    .map(|(name, path)| BootFile { name, path, url: format!("{gurl}/{name}") })
                    .collect();
                let toplevel = format!("/nix/store/HASH-nixos-system-{}", d.dist);
                let params = d.params.iter().map(|p| p.to_string()).collect();
                let kernel_params =
                    model::normalize_kernel_params(spin, params, &toplevel, &boot_files);
                BootGeneration {
                    number,
                    store_path,
                    url: gurl,
                    time: d.time,
                    time_s: model::format_time(d.time, TimeZone::Utc),
                    current: number == current,
                    toplevel,
                    version: d.version.map(str::to_string),
                    revision: d.revision.map(str::to_string),
                    shortrev: shortrev(d.revision, d.version),
                    macs: d.macs.iter().map(|m| m.to_string()).collect(),
                    kernel_version: Some(d.kernel.to_string()),
                    pxe_kernel_params: kernel_params.clone(),
                    kernel_params,
                    checkin_params: Vec::new(),
                    boot_files,
                    swpins_info: d.swpins_info,
                }
            })
            .collect();
        generations.reverse();
        let current_macs = &generations.iter().find(|g| g.current).unwrap().macs;
        let mut macs: Vec<String> =
            current_macs.iter().filter_map(|m| model::normalize_mac(m)).collect();
        macs.dedup();
        BootMachine {
            name: name.to_string(),
            spin,
            fqdn: fqdn.to_string(),
            label: fqdn.to_string(),
            short_label: fqdn.split('.').take(2).collect::<Vec<_>>().join("."),
            url,
            generations,
            macs,
        }
    }

    fn nixos1() -> BootMachine {
        let params = &["console=ttyS0", "loglevel=4"];
        let dists = vec![
            Dist {
                revision: Some("0123456789abcdef0123456789abcdef01234567"),
                swpins_info: Some(json!({"nixpkgs": {"rev": "0123456789abcdef"}})),
                params,
                ..dist(
                    "nixos1-a",
                    T0,
                    Some("24.05.20240101.aaaaaaa"),
                    &["52:54:00:10:00:11", "52:54:00:10:00:99"],
                )
            },
            Dist {
                params,
                ..dist(
                    "nixos1-b",
                    T0 + DAY,
                    Some("24.05.20240201.bbbbbbb"),
                    &["52:54:00:10:00:11", "52-54-00-AA-BB-CC"],
                )
            },
            Dist {
                params,
                ..dist(
                    "nixos1-c",
                    T0 + 2 * DAY,
                    Some("24.05.20240301.ccccccc"),
                    &["52:54:00:10:00:11"],
                )
            },
        ];
        resolved("nixos1", Spin::Nixos, "nixos1.example.org", dists, 2)
    }

    fn node2() -> BootMachine {
        // The dist's `kernel-params` file, as `model` splits it (its stale `httproot=`
        // is dropped by the normalisation).
        let params = &["quiet", "panic=10", "httproot=http://stale.invalid/root.squashfs"];
        let os = |d, time, version, kernel| Dist {
            kernel,
            params,
            squashfs: true,
            ..dist(d, time, Some(version), &["52:54:00:10:00:12"])
        };
        let dists = vec![
            os("node2-a", T0 + 10 * DAY, "24.01.0.1111111", "6.1.0"),
            os("node2-b", T0 + 11 * DAY, "24.02.0.2222222", "6.6.1"),
        ];
        resolved("os:node2", Spin::Vpsadminos, "node2.prg.example.org", dists, 2)
    }

    fn web2() -> BootMachine {
        resolved("web-2", Spin::Nixos, "web-2", vec![dist("web-2-a", T0 + 20 * DAY, None, &[])], 1)
    }

    /// The entries of `golden` under `prefix/`.
    fn under(golden: &Golden, prefix: &str) -> Golden {
        let prefix = format!("{prefix}/");
        golden
            .iter()
            .filter(|(line, _)| line.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// `golden` with the prefix `from/` of every line replaced by `to/`.
    fn moved(golden: Golden, from: &str, to: &str) -> Golden {
        let (from, to) = (format!("{from}/"), format!("{to}/"));
        golden.into_iter().map(|(k, v)| (k.replacen(&from, &to, 1), v)).collect()
    }

    fn assert_same(what: &str, actual: Golden, expected: Golden) {
        assert!(!expected.is_empty(), "{what}: nothing in the golden file");
        for (line, content) in &expected {
            assert_eq!(actual.get(line), Some(content), "{what}: `{line}` differs or is missing");
        }
        let extra: Vec<&String> = actual.keys().filter(|k| !expected.contains_key(*k)).collect();
        assert!(extra.is_empty(), "{what}: not in the golden file: {extra:?}");
    }

    #[test]
    fn a_machines_part_is_its_part_of_the_golden_trees() {
        let tftp = parse_golden(include_str!("../../../tests/fixtures/netboot/main/tftp.txt"));
        let http = parse_golden(include_str!("../../../tests/fixtures/netboot/main/http.txt"));
        let machines_json = http["machines.json"].clone().unwrap();
        let cfg = config();
        for m in [nixos1(), node2(), web2()] {
            let content = machine(&m, &cfg);
            let fqdn = &m.fqdn;
            // The trees link boot/<fqdn> and pxeserver/machines/<fqdn> to the TFTP
            // object's boot/ and menus/, and <fqdn> to the HTTP object's tree/.
            let object = content.tftp.golden("");
            let boot = format!("boot/{fqdn}");
            assert_same(
                &format!("{fqdn}: TFTP {boot}"),
                moved(under(&object, "/boot"), "/boot", &boot),
                under(&tftp, &boot),
            );
            let menus = format!("pxeserver/machines/{fqdn}");
            assert_same(
                &format!("{fqdn}: TFTP {menus}"),
                moved(under(&object, "/menus"), "/menus", &menus),
                under(&tftp, &menus),
            );
            assert_eq!(
                object.len(),
                under(&object, "/boot").len() + under(&object, "/menus").len(),
                "{fqdn}: boot/ and menus/"
            );

            let object = content.http.golden("");
            assert_same(
                &format!("{fqdn}: HTTP {fqdn}"),
                moved(under(&object, "/tree"), "/tree", fqdn),
                under(&http, fqdn),
            );
            let entry = object["/entry.json"].as_ref().unwrap();
            assert!(
                machines_json.contains(&format!("\n    {entry}")),
                "{fqdn}: entry.json is not in machines.json:\n{entry}"
            );
            assert_eq!(
                object.len(),
                under(&object, "/tree").len() + 1,
                "{fqdn}: tree/ and entry.json"
            );
        }
    }
}
