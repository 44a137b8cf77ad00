//! The job runner of `carrier serve` (docs/jobs.md); the live stream of a job's events is
//! `job_feed.rs`.
//!
//! The runner claims queued jobs from the database (the claim takes the jobs' machines'
//! locks there, so several instances sharing one PostgreSQL never run one job twice or
//! two jobs of one machine at once), runs each by its kind on the core engine as the CLI
//! does: a deploy as `carrier deploy` (`deploy::prepare`, then `deploy::run`), a build as
//! `carrier build`, a generation removal as `carrier generation rm -r`, a netboot rebuild
//! as `carrier netboot build` on the carrier. It writes the events to the database as they
//! come, records deploys and builds in the history like CLI runs, and ends each job with
//! its report. Its instance's heartbeat lets the others mark its jobs interrupted when it dies;
//! at start it marks its own earlier jobs interrupted.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use app::services::InventoryService;
use app::services::jobs::{DeployRequest, GenerationRmRequest, NetbootRebuildRequest};
use carrier_core::build::BuildOptions;
use carrier_core::carrier::netboot;
use carrier_core::conf_dir::ConfDir;
use carrier_core::deploy::{self, SshSettings, Timeouts};
use carrier_core::events::{Event, EventSink, Outcome, Phase};
use carrier_core::generation;
use carrier_core::remote::{Connections, Hosts};
use carrier_storage::{Job, JobId, JobKind, JobState, NewRun, RunEnd, RunKind, Store};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::records::{built_end, deploy_end, failed_end, git_state};

/// How often an idle runner looks for queued jobs.
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
    /// Jobs run at once (`--max-running-jobs`).
    pub max_running: usize,
    /// Told the machines of every job that ended (the status refresher reads them again).
    pub ended: tokio::sync::mpsc::UnboundedSender<Vec<String>>,
}

impl Runner {
    /// Registers the instance (its jobs left running by an earlier life become
    /// interrupted), then keeps its heartbeat and, with `run_jobs`, runs jobs on
    /// `background` (see [`background_runtime`]).
    pub async fn start(self, run_jobs: bool, background: &Handle) -> anyhow::Result<()> {
        self.store.register_instance(&self.instance).await?;
        let runner = Arc::new(self);
        tokio::spawn(runner.clone().heartbeat());
        if run_jobs {
            background.spawn(runner.work());
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

    /// Claims and runs jobs, at most `max_running` at once (the claims keep two jobs of
    /// one machine apart).
    async fn work(self: Arc<Self>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(self.max_running.max(1)));
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            match self.store.claim_job(&self.instance).await {
                Ok(Some(job)) => {
                    let runner = self.clone();
                    tokio::spawn(async move {
                        runner.run(job).await;
                        drop(slot);
                    });
                }
                Ok(None) => {
                    drop(slot);
                    tokio::time::sleep(POLL).await;
                }
                Err(e) => {
                    drop(slot);
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
        let outcome = match job.kind {
            JobKind::Deploy => self.deploy(&job, sink.clone()).await,
            JobKind::Build => self.build(&job, sink.clone()).await,
            JobKind::GenerationRm => self.remove_generation(&job, &sink).await,
            JobKind::NetbootRebuild => self.rebuild_netboot(&job, &sink).await,
        };
        drop(sink);
        let _ = writer.await;
        watcher.abort();
        let (state, error, report, end) = match outcome {
            Ok(done) => {
                let state = if cancelled.load(Ordering::Relaxed) && !done.success {
                    JobState::Cancelled
                } else if done.success {
                    JobState::Succeeded
                } else {
                    JobState::Failed
                };
                (state, None, Some(done.report), done.end)
            }
            Err(failure) => {
                let end = failed_end(&job.machines, failure.phase, &failure.message);
                (JobState::Failed, Some(failure.message), None, Some(end))
            }
        };
        if let (Some(run), Some(end)) = (run, end)
            && let Err(e) = self.store.finish_run(run, &end).await
        {
            tracing::error!("recording the end of job {} in the history: {e}", id.0);
        }
        let done = self.store.finish_job(id, state, error.as_deref(), report.as_ref()).await;
        match done {
            Ok(()) => tracing::info!("job {} {}", id.0, state.as_str()),
            Err(e) => tracing::error!("ending job {}: {e}", id.0),
        }
        // nobody listens without a refresher (`--status-interval 0`)
        let _ = self.ended.send(job.machines.clone());
    }

    /// Records a deploy or build job in the history (`carrier history`), as a CLI deploy
    /// or build is; the other kinds have no record there.
    async fn start_run(&self, job: &Job) -> Option<carrier_storage::RunId> {
        let kind = match job.kind {
            JobKind::Deploy => RunKind::Deploy,
            JobKind::Build => RunKind::Build,
            JobKind::GenerationRm | JobKind::NetbootRebuild => return None,
        };
        let request = &job.request;
        let text = |k: &str| request.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let run = NewRun {
            kind,
            user: job.requested_by.clone(),
            host: format!("carrier serve ({})", self.instance),
            selection: serde_json::json!({
                "pattern": request.get("pattern"),
                "tags": request.get("tags"),
            }),
            action: text("action").filter(|_| kind == RunKind::Deploy),
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
    async fn deploy(&self, job: &Job, sink: Arc<JobSink>) -> Result<Done, Failure> {
        let request: DeployRequest = read_request(job)?;
        let opts = request.options().map_err(|e| Failure::new(e.to_string()))?;
        let prepared = self.prepare(job, &request, false, sink.clone()).await?;
        // not build-only: there are targets
        let targets = prepared.targets.unwrap_or_default();
        let report = deploy::run(targets, &opts, self.ssh(), &*sink).await;
        // the configuration directory stays locked until the hosts are done
        drop(prepared.lock);
        let report_json = serde_json::to_value(&report).unwrap_or_default();
        Ok(Done { success: report.success(), report: report_json, end: Some(deploy_end(&report)) })
    }

    /// A build alone, as `carrier build` (`deploy::prepare` building only): a new local
    /// build generation of every machine.
    async fn build(&self, job: &Job, sink: Arc<JobSink>) -> Result<Done, Failure> {
        let request: DeployRequest = read_request(job)?;
        let prepared = self.prepare(job, &request, true, sink).await?;
        drop(prepared.lock);
        let built = prepared.artifacts.iter().map(|a| (a.machine.as_str(), a.generation.as_str()));
        let end = built_end(built);
        let report = serde_json::json!({ "machines": end.machines });
        Ok(Done { success: true, report, end: Some(end) })
    }

    /// The first half of a deploy or build: the machines as they are in the cluster now,
    /// the configuration's lock, a new build (or the generation asked for), the targets
    /// unless `build_only`. Off the async runtime.
    async fn prepare(
        &self,
        job: &Job,
        request: &DeployRequest,
        build_only: bool,
        sink: Arc<JobSink>,
    ) -> Result<deploy::Prepared, Failure> {
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
        let lock_wait = Timeouts::default().lock;
        let (prepared, cluster) = tokio::task::spawn_blocking(move || {
            let machines: Vec<_> = names.iter().filter_map(|n| cluster.get(n)).collect();
            let prepared = deploy::prepare(
                &conf_dir,
                &cluster,
                &machines,
                generation.as_deref(),
                build_only,
                &build,
                lock_wait,
                &*sink,
            );
            (prepared, cluster)
        })
        .await
        .map_err(|e| Failure::new(format!("the deploy task failed: {e}")))?;
        drop(cluster);
        prepared.map_err(|e| Failure {
            phase: e.phase(),
            message: self.conf_dir.relative_message(&e.to_string()),
        })
    }

    /// Removes one remote generation of one machine as `carrier generation rm -r
    /// <machine> <N>` does (one `carrier profile delete-generations` on a carrier, so one
    /// netboot rebuild by its hooks), without garbage collection. The generation is read
    /// again first: one that became current meanwhile is refused.
    async fn remove_generation(&self, job: &Job, sink: &JobSink) -> Result<Done, Failure> {
        let request: GenerationRmRequest = read_request(job)?;
        let loaded = self.inventory.load().await.map_err(|e| Failure::new(e.to_string()))?;
        let cluster = &loaded.cluster;
        let m = cluster.get(&request.machine).ok_or_else(|| {
            Failure::new(format!("no longer in the cluster: {}", request.machine))
        })?;
        let phase = Phase::Generations;
        sink.emit(Event::PhaseStarted { phase, machines: 1 });
        let hosts = self.connections()?;
        let removed = async {
            let record =
                generation::remote_generation(cluster, m, &hosts, request.generation).await?;
            let on_line =
                |line: String| sink.emit(Event::Log { phase, machine: Some(m.name.clone()), line });
            let roots = carrier_core::build::default_gc_roots_dir(&self.conf_dir);
            let no_gc = generation::Gc { on: &|_| false, max_concurrent: 1 };
            generation::remove(cluster, &self.conf_dir, &roots, &hosts, &[&record], no_gc, &on_line)
                .await
        }
        .await;
        hosts.close().await;
        let error = match removed {
            Ok(r) if r.success() => None,
            Ok(r) => Some(r.errors.join("; ")),
            Err(e) => Some(e.to_string()),
        };
        let report = serde_json::json!({ "machines": [{
            "machine": m.name,
            "generation": request.generation,
            "state": if error.is_none() { "removed" } else { "failed" },
            "phase": phase,
            "error": error,
        }]});
        finish_step(sink, phase, &m.name, error, report)
    }

    /// `carrier netboot build --json` on the carrier: its summary as the log (each machine
    /// left out, each warning a notice); succeeded when the trees were published, even
    /// with machines left out; failed when the command fails.
    async fn rebuild_netboot(&self, job: &Job, sink: &JobSink) -> Result<Done, Failure> {
        let request: NetbootRebuildRequest = read_request(job)?;
        let loaded = self.inventory.load().await.map_err(|e| Failure::new(e.to_string()))?;
        let carrier = loaded.cluster.get(&request.carrier).ok_or_else(|| {
            Failure::new(format!("no longer in the cluster: {}", request.carrier))
        })?;
        let host = carrier.target_host().ok_or_else(|| {
            Failure::new(format!("{} has no SSH target (host.target is null)", carrier.name))
        })?;
        let phase = Phase::Netboot;
        sink.emit(Event::PhaseStarted { phase, machines: 1 });
        let hosts = self.connections()?;
        let built = async {
            let h = hosts.open(host, carrier.target_port()).await?;
            netboot::build_on(h.as_ref()).await
        }
        .await;
        hosts.close().await;
        let machine = Some(carrier.name.clone());
        let (error, report) = match built {
            Ok(report) => {
                let summary = report.summary();
                let mut lines = summary.lines();
                if let Some(first) = lines.next() {
                    let line = first.to_string();
                    sink.emit(Event::Log { phase, machine: machine.clone(), line });
                }
                for line in lines {
                    let line = line.trim_start().trim_start_matches("- ").to_string();
                    sink.emit(Event::Notice { phase, machine: machine.clone(), line });
                }
                (None, serde_json::to_value(&report).unwrap_or_default())
            }
            Err(e) => (Some(e.to_string()), serde_json::Value::Null),
        };
        finish_step(sink, phase, &carrier.name, error, report)
    }

    /// The hosts' SSH settings, as for `carrier deploy`.
    fn ssh(&self) -> SshSettings {
        SshSettings { config_file: self.ssh_config.clone(), connect_timeout: None }
    }

    /// Connections for one job, with `carrier deploy`'s command deadline.
    fn connections(&self) -> Result<Connections, Failure> {
        Connections::new(self.ssh(), Timeouts::default().command)
            .map_err(|e| Failure::new(format!("preparing SSH connections: {e}")))
    }
}

/// The runtime of the server's background work, jobs and the status refresher's readings:
/// its threads run `nice` below the server's priority (`--background-nice`), and so do the
/// processes they start (Nix evaluations and builds, copies, ssh), so that the pages keep
/// their share of the CPU while jobs build and deploy. It lives as long as the process,
/// driven by a thread of its own.
pub fn background_runtime(nice: i32) -> std::io::Result<Handle> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("carrier-bg")
        .on_thread_start(move || lower_priority(nice))
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new().name("carrier-bg".into()).spawn(move || {
        lower_priority(nice);
        runtime.block_on(std::future::pending::<()>());
    })?;
    Ok(handle)
}

/// Adds `nice` to the calling thread's nice value (Linux: a per-thread value, inherited by
/// the threads and processes it starts). Failing leaves the priority as it was.
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: plain system calls on the calling thread's own id, no memory involved
    let done = unsafe {
        let tid = libc::gettid() as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (now + nice).clamp(-20, 19))
    };
    if done != 0 {
        tracing::warn!(
            "background work keeps the server's priority: setpriority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Ends the one step of a generation removal or netboot rebuild: its machine's
/// outcome and the phase's end as events; the job done, or failed with `error`.
fn finish_step(
    sink: &JobSink,
    phase: Phase,
    machine: &str,
    error: Option<String>,
    report: serde_json::Value,
) -> Result<Done, Failure> {
    let outcome = match &error {
        None => Outcome::Ok,
        Some(error) => Outcome::Failed { error: error.clone() },
    };
    sink.emit(Event::MachineFinished { phase, machine: machine.to_string(), outcome });
    sink.emit(Event::PhaseFinished { phase });
    match error {
        None => Ok(Done { success: true, report, end: None }),
        Some(message) => Err(Failure { phase: Some(phase), message }),
    }
}

/// The job's request as its kind stores it.
fn read_request<T: serde::de::DeserializeOwned>(job: &Job) -> Result<T, Failure> {
    serde_json::from_value(job.request.clone())
        .map_err(|e| Failure::new(format!("the job's request cannot be read: {e}")))
}

/// How a job's work ended (short of failing as a whole).
struct Done {
    success: bool,
    /// Kept with the job: each machine's outcome.
    report: serde_json::Value,
    /// The end of its history record (deploys and builds).
    end: Option<RunEnd>,
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
