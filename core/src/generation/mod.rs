//! Generations and garbage collection (spec 4.1–4.4): the local build generations of
//! the configuration directory, the host generations of a machine's system profile, and
//! the carried generations a carrier keeps for each of its machines, listed as one kind
//! of [`Record`]; their removal by [`Selector`]; rotation by [`retention`] limits; and
//! `nix-collect-garbage` on hosts. Remote reads and changes go through
//! [`crate::remote::Hosts`] only (see [`remote`]).

use crate::conf_dir::ConfDir;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::build as build_gens;
use crate::cluster::{Cluster, Machine};
use crate::remote::HostError;

pub mod remote;
pub mod retention;
mod run;
pub mod selector;

#[cfg(test)]
pub(crate) mod tests;

pub use remote::{RemoteTarget, collect_garbage, list_remote, remove_remote};
pub use retention::{Limits, Settings};
pub use run::{Gathered, Gc, Removed, gather, remote_generation, remove};
pub use selector::Selector;

#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    #[error("invalid generation selector '{selector}': {reason}")]
    Selector { selector: String, reason: String },
    #[error("generation {name} of {machine} is the current one: it is never removed")]
    Current { machine: String, name: String },
    #[error("{machine} has no generation {number} on {host}")]
    NoGeneration { machine: String, number: u64, host: String },
    #[error(
        "machine '{0}' has no SSH target (host.target is null): its generations cannot be read"
    )]
    NoTarget(String),
    #[error("carrier '{carrier}' of '{machine}' is not in the cluster")]
    UnknownCarrier { machine: String, carrier: String },
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("{host}: unexpected output of `{command}`: {message}")]
    Output { host: String, command: String, message: String },
    #[error("reading the confctl settings of {}: {source}", conf_dir.display())]
    Settings {
        conf_dir: PathBuf,
        #[source]
        source: crate::nix::NixError,
    },
    #[error("removing build generation {}: {source}", dir.display())]
    RemoveLocal {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One generation of one machine, wherever it lives: a local build generation, a
/// generation on the host (the system profile, or the carried profile on the carrier),
/// or both when they hold the same store path (spec 4.3's unification).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub machine: String,
    /// The build generation's name, else the host generation's date formatted like one.
    pub name: String,
    #[serde(serialize_with = "serialize_date")]
    pub date: jiff::Timestamp,
    pub store_path: String,
    pub build: Option<BuildPart>,
    pub host: Option<HostPart>,
    /// From the kernel's store path (`…-linux-<version>`), where known.
    pub kernel: Option<String>,
    pub version: Option<String>,
    pub revision: Option<String>,
}

/// The local side of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildPart {
    pub name: String,
    pub dir: PathBuf,
    /// The `current` link names it.
    pub current: bool,
}

/// The remote side of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPart {
    /// The profile's generation number.
    pub number: u64,
    /// The profile points to it.
    pub current: bool,
    /// Where the profile lives (the machine, or its carrier), and its SSH port.
    pub host: String,
    pub port: u16,
    pub profile: String,
    /// The carrier of a carried machine.
    pub carrier: Option<String>,
}

fn serialize_date<S: serde::Serializer>(date: &jiff::Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&date.to_string())
}

impl Record {
    pub fn is_current(&self) -> bool {
        self.build.as_ref().is_some_and(|b| b.current)
            || self.host.as_ref().is_some_and(|h| h.current)
    }

    /// `build`, `host` or `build+host` (upstream's presence column).
    pub fn presence(&self) -> &'static str {
        match (&self.build, &self.host) {
            (Some(_), Some(_)) => "build+host",
            (None, Some(_)) => "host",
            _ => "build",
        }
    }

    /// Which sides are current: `build`, `host`, `build+host` or empty.
    pub fn current_str(&self) -> &'static str {
        match (
            self.build.as_ref().is_some_and(|b| b.current),
            self.host.as_ref().is_some_and(|h| h.current),
        ) {
            (true, true) => "build+host",
            (true, false) => "build",
            (false, true) => "host",
            (false, false) => "",
        }
    }
}

/// A date formatted like a build generation's name (local time), upstream's
/// `approx_name` of host generations.
pub fn approx_name(date: jiff::Timestamp) -> String {
    date.to_zoned(jiff::tz::TimeZone::system()).strftime("%Y-%m-%d--%H-%M-%S").to_string()
}

/// The local build generations of `machine`, oldest first.
pub fn local(conf_dir: &ConfDir, machine: &str) -> Vec<Record> {
    let current = build_gens::find(conf_dir, machine, "current").map(|g| g.name);
    build_gens::list(conf_dir, machine)
        .into_iter()
        .filter_map(|g| {
            let date: jiff::Timestamp = g.date.parse().ok()?;
            Some(Record {
                machine: g.machine,
                name: g.name.clone(),
                date,
                store_path: g.toplevel.display().to_string(),
                build: Some(BuildPart {
                    current: current.as_deref() == Some(&g.name),
                    name: g.name,
                    dir: g.dir,
                }),
                host: None,
                kernel: None,
                version: None,
                revision: None,
            })
        })
        .collect()
}

/// Joins one machine's host records and build records (each oldest first): a build
/// generation with the store path of a host generation becomes part of its record.
/// The result is ordered by date.
pub fn unify(host: Vec<Record>, build: Vec<Record>) -> Vec<Record> {
    let mut out = host;
    for b in build {
        match out.iter_mut().find(|r| r.build.is_none() && r.store_path == b.store_path) {
            Some(r) => {
                r.name = b.name;
                r.build = b.build;
            }
            None => out.push(b),
        }
    }
    out.sort_by_key(|r| r.date);
    out
}

/// Removes a local build generation: its directory (first renamed to a hidden name, so
/// listings stop seeing it at once), then its GC roots. The current one is refused.
pub fn remove_local(
    conf_dir: &ConfDir,
    roots_dir: &Path,
    record: &Record,
) -> Result<(), GenerationError> {
    let Some(build) = &record.build else { return Ok(()) };
    if build.current {
        return Err(GenerationError::Current {
            machine: record.machine.clone(),
            name: build.name.clone(),
        });
    }
    let err = |dir: &Path| {
        let dir = dir.to_path_buf();
        move |source| GenerationError::RemoveLocal { dir, source }
    };
    let parent = build_gens::machine_dir(conf_dir, &record.machine);
    let hidden = parent.join(format!(".{}.removing-{}", build.name, crate::links::random_suffix()));
    std::fs::rename(&build.dir, &hidden).map_err(err(&build.dir))?;
    build_gens::remove_roots(roots_dir, &record.machine, &build.name).map_err(err(&build.dir))?;
    std::fs::remove_dir_all(&hidden).map_err(err(&build.dir))
}

/// Where each machine's remote generations are read: its own system profile, or its
/// carried profile on its carrier.
pub fn remote_target(cluster: &Cluster, m: &Machine) -> Result<RemoteTarget, GenerationError> {
    let host_machine = host_machine(cluster, m)?;
    let host = host_machine
        .target_host()
        .ok_or_else(|| GenerationError::NoTarget(host_machine.name.clone()))?;
    Ok(RemoteTarget {
        machine: m.name.clone(),
        host: host.to_string(),
        port: host_machine.target_port(),
        profile: m.profile(),
        carrier: m.carrier.clone(),
    })
}

/// The machine whose host keeps `m`'s profile: `m`, or its carrier.
pub fn host_machine<'a>(
    cluster: &'a Cluster,
    m: &'a Machine,
) -> Result<&'a Machine, GenerationError> {
    match &m.carrier {
        Some(c) => cluster.get(c).ok_or_else(|| GenerationError::UnknownCarrier {
            machine: m.name.clone(),
            carrier: c.clone(),
        }),
        None => Ok(m),
    }
}

/// What rotation removes from one machine's generations (oldest first) under `limits`.
pub fn rotation(gens: &[Record], limits: Limits, now: jiff::Timestamp) -> Vec<usize> {
    let dated: Vec<(jiff::Timestamp, bool)> =
        gens.iter().map(|g| (g.date, g.is_current())).collect();
    retention::rotate(&dated, limits, now)
}
