//! iPXE scripts, generated from the same model as the PXELINUX menus (upstream has none).
//!
//! The same scripts exist in both trees, under `ipxe/`:
//! - `ipxe/boot.ipxe`: the entry point (DHCP `filename`): chains `01-${mac:hexhyp}.ipxe`
//!   (the booting NIC's own script) and falls back to `menu.ipxe`;
//! - `ipxe/menu.ipxe`: the main menu (machines grouped by spin, ISO images, memtest,
//!   local boot, reboot, shell);
//! - `ipxe/01-<mac>.ipxe`: a symlink to the machine's `auto.ipxe`;
//! - per machine `menu.ipxe` (every generation, and for vpsAdminOS every variant; the
//!   current generation is the default) and `auto.ipxe` (the same menu, booting the
//!   default after 5 seconds), in the machine's directory
//!   (`pxeserver/machines/<fqdn>/` over TFTP, `<fqdn>/` over HTTP).
//!
//! Over TFTP, files are named by root-relative paths (`/boot/<fqdn>/<N>/bzImage`): iPXE
//! resolves them against the script's own `tftp://server/...` URI and strips the leading
//! `/` in the request, so they work whichever name the script was fetched under. Over
//! HTTP, files are absolute URLs from `httpUrl`, the same URLs as in `generation.json`.

use std::fmt::Write;

use super::model::{BootMachine, variants};
use crate::cluster::Spin;

/// Which tree a script is written for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Tree<'a> {
    Tftp,
    Http { url: &'a str },
}

impl Tree<'_> {
    fn prefix(&self) -> &str {
        match self {
            Tree::Tftp => "",
            Tree::Http { url } => url,
        }
    }

    pub(super) fn boot_file(&self, fqdn: &str, number: u64, name: &str) -> String {
        match self {
            Tree::Tftp => format!("/boot/{fqdn}/{number}/{name}"),
            Tree::Http { url } => format!("{url}/{fqdn}/{number}/{name}"),
        }
    }

    pub(super) fn machine_menu(&self, fqdn: &str) -> String {
        match self {
            Tree::Tftp => format!("/pxeserver/machines/{fqdn}/menu.ipxe"),
            Tree::Http { url } => format!("{url}/{fqdn}/menu.ipxe"),
        }
    }

    pub(super) fn main_menu(&self) -> String {
        format!("{}/ipxe/menu.ipxe", self.prefix())
    }

    pub(super) fn memdisk(&self) -> String {
        match self {
            Tree::Tftp => "/memdisk".to_string(),
            Tree::Http { url } => format!("{url}/ipxe/memdisk"),
        }
    }

    pub(super) fn memtest(&self) -> String {
        match self {
            Tree::Tftp => "/boot/memtest86/memtest.bin".to_string(),
            Tree::Http { url } => format!("{url}/ipxe/memtest.bin"),
        }
    }

    pub(super) fn iso_image(&self, file: &str) -> String {
        match self {
            Tree::Tftp => format!("/boot/iso-images/{file}"),
            Tree::Http { url } => format!("{url}/ipxe/iso-images/{file}"),
        }
    }
}

/// `ipxe/boot.ipxe`, the same in both trees (its chains are relative to itself).
pub(super) fn boot_script() -> String {
    "#!ipxe\n\
     # carrier netboot: this NIC's own menu when there is one, else the main menu.\n\
     chain --autofree 01-${mac:hexhyp}.ipxe || chain --autofree menu.ipxe\n"
        .to_string()
}

/// `ipxe/menu.ipxe`. `machines` are `(spin, fqdn, label)` sorted by profile name;
/// spins are listed in first-appearance order, like the PXELINUX main menu.
pub(super) fn main_menu(
    tree: Tree,
    host_name: &str,
    machines: &[(Spin, &str, &str)],
    iso_images: &[(String, String)],
    memtest: Option<&[String]>,
) -> String {
    let mut out = String::from("#!ipxe\n# carrier netboot main menu\n\n:start\n");
    let _ = writeln!(out, "menu {host_name}");
    let mut spins: Vec<Spin> = Vec::new();
    for (spin, _, _) in machines {
        if !spins.contains(spin) {
            spins.push(*spin);
        }
    }
    for spin in &spins {
        let _ = writeln!(out, "item --gap {}", spin.label());
        for (_, fqdn, label) in machines.iter().filter(|(s, _, _)| s == spin) {
            let _ = writeln!(out, "item m-{fqdn} {label} >");
        }
    }
    if !iso_images.is_empty() {
        out.push_str("item --gap ISO images\n");
        for (i, (_, label)) in iso_images.iter().enumerate() {
            let _ = writeln!(out, "item iso-{i} {label}");
        }
    }
    out.push_str("item --gap Tools\n");
    if memtest.is_some() {
        out.push_str("item memtest Memtest86\n");
    }
    out.push_str("item local_boot Local Boot\nitem reboot Reboot\nitem shell iPXE shell\n");
    out.push_str("choose target || goto start\ngoto ${target}\n\n");
    for (_, fqdn, _) in machines {
        let _ = writeln!(out, ":m-{fqdn}\nchain {} || goto start\n", tree.machine_menu(fqdn));
    }
    for (i, (file, _)) in iso_images.iter().enumerate() {
        let _ = writeln!(
            out,
            ":iso-{i}\nimgfree\nkernel {} iso raw\ninitrd {}\nboot || goto start\n",
            tree.memdisk(),
            tree.iso_image(file)
        );
    }
    if let Some(params) = memtest {
        let _ = writeln!(
            out,
            ":memtest\nimgfree\nkernel {}\nboot || goto start\n",
            join_args(&tree.memtest(), params)
        );
    }
    out.push_str(":local_boot\nexit\n\n:reboot\nreboot\n\n:shell\nshell\ngoto start\n");
    out
}

/// A machine's `menu.ipxe` (`timeout_ms` 0: wait for a choice) or `auto.ipxe` (boot the
/// default after `timeout_ms`). The current generation comes first and is the default
/// (for vpsAdminOS its `default` variant); every other generation follows, newest first.
pub(super) fn machine_script(tree: Tree, m: &BootMachine, timeout_ms: u32) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "#!ipxe\n# {} ({})\n\nset carrier-timeout {timeout_ms}\n\n:start",
        m.label, m.fqdn
    );
    let _ = writeln!(out, "menu {}", m.label);
    let ordered: Vec<_> = m
        .generations
        .iter()
        .filter(|g| g.current)
        .chain(m.generations.iter().filter(|g| !g.current))
        .collect();
    let mut targets: Vec<(String, String, u64)> = Vec::new(); // (item, params, generation)
    for g in &ordered {
        // Gen <N> - <time> - <shortrev> - <kernel version>, leaving out unknown parts.
        let number = format!("Gen {}", g.number);
        let parts = [
            Some(number.as_str()),
            Some(g.time_s.as_str()),
            g.shortrev.as_deref(),
            g.kernel_version.as_deref(),
        ];
        let title = parts
            .iter()
            .flatten()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" - ");
        let title = if g.current { format!("{title} (current)") } else { title };
        match m.spin {
            // Resolving admits no other spins (`RENDERED_SPINS`).
            Spin::Nixos | Spin::Openvz | Spin::Other => {
                let item = format!("gen-{}", g.number);
                let _ = writeln!(out, "item {item} {title}");
                targets.push((item, g.pxe_cmdline(), g.number));
            }
            Spin::Vpsadminos => {
                let _ = writeln!(out, "item --gap {title}");
                for v in variants(m.spin) {
                    let item = format!("gen-{}-{}", g.number, v.name);
                    let _ = writeln!(out, "item {item} {}", v.label);
                    targets.push((item, g.variant_cmdline(v), g.number));
                }
            }
        }
    }
    out.push_str("item --gap\nitem mainmenu < Back to Main Menu\n");
    let default = &targets[0].0;
    let _ = writeln!(
        out,
        "choose --timeout ${{carrier-timeout}} --default {default} target || goto mainmenu\n\
         set carrier-timeout 0\ngoto ${{target}}\n"
    );
    for (item, params, number) in &targets {
        let kernel = tree.boot_file(&m.fqdn, *number, "bzImage");
        let initrd = tree.boot_file(&m.fqdn, *number, "initrd");
        // Under UEFI the kernel's EFI stub loads the initrd named by `initrd=`; the
        // BIOS path ignores the parameter.
        let _ = writeln!(
            out,
            ":{item}\nimgfree\nkernel {}\ninitrd --name initrd {initrd}\nboot || goto start\n",
            join_args(&kernel, &["initrd=initrd".to_string(), params.clone()])
        );
    }
    let _ = writeln!(out, ":mainmenu\nchain {}", tree.main_menu());
    out
}

fn join_args(first: &str, rest: &[String]) -> String {
    std::iter::once(first)
        .chain(rest.iter().map(String::as_str).filter(|s| !s.is_empty()))
        .collect::<Vec<_>>()
        .join(" ")
}
