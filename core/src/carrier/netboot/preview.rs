//! The boot preview: for a MAC, what a netbooting client gets from the published trees
//! (the PXELINUX file, the iPXE scripts, the generation it boots by default), read from
//! the served files themselves so that it can never disagree with them.
//!
//! PXELINUX asks for `pxelinux.cfg/<UUID>`, `pxelinux.cfg/01-<mac>`, eight shortening
//! hex-IP names, then `pxelinux.cfg/default`; carrier's trees only hold the per-MAC files
//! and `default`, so the lookup is `01-<mac>`, then `default`. iPXE's `ipxe/boot.ipxe`
//! chains `01-${mac:hexhyp}.ipxe`, then `menu.ipxe`, in whichever tree it came from.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::model::normalize_mac;
use super::tree::io_err;
use super::{Fault, NetbootConfig, NetbootError, mac_collision};
use crate::carrier::dist::StoreDir;
use crate::carrier::profiles;

/// What a client with one MAC gets from the published trees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootPreview {
    /// Normalised: `aa-bb-cc-dd-ee-ff`.
    pub mac: String,
    /// The machine the trees serve this MAC to; None: the client gets the default menus.
    pub machine: Option<PreviewMachine>,
    /// `pxelinux.cfg/01-<mac>` or `pxelinux.cfg/default`, relative to the TFTP root.
    pub pxelinux: PreviewFile,
    /// `ipxe/01-<mac>.ipxe` or `ipxe/menu.ipxe` of the TFTP tree.
    pub ipxe_tftp: PreviewFile,
    /// The same name in the HTTP tree (its script names files by `httpUrl`).
    pub ipxe_http: PreviewFile,
    /// Other carried profiles whose current generation lists this MAC: left out by the
    /// build, which keeps the MAC for the machine that had it first.
    pub conflicts: Vec<Fault>,
    /// Carried profiles whose current generation lists this MAC while the trees serve it
    /// to no machine: left out by the last build, or deployed since it.
    pub unserved_claimants: Vec<String>,
}

/// A machine as the published HTTP tree describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewMachine {
    /// The profile name.
    pub name: String,
    pub fqdn: String,
    pub label: String,
    /// The generation the per-MAC files boot by default (the current one).
    pub generation: PreviewGeneration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewGeneration {
    pub number: u64,
    pub store_path: PathBuf,
    /// The served `<fqdn>/<N>/kernel-params`, split at white space.
    pub kernel_params: Vec<String>,
}

/// A served file: its path relative to its tree's root, and its exact content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewFile {
    pub path: String,
    pub content: String,
}

/// The PXELINUX names a client with `mac` (normalised) asks for that carrier's trees can
/// hold, in PXELINUX's order.
pub(super) fn pxelinux_lookup(mac: &str) -> [String; 2] {
    [format!("pxelinux.cfg/01-{mac}"), "pxelinux.cfg/default".to_string()]
}

/// The iPXE scripts `ipxe/boot.ipxe` chains for `mac` (normalised), in its order.
pub(super) fn ipxe_lookup(mac: &str) -> [String; 2] {
    [format!("ipxe/01-{mac}.ipxe"), "ipxe/menu.ipxe".to_string()]
}

/// Parses a MAC given by a user: six hex octets separated all by `:` or all by `-`, in
/// either case. Returns it normalised (`aa-bb-cc-dd-ee-ff`).
pub fn parse_mac(value: &str) -> Result<String, NetbootError> {
    let mixed = value.contains(':') && value.contains('-');
    match normalize_mac(value) {
        Some(mac) if !mixed => Ok(mac),
        _ => Err(NetbootError::InvalidMac { value: value.escape_default().to_string() }),
    }
}

/// The boot preview of `mac` from the trees `cfg` publishes (see the module
/// documentation). Errors: an invalid MAC, trees not published yet, unreadable files.
pub fn preview(cfg: &NetbootConfig, mac: &str) -> Result<BootPreview, NetbootError> {
    let mac = parse_mac(mac)?;
    // One resolution of each root: the files come from one build even if a rebuild swaps
    // the roots meanwhile (the per-MAC links go through the root again; a build keeps
    // the previous tree whole as its spare, so they still name a whole machine).
    let tftp = served_dir(&cfg.tftp_root)?;
    let http = served_dir(&cfg.http_root)?;

    let (pxelinux, per_mac) = first_found(&tftp, &pxelinux_lookup(&mac))?;
    let machine = match per_mac {
        true => Some(served_machine(&tftp, &http, &pxelinux.path)?),
        false => None,
    };
    let (ipxe_tftp, _) = first_found(&tftp, &ipxe_lookup(&mac))?;
    let (ipxe_http, _) = first_found(&http, &ipxe_lookup(&mac))?;

    let (conflicts, unserved_claimants) = claimants(cfg, &mac, machine.as_ref())?;
    Ok(BootPreview { mac, machine, pxelinux, ipxe_tftp, ipxe_http, conflicts, unserved_claimants })
}

/// The directory a root symlink serves now.
fn served_dir(root: &Path) -> Result<PathBuf, NetbootError> {
    std::fs::canonicalize(root).map_err(|e| match e.kind() {
        ErrorKind::NotFound => NetbootError::NotPublished { root: root.to_path_buf() },
        _ => io_err(format!("resolving '{}'", root.display()))(e),
    })
}

/// The first of `names` that exists under `dir`, read; true when it is the first name.
fn first_found(dir: &Path, names: &[String]) -> Result<(PreviewFile, bool), NetbootError> {
    for (i, name) in names.iter().enumerate() {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let content = String::from_utf8(bytes).map_err(|e| {
                    io_err(format!("reading '{}'", path.display()))(std::io::Error::new(
                        ErrorKind::InvalidData,
                        e,
                    ))
                })?;
                return Ok((PreviewFile { path: name.clone(), content }, i == 0));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("reading '{}'", path.display()))(e)),
        }
    }
    let last = dir.join(names.last().expect("a lookup has names"));
    Err(io_err(format!("reading '{}'", last.display()))(ErrorKind::NotFound.into()))
}

/// The machine whose `auto.cfg` the per-MAC link `per_mac` (under `tftp`) names, as
/// the HTTP tree publishes it.
fn served_machine(tftp: &Path, http: &Path, per_mac: &str) -> Result<PreviewMachine, NetbootError> {
    let link = tftp.join(per_mac);
    let target =
        std::fs::read_link(&link).map_err(io_err(format!("reading '{}'", link.display())))?;
    // `…/pxeserver/machines/<fqdn>/auto.cfg`.
    let fqdn = target
        .parent()
        .and_then(Path::file_name)
        .and_then(|f| f.to_str())
        .filter(|f| !f.is_empty() && !f.starts_with('.'))
        .ok_or_else(|| NetbootError::Io {
            context: format!("'{}' points to '{}'", link.display(), target.display()),
            source: std::io::Error::new(ErrorKind::InvalidData, "not a machine's auto.cfg"),
        })?;

    #[derive(Deserialize)]
    struct Machine {
        name: String,
        fqdn: String,
        label: String,
        generations: Vec<Generation>,
    }
    #[derive(Deserialize)]
    struct Generation {
        generation: u64,
        store_path: PathBuf,
        current: bool,
    }
    let json = http.join(fqdn).join("machine.json");
    let invalid = |e: &dyn std::fmt::Display| NetbootError::Io {
        context: format!("reading '{}'", json.display()),
        source: std::io::Error::new(ErrorKind::InvalidData, e.to_string()),
    };
    let bytes = std::fs::read(&json).map_err(io_err(format!("reading '{}'", json.display())))?;
    let m: Machine = serde_json::from_slice(&bytes).map_err(|e| invalid(&e))?;
    let current = m
        .generations
        .into_iter()
        .find(|g| g.current)
        .ok_or_else(|| invalid(&"no generation is current"))?;
    let params = http.join(fqdn).join(current.generation.to_string()).join("kernel-params");
    let params = std::fs::read_to_string(&params)
        .map_err(io_err(format!("reading '{}'", params.display())))?;
    Ok(PreviewMachine {
        name: m.name,
        fqdn: m.fqdn,
        label: m.label,
        generation: PreviewGeneration {
            number: current.generation,
            store_path: current.store_path,
            kernel_params: params.split_whitespace().map(str::to_string).collect(),
        },
    })
}

/// The carried profiles whose current generation lists `mac`, other than the served
/// machine: as the build's MAC collisions when a machine has it, else by name.
fn claimants(
    cfg: &NetbootConfig,
    mac: &str,
    served: Option<&PreviewMachine>,
) -> Result<(Vec<Fault>, Vec<String>), NetbootError> {
    let store = StoreDir::system();
    let mut conflicts = Vec::new();
    let mut unserved = Vec::new();
    for profile in profiles::scan(&cfg.profiles_dir)? {
        let Some(current) = profile.current() else { continue };
        // A profile whose machine.json cannot be read is left out by the build, which
        // names the reason; it claims nothing.
        let Ok(json) = current.read_machine_json(&store) else { continue };
        let claims = json.macs.iter().any(|m| normalize_mac(m).as_deref() == Some(mac));
        if !claims || served.is_some_and(|s| s.name == profile.name) {
            continue;
        }
        match served {
            Some(owner) => {
                conflicts.push(mac_collision(&profile.name, Some(current.number), mac, &owner.name))
            }
            None => unserved.push(profile.name),
        }
    }
    Ok((conflicts, unserved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_in_either_form_are_normalised_and_anything_else_is_named() {
        for ok in ["52:54:00:AB:cd:0f", "52-54-00-ab-CD-0F"] {
            assert_eq!(parse_mac(ok).unwrap(), "52-54-00-ab-cd-0f");
        }
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:0f:11",
            "52:54-00:ab:cd:0f",
            "52:54:00:ab:cd:0g",
            "5254.00ab.cd0f",
            "52:54:00:ab:cd:f",
            " 52:54:00:ab:cd:0f",
            "52:54:00:ab:cd:0f\n",
        ] {
            let e = parse_mac(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("'{}'", bad.escape_default())), "{bad:?}: {e}");
        }
    }

    #[test]
    fn lookup_follows_pxelinux_and_ipxe_order() {
        let mac = "52-54-00-ab-cd-0f";
        assert_eq!(
            pxelinux_lookup(mac),
            ["pxelinux.cfg/01-52-54-00-ab-cd-0f", "pxelinux.cfg/default"]
        );
        assert_eq!(ipxe_lookup(mac), ["ipxe/01-52-54-00-ab-cd-0f.ipxe", "ipxe/menu.ipxe"]);

        let dir = tempfile::tempdir().unwrap();
        let names = pxelinux_lookup(mac);
        let missing = first_found(dir.path(), &names).unwrap_err().to_string();
        assert!(missing.contains("pxelinux.cfg/default"), "{missing}");
        std::fs::create_dir(dir.path().join("pxelinux.cfg")).unwrap();
        std::fs::write(dir.path().join(&names[1]), "DEFAULT menu.c32\n").unwrap();
        let (file, per_mac) = first_found(dir.path(), &names).unwrap();
        assert_eq!(
            (file.path.as_str(), file.content.as_str(), per_mac),
            (names[1].as_str(), "DEFAULT menu.c32\n", false)
        );
        std::fs::write(dir.path().join(&names[0]), "DEFAULT node1\n").unwrap();
        let (file, per_mac) = first_found(dir.path(), &names).unwrap();
        assert_eq!(
            (file.path.as_str(), file.content.as_str(), per_mac),
            (names[0].as_str(), "DEFAULT node1\n", true)
        );
    }

    #[test]
    fn unpublished_trees_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tftp");
        let e = served_dir(&root).unwrap_err();
        assert!(matches!(&e, NetbootError::NotPublished { root: r } if r == &root), "{e}");
        assert!(e.to_string().contains(&root.display().to_string()), "{e}");
    }
}
