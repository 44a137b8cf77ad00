//! Who receives what: per machine the destination host, and the orders of spec 2.2/2.4
//! (copies interleaved across carriers; carriers activated before what they carry).

use std::path::PathBuf;

use crate::cluster::{Cluster, Machine};

/// What a deploy does with each machine (spec 2.0 step 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Switch,
    Boot,
    Test,
    DryActivate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Switch => "switch",
            Action::Boot => "boot",
            Action::Test => "test",
            Action::DryActivate => "dry-activate",
        }
    }

    /// `boot` and `switch` also make the toplevel the system profile's new generation.
    pub fn sets_profile(self) -> bool {
        matches!(self, Action::Switch | Action::Boot)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid action '{0}': expected switch, boot, test or dry-activate")]
pub struct InvalidAction(pub String);

impl std::str::FromStr for Action {
    type Err = InvalidAction;
    fn from_str(s: &str) -> Result<Self, InvalidAction> {
        match s {
            "switch" => Ok(Action::Switch),
            "boot" => Ok(Action::Boot),
            "test" => Ok(Action::Test),
            "dry-activate" => Ok(Action::DryActivate),
            other => Err(InvalidAction(other.to_string())),
        }
    }
}

/// A built artifact to deploy: the build generation of one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub machine: String,
    /// The build generation's name (`YYYY-MM-DD--HH-MM-SS`).
    pub generation: String,
    /// The toplevel, or for carried machines the built attribute (e.g. `system.build.dist`).
    pub toplevel: PathBuf,
    pub auto_rollback: Option<PathBuf>,
}

/// Where a machine's artifact goes and what happens to it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Activated on the machine itself.
    Standalone,
    /// Set as `profile` on `carrier` (spec 2.4).
    Carried { carrier: String, profile: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub machine: String,
    /// The SSH destination (a host name or an ssh_config alias); `localhost` runs locally.
    pub host: String,
    pub port: u16,
    pub kind: Kind,
    pub artifact: Artifact,
    /// The machine's `autoRollback` settings (standalone machines only use them).
    pub auto_rollback_enabled: bool,
    pub auto_rollback_timeout: u64,
    pub checks: Vec<super::health::Check>,
}

impl Target {
    pub fn carrier(&self) -> Option<&str> {
        match &self.kind {
            Kind::Carried { carrier, .. } => Some(carrier),
            Kind::Standalone => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("machine '{0}' has no SSH target (host.target is null): it cannot be deployed")]
    NoTarget(String),
    #[error("carrier '{carrier}' of '{machine}' is not in the cluster")]
    UnknownCarrier { machine: String, carrier: String },
    #[error("no build generation for machine '{0}'")]
    NoArtifact(String),
}

/// One target per machine, in the order given.
/// Where `m` is acted on: the machine whose host is reached (its carrier for a carried
/// machine), how, and that host's address.
pub fn reach<'a>(
    cluster: &'a Cluster,
    m: &'a Machine,
) -> Result<(&'a Machine, Kind, &'a str), PlanError> {
    let (host_machine, kind) = match &m.carrier {
        Some(carrier) => {
            let c = cluster.get(carrier).ok_or_else(|| PlanError::UnknownCarrier {
                machine: m.name.clone(),
                carrier: carrier.clone(),
            })?;
            (c, Kind::Carried { carrier: carrier.clone(), profile: m.profile() })
        }
        None => (m, Kind::Standalone),
    };
    let host =
        host_machine.target_host().ok_or_else(|| PlanError::NoTarget(host_machine.name.clone()))?;
    Ok((host_machine, kind, host))
}

pub fn targets(
    cluster: &Cluster,
    machines: &[&Machine],
    artifacts: &[Artifact],
) -> Result<Vec<Target>, PlanError> {
    machines
        .iter()
        .map(|m| {
            let artifact = artifacts
                .iter()
                .find(|a| a.machine == m.name)
                .cloned()
                .ok_or_else(|| PlanError::NoArtifact(m.name.clone()))?;
            let (host_machine, kind, host) = reach(cluster, m)?;
            Ok(Target {
                machine: m.name.clone(),
                host: host.to_string(),
                port: host_machine.target_port(),
                kind,
                artifact,
                auto_rollback_enabled: m.meta_config.auto_rollback.enable,
                auto_rollback_timeout: m.meta_config.auto_rollback.timeout.max(1) as u64,
                checks: super::health::checks_of(m),
            })
        })
        .collect()
}

/// Spec 2.2: standalone hosts first, then one carried machine per carrier in turn, so
/// that parallel copies go to different carriers.
pub fn copy_order<'a>(targets: &[&'a Target]) -> Vec<&'a Target> {
    let mut out: Vec<&Target> = targets.iter().copied().filter(|t| t.carrier().is_none()).collect();
    let mut groups: Vec<(&str, std::collections::VecDeque<&Target>)> = Vec::new();
    for t in targets.iter().copied().filter(|t| t.carrier().is_some()) {
        let c = t.carrier().unwrap();
        match groups.iter_mut().find(|(name, _)| *name == c) {
            Some((_, q)) => q.push_back(t),
            None => groups.push((c, [t].into())),
        }
    }
    while !groups.is_empty() {
        for (_, q) in groups.iter_mut() {
            out.extend(q.pop_front());
        }
        groups.retain(|(_, q)| !q.is_empty());
    }
    debug_assert_eq!(out.len(), targets.len());
    out
}

/// Standalone machines in order, then carried ones: a carrier is always activated
/// before the machines it carries (spec 2.4 recommends this over upstream's order).
pub fn activation_order<'a>(targets: &[&'a Target]) -> Vec<&'a Target> {
    let mut out: Vec<&Target> = targets.iter().copied().filter(|t| t.carrier().is_none()).collect();
    out.extend(targets.iter().copied().filter(|t| t.carrier().is_some()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(machine: &str, carrier: Option<&str>) -> Target {
        Target {
            machine: machine.into(),
            host: "h".into(),
            port: 22,
            kind: match carrier {
                Some(c) => Kind::Carried { carrier: c.into(), profile: format!("p-{machine}") },
                None => Kind::Standalone,
            },
            artifact: Artifact {
                machine: machine.into(),
                generation: "g".into(),
                toplevel: "/nix/store/x".into(),
                auto_rollback: None,
            },
            auto_rollback_enabled: false,
            auto_rollback_timeout: 60,
            checks: Vec::new(),
        }
    }

    #[test]
    fn copies_interleave_carriers_like_upstream() {
        let ts = [
            t("A#1", Some("A")),
            t("A#2", Some("A")),
            t("s", None),
            t("A#3", Some("A")),
            t("B#1", Some("B")),
        ];
        let order: Vec<_> =
            copy_order(&ts.iter().collect::<Vec<_>>()).iter().map(|t| t.machine.as_str()).collect();
        assert_eq!(order, ["s", "A#1", "B#1", "A#2", "A#3"]);
    }

    #[test]
    fn carriers_activate_before_carried_machines() {
        let ts = [t("a#x", Some("a")), t("a", None), t("b", None)];
        let order: Vec<_> = activation_order(&ts.iter().collect::<Vec<_>>())
            .iter()
            .map(|t| t.machine.as_str())
            .collect();
        assert_eq!(order, ["a", "b", "a#x"]);
    }

    #[test]
    fn actions_parse_and_bad_ones_are_named() {
        assert_eq!("dry-activate".parse::<Action>(), Ok(Action::DryActivate));
        assert_eq!(
            "reboot".parse::<Action>().unwrap_err().to_string(),
            "invalid action 'reboot': expected switch, boot, test or dry-activate"
        );
        assert!(Action::Boot.sets_profile() && !Action::Test.sets_profile());
    }
}
