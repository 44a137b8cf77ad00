//! From a carried profile to the netboot model of spec 3.2: the machine (spin, fqdn,
//! label, URL from the current generation) and its generations (boot files, normalised
//! kernel params, vpsAdminOS variants), with every problem turned into a [`Fault`]
//! instead of an abort.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::TimeZone;
use super::{Fault, FaultKind};
use crate::carrier::profiles::{self, MachineJson, Profile, ProfileError};

/// The spins the netboot server can render.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Spin {
    Nixos,
    Vpsadminos,
}

impl Spin {
    pub fn parse(s: &str) -> Option<Spin> {
        match s {
            "nixos" => Some(Spin::Nixos),
            "vpsadminos" => Some(Spin::Vpsadminos),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Spin::Nixos => "nixos",
            Spin::Vpsadminos => "vpsadminos",
        }
    }

    /// The spin's name in menus.
    pub fn menu_label(self) -> &'static str {
        match self {
            Spin::Nixos => "NixOS",
            Spin::Vpsadminos => "vpsAdminOS",
        }
    }
}

/// A boot variant of a vpsAdminOS generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub name: &'static str,
    pub label: &'static str,
    pub kernel_params: &'static [&'static str],
}

/// The five vpsAdminOS variants, in upstream's order.
pub const VPSADMINOS_VARIANTS: [Variant; 5] = [
    Variant { name: "default", label: "Default runlevel", kernel_params: &["runlevel=default"] },
    Variant {
        name: "nopools",
        label: "Default runlevel without container imports",
        kernel_params: &["runlevel=default", "osctl.pools=0"],
    },
    Variant {
        name: "nostart",
        label: "Default runlevel without container autostart",
        kernel_params: &["runlevel=default", "osctl.autostart=0"],
    },
    Variant { name: "rescue", label: "Rescue runlevel (network and sshd)", kernel_params: &["runlevel=rescue"] },
    Variant { name: "single", label: "Single-user runlevel (console only)", kernel_params: &["runlevel=single"] },
];

impl Spin {
    pub fn variants(self) -> &'static [Variant] {
        match self {
            Spin::Nixos => &[],
            Spin::Vpsadminos => &VPSADMINOS_VARIANTS,
        }
    }
}

/// Boot files looked for in a generation, in upstream's order.
pub const BOOT_FILES: [&str; 3] = ["bzImage", "initrd", "root.squashfs"];

/// A machine ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// The profile name (safe alias).
    pub name: String,
    pub spin: Spin,
    pub fqdn: String,
    pub label: String,
    /// The first two dot-separated components of the label.
    pub short_label: String,
    /// `<httpUrl>/<fqdn>`.
    pub url: String,
    /// Descending by number; exactly one is current.
    pub generations: Vec<Generation>,
    /// The current generation's MACs, normalised (`aa-bb-cc-dd-ee-ff`), without duplicates.
    pub macs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub number: u64,
    pub store_path: PathBuf,
    pub url: String,
    pub time: i64,
    pub time_s: String,
    pub current: bool,
    pub toplevel: String,
    pub version: Option<String>,
    pub revision: Option<String>,
    pub shortrev: Option<String>,
    /// As written in `machine.json`.
    pub macs: Vec<String>,
    pub kernel_version: Option<String>,
    /// Normalised (spec 3.2 step 6.4).
    pub kernel_params: Vec<String>,
    /// What the NixOS PXELINUX menus append.
    pub pxe_kernel_params: Vec<String>,
    pub boot_files: Vec<BootFile>,
    pub swpins_info: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFile {
    pub name: &'static str,
    /// The real path in the store.
    pub path: PathBuf,
    pub url: String,
}

impl Machine {
    pub fn current(&self) -> &Generation {
        self.generations.iter().find(|g| g.current).expect("a resolved machine has a current generation")
    }
}

/// What resolving needs from the configuration.
pub struct Context<'a> {
    pub http_url: &'a str,
    pub time_zone: TimeZone,
}

/// Resolves one profile. Returns the machine (None when it is left out) and every fault
/// found: faults of other generations skip that generation, faults of the current
/// generation leave the machine out, an invalid MAC only skips that MAC.
pub fn resolve(profile: &Profile, ctx: &Context) -> (Option<Machine>, Vec<Fault>) {
    let mut faults = Vec::new();
    let name = &profile.name;
    let machine_fault = |kind, generation: Option<u64>, message: String| Fault {
        profile: name.clone(),
        generation,
        kind,
        message,
        left_out: true,
    };
    let Some(current) = profile.current() else {
        let numbers: Vec<String> = profile.generations.iter().map(|g| g.number.to_string()).collect();
        let message = match std::fs::read_link(&profile.path) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                format!("no current generation: the profile link '{}' does not exist", profile.path.display())
            }
            Err(_) => format!("no current generation: '{}' is not a symlink", profile.path.display()),
            Ok(target) => format!(
                "no current generation: the profile link '{}' points to '{}', which is none of its generations ({})",
                profile.path.display(),
                target.display(),
                numbers.join(", ")
            ),
        };
        faults.push(machine_fault(FaultKind::NoCurrentGeneration, None, message));
        return (None, faults);
    };

    // The machine's identity comes from the current generation.
    let current_json = match read_generation_json(current) {
        Ok(j) => j,
        Err(e) => {
            let kind = if e.is_not_found() { FaultKind::MissingMachineJson } else { FaultKind::InvalidMachineJson };
            faults.push(machine_fault(
                kind,
                Some(current.number),
                format!("current generation {}: {e}", current.number),
            ));
            return (None, faults);
        }
    };
    let json_path = current.machine_json_path();
    let Some(spin) = Spin::parse(&current_json.spin) else {
        faults.push(machine_fault(
            FaultKind::UnknownSpin,
            Some(current.number),
            format!(
                "'{}': field `spin`: unknown spin '{}' (the netboot server renders nixos and vpsadminos)",
                json_path.display(),
                current_json.spin
            ),
        ));
        return (None, faults);
    };
    let fqdn = current_json.fqdn.clone().unwrap_or_else(|| name.clone());
    if let Err(why) = check_fqdn(&fqdn) {
        let source = if current_json.fqdn.is_some() {
            format!("'{}': field `fqdn`", json_path.display())
        } else {
            "the profile name (used as fqdn)".to_string()
        };
        faults.push(machine_fault(FaultKind::InvalidFqdn, Some(current.number), format!("{source}: '{fqdn}' {why}")));
        return (None, faults);
    }
    let label = current_json.label.clone().unwrap_or_else(|| fqdn.clone());
    if has_line_break(&label) {
        faults.push(machine_fault(
            FaultKind::InvalidValue,
            Some(current.number),
            format!("'{}': field `label`: contains a line break", json_path.display()),
        ));
        return (None, faults);
    }
    let short_label = label.split('.').take(2).collect::<Vec<_>>().join(".");
    let url = format!("{}/{}", ctx.http_url, fqdn);

    let mut generations = Vec::new();
    for g in profile.generations.iter().rev() {
        let json = if g.current { Ok(current_json.clone()) } else { read_generation_json(g) };
        let resolved = json.map_err(|e| {
            let kind = if e.is_not_found() { FaultKind::MissingMachineJson } else { FaultKind::InvalidMachineJson };
            (kind, e.to_string())
        });
        match resolved.and_then(|json| resolve_generation(g, json, spin, &url, ctx)) {
            Ok(generation) => generations.push(generation),
            Err((kind, message)) => {
                let fault = Fault {
                    profile: name.clone(),
                    generation: Some(g.number),
                    kind,
                    message: if g.current { format!("current generation {}: {message}", g.number) } else { message },
                    left_out: g.current,
                };
                faults.push(fault);
                if g.current {
                    return (None, faults);
                }
            }
        }
    }

    let mut macs = Vec::new();
    for mac in &current_json.macs {
        match normalize_mac(mac) {
            Some(m) => {
                if !macs.contains(&m) {
                    macs.push(m)
                }
            }
            None => faults.push(Fault {
                profile: name.clone(),
                generation: Some(current.number),
                kind: FaultKind::InvalidMac,
                message: format!(
                    "'{}': field `macs`: '{mac}' is not a MAC address (six hex octets separated by ':' or '-'); it gets no per-MAC boot entry",
                    json_path.display()
                ),
                left_out: false,
            }),
        }
    }
    let machine = Machine { name: name.clone(), spin, fqdn, label, short_label, url, generations, macs };
    (Some(machine), faults)
}

fn read_generation_json(g: &profiles::Generation) -> Result<MachineJson, ProfileError> {
    g.read_machine_json()
}

type GenFault = (FaultKind, String);

fn resolve_generation(
    g: &profiles::Generation,
    json: MachineJson,
    spin: Spin,
    machine_url: &str,
    ctx: &Context,
) -> Result<Generation, GenFault> {
    let url = format!("{machine_url}/{}", g.number);
    let mut boot_files = Vec::new();
    for name in BOOT_FILES {
        let path = g.link.join(name);
        match std::fs::canonicalize(&path) {
            Ok(real) => boot_files.push(BootFile { name, path: real, url: format!("{url}/{name}") }),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err((FaultKind::Unreadable, format!("cannot resolve '{}': {e}", path.display()))),
        }
    }
    for required in ["bzImage", "initrd"] {
        if !boot_files.iter().any(|b| b.name == required) {
            return Err((
                FaultKind::MissingBootFile,
                format!(
                    "'{}' does not exist (every generation needs bzImage and initrd)",
                    g.link.join(required).display()
                ),
            ));
        }
    }

    let params_path = g.link.join("kernel-params");
    let raw_params = match std::fs::read_to_string(&params_path) {
        Ok(text) => text.split_whitespace().map(str::to_string).collect(),
        Err(e) if e.kind() == ErrorKind::NotFound => json.kernel_params.clone(),
        Err(e) => return Err((FaultKind::Unreadable, format!("cannot read '{}': {e}", params_path.display()))),
    };
    if raw_params.iter().any(|p| has_line_break(p)) {
        return Err((
            FaultKind::InvalidValue,
            format!("'{}': field `kernelParams`: a parameter contains a line break", g.machine_json_path().display()),
        ));
    }
    let kernel_params = normalize_kernel_params(spin, raw_params, &json.toplevel, &boot_files);
    let pxe_kernel_params = if kernel_params.is_empty() {
        vec![format!("init={}/init", json.toplevel), "loglevel=7".to_string()]
    } else {
        kernel_params.clone()
    };
    for (field, value) in [("version", &json.version), ("revision", &json.revision)] {
        if value.as_deref().is_some_and(has_line_break) {
            return Err((
                FaultKind::InvalidValue,
                format!("'{}': field `{field}`: contains a line break", g.machine_json_path().display()),
            ));
        }
    }
    let shortrev = json.shortrev();
    Ok(Generation {
        number: g.number,
        store_path: g.store_path.clone(),
        url,
        time: g.time,
        time_s: format_time(g.time, ctx.time_zone),
        current: g.current,
        kernel_version: kernel_version(Path::new(&json.toplevel)),
        toplevel: json.toplevel,
        version: json.version,
        revision: json.revision,
        shortrev,
        macs: json.macs,
        kernel_params,
        pxe_kernel_params,
        boot_files,
        swpins_info: json.swpins_info,
    })
}

/// Spec 3.2 step 6.4: drop `httproot=`; NixOS gets `init=<toplevel>/init` prepended when
/// there is no `init=`; then `httproot=<url>` goes first (vpsAdminOS: root.squashfs,
/// others: initrd, else bzImage).
pub fn normalize_kernel_params(
    spin: Spin,
    params: Vec<String>,
    toplevel: &str,
    boot_files: &[BootFile],
) -> Vec<String> {
    let mut params: Vec<String> = params.into_iter().filter(|p| !p.starts_with("httproot=")).collect();
    if spin == Spin::Nixos && !params.iter().any(|p| p.starts_with("init=")) {
        params.insert(0, format!("init={toplevel}/init"));
    }
    let url = |name: &str| boot_files.iter().find(|b| b.name == name).map(|b| b.url.clone());
    let httproot = match spin {
        Spin::Vpsadminos => url("root.squashfs"),
        Spin::Nixos => url("initrd").or_else(|| url("bzImage")),
    };
    if let Some(u) = httproot {
        params.insert(0, format!("httproot={u}"));
    }
    params
}

/// The version in `readlink(<toplevel>/kernel)` (`…-linux-<version>/…`); None when the
/// toplevel is not on this machine.
pub fn kernel_version(toplevel: &Path) -> Option<String> {
    let target = std::fs::read_link(toplevel.join("kernel")).ok()?;
    let target = target.to_str()?;
    let start = target.find("-linux-")? + "-linux-".len();
    let version: String = target[start..].chars().take_while(|c| *c != '/').collect();
    (!version.is_empty()).then_some(version)
}

/// `aa-bb-cc-dd-ee-ff` (lowercase, dashes: the name PXELINUX requests) from six hex
/// octets separated by `:` or `-`.
pub fn normalize_mac(mac: &str) -> Option<String> {
    let parts: Vec<&str> = mac.split([':', '-']).collect();
    if parts.len() != 6 || !parts.iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit())) {
        return None;
    }
    Some(parts.join("-").to_ascii_lowercase())
}

/// Names that would collide with the fixed entries of the trees.
const RESERVED_FQDNS: [&str; 4] = ["memtest86", "iso-images", "machines.json", "ipxe"];

/// The fqdn is a directory name in both trees and a menu label.
fn check_fqdn(fqdn: &str) -> Result<(), String> {
    if fqdn.is_empty() {
        return Err("is empty".into());
    }
    if fqdn.starts_with('.') {
        return Err("starts with '.'".into());
    }
    if let Some(c) = fqdn.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))) {
        return Err(format!("contains '{}' (allowed: letters, digits, '.', '-', '_', ':')", c.escape_default()));
    }
    if RESERVED_FQDNS.contains(&fqdn) {
        return Err(format!("is reserved (one of {})", RESERVED_FQDNS.join(", ")));
    }
    Ok(())
}

fn has_line_break(s: &str) -> bool {
    s.contains(['\n', '\r'])
}

/// `%Y-%m-%d %H:%M:%S` of an epoch time in the given zone (the system's zone for
/// `Local`; UTC when it cannot be determined).
pub fn format_time(epoch: i64, zone: TimeZone) -> String {
    let tz = match zone {
        TimeZone::Utc => jiff::tz::TimeZone::UTC,
        TimeZone::Local => jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC),
    };
    match jiff::Timestamp::from_second(epoch) {
        Ok(ts) => ts.to_zoned(tz).strftime("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => epoch.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bf(name: &'static str) -> BootFile {
        BootFile { name, path: PathBuf::from("/nix/store/x"), url: format!("http://h/m/1/{name}") }
    }

    #[test]
    fn kernel_params_nixos() {
        let p = normalize_kernel_params(
            Spin::Nixos,
            vec!["console=ttyS0".into(), "httproot=old".into()],
            "/nix/store/t",
            &[bf("bzImage"), bf("initrd")],
        );
        assert_eq!(p, ["httproot=http://h/m/1/initrd", "init=/nix/store/t/init", "console=ttyS0"]);
        let p = normalize_kernel_params(Spin::Nixos, vec!["init=/x".into()], "/t", &[bf("bzImage")]);
        assert_eq!(p, ["httproot=http://h/m/1/bzImage", "init=/x"]);
    }

    #[test]
    fn kernel_params_vpsadminos() {
        let files = [bf("bzImage"), bf("initrd"), bf("root.squashfs")];
        let p = normalize_kernel_params(Spin::Vpsadminos, vec!["quiet".into()], "/t", &files);
        assert_eq!(p, ["httproot=http://h/m/1/root.squashfs", "quiet"]);
        let p = normalize_kernel_params(Spin::Vpsadminos, vec!["quiet".into()], "/t", &files[..2]);
        assert_eq!(p, ["quiet"], "no squashfs, no httproot");
    }

    #[test]
    fn macs() {
        assert_eq!(normalize_mac("52:54:00:AB:cd:0F").as_deref(), Some("52-54-00-ab-cd-0f"));
        assert_eq!(normalize_mac("52-54-00-ab-cd-0f").as_deref(), Some("52-54-00-ab-cd-0f"));
        assert_eq!(normalize_mac("52:54:00:ab:cd"), None);
        assert_eq!(normalize_mac("52:54:00:ab:cd:0g"), None);
        assert_eq!(normalize_mac("525400abcd0f"), None);
    }

    #[test]
    fn fqdns() {
        assert!(check_fqdn("node1.prg.example.org").is_ok());
        assert!(check_fqdn("os:node2").is_ok(), "a profile name used as fqdn");
        assert!(check_fqdn("a b").is_err());
        assert!(check_fqdn("a/b").is_err());
        assert!(check_fqdn("..").is_err());
        assert!(check_fqdn("ipxe").is_err());
        assert!(check_fqdn("").is_err());
    }

    #[test]
    fn time_formatting() {
        assert_eq!(format_time(0, TimeZone::Utc), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_704_067_200, TimeZone::Utc), "2024-01-01 00:00:00");
        assert_eq!(format_time(1_709_210_096, TimeZone::Utc), "2024-02-29 12:34:56");
        assert_eq!(format_time(-1, TimeZone::Utc), "1969-12-31 23:59:59");
        assert_eq!(format_time(4_102_444_799, TimeZone::Utc), "2099-12-31 23:59:59");
    }
}
