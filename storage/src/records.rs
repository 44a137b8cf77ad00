//! Records of builds and deploys: a run is inserted when it starts, with every machine
//! `pending`, and completed when it ends; an interrupted run keeps no end time.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError, now, query};

/// A run's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct RunId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunKind {
    Build,
    Deploy,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Build => "build",
            RunKind::Deploy => "deploy",
        }
    }

    fn parse(text: &str) -> Result<RunKind, sqlx::Error> {
        match text {
            "build" => Ok(RunKind::Build),
            "deploy" => Ok(RunKind::Deploy),
            other => Err(sqlx::Error::Decode(format!("unknown run kind '{other}'").into())),
        }
    }
}

/// The configuration's git state; absent when it is not in a git work tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GitState {
    /// `HEAD`'s commit; `None` in a repository without commits.
    pub revision: Option<String>,
    /// Whether `git status --porcelain` listed anything.
    pub dirty: bool,
}

/// What is known when a run starts.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub kind: RunKind,
    /// The OS user who started it.
    pub user: String,
    /// The host it ran on.
    pub host: String,
    /// The selection as given (pattern, tags, attributes, managed filter).
    pub selection: serde_json::Value,
    /// The deploy action (`switch`, ...); `None` for builds.
    pub action: Option<String>,
    /// The options as given.
    pub options: serde_json::Value,
    /// `None`: the configuration is not in a git work tree.
    pub git: Option<GitState>,
    /// The generation requested (`deploy -g`); a new build's is known at the end.
    pub generation: Option<String>,
    /// The selected machines.
    pub machines: Vec<String>,
}

/// One machine's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MachineOutcome {
    pub machine: String,
    pub generation: Option<String>,
    /// `pending` until the run ends; then e.g. `built`, `deployed`, `failed`.
    pub state: String,
    pub phase: Option<String>,
    pub error: Option<String>,
}

/// What is known when a run ends.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub success: bool,
    /// Why the run as a whole failed, if it did.
    pub error: Option<String>,
    pub generation: Option<String>,
    /// Outcomes of machines of the run; a machine not named stays `pending`.
    pub machines: Vec<MachineOutcome>,
}

/// A recorded run, as `carrier history` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: RunId,
    pub kind: RunKind,
    pub user: String,
    pub host: String,
    pub started_at: String,
    /// `None`: still running, or interrupted.
    pub finished_at: Option<String>,
    pub selection: serde_json::Value,
    pub action: Option<String>,
    pub options: serde_json::Value,
    pub git: Option<GitState>,
    pub generation: Option<String>,
    /// `None` until the run ends.
    pub success: Option<bool>,
    pub error: Option<String>,
    pub machines: Vec<MachineOutcome>,
}

/// Runs read per query while filtering.
const PAGE: i64 = 100;

impl Store {
    /// Inserts a run that starts now, every machine `pending`.
    pub async fn start_run(&self, run: &NewRun) -> Result<RunId, StoreError> {
        let what = "recording the start of a run";
        let mut tx = self.pool.begin().await.map_err(query(what))?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO runs (kind, user_name, host_name, started_at, selection, action, \
             options, git_revision, git_dirty, generation) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(run.kind.as_str())
        .bind(&run.user)
        .bind(&run.host)
        .bind(now())
        .bind(run.selection.to_string())
        .bind(&run.action)
        .bind(run.options.to_string())
        .bind(run.git.as_ref().and_then(|g| g.revision.clone()))
        .bind(run.git.as_ref().map(|g| g.dirty))
        .bind(&run.generation)
        .fetch_one(&mut *tx)
        .await
        .map_err(query(what))?;
        for machine in &run.machines {
            sqlx::query(
                "INSERT INTO run_machines (run_id, machine, generation, state) \
                 VALUES ($1, $2, $3, 'pending')",
            )
            .bind(id)
            .bind(machine)
            .bind(&run.generation)
            .execute(&mut *tx)
            .await
            .map_err(query(what))?;
        }
        tx.commit().await.map_err(query(what))?;
        Ok(RunId(id))
    }

    /// Completes a run: its end time, result and the machines' outcomes.
    pub async fn finish_run(&self, id: RunId, end: &RunEnd) -> Result<(), StoreError> {
        let what = "recording the end of a run";
        let mut tx = self.pool.begin().await.map_err(query(what))?;
        sqlx::query(
            "UPDATE runs SET finished_at = $1, success = $2, error = $3, \
             generation = COALESCE($4, generation) WHERE id = $5",
        )
        .bind(now())
        .bind(end.success)
        .bind(&end.error)
        .bind(&end.generation)
        .bind(id.0)
        .execute(&mut *tx)
        .await
        .map_err(query(what))?;
        for m in &end.machines {
            let updated = sqlx::query(
                "UPDATE run_machines SET generation = COALESCE($1, generation), state = $2, \
                 phase = $3, error = $4 WHERE run_id = $5 AND machine = $6",
            )
            .bind(&m.generation)
            .bind(&m.state)
            .bind(&m.phase)
            .bind(&m.error)
            .bind(id.0)
            .bind(&m.machine)
            .execute(&mut *tx)
            .await
            .map_err(query(what))?;
            if updated.rows_affected() == 0 {
                sqlx::query(
                    "INSERT INTO run_machines (run_id, machine, generation, state, phase, error) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(id.0)
                .bind(&m.machine)
                .bind(&m.generation)
                .bind(&m.state)
                .bind(&m.phase)
                .bind(&m.error)
                .execute(&mut *tx)
                .await
                .map_err(query(what))?;
            }
        }
        tx.commit().await.map_err(query(what))?;
        Ok(())
    }

    /// Up to `limit` runs, newest first, that have a machine `wanted` accepts; each with
    /// only those machines' outcomes (in name order).
    pub async fn runs(
        &self,
        wanted: &(dyn Fn(&str) -> bool + Sync),
        limit: usize,
    ) -> Result<Vec<Run>, StoreError> {
        let what = "reading runs";
        let mut found = Vec::new();
        let mut before = i64::MAX;
        while found.len() < limit {
            let rows = sqlx::query(
                "SELECT id, kind, user_name, host_name, started_at, finished_at, selection, \
                 action, options, git_revision, CAST(git_dirty AS INTEGER) AS git_dirty, \
                 generation, CAST(success AS INTEGER) AS success, error \
                 FROM runs WHERE id < $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(before)
            .bind(PAGE)
            .fetch_all(&self.pool)
            .await
            .map_err(query(what))?;
            let (Some(first), Some(last)) = (rows.first(), rows.last()) else { break };
            let (newest, oldest): (i64, i64) = (
                first.try_get("id").map_err(query(what))?,
                last.try_get("id").map_err(query(what))?,
            );
            let outcomes = sqlx::query(
                "SELECT run_id, machine, generation, state, phase, error FROM run_machines \
                 WHERE run_id >= $1 AND run_id <= $2 ORDER BY run_id, machine",
            )
            .bind(oldest)
            .bind(newest)
            .fetch_all(&self.pool)
            .await
            .map_err(query(what))?;
            let mut outcomes = outcomes
                .iter()
                .map(|r| Ok((r.try_get::<i64, _>("run_id")?, outcome(r)?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(query(what))?;
            for row in &rows {
                let mut run = run(row).map_err(query(what))?;
                run.machines = outcomes
                    .extract_if(.., |(id, m)| *id == run.id.0 && wanted(&m.machine))
                    .map(|(_, m)| m)
                    .collect();
                if !run.machines.is_empty() && found.len() < limit {
                    found.push(run);
                }
            }
            before = oldest;
        }
        Ok(found)
    }
}

fn outcome(row: &AnyRow) -> Result<MachineOutcome, sqlx::Error> {
    Ok(MachineOutcome {
        machine: row.try_get("machine")?,
        generation: row.try_get("generation")?,
        state: row.try_get("state")?,
        phase: row.try_get("phase")?,
        error: row.try_get("error")?,
    })
}

/// A run's row; booleans arrive as integers (`CAST`), the one form both dialects give.
fn run(row: &AnyRow) -> Result<Run, sqlx::Error> {
    let json = |column: &str| -> Result<serde_json::Value, sqlx::Error> {
        let text: String = row.try_get(column)?;
        serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    };
    let revision: Option<String> = row.try_get("git_revision")?;
    let dirty: Option<i64> = row.try_get("git_dirty")?;
    let success: Option<i64> = row.try_get("success")?;
    Ok(Run {
        id: RunId(row.try_get("id")?),
        kind: RunKind::parse(row.try_get("kind")?)?,
        user: row.try_get("user_name")?,
        host: row.try_get("host_name")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        selection: json("selection")?,
        action: row.try_get("action")?,
        options: json("options")?,
        git: dirty.map(|d| GitState { revision, dirty: d != 0 }),
        generation: row.try_get("generation")?,
        success: success.map(|s| s != 0),
        error: row.try_get("error")?,
        machines: Vec::new(),
    })
}
