//! The deploy engine (spec 2): from built artifacts to activated machines and set
//! carried profiles. `run` goes through the phases of spec 2.0 steps 6-7 in bulk mode
//! (or one machine at a time) and returns a report that says, for every machine, where
//! it stands. Events go to an [`EventSink`] as it works. Hosts are reached only through
//! [`crate::remote::Host`]: `run` opens them over SSH, `run_on` takes any [`Hosts`].

pub mod activate;
pub mod copy;
pub mod health;
pub mod plan;
pub mod reboot;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::cluster::Machine;
use crate::conf_dir::ConfDir;
use crate::events::{Event, EventSink, Outcome, Phase};
pub use crate::remote::SshSettings;
use crate::remote::{Connections, Host, HostError, HostLock, Hosts};
pub use plan::{Action, Artifact, Kind, Target};
pub use reboot::WaitOnline;

#[derive(Debug, Clone)]
pub struct DeployOptions {
    pub action: Action,
    pub max_concurrent_copy: usize,
    pub one_by_one: bool,
    pub copy_only: bool,
    pub dry_activate_first: bool,
    /// Ask the sink ([`EventSink::confirm`]) before each machine's copy, activation (or
    /// carried profile) and reboot; a machine declined goes no further (`--interactive`).
    pub interactive: bool,
    /// `Some(true)`/`Some(false)` force auto-rollback on or off; `None` follows each
    /// machine's `autoRollback.enable`.
    pub auto_rollback: Option<bool>,
    pub health_checks: bool,
    /// Failed health checks do not stop a `one_by_one` run (`--keep-going`).
    pub keep_going: bool,
    /// Reboot the standalone machines after a `boot` activation (`--reboot`).
    pub reboot: bool,
    pub wait_online: WaitOnline,
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
        Timeouts {
            command: Duration::from_secs(900),
            copy: Duration::from_secs(3600),
            lock: Duration::from_secs(600),
        }
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
            interactive: false,
            auto_rollback: None,
            health_checks: true,
            keep_going: false,
            reboot: false,
            wait_online: WaitOnline::default(),
            timeouts: Timeouts::default(),
        }
    }
}

/// Where one machine stands after the run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum MachineState {
    /// Activated (standalone) or its profile set (carried).
    Deployed,
    /// Copied only (`--copy-only`, or an action that does nothing for carried machines).
    Copied,
    /// Nothing to do: already using the generation.
    Current,
    /// The step failed; `changed` says whether the machine runs something new now.
    Failed {
        phase: Phase,
        #[serde(serialize_with = "as_text")]
        error: DeployError,
        changed: bool,
    },
    /// Not attempted because the run stopped after another machine failed.
    NotAttempted { reason: String },
    /// The operator declined the machine's step in `phase` (`--interactive`); it went no
    /// further (declined at activation: copied only).
    Declined { phase: Phase },
}

/// Why a machine failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeployError {
    #[error("creating the SSH control directory: {0}")]
    ControlDir(Arc<std::io::Error>),
    /// Connecting, copying, taking the host's lock.
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Activation(#[from] activate::ActivationError),
    /// `carrier profile set` on the carrier failed (the profiles may be set already
    /// when a hook failed).
    #[error("setting carried profiles on {carrier}: {source}")]
    CarriedProfiles { carrier: String, source: HostError },
    #[error(transparent)]
    Reboot(#[from] reboot::RebootError),
    #[error("health checks failed: {}", join(.0))]
    HealthChecks(Vec<health::CheckFailure>),
}

fn join(failures: &[health::CheckFailure]) -> String {
    failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// The report carries errors as their messages.
fn as_text<S: serde::Serializer>(error: &DeployError, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(error)
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
        self.machines.iter().all(|m| {
            !matches!(m.state, MachineState::Failed { .. } | MachineState::NotAttempted { .. })
        })
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
    conf_dir: &ConfDir,
    machines: &[&Machine],
    generation: Option<&str>,
    build_options: &crate::build::BuildOptions,
    sink: &dyn EventSink,
) -> Result<Vec<Artifact>, ArtifactError> {
    let generations: Vec<crate::build::Generation> = match generation {
        Some(name) => {
            let found: Vec<_> =
                machines.iter().map(|m| (m, crate::build::find(conf_dir, &m.name, name))).collect();
            let missing: Vec<String> =
                found.iter().filter(|(_, g)| g.is_none()).map(|(m, _)| m.name.clone()).collect();
            if !missing.is_empty() {
                return Err(ArtifactError::MissingGeneration {
                    generation: name.to_string(),
                    machines: missing,
                });
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
        .map(|g| Artifact {
            machine: g.machine,
            generation: g.name,
            toplevel: g.toplevel,
            auto_rollback: g.auto_rollback,
        })
        .collect())
}

/// The lock of one configuration directory (`.confctl/deploy.lock`): one deploy of it
/// at a time, a second one waits at most `wait`, saying for whom (events).
pub fn lock_conf_dir(
    conf_dir: &ConfDir,
    wait: Duration,
    sink: &dyn EventSink,
) -> Result<std::fs::File, crate::lock::LockError> {
    let path = conf_dir.deploy_lock();
    let on_wait =
        |line: String| sink.emit(Event::Notice { phase: Phase::Build, machine: None, line });
    crate::lock::acquire(&path, &this_run(), wait, &on_wait)
}

/// What comes before the hosts are touched, for the CLI and the dashboard's jobs alike.
pub struct Prepared {
    /// The configuration directory's lock ([`lock_conf_dir`]), held until dropped.
    pub lock: std::fs::File,
    /// Built now, or the requested build generation.
    pub artifacts: Vec<Artifact>,
    /// Where each machine goes ([`plan::targets`]); `None` when only building.
    pub targets: Option<Vec<Target>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error(transparent)]
    Artifacts(#[from] ArtifactError),
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
}

impl PrepareError {
    /// The phase a failure belongs to, when it is one's.
    pub fn phase(&self) -> Option<Phase> {
        matches!(self, PrepareError::Artifacts(_)).then_some(Phase::Build)
    }
}

/// The first half of a deploy (blocking: Nix builds): the configuration directory's lock
/// (waiting at most `lock_wait`), the artifacts (a new build, or `generation`), and unless
/// `build_only` the targets. Then [`run`] deploys the targets.
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    conf_dir: &ConfDir,
    cluster: &crate::cluster::Cluster,
    machines: &[&Machine],
    generation: Option<&str>,
    build_only: bool,
    build_options: &crate::build::BuildOptions,
    lock_wait: Duration,
    sink: &dyn EventSink,
) -> Result<Prepared, PrepareError> {
    let lock = lock_conf_dir(conf_dir, lock_wait, sink)?;
    let artifacts = artifacts(conf_dir, machines, generation, build_options, sink)?;
    let targets =
        if build_only { None } else { Some(plan::targets(cluster, machines, &artifacts)?) };
    Ok(Prepared { lock, artifacts, targets })
}

/// Deploys `targets` (see [`plan::targets`]) over SSH.
pub async fn run(
    targets: Vec<Target>,
    opts: &DeployOptions,
    ssh: SshSettings,
    sink: &dyn EventSink,
) -> DeployReport {
    match Connections::new(ssh, opts.timeouts.command) {
        Ok(hosts) => run_on(&targets, opts, hosts, sink).await,
        Err(e) => {
            let error = DeployError::ControlDir(Arc::new(e));
            let states = targets
                .iter()
                .map(|t| {
                    (
                        t.machine.clone(),
                        MachineState::Failed {
                            phase: Phase::Status,
                            error: error.clone(),
                            changed: false,
                        },
                    )
                })
                .collect();
            report(&targets, states, opts, 0)
        }
    }
}

/// Deploys `targets` on `hosts`, then closes them: in bulk, or with `one_by_one` one
/// machine after the other until one fails.
pub async fn run_on<H: Hosts>(
    targets: &[Target],
    opts: &DeployOptions,
    hosts: H,
    sink: &dyn EventSink,
) -> DeployReport {
    let mut run = Run { opts, hosts: &hosts, sink, states: BTreeMap::new() };
    let groups: Vec<&[Target]> =
        if opts.one_by_one { targets.chunks(1).collect() } else { vec![targets] };
    for group in groups {
        if run.stops() || sink.cancelled() {
            let reason = if sink.cancelled() { CANCELLED } else { STOPPED };
            group.iter().for_each(|t| run.not_attempted(t, reason));
            continue;
        }
        run.group(group).await;
    }
    let states = run.states;
    let count = hosts.opened();
    hosts.close().await;
    report(targets, states, opts, count)
}

const STOPPED: &str = "the run stopped after a failure";
const CANCELLED: &str = "the run was cancelled";

/// Health checks running at the same time during a deploy (upstream's default `-j`).
const HEALTH_CHECK_JOBS: usize = 5;

/// One run: where it sends events, and where each machine stands so far.
struct Run<'a, H> {
    opts: &'a DeployOptions,
    hosts: &'a H,
    sink: &'a dyn EventSink,
    states: BTreeMap<String, MachineState>,
}

impl<H: Hosts> Run<'_, H> {
    /// The phases for `group`: status, copy, then (all or nothing) activation and
    /// health checks.
    async fn group(&mut self, group: &[Target]) {
        let pending = self.status(group).await;
        let copied = self.copy(&pending).await;
        if self.opts.copy_only {
            return;
        }
        // Nothing is activated when a host was unreachable or a copy failed: every host
        // stays on what it runs.
        if self.stops() || self.sink.cancelled() {
            let why = if self.sink.cancelled() {
                "copied, not activated: the run was cancelled"
            } else {
                "copied, not activated: another host failed before activation"
            };
            copied.iter().for_each(|t| self.not_attempted(t, why));
            return;
        }
        self.activate(&copied).await;
        if self.opts.reboot && self.opts.action == Action::Boot {
            self.reboot(group).await;
        }
        self.health_checks(group).await;
    }

    /// Connects, and drops what already runs the generation.
    async fn status<'t>(&mut self, group: &'t [Target]) -> Vec<&'t Target> {
        self.sink.emit(Event::PhaseStarted { phase: Phase::Status, machines: group.len() });
        let mut pending = Vec::new();
        for t in group {
            let host = match self.hosts.open(&t.host, t.port).await {
                Ok(host) => host,
                Err(e) => {
                    self.fail(Phase::Status, t, e.into(), false);
                    continue;
                }
            };
            if !self.opts.copy_only {
                match activate::status(&*host, t, self.opts.action).await {
                    activate::Status::Current => {
                        self.finish(Phase::Status, t, MachineState::Current);
                        continue;
                    }
                    activate::Status::HooksPending(record) => {
                        let line = format!(
                            "the profile is set, but the carrier's on-change hooks have not succeeded since ({record}): setting it again"
                        );
                        self.sink.emit(Event::Notice {
                            phase: Phase::Status,
                            machine: Some(t.machine.clone()),
                            line,
                        });
                    }
                    activate::Status::NotCurrent => {}
                }
            }
            pending.push(t);
        }
        self.sink.emit(Event::PhaseFinished { phase: Phase::Status });
        pending
    }

    /// Copies the closures; returns the targets copied, in their order. Interactive:
    /// each machine is asked for first, then the confirmed ones are copied.
    async fn copy<'t>(&mut self, pending: &[&'t Target]) -> Vec<&'t Target> {
        let pending = self.confirmed(Phase::Copy, pending);
        let pending = pending.as_slice();
        let order = plan::copy_order(pending);
        self.sink.emit(Event::PhaseStarted { phase: Phase::Copy, machines: order.len() });
        let opts = self.opts;
        let paths = |t: &Target| {
            let mut p = vec![t.artifact.toplevel.clone()];
            if uses_auto_rollback(t, opts) {
                p.extend(t.artifact.auto_rollback.clone());
            }
            p
        };
        let results = copy::copy_all(
            &order,
            paths,
            self.hosts,
            opts.max_concurrent_copy,
            opts.timeouts.copy,
            self.sink,
        )
        .await;
        let mut copied = Vec::new();
        for (t, result) in results {
            match result {
                Ok(()) => {
                    self.finish(Phase::Copy, t, MachineState::Copied);
                    copied.push(t);
                }
                Err(e) => {
                    self.fail(Phase::Copy, t, e.into(), false);
                }
            }
        }
        self.sink.emit(Event::PhaseFinished { phase: Phase::Copy });
        pending.iter().copied().filter(|t| copied.contains(t)).collect()
    }

    /// Standalone machines in order, then carried machines, one profile set per
    /// carrier; stops at the first failure. Carried machines stay `copied` unless the
    /// action is switch (spec 2.4).
    async fn activate(&mut self, ready: &[&Target]) {
        let order = plan::activation_order(ready);
        self.sink.emit(Event::PhaseStarted { phase: Phase::Activate, machines: order.len() });
        let phase_of = |t: &Target| match t.carrier() {
            Some(_) => Phase::CarriedProfile,
            None => Phase::Activate,
        };
        let mut stopped = false;
        let mut carried_by: Vec<(&str, Vec<&Target>)> = Vec::new();
        for t in order {
            let asked = t.carrier().is_none() || self.opts.action == Action::Switch;
            if asked && !stopped && self.declines(phase_of(t), t) {
                continue;
            }
            match t.carrier() {
                Some(carrier) if self.opts.action == Action::Switch => {
                    match carried_by.iter_mut().find(|(c, _)| *c == carrier) {
                        Some((_, v)) => v.push(t),
                        None => carried_by.push((carrier, vec![t])),
                    }
                }
                Some(_) => {}
                None if stopped => self.not_attempted(t, STOPPED),
                None => stopped = !self.activate_standalone(t).await,
            }
        }
        for (carrier, group) in carried_by {
            if stopped {
                group.iter().for_each(|t| self.not_attempted(t, STOPPED));
            } else {
                stopped = !self.set_carried(carrier, &group).await;
            }
        }
        self.sink.emit(Event::PhaseFinished { phase: Phase::Activate });
    }

    /// Activates one standalone machine under its host's deploy lock; whether it did.
    async fn activate_standalone(&mut self, t: &Target) -> bool {
        let host = match self.hosts.open(&t.host, t.port).await {
            Ok(host) => host,
            Err(e) => return self.fail(Phase::Activate, t, e.into(), false),
        };
        let who = holder(&[t]);
        let lock = match self.lock(&*host, &who, &t.machine).await {
            Ok(lock) => lock,
            Err(e) => return self.fail(Phase::Activate, t, e.into(), false),
        };
        let before = host.realpath("/run/current-system").await;
        let auto_rollback = uses_auto_rollback(t, self.opts);
        let result = activate::standalone(
            &*host,
            t,
            self.opts.action,
            self.opts.dry_activate_first,
            auto_rollback,
            &who,
        )
        .await;
        match result {
            Ok(()) => {
                lock.release().await;
                self.finish(Phase::Activate, t, MachineState::Deployed);
                true
            }
            Err(e) => {
                // what the host runs now, read after the failure; a host that cannot be
                // asked has changed unless an unconfirmed activation switches it back
                let now = host.realpath("/run/current-system").await;
                lock.release().await;
                let changed = match (&now, &before) {
                    (Some(now), before) => Some(now) != before.as_ref(),
                    (None, _) => !e.switches_back(),
                };
                self.fail(Phase::Activate, t, e.into(), changed)
            }
        }
    }

    /// Sets the carried profiles of `group` on `carrier` with one `carrier profile set`,
    /// under the carrier's deploy lock; whether it did.
    async fn set_carried(&mut self, carrier: &str, group: &[&Target]) -> bool {
        let phase = Phase::CarriedProfile;
        let host = match self.hosts.open(&group[0].host, group[0].port).await {
            Ok(host) => host,
            Err(e) => return self.fail_all(phase, group, e.into(), |_| false),
        };
        let lock = match self.lock(&*host, &holder(group), carrier).await {
            Ok(lock) => lock,
            Err(e) => return self.fail_all(phase, group, e.into(), |_| false),
        };
        let mut before = Vec::new();
        for t in group {
            before.push(carried_profile(&*host, t).await);
        }
        match activate::carried(&*host, group).await {
            Ok(()) => {
                lock.release().await;
                group.iter().for_each(|t| self.finish(phase, t, MachineState::Deployed));
                true
            }
            Err(source) => {
                // the profiles may be set already when a hook failed (spec 2.4): say so
                let mut changed = Vec::new();
                for (t, before) in group.iter().zip(before) {
                    changed.push(carried_profile(&*host, t).await != before);
                }
                let error = DeployError::CarriedProfiles { carrier: carrier.to_string(), source };
                self.fail_all(phase, group, error, |i| changed[i]);
                lock.release().await;
                false
            }
        }
    }

    /// Reboots the standalone machines activated, one at a time in activation order
    /// (spec 2.3 step 5); `localhost` and carried machines are skipped with a message.
    async fn reboot(&mut self, group: &[Target]) {
        let activated: Vec<&Target> = plan::activation_order(&group.iter().collect::<Vec<_>>())
            .into_iter()
            .filter(|t| matches!(self.states.get(&t.machine), Some(MachineState::Deployed)))
            .collect();
        // carried machines stay `copied` with `boot`: they are skipped whatever their state
        let carried: Vec<&Target> = group.iter().filter(|t| t.carrier().is_some()).collect();
        if activated.is_empty() && carried.is_empty() {
            return;
        }
        self.sink.emit(Event::PhaseStarted { phase: Phase::Reboot, machines: activated.len() });
        for t in carried {
            self.skip_reboot(
                t,
                format!(
                    "Skipping reboot of carried machine {}: it needs a netboot reboot",
                    t.machine
                ),
            );
        }
        let mut stopped = false;
        for t in activated.into_iter().filter(|t| t.carrier().is_none()) {
            if t.host == "localhost" {
                self.skip_reboot(t, format!("Skipping reboot of {} as it is localhost", t.machine));
                continue;
            }
            if stopped || self.sink.cancelled() {
                self.not_attempted(t, if stopped { STOPPED } else { CANCELLED });
                continue;
            }
            if self.opts.interactive && !self.sink.confirm(Phase::Reboot, &t.machine) {
                self.skip_reboot(t, format!("Skipping reboot of {}: declined", t.machine));
                continue;
            }
            let result = match self.hosts.open(&t.host, t.port).await {
                Ok(host) => {
                    reboot::reboot(self.hosts, (&t.host, t.port), &*host, self.opts.wait_online)
                        .await
                        .map_err(Into::into)
                }
                Err(e) => Err(DeployError::from(e)),
            };
            match result {
                Ok(took) => {
                    let line = format!(
                        "{} ({}) is online (took {:.1}s to reboot)",
                        t.machine,
                        t.host,
                        took.as_secs_f64()
                    );
                    self.sink.emit(Event::Notice {
                        phase: Phase::Reboot,
                        machine: Some(t.machine.clone()),
                        line,
                    });
                    self.finish(Phase::Reboot, t, MachineState::Deployed);
                }
                Err(e) => stopped = !self.fail(Phase::Reboot, t, e, true),
            }
        }
        self.sink.emit(Event::PhaseFinished { phase: Phase::Reboot });
    }

    /// Says why `t` is not rebooted; its state stays what it is.
    fn skip_reboot(&self, t: &Target, reason: String) {
        let outcome = Outcome::Skipped { reason };
        self.sink.emit(Event::MachineFinished {
            phase: Phase::Reboot,
            machine: t.machine.clone(),
            outcome,
        });
    }

    /// Health checks of the standalone machines deployed (switch and test, or boot with
    /// a reboot).
    async fn health_checks(&mut self, group: &[Target]) {
        let running_new = match self.opts.action {
            Action::Switch | Action::Test => true,
            Action::Boot => self.opts.reboot,
            _ => false,
        };
        if !self.opts.health_checks || !running_new {
            return;
        }
        let deployed: Vec<&Target> = group
            .iter()
            .filter(|t| {
                t.carrier().is_none()
                    && matches!(self.states.get(&t.machine), Some(MachineState::Deployed))
            })
            .collect();
        if deployed.iter().all(|t| t.checks.is_empty()) {
            return;
        }
        self.sink.emit(Event::PhaseStarted { phase: Phase::HealthCheck, machines: deployed.len() });
        let checked: Vec<health::MachineChecks> = deployed
            .iter()
            .map(|t| health::MachineChecks {
                machine: &t.machine,
                host: &t.host,
                port: t.port,
                checks: &t.checks,
            })
            .collect();
        let results = health::run_all(&checked, self.hosts, HEALTH_CHECK_JOBS, self.sink).await;
        let mut failures = health::failures(results);
        for t in deployed {
            match failures.remove(&t.machine) {
                None => self.finish(Phase::HealthCheck, t, MachineState::Deployed),
                Some(f) => {
                    self.fail(Phase::HealthCheck, t, DeployError::HealthChecks(f), true);
                    if self.opts.keep_going {
                        self.sink.emit(Event::Notice {
                            phase: Phase::HealthCheck,
                            machine: Some(t.machine.clone()),
                            line: "Health checks have failed, going on".into(),
                        });
                    }
                }
            }
        }
        self.sink.emit(Event::PhaseFinished { phase: Phase::HealthCheck });
    }

    /// Takes the host's deploy lock for `what` (a machine, or a carrier's group),
    /// reporting whom it waits for.
    async fn lock<'h>(
        &self,
        host: &'h H::Host,
        who: &str,
        what: &str,
    ) -> Result<HostLock<'h>, HostError> {
        let sink = self.sink;
        let on_wait = |line: String| {
            sink.emit(Event::Notice {
                phase: Phase::Activate,
                machine: Some(what.to_string()),
                line,
            })
        };
        host.lock(who, self.opts.timeouts.lock, &on_wait).await
    }

    /// A machine's step ended in `state`: says so (the event) and records it.
    fn finish(&mut self, phase: Phase, t: &Target, state: MachineState) {
        let outcome = match &state {
            MachineState::Deployed | MachineState::Copied => Outcome::Ok,
            MachineState::Current => Outcome::Skipped {
                reason: format!("already using target generation {}", t.artifact.generation),
            },
            MachineState::NotAttempted { reason } => Outcome::Skipped { reason: reason.clone() },
            MachineState::Declined { .. } => Outcome::Skipped { reason: "declined".into() },
            MachineState::Failed { error, .. } => Outcome::Failed { error: error.to_string() },
        };
        self.sink.emit(Event::MachineFinished { phase, machine: t.machine.clone(), outcome });
        self.states.insert(t.machine.clone(), state);
    }

    /// The machine's step failed; returns false (it did not happen).
    fn fail(&mut self, phase: Phase, t: &Target, error: DeployError, changed: bool) -> bool {
        self.finish(phase, t, MachineState::Failed { phase, error, changed });
        false
    }

    /// Every machine of a group failed with `error`; `changed(i)` for the i-th.
    fn fail_all(
        &mut self,
        phase: Phase,
        group: &[&Target],
        error: DeployError,
        changed: impl Fn(usize) -> bool,
    ) -> bool {
        for (i, t) in group.iter().enumerate() {
            self.fail(phase, t, error.clone(), changed(i));
        }
        false
    }

    /// With `interactive`, whether the operator declines `t`'s step in `phase` (then
    /// recorded as declined); never without. A cancelled run declines every step left
    /// (recorded as not attempted).
    fn declines(&mut self, phase: Phase, t: &Target) -> bool {
        if self.sink.cancelled() {
            self.not_attempted(t, CANCELLED);
            return true;
        }
        if !self.opts.interactive || self.sink.confirm(phase, &t.machine) {
            return false;
        }
        self.finish(phase, t, MachineState::Declined { phase });
        true
    }

    /// The targets the operator confirms for `phase` (all without `interactive`).
    fn confirmed<'t>(&mut self, phase: Phase, targets: &[&'t Target]) -> Vec<&'t Target> {
        targets.iter().copied().filter(|t| !self.declines(phase, t)).collect()
    }

    /// Recorded without an event: the machine had no step.
    fn not_attempted(&mut self, t: &Target, reason: &str) {
        self.states
            .insert(t.machine.clone(), MachineState::NotAttempted { reason: reason.to_string() });
    }

    /// Whether a failure so far stops the run: any, but with `keep_going` not one of
    /// health checks.
    fn stops(&self) -> bool {
        let keep_going = self.opts.keep_going;
        self.states.values().any(|s| match s {
            MachineState::Failed { phase: Phase::HealthCheck, .. } => !keep_going,
            MachineState::Failed { .. } => true,
            _ => false,
        })
    }
}

/// The realpath of a carried machine's profile on its carrier.
async fn carried_profile(host: &impl Host, t: &Target) -> Option<String> {
    match &t.kind {
        Kind::Carried { profile, .. } => host.realpath(profile).await,
        Kind::Standalone => None,
    }
}

/// How a deploy names itself to whoever has to wait for its locks.
fn holder(targets: &[&Target]) -> String {
    let what: Vec<String> =
        targets.iter().map(|t| format!("{} {}", t.machine, t.artifact.generation)).collect();
    format!("{}: {}", this_run(), what.join(", "))
}

/// `carrier deploy (pid N) on <host name> since <time>`.
pub fn this_run() -> String {
    static STARTED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let since = STARTED.get_or_init(|| {
        jiff::Timestamp::now().round(jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default()
    });
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("carrier deploy (pid {}) on {} since {since}", std::process::id(), host.trim())
}

fn uses_auto_rollback(t: &Target, opts: &DeployOptions) -> bool {
    t.carrier().is_none()
        && t.artifact.auto_rollback.is_some()
        && opts.auto_rollback.unwrap_or(t.auto_rollback_enabled)
}

fn report(
    targets: &[Target],
    mut states: BTreeMap<String, MachineState>,
    opts: &DeployOptions,
    connections: usize,
) -> DeployReport {
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
                state: states
                    .remove(&t.machine)
                    .unwrap_or_else(|| MachineState::NotAttempted { reason: STOPPED.into() }),
            })
            .collect(),
    }
}
