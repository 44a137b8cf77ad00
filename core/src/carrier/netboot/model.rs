//! From a carried profile to the netboot model of spec 3.2: the machine (spin, fqdn,
//! label, URL from the current generation) and its generations (boot files, normalised
//! kernel params, vpsAdminOS variants), with every problem turned into a [`Fault`]
//! instead of an abort.
//!
//! A dist is written by whoever deploys the machine, so its files are read through
//! [`StoreDir`] (only inside the Nix store, size-capped) and every value that lands in a
//! PXELINUX menu or an iPXE script must fit a strict character set ([`check_label`],
//! [`check_word`], the store path syntax of `toplevel`): neither format has an escape
//! for a line break, and iPXE splits commands at the tokens `;`, `&&`, `||`, comments
//! from a token starting with `#`, expands `${…}` and joins a line ending in `\` with
//! the next. The decision per field is in docs/netboot.md ("Dists are untrusted input").

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::config::{Checkin, TimeZone};
use super::{Fault, FaultKind, PublishedGeneration, PublishedMachine};
use crate::carrier::dist::{self, Dist, DistFileError, KERNEL_PARAMS_MAX, StoreDir};
use crate::carrier::profiles::{self, MachineJson, Profile, ProfileError};
use crate::cluster::Spin;

/// The spins the netboot server renders; a profile of any other spin is left out.
pub const RENDERED_SPINS: [Spin; 2] = [Spin::Nixos, Spin::Vpsadminos];

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
    Variant {
        name: "rescue",
        label: "Rescue runlevel (network and sshd)",
        kernel_params: &["runlevel=rescue"],
    },
    Variant {
        name: "single",
        label: "Single-user runlevel (console only)",
        kernel_params: &["runlevel=single"],
    },
];

/// The boot variants of a spin's generations (only vpsAdminOS has any).
pub fn variants(spin: Spin) -> &'static [Variant] {
    match spin {
        Spin::Vpsadminos => &VPSADMINOS_VARIANTS,
        Spin::Nixos | Spin::Openvz | Spin::Other => &[],
    }
}

/// Boot files looked for in a generation, in upstream's order.
pub const BOOT_FILES: [&str; 3] = ["bzImage", "initrd", "root.squashfs"];

/// A machine ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct BootMachine {
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
    pub generations: Vec<BootGeneration>,
    /// The current generation's MACs, normalised (`aa-bb-cc-dd-ee-ff`), without duplicates.
    pub macs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BootGeneration {
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
    /// The check-in parameters (`carrier.checkin=...`, with this machine's token) when
    /// the configuration has a check-in section. Only in this machine's boot entries and
    /// `kernel-params` files, never in JSON: `machines.json` gathers every machine's.
    pub checkin_params: Vec<String>,
    pub boot_files: Vec<BootFile>,
    pub swpins_info: Option<Value>,
}

impl BootGeneration {
    /// The kernel command line of a vpsAdminOS boot variant: the generation's parameters,
    /// then the variant's (both menus, TFTP and iPXE, boot the same line).
    pub fn variant_cmdline(&self, variant: &Variant) -> String {
        let params: Vec<&str> = self
            .kernel_params
            .iter()
            .map(String::as_str)
            .chain(variant.kernel_params.iter().copied())
            .chain(self.checkin_params.iter().map(String::as_str))
            .collect();
        params.join(" ")
    }

    /// The kernel command line of the NixOS-style menu entries (PXELINUX and iPXE).
    pub fn pxe_cmdline(&self) -> String {
        self.pxe_kernel_params
            .iter()
            .chain(&self.checkin_params)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// What the generation's `kernel-params` file holds.
    pub fn kernel_params_file(&self) -> String {
        self.kernel_params.iter().chain(&self.checkin_params).cloned().collect::<Vec<_>>().join(" ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFile {
    pub name: &'static str,
    /// The real path in the store.
    pub path: PathBuf,
    pub url: String,
}

impl BootMachine {
    pub fn current(&self) -> &BootGeneration {
        self.generations
            .iter()
            .find(|g| g.current)
            .expect("a resolved machine has a current generation")
    }

    /// What the report and the main menus need of the machine.
    pub fn summary(&self) -> PublishedMachine {
        PublishedMachine {
            name: self.name.clone(),
            spin: self.spin,
            fqdn: self.fqdn.clone(),
            label: self.label.clone(),
            macs: self.macs.clone(),
            generations: self
                .generations
                .iter()
                .map(|g| PublishedGeneration {
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
}

/// What resolving needs from the configuration.
pub struct Context<'a> {
    pub http_url: &'a str,
    pub time_zone: TimeZone,
    /// The store the dists' files must lie in.
    pub store: &'a StoreDir,
    pub checkin: Option<&'a Checkin>,
}

/// Resolves one profile. Returns the machine (None when it is left out) and every fault
/// found: faults of other generations skip that generation, faults of the current
/// generation leave the machine out, an invalid MAC only skips that MAC.
pub fn resolve(profile: &Profile, ctx: &Context) -> (Option<BootMachine>, Vec<Fault>) {
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
        let numbers: Vec<String> =
            profile.generations.iter().map(|g| g.number.to_string()).collect();
        let message = match std::fs::read_link(&profile.path) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                format!(
                    "no current generation: the profile link '{}' does not exist",
                    profile.path.display()
                )
            }
            Err(_) => {
                format!("no current generation: '{}' is not a symlink", profile.path.display())
            }
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

    // The machine's identity comes from the current generation. Values quoted in fault
    // messages are escaped: a report is printed to terminals.
    let current_json = match current.read_machine_json(ctx.store) {
        Ok(j) => j,
        Err(e) => {
            faults.push(machine_fault(
                read_fault_kind(&e),
                Some(current.number),
                format!("current generation {}: {e}", current.number),
            ));
            return (None, faults);
        }
    };
    let json_path = current.machine_json_path();
    let Some(spin) = Spin::parse(&current_json.spin).filter(|s| RENDERED_SPINS.contains(s)) else {
        faults.push(machine_fault(
            FaultKind::UnknownSpin,
            Some(current.number),
            format!(
                "'{}': field `spin`: unknown spin '{}' (the netboot server renders nixos and vpsadminos)",
                json_path.display(),
                current_json.spin.escape_default()
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
        let message = format!("{source}: '{}' {why}", fqdn.escape_default());
        faults.push(machine_fault(FaultKind::InvalidFqdn, Some(current.number), message));
        return (None, faults);
    }
    // Without a label, the fqdn (checked above) is the label.
    if let Some(Err(why)) = current_json.label.as_deref().map(check_label) {
        faults.push(machine_fault(
            FaultKind::InvalidValue,
            Some(current.number),
            format!("'{}': field `label`: {why}", json_path.display()),
        ));
        return (None, faults);
    }
    let label = current_json.label.clone().unwrap_or_else(|| fqdn.clone());
    let short_label = label.split('.').take(2).collect::<Vec<_>>().join(".");
    let url = format!("{}/{}", ctx.http_url, fqdn);

    let mut generations = Vec::new();
    for g in profile.generations.iter().rev() {
        let dist = ctx.store.dist(&g.link);
        let json = if g.current { Ok(current_json.clone()) } else { MachineJson::read(&dist) };
        let resolved = json.map_err(|e| (read_fault_kind(&e), e.to_string()));
        match resolved.and_then(|json| resolve_generation(name, g, &dist, json, spin, &url, ctx)) {
            Ok(generation) => generations.push(generation),
            Err((kind, message)) => {
                let fault = Fault {
                    profile: name.clone(),
                    generation: Some(g.number),
                    kind,
                    message: if g.current {
                        format!("current generation {}: {message}", g.number)
                    } else {
                        message
                    },
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
                    "'{}': field `macs`: '{}' is not a MAC address (six hex octets separated by ':' or '-'); it gets no per-MAC boot entry",
                    json_path.display(),
                    mac.escape_default()
                ),
                left_out: false,
            }),
        }
    }
    let machine =
        BootMachine { name: name.clone(), spin, fqdn, label, short_label, url, generations, macs };
    (Some(machine), faults)
}

/// The fault of a `machine.json` that could not be read or checked.
fn read_fault_kind(e: &ProfileError) -> FaultKind {
    match e {
        _ if e.is_not_found() => FaultKind::MissingMachineJson,
        ProfileError::DistFile(e) => dist_fault_kind(e),
        ProfileError::Read { .. } | ProfileError::ReadDir { .. } => FaultKind::Unreadable,
        ProfileError::InvalidJson { .. } | ProfileError::Field { .. } => {
            FaultKind::InvalidMachineJson
        }
    }
}

/// The fault of a file of a dist that is not read or linked.
fn dist_fault_kind(e: &DistFileError) -> FaultKind {
    match e {
        DistFileError::OutsideStore { .. } => FaultKind::OutsideStore,
        DistFileError::TooLarge { .. } => FaultKind::TooLarge,
        DistFileError::Io { .. } | DistFileError::NotAFile { .. } => FaultKind::Unreadable,
    }
}

type GenFault = (FaultKind, String);

fn resolve_generation(
    name: &str,
    g: &profiles::ProfileGeneration,
    dist: &Dist,
    json: MachineJson,
    spin: Spin,
    machine_url: &str,
    ctx: &Context,
) -> Result<BootGeneration, GenFault> {
    let url = format!("{machine_url}/{}", g.number);
    let json_path = g.machine_json_path();
    let mut boot_files = Vec::new();
    for name in BOOT_FILES {
        // Linked into the served trees by their real path: only regular files in the store.
        match dist.resolve_file(name) {
            Ok(real) => {
                boot_files.push(BootFile { name, path: real, url: format!("{url}/{name}") })
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err((dist_fault_kind(&e), e.to_string())),
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

    let invalid = |what: String| (FaultKind::InvalidValue, what);
    // Rendered as `init=<toplevel>/init`.
    dist::check_store_path(&json.toplevel).map_err(|why| {
        invalid(format!(
            "'{}': field `toplevel`: not a plain store path {}/<hash>-<name>: it {why}",
            json_path.display(),
            dist::STORE_DIR
        ))
    })?;
    let params_path = dist.path("kernel-params");
    let raw_params: Vec<String> = match dist.read("kernel-params", KERNEL_PARAMS_MAX) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes)
                .map_err(|_| invalid(format!("'{}' is not UTF-8 text", params_path.display())))?;
            let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
            for (i, word) in words.iter().enumerate() {
                check_word(word).map_err(|why| {
                    invalid(format!("'{}': word {} {why}", params_path.display(), i + 1))
                })?;
            }
            words
        }
        Err(e) if e.is_not_found() => {
            for (i, param) in json.kernel_params.iter().enumerate() {
                check_word(param).map_err(|why| {
                    invalid(format!(
                        "'{}': field `kernelParams`: item {} {why}",
                        json_path.display(),
                        i + 1
                    ))
                })?;
            }
            json.kernel_params.clone()
        }
        Err(e) => return Err((dist_fault_kind(&e), e.to_string())),
    };
    let (raw_params, checkin_params) = match ctx.checkin {
        None => (raw_params, Vec::new()),
        Some(c) => {
            check_word(name).map_err(|why| {
                invalid(format!(
                    "profile name '{}' {why}: it cannot be a check-in parameter",
                    name.escape_default()
                ))
            })?;
            // A dist names no check-in values of its own: the carrier's come last and alone.
            let raw = raw_params.into_iter().filter(|p| !p.starts_with("carrier.")).collect();
            (raw, checkin_params(c, name, g.number))
        }
    };
    let kernel_params = normalize_kernel_params(spin, raw_params, &json.toplevel, &boot_files);
    let pxe_kernel_params = if kernel_params.is_empty() {
        vec![format!("init={}/init", json.toplevel), "loglevel=7".to_string()]
    } else {
        kernel_params.clone()
    };
    // Through `shortrev`, in menu titles.
    for (field, value) in [("version", &json.version), ("revision", &json.revision)] {
        if let Some(Err(why)) = value.as_deref().map(check_word) {
            return Err(invalid(format!("'{}': field `{field}`: {why}", json_path.display())));
        }
    }
    let kernel_version = kernel_version(ctx.store, &json.toplevel);
    if let Some(Err(why)) = kernel_version.as_deref().map(check_word) {
        let link = Path::new(&json.toplevel).join("kernel");
        return Err(invalid(format!(
            "'{}': the kernel version in its target {why}",
            link.display()
        )));
    }
    let shortrev = json.shortrev();
    Ok(BootGeneration {
        number: g.number,
        store_path: g.store_path.clone(),
        url,
        time: g.time,
        time_s: format_time(g.time, ctx.time_zone),
        current: g.current,
        kernel_version,
        toplevel: json.toplevel,
        version: json.version,
        revision: json.revision,
        shortrev,
        macs: json.macs,
        kernel_params,
        pxe_kernel_params,
        checkin_params,
        boot_files,
        swpins_info: json.swpins_info,
    })
}

/// The kernel parameters a machine's generation entry passes for the check-in.
pub fn checkin_params(c: &Checkin, machine: &str, generation: u64) -> Vec<String> {
    vec![
        format!("carrier.checkin={}", c.url),
        format!("carrier.carrier={}", c.carrier),
        format!("carrier.machine={machine}"),
        format!("carrier.generation={generation}"),
        format!("carrier.token={}", c.secret.token(&c.carrier, machine)),
    ]
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
    let mut params: Vec<String> =
        params.into_iter().filter(|p| !p.starts_with("httproot=")).collect();
    if spin == Spin::Nixos && !params.iter().any(|p| p.starts_with("init=")) {
        params.insert(0, format!("init={toplevel}/init"));
    }
    let url = |name: &str| boot_files.iter().find(|b| b.name == name).map(|b| b.url.clone());
    let httproot = match spin {
        Spin::Vpsadminos => url("root.squashfs"),
        Spin::Nixos | Spin::Openvz | Spin::Other => url("initrd").or_else(|| url("bzImage")),
    };
    if let Some(u) = httproot {
        params.insert(0, format!("httproot={u}"));
    }
    params
}

/// The version in `readlink(<toplevel>/kernel)` (`…-linux-<version>/…`); None when the
/// toplevel is not on this machine (or not in its store).
pub fn kernel_version(store: &StoreDir, toplevel: &str) -> Option<String> {
    let toplevel = store.resolve(Path::new(toplevel)).ok()?;
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
    if parts.len() != 6
        || !parts.iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(parts.join("-").to_ascii_lowercase())
}

/// Names that would collide with the fixed entries of the trees.
const RESERVED_FQDNS: [&str; 4] = ["memtest86", "iso-images", "machines.json", "ipxe"];

/// The fqdn is a directory name in both trees, a menu label and a label of iPXE scripts.
fn check_fqdn(fqdn: &str) -> Result<(), String> {
    if fqdn.is_empty() {
        return Err("is empty".into());
    }
    if fqdn.starts_with(['.', '-']) {
        return Err(format!("starts with '{}'", &fqdn[..1]));
    }
    if let Some(c) =
        fqdn.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')))
    {
        return Err(format!(
            "contains '{}' (allowed: letters, digits, '.', '-', '_', ':')",
            c.escape_default()
        ));
    }
    if RESERVED_FQDNS.contains(&fqdn) {
        return Err(format!("is reserved (one of {})", RESERVED_FQDNS.join(", ")));
    }
    Ok(())
}

/// The characters besides ASCII letters and digits a label may hold.
pub const LABEL_PUNCTUATION: &str = " !()*+,-./:<=>?@[]^_~";

/// The longest label, in characters (it is repeated in the shared main menus).
pub const LABEL_MAX: usize = 128;

/// The characters besides ASCII letters and digits a kernel parameter, `version`,
/// `revision` or kernel version may hold.
pub const WORD_PUNCTUATION: &str = "!*+,-./:=?@[]^_~";

/// A label is menu text in both formats (`MENU LABEL`, `MENU TITLE`, iPXE `menu` and
/// `item`, also in the shared main menus): 1 to [`LABEL_MAX`] letters, digits, spaces
/// and [`LABEL_PUNCTUATION`], not starting with `-` (iPXE's `menu <title>` would take it
/// for an option).
pub fn check_label(label: &str) -> Result<(), String> {
    if label.trim().is_empty() {
        return Err("is empty".into());
    }
    if label.chars().count() > LABEL_MAX {
        return Err(format!("is longer than {LABEL_MAX} characters"));
    }
    if label.trim_start().starts_with('-') {
        return Err("starts with '-' (iPXE would read it as an option)".into());
    }
    if let Some(c) =
        label.chars().find(|c| !(c.is_ascii_alphanumeric() || LABEL_PUNCTUATION.contains(*c)))
    {
        return Err(format!(
            "contains '{}' (a label may hold letters, digits, spaces and {})",
            c.escape_default(),
            LABEL_PUNCTUATION.trim_start()
        ));
    }
    Ok(())
}

/// A word of a kernel command line or a menu title: letters, digits and
/// [`WORD_PUNCTUATION`], no space.
pub fn check_word(word: &str) -> Result<(), String> {
    if let Some(c) =
        word.chars().find(|c| !(c.is_ascii_alphanumeric() || WORD_PUNCTUATION.contains(*c)))
    {
        return Err(format!(
            "contains '{}' (allowed: letters, digits and {WORD_PUNCTUATION})",
            c.escape_default()
        ));
    }
    Ok(())
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
        let p =
            normalize_kernel_params(Spin::Nixos, vec!["init=/x".into()], "/t", &[bf("bzImage")]);
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
        assert!(check_fqdn("-x").is_err(), "an option to iPXE and to tools handling the directory");
    }

    #[test]
    fn labels_and_words() {
        assert_eq!(check_label("node1.prg (rack 2) [spare] <test> 50%+").unwrap_err(), {
            "contains '%' (a label may hold letters, digits, spaces and !()*+,-./:<=>?@[]^_~)"
                .to_string()
        });
        assert!(check_label("node1.prg (rack 2) [spare] <test> a+b=c?").is_ok());
        assert!(check_label(&"x".repeat(LABEL_MAX)).is_ok());
        assert!(check_label(&"x".repeat(LABEL_MAX + 1)).unwrap_err().contains("longer than 128"));
        assert!(check_label("  ").unwrap_err().contains("is empty"));
        assert!(check_label("--delete").unwrap_err().contains("starts with '-'"));
        assert!(
            check_label(" --name x").unwrap_err().contains("starts with '-'"),
            "iPXE skips the space"
        );
        let bad_labels = [
            "a ; b", "a && b", "a || b", "a #b", "a ${b}", "a\nb", "a\rb", "a\\", "a\tb", "a$b",
            "a'b", "Žižkov",
        ];
        for bad in bad_labels {
            assert!(check_label(bad).is_err(), "{bad:?}");
        }
        assert!(check_label("a\nb").unwrap_err().contains("contains '\\n'"));
        for good in [
            "console=ttyS0,115200n8",
            "init=/nix/store/x-y/init",
            "ip=::::h:eth0:dhcp",
            "a[0]=~^!?*@",
            "",
        ] {
            assert_eq!(check_word(good), Ok(()), "{good:?}");
        }
        for bad in [
            ";", "&&", "||", "#x", "${x}", "a\nb", "a b", "a\\", "\"q\"", "a'b", "a`b`", "(x)",
            "a%20b", "é",
        ] {
            assert!(check_word(bad).is_err(), "{bad:?}");
        }
    }

    /// A store, a secret outside it and a profiles directory in a temporary directory.
    struct Fixture {
        dir: tempfile::TempDir,
        store: StoreDir,
    }

    /// A syntactically valid toplevel (not in the fixture's store).
    const TOPLEVEL: &str = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-x";

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            for d in ["store", "profiles"] {
                std::fs::create_dir(dir.path().join(d)).unwrap();
            }
            std::fs::write(dir.path().join("secret"), "SECRET").unwrap();
            let store = StoreDir::at(&dir.path().join("store"));
            Fixture { dir, store }
        }

        fn secret(&self) -> PathBuf {
            self.dir.path().join("secret")
        }

        /// Generation `n` of `profile` (made current): a dist with a kernel, an initrd, the
        /// `machine.json` `json` (null: none) and `files` (`Err(target)`: a symlink).
        fn generation(
            &self,
            profile: &str,
            n: u64,
            json: Value,
            files: &[(&str, Result<&str, &Path>)],
        ) {
            let dist = self.dir.path().join(format!("store/{profile}-{n}-dist"));
            std::fs::create_dir(&dist).unwrap();
            std::fs::write(dist.join("bzImage"), "kernel").unwrap();
            std::fs::write(dist.join("initrd"), "initrd").unwrap();
            if !json.is_null() {
                std::fs::write(dist.join("machine.json"), json.to_string()).unwrap();
            }
            for (name, content) in files {
                let _ = std::fs::remove_file(dist.join(name));
                match content {
                    Ok(text) => std::fs::write(dist.join(name), text).unwrap(),
                    Err(target) => std::os::unix::fs::symlink(target, dist.join(name)).unwrap(),
                }
            }
            let profiles = self.dir.path().join("profiles");
            let link = format!("confctl-{profile}-{n}-link");
            std::os::unix::fs::symlink(&dist, profiles.join(&link)).unwrap();
            let _ = std::fs::remove_file(profiles.join(format!("confctl-{profile}")));
            std::os::unix::fs::symlink(&link, profiles.join(format!("confctl-{profile}"))).unwrap();
        }

        fn resolve(&self, profile: &str) -> (Option<BootMachine>, Vec<Fault>) {
            self.resolve_with(profile, None)
        }

        fn resolve_with(
            &self,
            profile: &str,
            checkin: Option<&Checkin>,
        ) -> (Option<BootMachine>, Vec<Fault>) {
            let profiles = profiles::scan(&self.dir.path().join("profiles")).unwrap();
            let p = profiles.iter().find(|p| p.name == profile).unwrap();
            let ctx = Context {
                http_url: "http://pxe",
                time_zone: TimeZone::Utc,
                store: &self.store,
                checkin,
            };
            resolve(p, &ctx)
        }
    }

    fn json_with(field: &str, value: Value) -> Value {
        let mut j = serde_json::json!({"toplevel": TOPLEVEL, "label": "Node", "version": "1.0", "revision": "abc"});
        j[field] = value;
        j
    }

    /// Every hostile value in every field of `machine.json` that is rendered: the machine
    /// is left out, the field named.
    #[test]
    fn hostile_values_leave_the_machine_out() {
        let f = Fixture::new();
        let values = [
            "a ; b",
            "a && b",
            "a || b",
            "a #b",
            "a ${b}",
            "a\nb",
            "a\r\nMENU LABEL b",
            ";",
            "&&",
            "||",
            "#b",
            "${b}",
        ];
        let mut n = 0;
        for field in ["label", "kernelParams", "toplevel", "version", "revision"] {
            for value in values {
                n += 1;
                let name = format!("m{n}");
                let v = match field {
                    "kernelParams" => serde_json::json!(["quiet", value]),
                    "toplevel" => Value::String(format!("{TOPLEVEL}{value}")),
                    _ => Value::String(value.to_string()),
                };
                f.generation(&name, 1, json_with(field, v), &[]);
                let (machine, faults) = f.resolve(&name);
                assert!(machine.is_none(), "{field} = {value:?} is served");
                assert_eq!(faults.len(), 1, "{faults:?}");
                assert_eq!(
                    (faults[0].kind, faults[0].left_out),
                    (FaultKind::InvalidValue, true),
                    "{}",
                    faults[0]
                );
                assert!(
                    faults[0].message.contains(&format!("machine.json': field `{field}`: ")),
                    "{}",
                    faults[0]
                );
            }
        }
    }

    /// Values quoted in fault messages cannot add lines or terminal escapes to a report.
    #[test]
    fn quoted_values_are_escaped() {
        let f = Fixture::new();
        f.generation(
            "spin",
            1,
            json_with("spin", "x\n  - profile 'y': fake \u{1b}[31m".into()),
            &[],
        );
        f.generation("fqdn", 1, json_with("fqdn", "a\nb".into()), &[]);
        f.generation("mac", 1, json_with("macs", serde_json::json!(["52:54\n"])), &[]);
        let quoted = [
            ("spin", "'x\\n  - profile \\'y\\': fake \\u{1b}[31m'"),
            ("fqdn", "'a\\nb'"),
            ("mac", "'52:54\\n'"),
        ];
        for (name, quoted) in quoted {
            let faults = f.resolve(name).1;
            assert!(faults[0].message.contains(quoted), "{}", faults[0]);
            assert!(!faults[0].message.contains(['\n', '\u{1b}']), "{}", faults[0]);
        }
    }

    /// The `kernel-params` file: its words are split at any white space, so a line break
    /// is only a separator (rendered inert); a separator token leaves the machine out.
    #[test]
    fn kernel_params_file_words() {
        let f = Fixture::new();
        f.generation(
            "inert",
            1,
            json_with("label", "Node".into()),
            &[("kernel-params", Ok("a\nMENU LABEL x\r\n"))],
        );
        let (machine, faults) = f.resolve("inert");
        assert!(faults.is_empty(), "{faults:?}");
        let params = &machine.unwrap().generations[0].kernel_params;
        assert_eq!(params[2..], ["a", "MENU", "LABEL", "x"], "{params:?}");
        for (i, text) in ["quiet ; reboot", "quiet && x", "x || y", "#x", "${x}", "a`b`", "a\\\nb"]
            .iter()
            .enumerate()
        {
            let name = format!("p{i}");
            f.generation(
                &name,
                1,
                json_with("label", "Node".into()),
                &[("kernel-params", Ok(text))],
            );
            let (machine, faults) = f.resolve(&name);
            assert!(machine.is_none(), "{text:?} is served");
            assert_eq!(faults[0].kind, FaultKind::InvalidValue, "{}", faults[0]);
            let expected = format!("confctl-{name}-1-link/kernel-params': word ");
            assert!(faults[0].message.contains(&expected), "{}", faults[0]);
        }
    }

    /// With a check-in section, each generation's own entries carry the check-in URL and
    /// the machine's token; the dist's own `carrier.*` words are dropped; the JSON that
    /// `machines.json` gathers carries no token.
    #[test]
    fn checkin_params_are_in_the_machines_own_entries_only() {
        let f = Fixture::new();
        let secret = crate::checkin::Secret::from_bytes([7; crate::checkin::SECRET_LEN]);
        let checkin = Checkin {
            url: "http://10.0.0.1:3000/api/checkin".into(),
            carrier: "pxe".into(),
            secret_file: f.secret(),
            secret: secret.clone(),
        };
        let forged = "quiet carrier.machine=other carrier.token=forged";
        f.generation("node1", 1, json_with("label", "Node".into()), &[]);
        f.generation(
            "node1",
            2,
            json_with("label", "Node".into()),
            &[("kernel-params", Ok(forged))],
        );
        let (machine, faults) = f.resolve_with("node1", Some(&checkin));
        assert!(faults.is_empty(), "{faults:?}");
        let m = machine.unwrap();
        let token = secret.token("pxe", "node1");
        for g in &m.generations {
            let expected = [
                "carrier.checkin=http://10.0.0.1:3000/api/checkin".to_string(),
                "carrier.carrier=pxe".into(),
                "carrier.machine=node1".into(),
                format!("carrier.generation={}", g.number),
                format!("carrier.token={token}"),
            ];
            assert_eq!(g.checkin_params, expected);
            assert!(
                !g.kernel_params.iter().any(|p| p.starts_with("carrier.")),
                "{:?}",
                g.kernel_params
            );
            assert!(g.pxe_cmdline().ends_with(&expected.join(" ")), "{}", g.pxe_cmdline());
        }
        assert!(m.generations[0].kernel_params.contains(&"quiet".to_string()));

        let cfg = super::super::config::NetbootConfig::from_value(
            Path::new("/etc/netboot.json"),
            serde_json::json!({"tftpRoot": "/t", "httpRoot": "/h", "hostName": "pxe",
                               "httpUrl": "http://pxe", "syslinux": "/s"}),
        )
        .unwrap();
        let content = super::super::render::machine(&m, &cfg);
        let files = |golden: super::super::tree::Golden| -> Vec<(String, String)> {
            golden.into_iter().filter_map(|(path, text)| Some((path, text?))).collect()
        };
        let tftp = files(content.tftp.golden(""));
        let http = files(content.http.golden(""));
        let with_token = |files: &[(String, String)]| -> Vec<String> {
            files.iter().filter(|(_, t)| t.contains(&token)).map(|(p, _)| p.clone()).collect()
        };
        assert_eq!(
            with_token(&tftp),
            ["/menus/auto.cfg", "/menus/auto.ipxe", "/menus/menu.cfg", "/menus/menu.ipxe"]
        );
        assert_eq!(
            with_token(&http),
            [
                "/tree/1/kernel-params",
                "/tree/2/kernel-params",
                "/tree/auto.ipxe",
                "/tree/menu.ipxe"
            ],
            "not in machine.json, generation.json nor entry.json (machines.json)"
        );
        // without the section: no check-in parameter anywhere
        let (plain, _) = f.resolve("node1");
        let plain = plain.unwrap();
        assert!(plain.generations.iter().all(|g| g.checkin_params.is_empty()));
        assert!(plain.generations[0].kernel_params.iter().any(|p| p == "carrier.token=forged"));
    }

    /// Files of the dist that resolve outside the store are neither read nor linked; a
    /// `machine.json` over the cap is not read; a hostile older generation only loses
    /// that generation.
    #[test]
    fn dist_files_stay_in_the_store() {
        let f = Fixture::new();
        let ok = json_with("label", "Node".into());
        let secret = f.secret();
        let files = [
            ("params", "kernel-params"),
            ("kernel", "bzImage"),
            ("initrd", "initrd"),
            ("squashfs", "root.squashfs"),
            ("json", "machine.json"),
        ];
        for (name, file) in files {
            f.generation(name, 1, ok.clone(), &[(file, Err(secret.as_path()))]);
            let (machine, faults) = f.resolve(name);
            assert!(machine.is_none(), "{file}");
            assert_eq!(
                (faults[0].kind, faults[0].left_out),
                (FaultKind::OutsideStore, true),
                "{}",
                faults[0]
            );
            let msg = &faults[0].message;
            assert!(msg.contains(&format!("confctl-{name}-1-link/{file}' resolves to '")), "{msg}");
            assert!(!msg.contains("SECRET"), "{msg}");
        }
        // A symlink into another store path is fine.
        f.generation("other", 1, ok.clone(), &[]);
        let other_kernel = f.dir.path().join("store/other-1-dist/bzImage");
        f.generation("linked", 1, ok.clone(), &[("bzImage", Err(other_kernel.as_path()))]);
        let (machine, faults) = f.resolve("linked");
        assert!(faults.is_empty(), "{faults:?}");
        assert_eq!(
            machine.unwrap().generations[0].boot_files[0].path,
            other_kernel.canonicalize().unwrap()
        );

        let mut huge = ok.to_string();
        huge.insert_str(1, &" ".repeat(dist::MACHINE_JSON_MAX as usize));
        f.generation("huge", 1, Value::Null, &[("machine.json", Ok(&huge))]);
        let (machine, faults) = f.resolve("huge");
        assert!(machine.is_none());
        assert_eq!(faults[0].kind, FaultKind::TooLarge, "{}", faults[0]);
        let expected = format!(
            "confctl-huge-1-link/machine.json' is {} bytes, more than the 1048576 bytes",
            huge.len()
        );
        assert!(faults[0].message.contains(&expected), "{}", faults[0]);
        let at_cap = &huge[huge.len() - dist::MACHINE_JSON_MAX as usize..];
        f.generation("at-cap", 1, Value::Null, &[("machine.json", Ok(at_cap))]);
        assert_eq!(
            f.resolve("at-cap").1[0].kind,
            FaultKind::InvalidMachineJson,
            "a file at the cap is read"
        );

        f.generation("mixed", 1, ok.clone(), &[("kernel-params", Err(secret.as_path()))]);
        f.generation("mixed", 2, ok.clone(), &[]);
        let (machine, faults) = f.resolve("mixed");
        let machine = machine.unwrap();
        assert_eq!(machine.generations.iter().map(|g| g.number).collect::<Vec<_>>(), [2]);
        let fault = &faults[0];
        assert_eq!(
            (fault.generation, fault.kind, fault.left_out),
            (Some(1), FaultKind::OutsideStore, false)
        );
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
