//! Records of `carrier build` and `carrier deploy` (docs/storage.md): who ran it where,
//! the selection, action and options as given, the configuration's git state, and each
//! machine's outcome. Recording never stops a run: when the database cannot be written,
//! the run goes on and a warning says it is not (or not completely) recorded.

use std::path::Path;
use std::process::Command;

use carrier_core::deploy::{DeployReport, MachineState};
use carrier_core::events::Phase;
use carrier_storage::{GitState, MachineOutcome, NewRun, RunEnd, RunId, RunKind, Store};

use crate::cli::{GlobalArgs, SelectArgs};

/// A run being recorded; `None` inside when its start could not be.
pub struct Recorder {
    open: Option<Open>,
    kind: RunKind,
    machines: Vec<String>,
}

struct Open {
    runtime: tokio::runtime::Runtime,
    store: Store,
    id: RunId,
}

/// What a run was asked to do, as given on the command line.
pub struct Request<'a> {
    pub kind: RunKind,
    pub select: &'a SelectArgs,
    pub action: Option<&'a str>,
    pub options: serde_json::Value,
    pub generation: Option<&'a str>,
    pub machines: Vec<String>,
}

impl Recorder {
    /// Inserts the run, every machine pending.
    pub fn start(global: &GlobalArgs, request: Request<'_>) -> Recorder {
        let (user, host) = who();
        let run = NewRun {
            kind: request.kind,
            user,
            host,
            selection: serde_json::to_value(request.select).unwrap_or_default(),
            action: request.action.map(Into::into),
            options: request.options,
            git: git_state(&global.config),
            generation: request.generation.map(Into::into),
            machines: request.machines.clone(),
        };
        let url = global.database_url();
        let open = (|| -> anyhow::Result<Open> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let store = runtime.block_on(Store::open(&url))?;
            let id = runtime.block_on(store.start_run(&run))?;
            Ok(Open { runtime, store, id })
        })();
        let open = open
            .inspect_err(|e| {
                eprintln!(
                    "warning: this {} is not recorded in the history: {e:#}",
                    request.kind.as_str()
                );
            })
            .ok();
        Recorder { open, kind: request.kind, machines: request.machines }
    }

    /// Every machine built, with its generation (a build, or `deploy --build-only`).
    pub fn built<'a>(self, built: impl IntoIterator<Item = (&'a str, &'a str)>) {
        self.finish(built_end(built));
    }

    /// A deploy's report: each machine's state, with the phase and error of a failure.
    pub fn deployed(self, report: &DeployReport) {
        self.finish(deploy_end(report));
    }

    /// The run failed as a whole (in `phase`, when known): every machine failed with it.
    pub fn failed(self, phase: Option<Phase>, error: &anyhow::Error) {
        let end = failed_end(&self.machines, phase, &format!("{error:#}"));
        self.finish(end);
    }

    fn finish(self, end: RunEnd) {
        let Some(open) = self.open else { return };
        let done = open.runtime.block_on(async {
            let done = open.store.finish_run(open.id, &end).await;
            open.store.close().await;
            done
        });
        if let Err(e) = done {
            eprintln!(
                "warning: the end of this {} is not recorded; the history shows it unfinished: {e}",
                self.kind.as_str()
            );
        }
    }
}

/// Every machine built, with its generation.
pub fn built_end<'a>(built: impl IntoIterator<Item = (&'a str, &'a str)>) -> RunEnd {
    let machines: Vec<MachineOutcome> = built
        .into_iter()
        .map(|(machine, generation)| MachineOutcome {
            machine: machine.into(),
            generation: Some(generation.into()),
            state: "built".into(),
            phase: None,
            error: None,
        })
        .collect();
    let generation = single(machines.iter().filter_map(|m| m.generation.as_deref()));
    RunEnd { success: true, error: None, generation, machines }
}

/// How a deploy ended, from its report (`carrier deploy` and the dashboard's jobs).
pub fn deploy_end(report: &DeployReport) -> RunEnd {
    let machines: Vec<MachineOutcome> = report
        .machines
        .iter()
        .map(|m| {
            let (state, phase, error) = match &m.state {
                MachineState::Deployed => ("deployed", None, None),
                MachineState::Copied => ("copied", None, None),
                MachineState::Current => ("current", None, None),
                MachineState::Failed { phase, error, .. } => {
                    ("failed", Some(phase_name(*phase)), Some(error.to_string()))
                }
                MachineState::NotAttempted { reason } => {
                    ("not-attempted", None, Some(reason.clone()))
                }
                MachineState::Declined { phase } => ("declined", Some(phase_name(*phase)), None),
            };
            MachineOutcome {
                machine: m.machine.clone(),
                generation: Some(m.generation.clone()),
                state: state.into(),
                phase,
                error,
            }
        })
        .collect();
    let generation = single(machines.iter().filter_map(|m| m.generation.as_deref()));
    RunEnd { success: report.success(), error: None, generation, machines }
}

/// A run that failed as a whole (in `phase`, when known): every machine failed with it.
pub fn failed_end(machines: &[String], phase: Option<Phase>, error: &str) -> RunEnd {
    let outcomes = machines
        .iter()
        .map(|machine| MachineOutcome {
            machine: machine.clone(),
            generation: None,
            state: "failed".into(),
            phase: phase.map(phase_name),
            error: Some(error.to_string()),
        })
        .collect();
    RunEnd { success: false, error: Some(error.to_string()), generation: None, machines: outcomes }
}

/// The one value all items share, if they do.
fn single<'a>(mut items: impl Iterator<Item = &'a str>) -> Option<String> {
    let first = items.next()?;
    items.all(|i| i == first).then(|| first.to_string())
}

/// A phase as its JSON form names it (`carried-profile`).
fn phase_name(phase: Phase) -> String {
    serde_json::to_value(phase).ok().and_then(|v| v.as_str().map(Into::into)).unwrap_or_default()
}

/// The OS user running carrier and this host's name.
pub(crate) fn who() -> (String, String) {
    let host = whoami::fallible::hostname().unwrap_or_else(|_| "unknown".into());
    (whoami::username(), host)
}

/// `HEAD` and whether `git status --porcelain` lists anything in the configuration
/// directory (carrier's own `.confctl` excluded: the build generations and this database
/// live there); `None` when the directory is not in a git work tree or git is missing.
pub fn git_state(conf_dir: &Path) -> Option<GitState> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(conf_dir)
            .args(args)
            // a status does not take the index lock another git may hold
            .env("GIT_OPTIONAL_LOCKS", "0")
            .stdin(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    if git(&["rev-parse", "--is-inside-work-tree"])?.trim() != "true" {
        return None;
    }
    let status = git(&["status", "--porcelain", "--", ".", ":(exclude).confctl"])?;
    Some(GitState {
        revision: git(&["rev-parse", "--verify", "-q", "HEAD"]).map(|r| r.trim().to_string()),
        dirty: !status.trim().is_empty(),
    })
}
