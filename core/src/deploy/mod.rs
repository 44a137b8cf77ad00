//! The deploy engine (spec 2): from built artifacts to activated machines and set
//! carried profiles. `run` goes through the phases of spec 2.0 steps 6-7 in bulk mode
//! (or one machine at a time) and returns a report that says, for every machine, where
//! it stands. Events go to an [`EventSink`] as it works.

pub mod activate;
pub mod copy;
pub mod health;
pub mod plan;
pub mod remote;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::cluster::Machine;
use crate::events::{Event, EventSink, Outcome, Phase};
pub use plan::{Action, Artifact, Kind, Target};
pub use remote::{Connections, HostLock, Remote, SshSettings};

#[derive(Debug, Clone)]
pub struct DeployOptions {
    pub action: Action,
    pub max_concurrent_copy: usize,
    pub one_by_one: bool,
    pub copy_only: bool,
    pub dry_activate_first: bool,
    /// `Some(true)`/`Some(false)` force auto-rollback on or off; `None` follows each
    /// machine's `autoRollback.enable`.
    pub auto_rollback: Option<bool>,
    pub health_checks: bool,
    pub timeouts: Timeouts,
}

/// The deadlines of a run (docs/deploy.md, "Deadlines").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Every command on a host (activation included; with auto-rollback, how long the
    /// target may stay `switching`), and `carrier profile set` on a carrier.
    pub command: Duration,
    /// One `nix-copy-closure`.
    pub copy: Duration,
    /// Waiting for a lock: the host's deploy lock (and for an unconfirmed activation to
    /// end), the configuration directory's lock.
    pub lock: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { command: Duration::from_secs(900), copy: Duration::from_secs(3600), lock: Duration::from_secs(600) }
    }
}

impl Default for DeployOptions {
    fn default() -> Self {
        DeployOptions {
            action: Action::Switch,
            max_concurrent_copy: 5,
            one_by_one: false,
            copy_only: false,
            dry_activate_first: false,
            auto_rollback: None,
            health_checks: true,
            timeouts: Timeouts::default(),
        }
    }
}

/// Where one machine stands after the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum MachineState {
    /// Activated (standalone) or its profile set (carried).
    Deployed,
    /// Copied only (`--copy-only`, or an action that does nothing for carried machines).
    Copied,
    /// Nothing to do: already using the generation.
    Current,
    /// The step failed; `changed` says whether the machine runs something new now.
    Failed { phase: Phase, error: String, changed: bool },
    /// Not attempted because the run stopped after another machine failed.
    NotAttempted { reason: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct MachineReport {
    pub machine: String,
    pub host: String,
    pub generation: String,
    pub toplevel: PathBuf,
    #[serde(flatten)]
    pub state: MachineState,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeployReport {
    pub action: Action,
    pub machines: Vec<MachineReport>,
    /// SSH connections opened by this run (one per host at most).
    pub connections: usize,
}

impl DeployReport {
    pub fn success(&self) -> bool {
        self.machines.iter().all(|m| !matches!(m.state, MachineState::Failed { .. } | MachineState::NotAttempted { .. }))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error(transparent)]
    Build(#[from] crate::build::BuildError),
    #[error("no build generation '{generation}' for {}", machines.join(", "))]
    MissingGeneration { generation: String, machines: Vec<String> },
}

/// The artifacts to deploy: a new build of every machine, or with `generation` that
/// existing build generation (every machine must have it; upstream would ask whether to
/// go on without the others, carrier refuses and names them).
pub fn artifacts(
    conf_dir: &Path,
    machines: &[&Machine],
    generation: Option<&str>,
    build_options: &crate::build::BuildOptions,
    sink: &dyn EventSink,
) -> Result<Vec<Artifact>, ArtifactError> {
    let generations: Vec<crate::build::Generation> = match generation {
        Some(name) => {
            let found: Vec<_> = machines.iter().map(|m| (m, crate::build::find(conf_dir, &m.name, name))).collect();
            let missing: Vec<String> = found.iter().filter(|(_, g)| g.is_none()).map(|(m, _)| m.name.clone()).collect();
            if !missing.is_empty() {
                return Err(ArtifactError::MissingGeneration { generation: name.to_string(), machines: missing });
            }
            found.into_iter().filter_map(|(_, g)| g).collect()
        }
        None => {
            let owned: Vec<Machine> = machines.iter().map(|m| (*m).clone()).collect();
            crate::build::build(conf_dir, &owned, build_options, sink)?.into_values().collect()
        }
    };
    Ok(generations
        .into_iter()
        .map(|g| Artifact { machine: g.machine, generation: g.name, toplevel: g.toplevel, auto_rollback: g.auto_rollback })
        .collect())
}

/// The lock of one configuration directory (`.confctl/deploy.lock`): one deploy of it
/// at a time, a second one waits at most `wait`, saying for whom (events).
pub fn lock_conf_dir(conf_dir: &Path, wait: Duration, sink: &dyn EventSink) -> Result<std::fs::File, crate::lock::LockError> {
    let path = conf_dir.join(".confctl/deploy.lock");
    let on_wait = |line: String| sink.emit(Event::Notice { phase: Phase::Build, machine: None, line });
    crate::lock::acquire(&path, &this_run(), wait, &on_wait)
}

/// Deploys `targets` (see [`plan::targets`]).
pub async fn run(targets: Vec<Target>, opts: &DeployOptions, ssh: SshSettings, sink: &dyn EventSink) -> DeployReport {
    let connections = match Connections::new(ssh, opts.timeouts.command) {
        Ok(c) => c,
        Err(e) => {
            let error = format!("creating the SSH control directory: {e}");
            let states = targets
                .iter()
                .map(|t| (t.machine.clone(), MachineState::Failed { phase: Phase::Status, error: error.clone(), changed: false }))
                .collect();
            return report(&targets, states, opts, 0);
        }
    };
    let mut states: BTreeMap<String, MachineState> = BTreeMap::new();
    let groups: Vec<Vec<Target>> =
        if opts.one_by_one { targets.iter().map(|t| vec![t.clone()]).collect() } else { vec![targets.clone()] };
    for group in groups {
        if states.values().any(|s| matches!(s, MachineState::Failed { .. })) {
            for t in &group {
                states.insert(t.machine.clone(), not_attempted());
            }
            continue;
        }
        run_group(&group, opts, &connections, sink, &mut states).await;
    }
    let count = connections.connection_count();
    connections.close().await;
    report(&targets, states, opts, count)
}

fn not_attempted() -> MachineState {
    MachineState::NotAttempted { reason: "the run stopped after a failure".into() }
}

async fn run_group(
    targets: &[Target],
    opts: &DeployOptions,
    connections: &Connections,
    sink: &dyn EventSink,
    states: &mut BTreeMap<String, MachineState>,
) {
    let finish = |sink: &dyn EventSink, phase, machine: &str, outcome| {
        sink.emit(Event::MachineFinished { phase, machine: machine.to_string(), outcome })
    };

    // Status: connect, and drop what already runs the generation.
    sink.emit(Event::PhaseStarted { phase: Phase::Status, machines: targets.len() });
    let mut pending: Vec<&Target> = Vec::new();
    for t in targets {
        let remote = match connections.get(&t.host, t.port).await {
            Ok(r) => r,
            Err(e) => {
                finish(sink, Phase::Status, &t.machine, Outcome::Failed { error: e.to_string() });
                states.insert(t.machine.clone(), MachineState::Failed { phase: Phase::Status, error: e.to_string(), changed: false });
                continue;
            }
        };
        if !opts.copy_only {
            match activate::status(&remote, t, opts.action).await {
                activate::Status::Current => {
                    let reason = format!("already using target generation {}", t.artifact.generation);
                    finish(sink, Phase::Status, &t.machine, Outcome::Skipped { reason });
                    states.insert(t.machine.clone(), MachineState::Current);
                    continue;
                }
                activate::Status::HooksPending(record) => {
                    let line = format!("the profile is set, but the carrier's on-change hooks have not succeeded since ({record}): setting it again");
                    sink.emit(Event::Notice { phase: Phase::Status, machine: Some(t.machine.clone()), line });
                }
                activate::Status::NotCurrent => {}
            }
        }
        pending.push(t);
    }
    sink.emit(Event::PhaseFinished { phase: Phase::Status });

    // Copy.
    let order = plan::copy_order(&pending);
    sink.emit(Event::PhaseStarted { phase: Phase::Copy, machines: order.len() });
    let paths = |t: &Target| {
        let mut p = vec![t.artifact.toplevel.clone()];
        if uses_auto_rollback(t, opts) {
            p.extend(t.artifact.auto_rollback.clone());
        }
        p
    };
    let copied = copy::copy_all(&order, paths, connections, opts.max_concurrent_copy, opts.timeouts.copy, sink).await;
    let mut copied_ok = Vec::new();
    for (machine, result) in copied {
        match result {
            Ok(()) => {
                finish(sink, Phase::Copy, &machine, Outcome::Ok);
                copied_ok.push(machine);
            }
            Err(error) => {
                finish(sink, Phase::Copy, &machine, Outcome::Failed { error: error.clone() });
                states.insert(machine, MachineState::Failed { phase: Phase::Copy, error, changed: false });
            }
        }
    }
    sink.emit(Event::PhaseFinished { phase: Phase::Copy });
    let ready: Vec<&Target> = pending.into_iter().filter(|t| copied_ok.contains(&t.machine)).collect();
    if opts.copy_only {
        for t in ready {
            states.insert(t.machine.clone(), MachineState::Copied);
        }
        return;
    }
    // Nothing is activated when a host was unreachable or a copy failed: every host
    // stays on what it runs.
    if states.values().any(|s| matches!(s, MachineState::Failed { .. })) {
        for t in ready {
            let reason = "copied, not activated: another host failed before activation".into();
            states.insert(t.machine.clone(), MachineState::NotAttempted { reason });
        }
        return;
    }

    // Activation: standalone in order, then carried machines, one profile set per carrier.
    let order = plan::activation_order(&ready);
    sink.emit(Event::PhaseStarted { phase: Phase::Activate, machines: order.len() });
    let mut stopped = false;
    let mut carried_by: Vec<(String, Vec<&Target>)> = Vec::new();
    for t in order {
        if stopped {
            states.insert(t.machine.clone(), not_attempted());
            continue;
        }
        if let Some(carrier) = t.carrier() {
            if opts.action == Action::Switch {
                match carried_by.iter_mut().find(|(c, _)| c == carrier) {
                    Some((_, v)) => v.push(t),
                    None => carried_by.push((carrier.to_string(), vec![t])),
                }
            } else {
                // spec 2.4: only switch changes a carried profile
                states.insert(t.machine.clone(), MachineState::Copied);
            }
            continue;
        }
        let remote = connections.get(&t.host, t.port).await.expect("connected in the status phase");
        let who = holder(&[t]);
        let lock = match take_lock(&remote, &who, &t.machine, opts, sink).await {
            Ok(lock) => lock,
            Err(error) => {
                finish(sink, Phase::Activate, &t.machine, Outcome::Failed { error: error.clone() });
                states.insert(t.machine.clone(), MachineState::Failed { phase: Phase::Activate, error, changed: false });
                stopped = true;
                continue;
            }
        };
        let before = remote.realpath("/run/current-system").await;
        let result = activate::standalone(&remote, t, opts.action, opts.dry_activate_first, uses_auto_rollback(t, opts), &who).await;
        match result {
            Ok(()) => {
                lock.release().await;
                finish(sink, Phase::Activate, &t.machine, Outcome::Ok);
                states.insert(t.machine.clone(), MachineState::Deployed);
            }
            Err(f) => {
                // what the host runs now, read after the failure; a host that cannot be
                // asked has changed unless an unconfirmed activation switches it back
                let now = remote.realpath("/run/current-system").await;
                lock.release().await;
                let changed = match (&now, &before) {
                    (Some(now), before) => Some(now) != before.as_ref(),
                    (None, _) => !f.switches_back,
                };
                let error = if f.rolled_back { format!("{} (rolled back to the previous system)", f.message) } else { f.message };
                finish(sink, Phase::Activate, &t.machine, Outcome::Failed { error: error.clone() });
                states.insert(t.machine.clone(), MachineState::Failed { phase: Phase::Activate, error, changed });
                stopped = true;
            }
        }
    }
    for (carrier, group) in carried_by {
        if stopped {
            for t in group {
                states.insert(t.machine.clone(), not_attempted());
            }
            continue;
        }
        let remote = connections.get(&group[0].host, group[0].port).await.expect("connected in the status phase");
        let lock = match take_lock(&remote, &holder(&group), &carrier, opts, sink).await {
            Ok(lock) => lock,
            Err(error) => {
                for t in group {
                    finish(sink, Phase::CarriedProfile, &t.machine, Outcome::Failed { error: error.clone() });
                    states.insert(t.machine.clone(), MachineState::Failed { phase: Phase::CarriedProfile, error: error.clone(), changed: false });
                }
                stopped = true;
                continue;
            }
        };
        let mut before = Vec::new();
        for t in &group {
            before.push(carried_profile(&remote, t).await);
        }
        let result = activate::carried(&remote, &group).await;
        match result {
            Ok(()) => {
                lock.release().await;
                for t in group {
                    finish(sink, Phase::CarriedProfile, &t.machine, Outcome::Ok);
                    states.insert(t.machine.clone(), MachineState::Deployed);
                }
            }
            Err(e) => {
                // the profiles may be set already when a hook failed (spec 2.4): say so
                let error = format!("setting carried profiles on {carrier}: {e}");
                for (t, before) in group.into_iter().zip(before) {
                    let changed = carried_profile(&remote, t).await != before;
                    finish(sink, Phase::CarriedProfile, &t.machine, Outcome::Failed { error: error.clone() });
                    states.insert(t.machine.clone(), MachineState::Failed { phase: Phase::CarriedProfile, error: error.clone(), changed });
                }
                lock.release().await;
                stopped = true;
            }
        }
    }
    sink.emit(Event::PhaseFinished { phase: Phase::Activate });

    if opts.health_checks && matches!(opts.action, Action::Switch | Action::Test) {
        let deployed: Vec<&Target> =
            targets.iter().filter(|t| t.carrier().is_none() && states.get(&t.machine) == Some(&MachineState::Deployed)).collect();
        health::run_all(&deployed, connections, sink, states).await;
    }
}

/// The realpath of a carried machine's profile on its carrier.
async fn carried_profile(remote: &Remote, t: &Target) -> Option<String> {
    match &t.kind {
        Kind::Carried { profile, .. } => remote.realpath(profile).await,
        Kind::Standalone => None,
    }
}

/// Takes the host's deploy lock for `what`, reporting whom it waits for; the error says
/// who held it when the wait timed out.
async fn take_lock<'a>(
    remote: &'a Remote,
    who: &str,
    what: &str,
    opts: &DeployOptions,
    sink: &dyn EventSink,
) -> Result<HostLock<'a>, String> {
    let on_wait = |line: String| sink.emit(Event::Notice { phase: Phase::Activate, machine: Some(what.to_string()), line });
    remote.lock(who, opts.timeouts.lock, &on_wait).await.map_err(|e| e.to_string())
}

/// How a deploy names itself to whoever has to wait for its locks.
fn holder(targets: &[&Target]) -> String {
    let what: Vec<String> = targets.iter().map(|t| format!("{} {}", t.machine, t.artifact.generation)).collect();
    format!("{}: {}", this_run(), what.join(", "))
}

/// `carrier deploy (pid N) on <host name> since <time>`.
pub fn this_run() -> String {
    static STARTED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let since = STARTED.get_or_init(|| jiff::Timestamp::now().round(jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("carrier deploy (pid {}) on {} since {since}", std::process::id(), host.trim())
}

fn uses_auto_rollback(t: &Target, opts: &DeployOptions) -> bool {
    t.carrier().is_none() && t.artifact.auto_rollback.is_some() && opts.auto_rollback.unwrap_or(t.auto_rollback_enabled)
}

fn report(targets: &[Target], mut states: BTreeMap<String, MachineState>, opts: &DeployOptions, connections: usize) -> DeployReport {
    DeployReport {
        action: opts.action,
        connections,
        machines: targets
            .iter()
            .map(|t| MachineReport {
                machine: t.machine.clone(),
                host: t.host.clone(),
                generation: t.artifact.generation.clone(),
                toplevel: t.artifact.toplevel.clone(),
                state: states.remove(&t.machine).unwrap_or_else(not_attempted),
            })
            .collect(),
    }
}
