//! PXELINUX menus (syslinux `menu.c32` syntax) of the TFTP tree, spec 3.4 and 3.5. Pure
//! functions from the model to file contents; the `objects` and `mod` modules place them.
//!
//! Paths in menus are relative to the TFTP root, as PXELINUX resolves them.

use std::fmt::Write;

use super::model::{BootGeneration, BootMachine, variants};
use crate::cluster::Spin;

/// `pxelinux.cfg/default`.
pub(super) fn main_menu(
    host_name: &str,
    spins: &[Spin],
    has_iso_images: bool,
    memtest: Option<&[String]>,
) -> String {
    let mut out = String::new();
    header(
        &mut out,
        &["DEFAULT menu.c32", "PROMPT 0", "TIMEOUT 0", &format!("MENU TITLE {host_name}")],
    );
    for spin in spins {
        submenu(
            &mut out,
            spin.as_str(),
            &format!("{} >", spin.label()),
            &format!("pxeserver/{}.cfg", spin.as_str()),
        );
    }
    if has_iso_images {
        submenu(&mut out, "isoimages", "ISO images >", "pxeserver/iso-images.cfg");
    }
    memtest_entry(&mut out, memtest);
    entry(&mut out, "local_boot", &[("MENU LABEL", "Local Boot"), ("LOCALBOOT", "0")]);
    entry(
        &mut out,
        "warm_reboot",
        &[("MENU LABEL", "Warm Reboot"), ("KERNEL", "reboot.c32"), ("APPEND", "--warm")],
    );
    entry(&mut out, "cold_reboot", &[("MENU LABEL", "Cold Reboot"), ("KERNEL", "reboot.c32")]);
    out
}

/// `pxeserver/<spin>.cfg`: `machines` are `(fqdn, label)`, already sorted by profile name.
pub(super) fn spin_menu(spin: Spin, machines: &[(&str, &str)]) -> String {
    let mut out = String::new();
    header(&mut out, &[&format!("MENU TITLE {}", spin.label())]);
    for (fqdn, label) in machines {
        submenu(
            &mut out,
            fqdn,
            &format!("{label} >"),
            &format!("pxeserver/machines/{fqdn}/menu.cfg"),
        );
    }
    main_menu_entry(&mut out);
    out
}

/// `pxeserver/iso-images.cfg`: `images` are `(file name under boot/iso-images, label)`.
pub(super) fn iso_menu(images: &[(String, String)]) -> String {
    let mut out = String::new();
    header(&mut out, &["MENU TITLE ISO images"]);
    for (i, (file, label)) in images.iter().enumerate() {
        entry(
            &mut out,
            &format!("image{i}"),
            &[
                ("MENU LABEL", label),
                ("KERNEL", "memdisk"),
                ("APPEND", &format!("iso initrd=boot/iso-images/{file} raw")),
            ],
        );
    }
    main_menu_entry(&mut out);
    out
}

/// The files of `pxeserver/machines/<fqdn>/`: `(file name, content)`.
pub(super) fn machine_files(m: &BootMachine, memtest: Option<&[String]>) -> Vec<(String, String)> {
    match m.spin {
        // Resolving admits no other spins (`RENDERED_SPINS`).
        Spin::Nixos | Spin::Openvz | Spin::Other => vec![
            ("menu.cfg".to_string(), nixos_menu(m, memtest)),
            ("auto.cfg".to_string(), nixos_auto(m)),
        ],
        Spin::Vpsadminos => {
            let current = m.current();
            let mut files = vec![
                ("menu.cfg".to_string(), vpsadminos_page(m, current, true, None, memtest)),
                ("auto.cfg".to_string(), vpsadminos_page(m, current, true, Some(50), memtest)),
                ("generations.cfg".to_string(), vpsadminos_generations(m)),
            ];
            for g in &m.generations {
                files.push((
                    format!("generation-{}.cfg", g.number),
                    vpsadminos_page(m, g, false, None, memtest),
                ));
            }
            files
        }
    }
}

/// NixOS `menu.cfg`. The current generation comes first, labelled with the machine's
/// label; then every other generation, newest first. Upstream lists
/// `generations[1..]` instead (quirk 11: the newest is missing and the current one is
/// listed twice when the current one is not the newest).
fn nixos_menu(m: &BootMachine, memtest: Option<&[String]>) -> String {
    let mut out = String::new();
    header(&mut out, &[&format!("MENU TITLE {}", m.label)]);
    let current = m.current();
    nixos_entry(&mut out, m, current, &m.fqdn, &m.label);
    for g in m.generations.iter().filter(|g| !g.current) {
        let label =
            format!("Gen {} - {} - {}", g.number, g.time_s, g.shortrev.as_deref().unwrap_or(""));
        nixos_entry(&mut out, m, g, &format!("{}-{}", m.fqdn, g.number), &label);
    }
    memtest_entry(&mut out, memtest);
    main_menu_entry(&mut out);
    out
}

/// NixOS `auto.cfg`, the per-MAC target: boots the current generation without a menu.
fn nixos_auto(m: &BootMachine) -> String {
    let mut out = String::new();
    header(&mut out, &[&format!("DEFAULT {}", m.fqdn), "PROMPT 0", "TIMEOUT 50"]);
    nixos_entry(&mut out, m, m.current(), &m.fqdn, &m.label);
    out
}

fn nixos_entry(
    out: &mut String,
    m: &BootMachine,
    g: &BootGeneration,
    label: &str,
    menu_label: &str,
) {
    entry(
        out,
        label,
        &[
            ("MENU LABEL", menu_label),
            ("LINUX", &format!("boot/{}/{}/bzImage", m.fqdn, g.number)),
            ("INITRD", &format!("boot/{}/{}/initrd", m.fqdn, g.number)),
            ("APPEND", &g.pxe_cmdline()),
        ],
    );
}

/// vpsAdminOS `menu.cfg` (root page), `auto.cfg` (root page with a timeout, in tenths
/// of a second) and `generation-<N>.cfg` (not root).
fn vpsadminos_page(
    m: &BootMachine,
    g: &BootGeneration,
    root: bool,
    timeout: Option<u32>,
    memtest: Option<&[String]>,
) -> String {
    let mut out = String::new();
    let mut lines = Vec::new();
    if let Some(t) = timeout {
        lines.push("DEFAULT menu.c32".to_string());
        lines.push(format!("TIMEOUT {t}"));
    }
    let when = if g.current { "current".to_string() } else { g.time_s.clone() };
    lines.push(format!(
        "MENU TITLE {} ({} - {} - {} - {})",
        m.short_label,
        g.number,
        when,
        g.shortrev.as_deref().unwrap_or(""),
        g.kernel_version.as_deref().unwrap_or("")
    ));
    header(&mut out, &lines.iter().map(String::as_str).collect::<Vec<_>>());
    for v in variants(m.spin) {
        entry(
            &mut out,
            v.name,
            &[
                ("MENU LABEL", v.label),
                ("LINUX", &format!("boot/{}/{}/bzImage", m.fqdn, g.number)),
                ("INITRD", &format!("boot/{}/{}/initrd", m.fqdn, g.number)),
                ("APPEND", &g.variant_cmdline(v)),
            ],
        );
    }
    submenu(
        &mut out,
        &format!("{}-generations", m.fqdn),
        if root { "Generations >" } else { "< Back to Generations" },
        &format!("pxeserver/machines/{}/generations.cfg", m.fqdn),
    );
    memtest_entry(&mut out, memtest);
    main_menu_entry(&mut out);
    out
}

/// vpsAdminOS `generations.cfg`: every generation, newest first, the current one marked.
/// Each entry has its own LABEL `generation-<N>` (upstream gives them all the LABEL
/// `generations`, quirk 12).
fn vpsadminos_generations(m: &BootMachine) -> String {
    let mut out = String::new();
    header(&mut out, &[&format!("MENU TITLE {} - generations", m.label)]);
    for g in &m.generations {
        let label = format!(
            "Gen {} - {} - {} - {}{}",
            g.number,
            g.time_s,
            g.shortrev.as_deref().unwrap_or(""),
            g.kernel_version.as_deref().unwrap_or(""),
            if g.current { " (current)" } else { "" }
        );
        submenu(
            &mut out,
            &format!("generation-{}", g.number),
            &label,
            &format!("pxeserver/machines/{}/generation-{}.cfg", m.fqdn, g.number),
        );
    }
    submenu(
        &mut out,
        "machine",
        &format!("< Back to {}", m.label),
        &format!("pxeserver/machines/{}/menu.cfg", m.fqdn),
    );
    main_menu_entry(&mut out);
    out
}

fn header(out: &mut String, lines: &[&str]) {
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    out.push('\n');
}

/// `LABEL <label>` followed by indented directives; a directive with an empty value is
/// left out (an empty `APPEND`).
fn entry(out: &mut String, label: &str, directives: &[(&str, &str)]) {
    let _ = writeln!(out, "LABEL {label}");
    for (key, value) in directives {
        if value.is_empty() {
            continue;
        }
        let _ = writeln!(out, "  {key} {value}");
    }
    out.push('\n');
}

fn submenu(out: &mut String, label: &str, menu_label: &str, config: &str) {
    entry(out, label, &[("MENU LABEL", menu_label), ("KERNEL", "menu.c32"), ("APPEND", config)]);
}

fn main_menu_entry(out: &mut String) {
    submenu(out, "mainmenu", "< Back to Main Menu", "pxelinux.cfg/default");
}

fn memtest_entry(out: &mut String, memtest: Option<&[String]>) {
    if let Some(params) = memtest {
        entry(
            out,
            "memtest",
            &[
                ("MENU LABEL", "Memtest86"),
                ("LINUX", "boot/memtest86/memtest.bin"),
                ("APPEND", &params.join(" ")),
            ],
        );
    }
}
