//! The history of builds and deploys (docs/jobs.md, "History"): every run recorded in the
//! store, from `carrier build`/`carrier deploy` on any machine sharing the database and
//! from the dashboard's jobs alike (the runner records its jobs as runs), newest first,
//! each linked to its job when it was one.

use carrier_storage::{Run, RunId};

use super::AppState;
use super::access::internal;
use crate::error::AppError;
use crate::model::RunView;

/// At most this many runs are shown.
const LIMIT: usize = 200;

/// Runs newest first that touched `machine`, were started by `user` and ended as
/// `outcome` (`succeeded`, `failed` or `unfinished`); each filter may be empty.
pub async fn list(
    state: &AppState,
    machine: &str,
    user: &str,
    outcome: &str,
) -> Result<Vec<RunView>, AppError> {
    let (machine, user, outcome) = (machine.trim(), user.trim(), outcome.trim());
    let wanted: Option<Option<bool>> = match outcome {
        "" => None,
        "succeeded" => Some(Some(true)),
        "failed" => Some(Some(false)),
        "unfinished" => Some(None),
        other => {
            return Err(AppError::BadInput(format!(
                "outcome: '{other}' is not one of succeeded, failed, unfinished"
            )));
        }
    };
    let store = &state.access.store;
    let by_machine = |m: &str| machine.is_empty() || m == machine;
    // the user and outcome filters read further back than LIMIT: runs are paged in storage
    let runs = store.runs(&by_machine, LIMIT * 5).await.map_err(internal)?;
    let runs: Vec<Run> = runs
        .into_iter()
        .filter(|r| user.is_empty() || r.user == user)
        .filter(|r| wanted.is_none_or(|w| r.success == w))
        .take(LIMIT)
        .collect();
    let jobs = match (runs.last(), runs.first()) {
        (Some(oldest), Some(newest)) => {
            store.jobs_of_runs(oldest.id, newest.id).await.map_err(internal)?
        }
        _ => Vec::new(),
    };
    let job_of = |id: RunId| jobs.iter().find(|(run, _)| *run == id).map(|(_, job)| job.0);
    Ok(runs.into_iter().map(|r| view(r, &job_of)).collect())
}

fn view(r: Run, job_of: &dyn Fn(RunId) -> Option<i64>) -> RunView {
    let machines = r
        .machines
        .iter()
        .map(|m| {
            let outcome = match (&m.phase, &m.error) {
                (Some(phase), Some(e)) => format!("{} in {phase}: {e}", m.state),
                (None, Some(e)) => format!("{}: {e}", m.state),
                _ => m.state.clone(),
            };
            (m.machine.clone(), outcome)
        })
        .collect();
    RunView {
        id: r.id.0,
        kind: r.kind.as_str().to_string(),
        git: r.git.as_ref().and_then(|g| {
            let rev = g.revision.as_deref()?;
            Some(format!("{}{}", rev.get(..12).unwrap_or(rev), if g.dirty { "+dirty" } else { "" }))
        }),
        job: job_of(r.id),
        user: r.user,
        host: r.host,
        started_at: r.started_at,
        finished_at: r.finished_at,
        action: r.action,
        success: r.success,
        error: r.error,
        machines,
    }
}
