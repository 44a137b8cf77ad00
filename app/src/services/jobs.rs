//! Deploys, builds, generation removals and netboot rebuilds from the dashboard as jobs
//! (docs/jobs.md): a request is checked here (the selection resolved on the server, the
//! caller's role and scope against every machine), queued in the store and answered at
//! once with its id; the job runner of `carrier serve` runs it on the core engine. Reading
//! a job, its events and the history never waits for a job. Starting and cancelling are
//! audited.

use carrier_core::auth::{Action as AuthAction, Role};
use carrier_core::build;
use carrier_core::cluster::{Cluster, Machine, Selection};
use carrier_core::conf_dir::ConfDir;
use carrier_core::deploy::{Action, DeployOptions, Timeouts, WaitOnline};
use carrier_core::events::{Event, Outcome};
use carrier_core::generation::{self, GenerationError};
use carrier_core::remote::{Connections, Hosts, SshSettings};
use carrier_storage::{IfBusy, Job, JobEvent, JobFilter, JobId, JobKind, JobState, NewJob};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::access::{Caller, internal};
use crate::error::AppError;
use crate::model::{DeployForm, DeployPreviewRow, JobDetail, JobEventView, JobView};

/// The deploy form's action that only builds (`carrier build`): a build job.
pub const BUILD: &str = "build";

/// What the runner needs to run a deploy or build job: stored as the job's request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployRequest {
    pub pattern: String,
    pub tags: Vec<String>,
    /// A deploy action, or [`BUILD`].
    pub action: String,
    pub generation: Option<String>,
    pub dry_activate_first: bool,
    pub reboot: bool,
    pub health_checks: bool,
    /// `None`: each machine's `autoRollback.enable`.
    pub auto_rollback: Option<bool>,
    pub one_by_one: bool,
}

impl DeployRequest {
    /// The form checked: every value known, the combination allowed.
    pub fn from_form(form: &DeployForm) -> Result<DeployRequest, AppError> {
        let action = match form.action.as_str() {
            BUILD => BUILD,
            other => {
                let action: Action =
                    other.parse().map_err(|e| AppError::BadInput(format!("{e}")))?;
                action.as_str()
            }
        };
        let reboot = DeployForm::checked(&form.reboot);
        if reboot && action != Action::Boot.as_str() {
            return Err(AppError::BadInput(format!(
                "reboot can be asked for only with the action boot (not {action})"
            )));
        }
        let auto_rollback = match form.auto_rollback.as_str() {
            "" | "default" => None,
            "on" => Some(true),
            "off" => Some(false),
            other => {
                return Err(AppError::BadInput(format!(
                    "auto_rollback: '{other}' is not one of default, on, off"
                )));
            }
        };
        let generation = Some(form.generation.trim().to_string()).filter(|g| !g.is_empty());
        if let Some(g) = &generation
            && !g.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(AppError::BadInput(format!(
                "generation: '{g}' is not a build generation name (like 2026-12-03--10-00-00)"
            )));
        }
        if action == BUILD
            && let Some(g) = &generation
        {
            return Err(AppError::BadInput(format!(
                "generation: '{g}' cannot be given with the action build, which makes a new one"
            )));
        }
        let pattern = form.pattern.trim();
        if pattern.is_empty() {
            return Err(AppError::BadInput("pattern: name the machines to deploy".into()));
        }
        Ok(DeployRequest {
            pattern: pattern.to_string(),
            tags: form.tag_list(),
            action: action.to_string(),
            generation,
            dry_activate_first: DeployForm::checked(&form.dry_activate_first),
            reboot,
            health_checks: !DeployForm::checked(&form.skip_health_checks),
            auto_rollback,
            one_by_one: DeployForm::checked(&form.one_by_one),
        })
    }

    /// A build job for [`BUILD`], else a deploy job.
    pub fn kind(&self) -> JobKind {
        if self.action == BUILD { JobKind::Build } else { JobKind::Deploy }
    }

    /// The managed machines the request selects in `cluster`.
    pub fn machines<'c>(&self, cluster: &'c Cluster) -> Result<Vec<&'c Machine>, AppError> {
        let selection = Selection::parse(Some(&self.pattern), &self.tags, &[], None)
            .map_err(|e| AppError::BadInput(e.to_string()))?;
        let verb = self.kind().as_str();
        selection.select_managed(cluster, verb).map_err(|e| AppError::BadInput(e.to_string()))
    }

    /// The engine's options: the CLI's defaults, with what the form chose.
    pub fn options(&self) -> Result<DeployOptions, AppError> {
        let action: Action = self.action.parse().map_err(|e| AppError::BadInput(format!("{e}")))?;
        Ok(DeployOptions {
            action,
            dry_activate_first: self.dry_activate_first,
            auto_rollback: self.auto_rollback,
            health_checks: self.health_checks,
            one_by_one: self.one_by_one,
            reboot: self.reboot,
            wait_online: WaitOnline::default(),
            timeouts: Timeouts::default(),
            ..DeployOptions::default()
        })
    }

    /// One line for lists: `switch pxe-server#node1, node2`.
    pub fn summary(&self, machines: &[&Machine]) -> String {
        let names: Vec<&str> = machines.iter().take(5).map(|m| m.name.as_str()).collect();
        let more = machines.len().saturating_sub(names.len());
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        format!("{} {}{more}", self.action, names.join(", "))
    }
}

/// The machines a form would deploy, each with the job it is busy in; for the form's
/// preview (a viewer may look).
pub async fn preview(
    state: &AppState,
    form: &DeployForm,
) -> Result<Vec<DeployPreviewRow>, AppError> {
    let request = DeployRequest::from_form(form)?;
    let loaded = state.inventory.load().await?;
    let machines = request.machines(&loaded.cluster)?;
    let busy = busy_jobs(state).await?;
    let names: Vec<String> = machines.iter().map(|m| m.name.clone()).collect();
    let conf_dir = state.inventory.conf_dir().clone();
    let generation = request.generation.clone();
    let would_get = tokio::task::spawn_blocking(move || {
        let each = names.iter().map(|name| would_get(&conf_dir, name, generation.as_deref()));
        each.collect::<Vec<String>>()
    })
    .await
    .map_err(|e| {
        tracing::error!("reading build generations: {e}");
        AppError::Internal
    })?;
    Ok(machines
        .iter()
        .zip(would_get)
        .map(|(m, would_get)| DeployPreviewRow {
            name: m.name.clone(),
            target: match &m.carrier {
                Some(carrier) => format!("carried by {carrier}"),
                None => m.target_host().unwrap_or_default().to_string(),
            },
            build_attribute: m.meta_config.build_attribute.join("."),
            busy_in: busy.iter().find(|(name, _)| *name == m.name).map(|(_, id)| *id),
            now: state.status.now(&m.name),
            would_get,
        })
        .collect())
}

/// What a deploy would give `machine`: the build generation `-g` names, or a new build
/// (with the last one it had, for comparison).
fn would_get(conf_dir: &ConfDir, machine: &str, generation: Option<&str>) -> String {
    match generation {
        Some(g) => match build::find(conf_dir, machine, g) {
            Some(found) => format!("build generation {}: {}", found.name, found.toplevel.display()),
            None => format!("no build generation '{g}': the deploy will fail for it"),
        },
        None => match build::find(conf_dir, machine, "current") {
            Some(last) => {
                format!("a new build (the last was {}: {})", last.name, last.toplevel.display())
            }
            None => "a new build (never built here)".to_string(),
        },
    }
}

/// Machines in queued or running jobs, with the job.
async fn busy_jobs(state: &AppState) -> Result<Vec<(String, i64)>, AppError> {
    let busy = state.access.store.busy_machines().await.map_err(internal)?;
    Ok(busy.into_iter().map(|(machine, job)| (machine, job.0)).collect())
}

/// Queues a deploy (or with the action build, a build) for `caller`, who must be a
/// deployer whose scope holds every selected machine; returns the job's id at once.
pub async fn start_deploy(
    state: &AppState,
    caller: &Caller,
    form: &DeployForm,
) -> Result<i64, AppError> {
    let request = DeployRequest::from_form(form)?;
    let kind = request.kind();
    let loaded = state.inventory.load().await?;
    let machines = request.machines(&loaded.cluster)?;
    let names: Vec<String> = machines.iter().map(|m| m.name.clone()).collect();
    if let Err(e) = caller.check(AuthAction::Deploy, &machines, &loaded.cluster) {
        let details = json!({ "request": request, "machines": names });
        let refused = Err(e);
        audit_start(state, caller, kind, &request.summary(&machines), details, &refused).await?;
        return refused.map(|(id, _)| id);
    }
    let if_busy = match form.if_busy.as_str() {
        "" | "queue" => IfBusy::Queue,
        "refuse" => IfBusy::Refuse,
        other => {
            return Err(AppError::BadInput(format!(
                "if_busy: '{other}' is not one of queue, refuse"
            )));
        }
    };
    let job = NewJob {
        kind,
        requested_by: caller.actor(),
        request: serde_json::to_value(&request).map_err(|_| AppError::Internal)?,
        summary: request.summary(&machines),
        machines: names,
    };
    let queued = match state.access.store.enqueue_job(&job, if_busy).await {
        Ok(id) => Ok((id.0, false)),
        Err(e @ carrier_storage::StoreError::Busy { .. }) => Err(AppError::BadInput(e.to_string())),
        Err(e) => Err(internal(e)),
    };
    let details = json!({ "request": job.request, "machines": job.machines });
    audit_start(state, caller, kind, &job.summary, details, &queued).await?;
    queued.map(|(id, _)| id)
}

/// The audit log's action for starting a job of `kind`: `job.deploy`, `job.build`, ...
fn audit_action(kind: JobKind) -> String {
    format!("job.{}", kind.as_str())
}

/// What the runner needs to remove a generation: stored as the job's request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRmRequest {
    pub machine: String,
    /// The number of the generation in the machine's profile on its host (its system
    /// profile, or its carried profile on its carrier).
    pub generation: u64,
}

/// What the runner needs to rebuild a carrier's netboot trees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetbootRebuildRequest {
    pub carrier: String,
}

/// Queues the removal of generation `generation` of `machine` (a carried machine's on
/// its carrier, a standalone machine's system generation), as `carrier generation rm -r
/// <machine> <generation>` does without garbage collection. The caller must be a deployer
/// whose scope holds the machine. The generation is read from its host now: the current
/// one, or a number the profile does not have, is refused naming it. The job holds the
/// machine.
pub async fn start_generation_removal(
    state: &AppState,
    caller: &Caller,
    machine: &str,
    generation: u64,
) -> Result<i64, AppError> {
    let request = GenerationRmRequest { machine: machine.to_string(), generation };
    let summary = format!("remove generation {generation} of {machine}");
    let queued = async {
        let loaded = state.inventory.load().await?;
        let cluster = &loaded.cluster;
        let m = cluster
            .get(machine)
            .ok_or_else(|| AppError::NotFound(format!("machine '{machine}'")))?;
        caller.check(AuthAction::Deploy, &[m], cluster)?;
        let hosts = connections(state)?;
        let found = generation::remote_generation(cluster, m, &hosts, generation).await;
        hosts.close().await;
        found.map_err(|e| match e {
            GenerationError::Host(_) | GenerationError::Output { .. } => {
                AppError::BadInput(format!("reading the generations of {machine}: {e}"))
            }
            e => AppError::BadInput(e.to_string()),
        })?;
        enqueue(state, caller, JobKind::GenerationRm, &request, &summary, &m.name, false).await
    }
    .await;
    audit_start(
        state,
        caller,
        JobKind::GenerationRm,
        &summary,
        json!({ "request": request }),
        &queued,
    )
    .await?;
    queued.map(|(id, _)| id)
}

/// Queues a rebuild of `carrier`'s netboot trees (`carrier netboot build` on the
/// carrier), or, when one is queued already, answers that job's id: a request while
/// another is waiting is covered by it. The caller must be a deployer whose scope holds
/// the carrier machine itself. The job holds the carrier.
pub async fn start_netboot_rebuild(
    state: &AppState,
    caller: &Caller,
    carrier: &str,
) -> Result<i64, AppError> {
    let request = NetbootRebuildRequest { carrier: carrier.to_string() };
    let summary = format!("rebuild the netboot trees of {carrier}");
    let queued = async {
        let loaded = state.inventory.load().await?;
        let cluster = &loaded.cluster;
        let m = cluster
            .get(carrier)
            .ok_or_else(|| AppError::NotFound(format!("machine '{carrier}'")))?;
        if !m.is_carrier() {
            return Err(AppError::BadInput(format!("carrier: '{carrier}' is not a carrier")));
        }
        caller.check(AuthAction::Deploy, &[m], cluster)?;
        enqueue(state, caller, JobKind::NetbootRebuild, &request, &summary, carrier, true).await
    }
    .await;
    let details = json!({ "request": request });
    audit_start(state, caller, JobKind::NetbootRebuild, &summary, details, &queued).await?;
    queued.map(|(id, _)| id)
}

/// SSH connections to the hosts for a short read during a request.
fn connections(state: &AppState) -> Result<Connections, AppError> {
    let ssh = SshSettings { config_file: state.ssh_config.clone(), connect_timeout: None };
    Connections::new(ssh, std::time::Duration::from_secs(60)).map_err(|e| {
        tracing::error!("preparing SSH connections: {e}");
        AppError::Internal
    })
}

/// Queues a job on one machine (behind the jobs before it there); with `coalesce`, a
/// queued job of this kind on it is answered instead (`true`).
async fn enqueue(
    state: &AppState,
    caller: &Caller,
    kind: JobKind,
    request: &impl Serialize,
    summary: &str,
    machine: &str,
    coalesce: bool,
) -> Result<(i64, bool), AppError> {
    let job = NewJob {
        kind,
        requested_by: caller.actor(),
        request: serde_json::to_value(request).map_err(|_| AppError::Internal)?,
        summary: summary.to_string(),
        machines: vec![machine.to_string()],
    };
    let store = &state.access.store;
    let queued = if coalesce {
        store.enqueue_job_coalesced(&job).await
    } else {
        store.enqueue_job(&job, IfBusy::Queue).await.map(|id| (id, false))
    };
    queued.map(|(id, coalesced)| (id.0, coalesced)).map_err(internal)
}

/// Audits the start of a job: queued (or coalesced into a queued one) or refused.
async fn audit_start(
    state: &AppState,
    caller: &Caller,
    kind: JobKind,
    summary: &str,
    details: serde_json::Value,
    queued: &Result<(i64, bool), AppError>,
) -> Result<(), AppError> {
    let outcome = match queued {
        Ok((id, false)) => format!("ok: job {id}"),
        Ok((id, true)) => format!("ok: coalesced into queued job {id}"),
        Err(e) => format!("failed: {e}"),
    };
    state.access.audit(caller, &audit_action(kind), Some(summary), details, &outcome).await
}

/// A job and its events so far.
pub async fn detail(state: &AppState, caller: &Caller, id: i64) -> Result<JobDetail, AppError> {
    let job = find(state, id).await?;
    let events = events_after(state, id, 0).await?;
    let can_cancel = !job.state.is_finished() && may_cancel(caller, &job);
    Ok(JobDetail { job: view(job), events, can_cancel })
}

/// The job, or not found.
pub async fn find(state: &AppState, id: i64) -> Result<Job, AppError> {
    state
        .access
        .store
        .job(JobId(id))
        .await
        .map_err(internal)?
        .ok_or_else(|| AppError::NotFound(format!("job {id}")))
}

/// Events with a sequence number above `after`, in order (at most 5000 at once).
pub async fn events_after(
    state: &AppState,
    id: i64,
    after: i64,
) -> Result<Vec<JobEventView>, AppError> {
    let events = state.access.store.job_events(JobId(id), after, 5000).await.map_err(internal)?;
    Ok(events.into_iter().map(event_view).collect())
}

/// Jobs newest first, filtered by machine, requester and state (each optional).
pub async fn list(
    state: &AppState,
    machine: &str,
    requested_by: &str,
    job_state: &str,
) -> Result<Vec<JobView>, AppError> {
    let given = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
    let job_state = match given(job_state) {
        None => None,
        Some(s) => Some(JobState::parse(&s).ok_or_else(|| {
            AppError::BadInput(format!(
                "state: '{s}' is not one of queued, running, succeeded, failed, cancelled, interrupted"
            ))
        })?),
    };
    let filter =
        JobFilter { machine: given(machine), requested_by: given(requested_by), state: job_state };
    let jobs = state.access.store.jobs(&filter, 200).await.map_err(internal)?;
    Ok(jobs.into_iter().map(view).collect())
}

/// Cancels a job: a queued one at once, a running one between its steps. Its requester
/// or an admin may.
pub async fn cancel(state: &AppState, caller: &Caller, id: i64) -> Result<(), AppError> {
    let job = find(state, id).await?;
    if !may_cancel(caller, &job) {
        return Err(AppError::Forbidden(format!(
            "job {id} was started by {}: only they or an admin may cancel it",
            job.requested_by
        )));
    }
    let result = state.access.store.request_cancel(JobId(id)).await;
    let outcome = match &result {
        Ok(s) => format!("ok: {}", s.as_str()),
        Err(e) => format!("failed: {e}"),
    };
    state
        .access
        .audit(caller, "job.cancel", Some(&format!("job {id}")), json!({}), &outcome)
        .await?;
    match result {
        Ok(_) => Ok(()),
        Err(e @ carrier_storage::StoreError::JobFinished(_)) => {
            Err(AppError::BadInput(e.to_string()))
        }
        Err(e) => Err(internal(e)),
    }
}

fn may_cancel(caller: &Caller, job: &Job) -> bool {
    let deployer = caller.role().is_some_and(|r| r >= Role::Deployer);
    deployer && (caller.actor() == job.requested_by || caller.role() == Some(Role::Admin))
}

pub fn view(job: Job) -> JobView {
    let outcomes = job
        .report
        .as_ref()
        .and_then(|r| r.get("machines"))
        .and_then(|m| m.as_array())
        .map(|machines| machines.iter().filter_map(outcome_line).collect())
        .unwrap_or_default();
    JobView {
        id: job.id.0,
        kind: job.kind.as_str().to_string(),
        state: job.state.as_str().to_string(),
        requested_by: job.requested_by,
        summary: job.summary,
        machines: job.machines,
        created_at: job.created_at,
        started_at: job.started_at,
        finished_at: job.finished_at,
        instance: job.instance,
        cancel_requested: job.cancel_requested,
        error: job.error,
        outcomes,
    }
}

/// `(machine, "failed in activate: ...")` from one machine of a deploy report.
fn outcome_line(m: &serde_json::Value) -> Option<(String, String)> {
    let text = |k: &str| m.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let machine = text("machine")?;
    let state = text("state")?;
    let line = match (text("phase"), text("error"), text("reason")) {
        (Some(phase), Some(error), _) => format!("{state} in {phase}: {error}"),
        (_, _, Some(reason)) => format!("{state}: {reason}"),
        (Some(phase), None, None) => format!("{state} before {phase}"),
        _ => state,
    };
    Some((machine, line))
}

/// A stored event as a line of the job's log.
pub fn event_view(e: JobEvent) -> JobEventView {
    let (phase, machine, level, text) = match serde_json::from_value::<Event>(e.event.clone()) {
        Ok(Event::PhaseStarted { phase, machines }) => {
            (phase, None, "phase", format!("{}: {machines} machine(s)", phase.name()))
        }
        Ok(Event::PhaseFinished { phase }) => {
            (phase, None, "phase", format!("{} done", phase.name()))
        }
        Ok(Event::Progress { phase, machine, done, expected, bytes }) => {
            let bytes = if bytes > 0 { format!(", {bytes} bytes") } else { String::new() };
            (phase, machine, "progress", format!("{} {done}/{expected}{bytes}", phase.name()))
        }
        Ok(Event::Log { phase, machine, line }) => (phase, machine, "log", line),
        Ok(Event::Notice { phase, machine, line }) => (phase, machine, "notice", line),
        Ok(Event::MachineFinished { phase, machine, outcome }) => {
            let (level, text) = match outcome {
                Outcome::Ok => ("ok", format!("{} done", phase.name())),
                Outcome::Skipped { reason } => {
                    ("skipped", format!("{} skipped: {reason}", phase.name()))
                }
                Outcome::Failed { error } => {
                    ("failed", format!("{} failed: {error}", phase.name()))
                }
            };
            (phase, Some(machine), level, text)
        }
        Err(_) => {
            return JobEventView {
                seq: e.seq,
                at: e.at,
                phase: String::new(),
                machine: None,
                level: "log".into(),
                text: e.event.to_string(),
            };
        }
    };
    let phase = serde_json::to_value(phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    JobEventView { seq: e.seq, at: e.at, phase, machine, level: level.into(), text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(action: &str) -> DeployForm {
        DeployForm { pattern: "node1".into(), action: action.into(), ..DeployForm::default() }
    }

    #[test]
    fn a_form_is_checked_and_names_the_bad_field() {
        let ok = DeployRequest::from_form(&form("switch")).unwrap();
        assert!(ok.health_checks && ok.auto_rollback.is_none() && ok.generation.is_none());
        let e = DeployRequest::from_form(&form("explode")).unwrap_err();
        assert!(e.to_string().contains("explode"), "{e}");
        let e =
            DeployRequest::from_form(&DeployForm { reboot: Some("on".into()), ..form("switch") })
                .unwrap_err();
        assert!(e.to_string().contains("only with the action boot"), "{e}");
        let e =
            DeployRequest::from_form(&DeployForm { auto_rollback: "maybe".into(), ..form("boot") })
                .unwrap_err();
        assert!(e.to_string().contains("auto_rollback: 'maybe'"), "{e}");
        let e = DeployRequest::from_form(&DeployForm { generation: "../x".into(), ..form("boot") })
            .unwrap_err();
        assert!(e.to_string().contains("generation: '../x'"), "{e}");
        let e = DeployRequest::from_form(&DeployForm { pattern: " ".into(), ..form("boot") })
            .unwrap_err();
        assert!(e.to_string().starts_with("pattern:"), "{e}");
        let with = DeployRequest::from_form(&DeployForm {
            skip_health_checks: Some("on".into()),
            auto_rollback: "off".into(),
            tags: "prg ^legacy".into(),
            ..form("test")
        })
        .unwrap();
        assert!(!with.health_checks);
        assert_eq!(with.auto_rollback, Some(false));
        assert_eq!(with.tags, ["prg", "^legacy"]);
    }

    #[test]
    fn the_action_build_is_a_build_job_without_a_generation_or_reboot() {
        let build = DeployRequest::from_form(&form("build")).unwrap();
        assert_eq!((build.kind(), build.action.as_str()), (JobKind::Build, "build"));
        assert_eq!(DeployRequest::from_form(&form("boot")).unwrap().kind(), JobKind::Deploy);
        let e = DeployRequest::from_form(&DeployForm {
            generation: "2026-12-03--10-00-00".into(),
            ..form("build")
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("generation: '2026-12-03--10-00-00'"), "{e}");
        let e =
            DeployRequest::from_form(&DeployForm { reboot: Some("on".into()), ..form("build") })
                .unwrap_err();
        assert!(e.to_string().contains("(not build)"), "{e}");
        assert_eq!(audit_action(JobKind::GenerationRm), "job.generation-rm");
    }

    #[test]
    fn events_read_as_lines() {
        let event =
            |v: serde_json::Value| event_view(JobEvent { seq: 3, at: "t".into(), event: v });
        let e = event(json!({"event": "machine-finished", "phase": "carried-profile",
            "machine": "pxe#node1", "outcome": {"outcome": "failed", "error": "boom"}}));
        assert_eq!(e.level, "failed");
        assert_eq!(e.phase, "carried-profile");
        assert_eq!(e.machine.as_deref(), Some("pxe#node1"));
        assert_eq!(e.text, "carried profile failed: boom");
        let e = event(json!({"event": "phase-started", "phase": "copy", "machines": 2}));
        assert_eq!((e.level.as_str(), e.text.as_str()), ("phase", "copy: 2 machine(s)"));
        let e = event(json!({"something": "else"}));
        assert_eq!(e.level, "log");
    }

    #[test]
    fn outcomes_read_from_a_report() {
        let m = json!({"machine": "n1", "state": "failed", "phase": "activate", "error": "boom"});
        assert_eq!(outcome_line(&m).unwrap().1, "failed in activate: boom");
        let m =
            json!({"machine": "n2", "state": "not-attempted", "reason": "the run was cancelled"});
        assert_eq!(outcome_line(&m).unwrap().1, "not-attempted: the run was cancelled");
        let m = json!({"machine": "n3", "state": "deployed"});
        assert_eq!(outcome_line(&m).unwrap().1, "deployed");
    }
}
