//! `carrier status` (spec 4.5): for every selected machine, what it should run (a local
//! build generation), what is staged for it and what it runs, read in parallel over one
//! connection per host (carried machines through their carrier's), as one [`State`] per
//! machine. Hosts are reached only through [`crate::remote::Host`]; `read` opens them
//! over SSH, `read_on` takes any [`Hosts`]. docs/status.md.

pub mod read;
mod state;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::carrier::netboot::{BootPreview, LastBuild};
use crate::carrier::profiles::{MachineJson, ProfileListing};
use crate::cluster::{Cluster, Machine};
pub use crate::deploy::plan::{Kind, PlanError};
use crate::remote::{Connections, Hosts, SshSettings};
pub use read::SystemRead;

/// One clear state per machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Standalone: runs the desired generation, which is also the system profile (what
    /// boots next) and, when the host says, what it booted.
    UpToDate,
    /// Carried: the carrier's profile holds the desired generation, and the machine's
    /// latest check-in booted it, or there is no check-in ([`CarriedRead::booted`] None).
    Staged,
    /// Carried: the desired generation is staged, but the machine has not booted it: its
    /// latest check-in came before the staged generation was set (a reboot is due), or
    /// booted another one that is not older (e.g. a newer generation since rolled back).
    StagedNotBooted,
    /// Carried: the desired generation is staged, and a check-in after it was set booted
    /// an older one.
    BootedOlder,
    /// Standalone: the system profile is the desired generation but the running system
    /// is not, or the running system is not what the host booted.
    RebootPending,
    /// Runs (standalone) or has staged (carried) another generation carrier built.
    Outdated,
    /// Carried: the carrier has no generation of the machine's profile.
    NotStaged,
    /// Runs or has staged a system no local build generation of the machine has.
    Foreign,
    /// The host (for carried machines: the carrier) could not be reached.
    Unreachable,
    /// Reached, but the state cannot be told (nothing built, an unreadable answer).
    Unknown,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::UpToDate => "up to date",
            State::Staged => "staged",
            State::StagedNotBooted => "staged not booted",
            State::BootedOlder => "booted older",
            State::RebootPending => "reboot pending",
            State::Outdated => "outdated",
            State::NotStaged => "not staged",
            State::Foreign => "foreign",
            State::Unreachable => "unreachable",
            State::Unknown => "unknown",
        }
    }
}

/// The local build generation a machine is compared against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Desired {
    pub generation: String,
    /// The built attribute (for carried machines: the dist).
    pub toplevel: PathBuf,
    /// When it was built, epoch seconds.
    pub built: Option<i64>,
}

/// What status reads for one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusTarget {
    pub machine: String,
    /// The SSH destination: the machine's own, or its carrier's.
    pub host: String,
    pub port: u16,
    pub kind: Kind,
    /// None when the machine has no (such) build generation.
    pub desired: Option<Desired>,
    /// Every local build generation of the machine, `(name, toplevel)`, oldest first:
    /// what carrier built for it.
    pub built: Vec<(String, PathBuf)>,
    /// Carried machines: the latest check-in (from the database, given by the caller;
    /// its `store_path` is filled from the carrier's listing).
    pub checkin: Option<Booted>,
}

/// One machine's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MachineStatus {
    pub machine: String,
    pub host: String,
    pub state: State,
    /// Why: the reason a host is unreachable, what runs instead of what.
    pub detail: Option<String>,
    pub desired: Option<Desired>,
    /// Since when the machine has differed from the desired generation, epoch seconds:
    /// the later of the desired generation's build and the setting of what the host's
    /// profile holds now (when known).
    pub drift_since: Option<i64>,
    /// Standalone machines: what the host says (None when it could not be read).
    pub system: Option<SystemRead>,
    /// Carried machines: what the carrier's profile says.
    pub carried: Option<CarriedRead>,
    /// The deployed inputs (flake mode) or swpins info: the running system's
    /// `etc/confctl/*-info.json`, or the staged generation's `machine.json`.
    pub inputs_info: Option<serde_json::Value>,
    pub swpins_info: Option<serde_json::Value>,
}

/// A carried machine as its carrier's profile shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CarriedRead {
    pub carrier: String,
    pub profile: String,
    /// The profile's current generation; None when nothing is staged.
    pub staged: Option<StagedGeneration>,
    /// How many generations the profile has.
    pub generations: usize,
    /// What the machine last reported it booted (`POST /api/checkin` of `carrier serve`);
    /// None without a check-in (unknown, never guessed).
    pub booted: Option<Booted>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StagedGeneration {
    pub number: u64,
    pub store_path: PathBuf,
    /// When it was set, epoch seconds.
    pub time: i64,
    pub machine_json: Option<MachineJson>,
}

/// What a netbooted machine reported it booted: its latest check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Booted {
    /// The carried profile's generation number it booted.
    pub generation: u64,
    /// That generation's store path, when the carrier still has it.
    pub store_path: Option<PathBuf>,
    /// When the check-in was received, epoch seconds.
    pub time: i64,
    pub mac: String,
}

/// What a carrier holds, read together with its carried machines' status (the dashboard's
/// carrier page).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CarrierRead {
    pub carrier: String,
    /// Every `confctl-*` profile there, with its generations.
    pub profiles: Vec<ProfileListing>,
    /// Why the profiles could not be read.
    pub error: Option<String>,
    /// The last build of its netboot trees (None: none since it started, or not read).
    pub netboot: Option<LastBuild>,
    /// Why the last build could not be read.
    pub netboot_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub machines: Vec<MachineStatus>,
    /// The carriers of the carried machines read.
    pub carriers: Vec<CarrierRead>,
    /// SSH connections opened (one per host at most).
    pub connections: usize,
}

/// The machines `carrier status` looks at (spec 4.5): managed ones with an SSH target,
/// and carried ones.
pub fn selectable(m: &Machine) -> bool {
    m.is_managed() && (m.is_runnable() || m.is_carried())
}

/// One target per machine, compared with its build generation `selector` (spec 4.1;
/// `current`, the last build, when None).
pub fn targets(
    conf_dir: &crate::conf_dir::ConfDir,
    cluster: &Cluster,
    machines: &[&Machine],
    selector: Option<&str>,
) -> Result<Vec<StatusTarget>, PlanError> {
    let selector = selector.unwrap_or("current");
    machines
        .iter()
        .map(|m| {
            let (host_machine, kind, host) = crate::deploy::plan::reach(cluster, m)?;
            let desired = crate::build::find(conf_dir, &m.name, selector).map(|g| Desired {
                built: g.date.parse::<jiff::Timestamp>().ok().map(|t| t.as_second()),
                generation: g.name,
                toplevel: g.toplevel,
            });
            let built = crate::build::list(conf_dir, &m.name)
                .into_iter()
                .map(|g| (g.name, g.toplevel))
                .collect();
            Ok(StatusTarget {
                machine: m.name.clone(),
                host: host.to_string(),
                port: host_machine.target_port(),
                kind,
                desired,
                built,
                checkin: None,
            })
        })
        .collect()
}

/// Reads the status of `targets` over SSH; each command on a host has `timeout`.
pub async fn read(
    targets: &[StatusTarget],
    ssh: SshSettings,
    timeout: Duration,
) -> std::io::Result<StatusReport> {
    Ok(read_on(targets, Connections::new(ssh, timeout)?).await)
}

/// Reads the status of `targets` on `hosts`, every host at the same time, then closes
/// them. A host's reads share its one connection: its system (when one of its own
/// machines is selected) and its carried profiles (when one it carries is).
pub async fn read_on<H: Hosts>(targets: &[StatusTarget], hosts: H) -> StatusReport {
    let mut groups: Vec<((&str, u16), Vec<&StatusTarget>)> = Vec::new();
    for t in targets {
        let key = (t.host.as_str(), t.port);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(t),
            None => groups.push((key, vec![t])),
        }
    }
    let reads = groups.iter().map(|((host, port), group)| read_host(&hosts, host, *port, group));
    let (mut machines, mut carriers) = (Vec::new(), Vec::new());
    for (statuses, carrier) in futures::future::join_all(reads).await {
        machines.extend(statuses);
        carriers.extend(carrier);
    }
    // the order of `targets`
    machines.sort_by_key(|m| targets.iter().position(|t| t.machine == m.machine));
    carriers.sort_by(|a: &CarrierRead, b| a.carrier.cmp(&b.carrier));
    let connections = hosts.opened();
    hosts.close().await;
    StatusReport { machines, carriers, connections }
}

/// What a client with `mac` gets from the published netboot trees of the carrier reached
/// at `host`:`port`, asked over SSH (the dashboard's boot preview; on the carrier itself,
/// `carrier netboot preview`). `mac` is checked before anything runs.
pub async fn boot_preview(
    host: &str,
    port: u16,
    mac: &str,
    ssh: SshSettings,
    timeout: Duration,
) -> Result<BootPreview, read::ReadError> {
    let mac = crate::carrier::netboot::parse_mac(mac)
        .map_err(|e| read::ReadError::Answer(e.to_string()))?;
    let hosts = Connections::new(ssh, timeout)
        .map_err(|e| read::ReadError::Answer(format!("preparing SSH: {e}")))?;
    let preview = match hosts.open(host, port).await {
        Ok(remote) => read::boot_preview(&*remote, &mac).await,
        Err(e) => Err(e.into()),
    };
    hosts.close().await;
    preview
}

/// The statuses of a host's machines, and what it carries when it is a carrier.
async fn read_host<H: Hosts>(
    hosts: &H,
    host: &str,
    port: u16,
    group: &[&StatusTarget],
) -> (Vec<MachineStatus>, Option<CarrierRead>) {
    let carrier = group.iter().find_map(|t| match &t.kind {
        Kind::Carried { carrier, .. } => Some(carrier.clone()),
        Kind::Standalone => None,
    });
    let remote = match hosts.open(host, port).await {
        Ok(remote) => remote,
        Err(e) => {
            let error = read::ReadError::Host(e);
            let read = carrier.map(|carrier| CarrierRead {
                carrier,
                profiles: Vec::new(),
                error: Some(error.to_string()),
                netboot: None,
                netboot_error: None,
            });
            return (group.iter().map(|t| state::failed(t, &error)).collect(), read);
        }
    };
    let standalone = group.iter().any(|t| t.kind == Kind::Standalone);
    let (system, carried) = futures::join!(
        async {
            match standalone {
                true => Some(read::system(&*remote).await),
                false => None,
            }
        },
        async {
            match carrier.is_some() {
                true => Some(futures::join!(read::profiles(&*remote), read::netboot(&*remote))),
                false => None,
            }
        }
    );
    let statuses = group
        .iter()
        .map(|t| match &t.kind {
            Kind::Standalone => match system.as_ref().expect("read when a machine is standalone") {
                Ok(read) => state::standalone(t, read),
                Err(e) => state::failed(t, e),
            },
            Kind::Carried { carrier, profile } => {
                match &carried.as_ref().expect("read when a machine is carried").0 {
                    Ok(listing) => state::carried(t, carrier, profile, listing),
                    Err(e) => state::failed(t, e),
                }
            }
        })
        .collect();
    let read = carrier.zip(carried).map(|(carrier, (profiles, netboot))| {
        let (profiles, error) = match profiles {
            Ok(listing) => (listing, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        let (netboot, netboot_error) = match netboot {
            Ok(last) => (last, None),
            Err(e) => (None, Some(e.to_string())),
        };
        CarrierRead { carrier, profiles, error, netboot, netboot_error }
    });
    (statuses, read)
}
