//! The job runner of `carrier serve` and the live stream of a job's events (docs/jobs.md).
//!
//! The runner claims queued jobs from the database (the claim takes the jobs' machines'
//! locks there, so several instances sharing one PostgreSQL never run one job twice or
//! two jobs of one machine at once), runs each on the core engine exactly as `carrier
//! deploy` does (`deploy::prepare`, then `deploy::run`), writes its events to the
//! database as they come, records it in the history like a CLI run, and ends it with its
//! report. Its instance's heartbeat lets the others mark its jobs interrupted when it dies;
//! at start it marks its own earlier jobs interrupted.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use app::services::jobs::{DeployRequest, event_view};
use app::services::{Caller, InventoryService, Permission};
use axum::Router;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use carrier_core::build::BuildOptions;
use carrier_core::conf_dir::ConfDir;
use carrier_core::deploy::{self, DeployReport, SshSettings};
use carrier_core::events::{Event, EventSink};
use carrier_storage::{Job, JobId, JobState, NewRun, RunKind, Store};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::records::{deploy_end, failed_end, git_state};

/// How often an idle runner looks for queued jobs, and a stream for new events.
const POLL: Duration = Duration::from_millis(250);

/// What the runner needs; built once by `serve`.
pub struct Runner {
    pub store: Store,
    pub inventory: Arc<InventoryService>,
    pub conf_dir: ConfDir,
    /// Where carrier's Nix code is materialised (the inventory's cache directory).
    pub cache_dir: PathBuf,
    /// The hosts' ssh_config (`--ssh-config`), as for `carrier deploy`.
    pub ssh_config: Option<PathBuf>,
    /// This instance's name in the database: unique among the instances sharing it.
    pub instance: String,
    /// An instance silent this long is taken for dead: its running jobs become
    /// interrupted. This one beats every third of it.
    pub stale_after: Duration,
    /// Told when a job has ended (the status page reads the hosts again).
    pub ended: Arc<tokio::sync::Notify>,
}

impl Runner {
    /// Registers the instance (its jobs left running by an earlier life become
    /// interrupted), then keeps its heartbeat and, with `run_jobs`, runs jobs in the
    /// background.
    pub async fn start(self, run_jobs: bool) -> anyhow::Result<()> {
        self.store.register_instance(&self.instance).await?;
        let runner = Arc::new(self);
        tokio::spawn(runner.clone().heartbeat());
        if run_jobs {
            tokio::spawn(runner.work());
        }
        Ok(())
    }

    async fn heartbeat(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.stale_after / 3).await;
            match self.store.heartbeat(&self.instance).await {
                Ok(()) => {}
                // taken for dead by another instance (its jobs are interrupted already)
                Err(carrier_storage::StoreError::UnknownInstance(_)) => {
                    tracing::error!(
                        "instance {} was taken for dead; registering again",
                        self.instance
                    );
                    if let Err(e) = self.store.register_instance(&self.instance).await {
                        tracing::error!("registering instance {}: {e}", self.instance);
                    }
                }
                Err(e) => tracing::error!("heartbeat of instance {}: {e}", self.instance),
            }
            match self.store.interrupt_dead_instances(self.stale_after).await {
                Ok(jobs) if !jobs.is_empty() => {
                    tracing::warn!("jobs of a silent instance marked interrupted: {jobs:?}")
                }
                Ok(_) => {}
                Err(e) => tracing::error!("looking for silent instances: {e}"),
            }
        }
    }

    async fn work(self: Arc<Self>) {
        loop {
            match self.store.claim_job(&self.instance).await {
                Ok(Some(job)) => self.run(job).await,
                Ok(None) => tokio::time::sleep(POLL).await,
                Err(e) => {
                    tracing::error!("claiming a job: {e}");
                    tokio::time::sleep(self.stale_after / 3).await;
                }
            }
        }
    }

    /// Runs one claimed job to its end.
    async fn run(&self, job: Job) {
        let id = job.id;
        tracing::info!("job {} started: {}", id.0, job.summary);
        let (tx, rx) = mpsc::unbounded_channel();
        let cancelled = Arc::new(AtomicBool::new(job.cancel_requested));
        let sink = Arc::new(JobSink { tx, cancelled: cancelled.clone() });
        let writer = tokio::spawn(write_events(self.store.clone(), id, rx));
        let watcher = tokio::spawn(watch_cancel(self.store.clone(), id, cancelled.clone()));
        let run = self.start_run(&job).await;
        let outcome = self.deploy(&job, sink.clone()).await;
        drop(sink);
        let _ = writer.await;
        watcher.abort();
        let (state, error, report, end) = match outcome {
            Ok(report) => {
                let state = if cancelled.load(Ordering::Relaxed) && !report.success() {
                    JobState::Cancelled
                } else if report.success() {
                    JobState::Succeeded
                } else {
                    JobState::Failed
                };
                (state, None, serde_json::to_value(&report).ok(), deploy_end(&report))
            }
            Err(failure) => {
                let end = failed_end(&job.machines, failure.phase, &failure.message);
                (JobState::Failed, Some(failure.message), None, end)
            }
        };
        if let Some(run) = run
            && let Err(e) = self.store.finish_run(run, &end).await
        {
            tracing::error!("recording the end of job {} in the history: {e}", id.0);
        }
        let done = self.store.finish_job(id, state, error.as_deref(), report.as_ref()).await;
        match done {
            Ok(()) => tracing::info!("job {} {}", id.0, state.as_str()),
            Err(e) => tracing::error!("ending job {}: {e}", id.0),
        }
        self.ended.notify_one();
    }

    /// Records the job in the history (`carrier history`), as a CLI deploy is.
    async fn start_run(&self, job: &Job) -> Option<carrier_storage::RunId> {
        let request = &job.request;
        let text = |k: &str| request.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let run = NewRun {
            kind: RunKind::Deploy,
            user: job.requested_by.clone(),
            host: format!("carrier serve ({})", self.instance),
            selection: serde_json::json!({
                "pattern": request.get("pattern"),
                "tags": request.get("tags"),
            }),
            action: text("action"),
            options: request.clone(),
            git: git_state(self.conf_dir.path()),
            generation: text("generation"),
            machines: job.machines.clone(),
        };
        let started = async {
            let run_id = self.store.start_run(&run).await?;
            self.store.set_job_run(job.id, run_id).await?;
            Ok::<_, carrier_storage::StoreError>(run_id)
        };
        started
            .await
            .inspect_err(|e| {
                tracing::error!("job {} is not recorded in the history: {e}", job.id.0)
            })
            .ok()
    }

    /// The deploy itself: the machines as they are in the cluster now, then the same
    /// engine calls as `carrier deploy`.
    async fn deploy(&self, job: &Job, sink: Arc<JobSink>) -> Result<DeployReport, Failure> {
        let request: DeployRequest = serde_json::from_value(job.request.clone())
            .map_err(|e| Failure::new(format!("the job's request cannot be read: {e}")))?;
        let opts = request.options().map_err(|e| Failure::new(e.to_string()))?;
        let loaded = self.inventory.load().await.map_err(|e| Failure::new(e.to_string()))?;
        let cluster = loaded.cluster;
        let missing: Vec<&str> =
            job.machines.iter().filter(|m| cluster.get(m).is_none()).map(String::as_str).collect();
        if !missing.is_empty() {
            return Err(Failure::new(format!("no longer in the cluster: {}", missing.join(", "))));
        }
        let build = BuildOptions {
            ssh_config: self.ssh_config.clone(),
            ..BuildOptions::new(self.cache_dir.clone())
        };
        let (conf_dir, names, generation) =
            (self.conf_dir.clone(), job.machines.clone(), request.generation.clone());
        let lock_wait = opts.timeouts.lock;
        let blocking_sink = sink.clone();
        let (prepared, cluster) = tokio::task::spawn_blocking(move || {
            let machines: Vec<_> = names.iter().filter_map(|n| cluster.get(n)).collect();
            let prepared = deploy::prepare(
                &conf_dir,
                &cluster,
                &machines,
                generation.as_deref(),
                false,
                &build,
                lock_wait,
                &*blocking_sink,
            );
            (prepared, cluster)
        })
        .await
        .map_err(|e| Failure::new(format!("the deploy task failed: {e}")))?;
        drop(cluster);
        let prepared = prepared.map_err(|e| Failure {
            phase: e.phase(),
            message: self.conf_dir.relative_message(&e.to_string()),
        })?;
        // not build-only: there are targets
        let targets = prepared.targets.unwrap_or_default();
        let ssh = SshSettings { config_file: self.ssh_config.clone(), connect_timeout: None };
        let report = deploy::run(targets, &opts, ssh, &*sink).await;
        // the configuration directory stays locked until the hosts are done
        drop(prepared.lock);
        Ok(report)
    }
}

/// A job that failed as a whole.
struct Failure {
    phase: Option<carrier_core::events::Phase>,
    message: String,
}

impl Failure {
    fn new(message: String) -> Self {
        Failure { phase: None, message }
    }
}

/// Where a job's engine sends its events: to the writer task, never blocking the engine.
struct JobSink {
    tx: mpsc::UnboundedSender<Event>,
    cancelled: Arc<AtomicBool>,
}

impl EventSink for JobSink {
    fn emit(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// Writes events as they come, in batches (what arrived while the last batch was written).
async fn write_events(store: Store, job: JobId, mut rx: mpsc::UnboundedReceiver<Event>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 500).await > 0 {
        let values: Vec<serde_json::Value> =
            batch.drain(..).filter_map(|e| serde_json::to_value(e).ok()).collect();
        if let Err(e) = store.append_job_events(job, &values).await {
            tracing::error!("writing events of job {}: {e}", job.0);
        }
    }
}

/// Turns a cancel request in the database (from any instance) into the flag the engine
/// reads between steps.
async fn watch_cancel(store: Store, job: JobId, cancelled: Arc<AtomicBool>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(true) = store.cancel_requested(job).await {
            cancelled.store(true, Ordering::Relaxed);
            return;
        }
    }
}

/// `GET /jobs/<id>/events?after=<seq>`: the job's events after `after` (or the
/// `Last-Event-ID` a reconnecting browser sends) as server-sent events, one `message` per
/// event (its line, as JSON, with the sequence number as id), then an `end` event (data
/// `ended`: browsers drop events without data) once the job has finished and every event
/// was sent. Readers only. Works from the database,
/// so it follows a job whichever instance runs it.
pub fn router(store: Store) -> Router {
    Router::new().route("/jobs/{id}/events", get(events)).with_state(store)
}

#[derive(serde::Deserialize)]
struct After {
    after: Option<i64>,
}

async fn events(
    State(store): State<Store>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(after): Query<After>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = caller.require(Permission::ReadInventory) {
        return (app::services::status_of(&e), e.to_string()).into_response();
    }
    let Ok(id) = id.parse::<i64>() else {
        return (StatusCode::NOT_FOUND, format!("no job '{id}'")).into_response();
    };
    match store.job(JobId(id)).await {
        Ok(Some(_)) => {}
        Ok(None) => return (StatusCode::NOT_FOUND, format!("no job {id}")).into_response(),
        Err(e) => {
            tracing::error!("{e}");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    let resumed = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let from = resumed.or(after.after).unwrap_or(0).max(0);
    Sse::new(stream(store, JobId(id), from)).keep_alive(KeepAlive::default()).into_response()
}

/// The events of `job` after `from`, read from the database as they are written.
fn stream(
    store: Store,
    job: JobId,
    from: i64,
) -> impl futures::Stream<Item = Result<SseEvent, Infallible>> {
    let state = (store, from, false);
    futures::stream::unfold(state, move |(store, after, ended)| async move {
        if ended {
            return None;
        }
        loop {
            // whether the job had ended before reading: then no event can follow
            let finished = match store.job(job).await {
                Ok(Some(j)) => j.state.is_finished(),
                Ok(None) | Err(_) => true,
            };
            let events = store.job_events(job, after, 200).await.unwrap_or_default();
            if !events.is_empty() {
                let last = events.last().map(|e| e.seq).unwrap_or(after);
                let batch: Vec<Result<SseEvent, Infallible>> = events
                    .into_iter()
                    .map(|e| {
                        let seq = e.seq;
                        let view = event_view(e);
                        let data = serde_json::to_string(&view).unwrap_or_default();
                        Ok(SseEvent::default().id(seq.to_string()).data(data))
                    })
                    .collect();
                return Some((futures::stream::iter(batch), (store, last, false)));
            }
            if finished {
                let end = vec![Ok(SseEvent::default().event("end").data("ended"))];
                return Some((futures::stream::iter(end), (store, after, true)));
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .flatten()
}
