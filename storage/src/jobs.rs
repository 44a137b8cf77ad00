//! Jobs of `carrier serve`: the durable queue one or several serve instances share. A job
//! is enqueued by a request, claimed by one instance (its machines locked in
//! `machine_locks` in the same transaction), streams its events into `job_events`, and
//! ends, releasing its machines. An instance that restarts or stops answering leaves its
//! running jobs `interrupted`. Decisions: docs/storage.md, "Jobs".

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Backend, RunId, Store, StoreError, now, query, rfc3339};

/// A job's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    Deploy,
    Build,
    NetbootRebuild,
    GenerationRm,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Deploy => "deploy",
            JobKind::Build => "build",
            JobKind::NetbootRebuild => "netboot-rebuild",
            JobKind::GenerationRm => "generation-rm",
        }
    }

    pub fn parse(text: &str) -> Option<JobKind> {
        [JobKind::Deploy, JobKind::Build, JobKind::NetbootRebuild, JobKind::GenerationRm]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Interrupted,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Interrupted => "interrupted",
        }
    }

    /// Every state, in the order of a job's life.
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Interrupted,
    ];

    pub fn parse(text: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the job has ended (it holds no machine and changes no more).
    pub fn is_finished(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do when a machine of a new job is in a queued or running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfBusy {
    /// Queue it: it runs once the jobs before it on its machines have ended.
    Queue,
    /// Refuse it with [`StoreError::Busy`].
    Refuse,
}

/// A job as a request asks for it.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    /// The account's name, or `token` for the shared token.
    pub requested_by: String,
    /// The selection, action and options as given.
    pub request: serde_json::Value,
    /// One line for lists, e.g. `deploy switch node1, node2`.
    pub summary: String,
    /// The machines it acts on: at least one, each once.
    pub machines: Vec<String>,
}

/// A stored job.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: JobId,
    pub kind: JobKind,
    pub state: JobState,
    pub requested_by: String,
    pub request: serde_json::Value,
    pub summary: String,
    /// In name order.
    pub machines: Vec<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The serve instance that claimed it.
    pub instance: Option<String>,
    pub cancel_requested: bool,
    /// Its record in the history of builds and deploys.
    pub run_id: Option<RunId>,
    pub error: Option<String>,
    /// The engine's final report.
    pub report: Option<serde_json::Value>,
}

/// One progress event of a job; `seq` counts from 1 per job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobEvent {
    pub seq: i64,
    pub at: String,
    pub event: serde_json::Value,
}

/// Which jobs to list; `None` matches every value.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub machine: Option<String>,
    pub requested_by: Option<String>,
    pub state: Option<JobState>,
}

const JOB_COLUMNS: &str = "id, kind, state, requested_by, request, summary, created_at, \
     started_at, finished_at, instance, CAST(cancel_requested AS INTEGER) AS cancel_requested, \
     run_id, error, report";

/// A queued job may start when none of its machines is locked by a running job and no
/// older queued job shares one of them: jobs on a machine run in the order they were
/// asked for.
const CLAIMABLE: &str = "j.state = 'queued' \
     AND NOT EXISTS (SELECT 1 FROM job_machines m JOIN machine_locks l ON l.machine = m.machine \
                     WHERE m.job_id = j.id) \
     AND NOT EXISTS (SELECT 1 FROM job_machines m \
                     JOIN job_machines o ON o.machine = m.machine AND o.job_id < m.job_id \
                     JOIN jobs oj ON oj.id = o.job_id \
                     WHERE m.job_id = j.id AND oj.state = 'queued')";

/// Key of the PostgreSQL advisory lock that serialises enqueueing, so that two requests
/// refusing busy machines cannot both pass the check (on SQLite the insert that starts the
/// transaction serialises them).
const ENQUEUE_LOCK: i64 = 0x6361_7272_6a6f_6273; // "carrjobs"

impl Store {
    /// Stores a new queued job. With [`IfBusy::Refuse`], a job with a machine that is in
    /// a queued or running job is not stored: [`StoreError::Busy`] names the machine and
    /// that job (a running one before a queued one).
    pub async fn enqueue_job(&self, job: &NewJob, if_busy: IfBusy) -> Result<JobId, StoreError> {
        self.enqueue(job, if_busy, false).await.map(|(id, _)| id)
    }

    /// Stores a new queued job (queued behind busy machines) unless a queued job of the
    /// same kind on exactly the same machines exists: then that job's id, with `true`.
    /// Two requests at once store one job.
    pub async fn enqueue_job_coalesced(&self, job: &NewJob) -> Result<(JobId, bool), StoreError> {
        self.enqueue(job, IfBusy::Queue, true).await
    }

    async fn enqueue(
        &self,
        job: &NewJob,
        if_busy: IfBusy,
        coalesce: bool,
    ) -> Result<(JobId, bool), StoreError> {
        if job.machines.is_empty() {
            return Err(StoreError::JobWithoutMachines);
        }
        for (i, machine) in job.machines.iter().enumerate() {
            if job.machines[..i].contains(machine) {
                return Err(StoreError::JobMachineTwice(machine.clone()));
            }
        }
        let what = "queueing a job";
        let mut tx = self.pool.begin().await.map_err(query(what))?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(ENQUEUE_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(query(what))?;
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO jobs (kind, state, requested_by, request, summary, created_at) \
             VALUES ($1, 'queued', $2, $3, $4, $5) RETURNING id",
        )
        .bind(job.kind.as_str())
        .bind(&job.requested_by)
        .bind(job.request.to_string())
        .bind(&job.summary)
        .bind(now())
        .fetch_one(&mut *tx)
        .await
        .map_err(query(what))?;
        for machine in &job.machines {
            sqlx::query("INSERT INTO job_machines (job_id, machine) VALUES ($1, $2)")
                .bind(id)
                .bind(machine)
                .execute(&mut *tx)
                .await
                .map_err(query(what))?;
        }
        if coalesce {
            // an older queued job of this kind whose machines are exactly these
            let same: Option<i64> = sqlx::query_scalar(
                "SELECT j.id FROM jobs j WHERE j.id < $1 AND j.state = 'queued' AND j.kind = $2 \
                 AND (SELECT COUNT(*) FROM job_machines o WHERE o.job_id = j.id) = $3 \
                 AND NOT EXISTS (SELECT 1 FROM job_machines o WHERE o.job_id = j.id \
                     AND o.machine NOT IN (SELECT machine FROM job_machines WHERE job_id = $1)) \
                 ORDER BY j.id LIMIT 1",
            )
            .bind(id)
            .bind(job.kind.as_str())
            .bind(job.machines.len() as i64)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query(what))?;
            if let Some(same) = same {
                tx.rollback().await.map_err(query(what))?;
                return Ok((JobId(same), true));
            }
        }
        if if_busy == IfBusy::Refuse {
            let busy = sqlx::query(
                "SELECT m.machine, j.id, j.state FROM job_machines m \
                 JOIN jobs j ON j.id = m.job_id \
                 WHERE j.id <> $1 AND j.state IN ('queued', 'running') \
                 AND m.machine IN (SELECT machine FROM job_machines WHERE job_id = $1) \
                 ORDER BY CASE j.state WHEN 'running' THEN 0 ELSE 1 END, j.id, m.machine \
                 LIMIT 1",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query(what))?;
            if let Some(row) = busy {
                let busy = busy_error(&row).map_err(query(what))?;
                tx.rollback().await.map_err(query(what))?;
                return Err(busy);
            }
        }
        tx.commit().await.map_err(query(what))?;
        Ok((JobId(id), false))
    }

    /// Starts the oldest queued job that may start (none of its machines locked, no older
    /// queued job on one of them) on `instance`: in one transaction it becomes `running`
    /// and its machines are locked. `None`: no job may start now. Concurrent claims, from
    /// any instance, never start one job twice nor two jobs sharing a machine: on
    /// PostgreSQL the candidate row is taken `FOR UPDATE SKIP LOCKED` and a machine
    /// locked meanwhile fails the lock's insert (the claim is then retried); on SQLite
    /// the claim's first statement is a write, which serialises claims.
    pub async fn claim_job(&self, instance: &str) -> Result<Option<Job>, StoreError> {
        let what = "claiming a job";
        let lock_rows = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let claim = format!(
            "UPDATE jobs SET state = 'running', started_at = $1, instance = $2 \
             WHERE state = 'queued' AND id = \
             (SELECT j.id FROM jobs j WHERE {CLAIMABLE} ORDER BY j.id LIMIT 1{lock_rows}) \
             RETURNING id"
        );
        loop {
            let mut tx = self.pool.begin().await.map_err(query(what))?;
            let Some(id): Option<i64> = sqlx::query_scalar(&claim)
                .bind(now())
                .bind(instance)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query(what))?
            else {
                tx.commit().await.map_err(query(what))?;
                return Ok(None);
            };
            let locked = sqlx::query(
                "INSERT INTO machine_locks (machine, job_id) \
                 SELECT machine, job_id FROM job_machines WHERE job_id = $1 ORDER BY machine",
            )
            .bind(id)
            .execute(&mut *tx)
            .await;
            match locked {
                Ok(_) => {}
                // another instance locked one of its machines since the candidate was
                // chosen: the next attempt sees that lock
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    tx.rollback().await.map_err(query(what))?;
                    continue;
                }
                Err(e) => return Err(query(what)(e)),
            }
            let job = read_job(&mut tx, id).await.map_err(query(what))?;
            tx.commit().await.map_err(query(what))?;
            return Ok(job);
        }
    }

    /// Appends events to a job in one transaction, numbered on from its last; returns the
    /// last number (the current one when `events` is empty). A job has one writer of
    /// events, its runner: concurrent appends to one job may fail on the number's key.
    pub async fn append_job_events(
        &self,
        job: JobId,
        events: &[serde_json::Value],
    ) -> Result<i64, StoreError> {
        let what = "recording job events";
        let mut tx = self.pool.begin().await.map_err(query(what))?;
        let mut last = None;
        for event in events {
            last = sqlx::query_scalar(
                "INSERT INTO job_events (job_id, seq, at, event) \
                 SELECT id, (SELECT COALESCE(MAX(seq), 0) FROM job_events WHERE job_id = $1) + 1, \
                 $2, $3 FROM jobs WHERE id = $1 RETURNING seq",
            )
            .bind(job.0)
            .bind(now())
            .bind(event.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(query(what))?;
            if last.is_none() {
                return Err(StoreError::NoJob(job));
            }
        }
        if events.is_empty() {
            last = sqlx::query_scalar(
                "SELECT (SELECT COALESCE(MAX(seq), 0) FROM job_events WHERE job_id = $1) \
                 FROM jobs WHERE id = $1",
            )
            .bind(job.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query(what))?;
        }
        tx.commit().await.map_err(query(what))?;
        last.ok_or(StoreError::NoJob(job))
    }

    /// Up to `limit` events of a job with a number above `after_seq`, in order.
    pub async fn job_events(
        &self,
        job: JobId,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<JobEvent>, StoreError> {
        sqlx::query(
            "SELECT seq, at, event FROM job_events WHERE job_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3",
        )
        .bind(job.0)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .and_then(|rows| {
            rows.iter()
                .map(|row| {
                    Ok(JobEvent {
                        seq: row.try_get("seq")?,
                        at: row.try_get("at")?,
                        event: json(row.try_get("event")?)?,
                    })
                })
                .collect()
        })
        .map_err(query("reading job events"))
    }

    /// Ends a running job (or a queued one as `cancelled`) in `state`, releasing its
    /// machines in the same transaction.
    pub async fn finish_job(
        &self,
        job: JobId,
        state: JobState,
        error: Option<&str>,
        report: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        let what = "recording the end of a job";
        let mut tx = self.pool.begin().await.map_err(query(what))?;
        let ended = if state.is_finished() {
            sqlx::query(
                "UPDATE jobs SET state = $1, finished_at = $2, error = $3, report = $4 \
                 WHERE id = $5 AND (state = 'running' OR (state = 'queued' AND $1 = 'cancelled'))",
            )
            .bind(state.as_str())
            .bind(now())
            .bind(error)
            .bind(report.map(|r| r.to_string()))
            .bind(job.0)
            .execute(&mut *tx)
            .await
            .map_err(query(what))?
            .rows_affected()
        } else {
            0
        };
        if ended == 0 {
            let from = match read_job(&mut tx, job.0).await.map_err(query(what))? {
                None => return Err(StoreError::NoJob(job)),
                Some(current) => current.state,
            };
            return Err(if from.is_finished() {
                StoreError::JobFinished(job)
            } else {
                StoreError::JobTransition { job, from, to: state }
            });
        }
        sqlx::query("DELETE FROM machine_locks WHERE job_id = $1")
            .bind(job.0)
            .execute(&mut *tx)
            .await
            .map_err(query(what))?;
        tx.commit().await.map_err(query(what))
    }

    /// Links a job to its record in the history of builds and deploys.
    pub async fn set_job_run(&self, job: JobId, run: RunId) -> Result<(), StoreError> {
        let updated = sqlx::query("UPDATE jobs SET run_id = $1 WHERE id = $2")
            .bind(run.0)
            .bind(job.0)
            .execute(&self.pool)
            .await
            .map_err(query("linking a job to its run"))?
            .rows_affected();
        if updated == 0 {
            return Err(StoreError::NoJob(job));
        }
        Ok(())
    }

    /// Cancels a job: a queued one is `cancelled` at once; a running one is asked to stop
    /// (`cancel_requested`; its runner ends it). Returns the state after.
    pub async fn request_cancel(&self, job: JobId) -> Result<JobState, StoreError> {
        let what = "cancelling a job";
        let cancelled = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', finished_at = $1 \
             WHERE id = $2 AND state = 'queued'",
        )
        .bind(now())
        .bind(job.0)
        .execute(&self.pool)
        .await
        .map_err(query(what))?
        .rows_affected();
        if cancelled == 1 {
            return Ok(JobState::Cancelled);
        }
        // claimed meanwhile, or running from the start
        let asked = sqlx::query(
            "UPDATE jobs SET cancel_requested = TRUE WHERE id = $1 AND state = 'running'",
        )
        .bind(job.0)
        .execute(&self.pool)
        .await
        .map_err(query(what))?
        .rows_affected();
        if asked == 1 {
            return Ok(JobState::Running);
        }
        match self.job(job).await? {
            None => Err(StoreError::NoJob(job)),
            Some(_) => Err(StoreError::JobFinished(job)),
        }
    }

    /// Whether someone asked the job to stop.
    pub async fn cancel_requested(&self, job: JobId) -> Result<bool, StoreError> {
        let asked: Option<i64> =
            sqlx::query_scalar("SELECT CAST(cancel_requested AS INTEGER) FROM jobs WHERE id = $1")
                .bind(job.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(query("reading a job"))?;
        asked.map(|a| a != 0).ok_or(StoreError::NoJob(job))
    }

    pub async fn job(&self, job: JobId) -> Result<Option<Job>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(query("reading a job"))?;
        read_job(&mut conn, job.0).await.map_err(query("reading a job"))
    }

    /// Up to `limit` jobs that match `filter`, newest first.
    pub async fn jobs(&self, filter: &JobFilter, limit: i64) -> Result<Vec<Job>, StoreError> {
        let what = "reading jobs";
        let matching = "SELECT id FROM jobs j WHERE ($1 IS NULL OR j.requested_by = $1) \
             AND ($2 IS NULL OR j.state = $2) \
             AND ($3 IS NULL OR EXISTS (SELECT 1 FROM job_machines m \
                                        WHERE m.job_id = j.id AND m.machine = $3)) \
             ORDER BY id DESC LIMIT $4";
        let state = filter.state.map(JobState::as_str);
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id IN ({matching}) ORDER BY id DESC"
        ))
        .bind(&filter.requested_by)
        .bind(state)
        .bind(&filter.machine)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(query(what))?;
        let machines = sqlx::query(&format!(
            "SELECT job_id, machine FROM job_machines WHERE job_id IN ({matching}) \
             ORDER BY job_id, machine"
        ))
        .bind(&filter.requested_by)
        .bind(state)
        .bind(&filter.machine)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(query(what))?;
        let mut machines = machines
            .iter()
            .map(|r| Ok((r.try_get::<i64, _>("job_id")?, r.try_get::<String, _>("machine")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(query(what))?;
        rows.iter()
            .map(|row| {
                let mut job = job(row)?;
                job.machines =
                    machines.extract_if(.., |(id, _)| *id == job.id.0).map(|(_, m)| m).collect();
                Ok(job)
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query(what))
    }

    /// Every machine of a queued or running job, with the job (the oldest first when a
    /// machine is in several).
    pub async fn busy_machines(&self) -> Result<Vec<(String, JobId)>, StoreError> {
        let what = "reading the machines of unfinished jobs";
        let rows = sqlx::query(
            "SELECT m.machine, m.job_id FROM job_machines m JOIN jobs j ON j.id = m.job_id \
             WHERE j.state IN ('queued', 'running') ORDER BY m.job_id, m.machine",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query(what))?;
        rows.iter()
            .map(|r| Ok((r.try_get("machine")?, JobId(r.try_get("job_id")?))))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query(what))
    }

    /// The jobs whose runs in the history are numbered `from` to `to`: `(run, job)`.
    pub async fn jobs_of_runs(
        &self,
        from: RunId,
        to: RunId,
    ) -> Result<Vec<(RunId, JobId)>, StoreError> {
        let rows = sqlx::query(
            "SELECT run_id, id FROM jobs WHERE run_id >= $1 AND run_id <= $2 ORDER BY run_id",
        )
        .bind(from.0)
        .bind(to.0)
        .fetch_all(&self.pool)
        .await
        .map_err(query("reading the jobs of runs"))?;
        rows.iter()
            .map(|r| Ok((RunId(r.try_get("run_id")?), JobId(r.try_get("id")?))))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query("reading the jobs of runs"))
    }

    /// How many jobs are in each state (states without jobs are left out).
    pub async fn job_counts(&self) -> Result<Vec<(JobState, i64)>, StoreError> {
        let what = "counting jobs";
        let rows =
            sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state ORDER BY state")
                .fetch_all(&self.pool)
                .await
                .map_err(query(what))?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                let state = JobState::parse(&state).ok_or_else(|| {
                    sqlx::Error::Decode(format!("unknown job state '{state}'").into())
                })?;
                Ok((state, r.try_get::<i64, _>("n")?))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(query(what))
    }

    /// Records that serve instance `name` (re)starts now. Jobs still `running` on an
    /// instance of that name were cut off by its end: they become `interrupted` and
    /// release their machines. Instance names must be unique among live instances.
    pub async fn register_instance(&self, name: &str) -> Result<(), StoreError> {
        let what = "registering a serve instance";
        let mut tx = self.pool.begin().await.map_err(query(what))?;
        let at = now();
        sqlx::query(
            "INSERT INTO instances (name, started_at, heartbeat_at) VALUES ($1, $2, $2) \
             ON CONFLICT (name) DO UPDATE SET started_at = $2, heartbeat_at = $2",
        )
        .bind(name)
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(query(what))?;
        interrupt_jobs_of(&mut tx, name, "the server restarted while it ran")
            .await
            .map_err(query(what))?;
        tx.commit().await.map_err(query(what))
    }

    /// Records that serve instance `name` is alive. An instance declared dead meanwhile
    /// (its row removed by [`Store::interrupt_dead_instances`]) gets
    /// [`StoreError::UnknownInstance`]: its jobs were interrupted and its machines given
    /// up, so it must stop them.
    pub async fn heartbeat(&self, name: &str) -> Result<(), StoreError> {
        let updated = sqlx::query("UPDATE instances SET heartbeat_at = $1 WHERE name = $2")
            .bind(now())
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(query("recording a heartbeat"))?
            .rows_affected();
        if updated == 0 {
            return Err(StoreError::UnknownInstance(name.into()));
        }
        Ok(())
    }

    /// Declares dead every instance whose last heartbeat is older than `stale_after`:
    /// its running jobs become `interrupted` and release their machines, and its row is
    /// removed. Returns the jobs interrupted.
    pub async fn interrupt_dead_instances(
        &self,
        stale_after: Duration,
    ) -> Result<Vec<JobId>, StoreError> {
        let what = "interrupting the jobs of stopped serve instances";
        let stale = rfc3339(
            jiff::SignedDuration::try_from(stale_after)
                .ok()
                .and_then(|d| jiff::Timestamp::now().checked_sub(d).ok())
                .unwrap_or(jiff::Timestamp::MIN),
        );
        let dead: Vec<String> =
            sqlx::query_scalar("SELECT name FROM instances WHERE heartbeat_at < $1 ORDER BY name")
                .bind(&stale)
                .fetch_all(&self.pool)
                .await
                .map_err(query(what))?;
        let mut interrupted = Vec::new();
        for name in dead {
            let mut tx = self.pool.begin().await.map_err(query(what))?;
            // still stale: it did not answer meanwhile, and no other instance took it
            let removed =
                sqlx::query("DELETE FROM instances WHERE name = $1 AND heartbeat_at < $2")
                    .bind(&name)
                    .bind(&stale)
                    .execute(&mut *tx)
                    .await
                    .map_err(query(what))?
                    .rows_affected();
            if removed == 1 {
                let error = format!("instance {name} stopped answering while it ran");
                interrupted
                    .extend(interrupt_jobs_of(&mut tx, &name, &error).await.map_err(query(what))?);
            }
            tx.commit().await.map_err(query(what))?;
        }
        interrupted.sort();
        Ok(interrupted)
    }
}

/// Marks the running jobs of instance `name` interrupted with `error` and releases their
/// machines.
async fn interrupt_jobs_of(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    name: &str,
    error: &str,
) -> Result<Vec<JobId>, sqlx::Error> {
    sqlx::query(
        "DELETE FROM machine_locks WHERE job_id IN \
         (SELECT id FROM jobs WHERE state = 'running' AND instance = $1)",
    )
    .bind(name)
    .execute(&mut **tx)
    .await?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "UPDATE jobs SET state = 'interrupted', finished_at = $2, error = $3 \
         WHERE state = 'running' AND instance = $1 RETURNING id",
    )
    .bind(name)
    .bind(now())
    .bind(error)
    .fetch_all(&mut **tx)
    .await?;
    Ok(ids.into_iter().map(JobId).collect())
}

/// A job with its machines, through any connection (a transaction's too).
async fn read_job(conn: &mut sqlx::AnyConnection, id: i64) -> Result<Option<Job>, sqlx::Error> {
    let Some(row) = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let mut job = job(&row)?;
    job.machines =
        sqlx::query_scalar("SELECT machine FROM job_machines WHERE job_id = $1 ORDER BY machine")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    Ok(Some(job))
}

/// A job's row, without its machines; the boolean arrives as an integer (`CAST`).
fn job(row: &AnyRow) -> Result<Job, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let cancel_requested: i64 = row.try_get("cancel_requested")?;
    let report: Option<String> = row.try_get("report")?;
    let run_id: Option<i64> = row.try_get("run_id")?;
    Ok(Job {
        id: JobId(row.try_get("id")?),
        kind: JobKind::parse(&kind)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown job kind '{kind}'").into()))?,
        state: state(row.try_get("state")?)?,
        requested_by: row.try_get("requested_by")?,
        request: json(row.try_get("request")?)?,
        summary: row.try_get("summary")?,
        machines: Vec::new(),
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        instance: row.try_get("instance")?,
        cancel_requested: cancel_requested != 0,
        run_id: run_id.map(RunId),
        error: row.try_get("error")?,
        report: report.as_deref().map(json).transpose()?,
    })
}

/// [`StoreError::Busy`] from a row of the machine, job and state in the way.
fn busy_error(row: &AnyRow) -> Result<StoreError, sqlx::Error> {
    Ok(StoreError::Busy {
        machine: row.try_get("machine")?,
        job: JobId(row.try_get("id")?),
        state: state(row.try_get("state")?)?,
    })
}

fn state(text: &str) -> Result<JobState, sqlx::Error> {
    JobState::parse(text)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown job state '{text}'").into()))
}

fn json(text: &str) -> Result<serde_json::Value, sqlx::Error> {
    serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}
