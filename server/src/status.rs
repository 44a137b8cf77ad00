//! `carrier status [pattern]`: selection, then carrier-core's status reader; a table with
//! one state per machine and the age of any drift, or JSON.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use app::services::InventoryService;
use app::services::status::StatusBoard;
use carrier_core::cluster::{Cluster, Machine};
use carrier_core::conf_dir::ConfDir;
use carrier_core::profile_name::ProfileName;
use carrier_core::remote::SshSettings;
use carrier_core::status::{self, Booted, Kind, MachineStatus, StatusTarget};
use carrier_storage::{Checkin, Store, StoreError};

use crate::cli::{GlobalArgs, StatusArgs};
use app::model::age;

pub fn run(global: &GlobalArgs, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let selection = args.select.selection()?;
    let conf_dir = global.conf_dir()?;
    let loaded = global.inventory()?.load(&conf_dir)?;
    let machines: Vec<_> =
        selection.select(&loaded.cluster)?.into_iter().filter(|m| status::selectable(m)).collect();
    if machines.is_empty() {
        bail!("no machines to check (managed machines with a target, and carried machines)");
    }
    let timeout = Duration::from_secs(args.timeout);
    let ssh = SshSettings { config_file: args.ssh_config.clone(), connect_timeout: Some(timeout) };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let needs_checkins = machines.iter().any(|m| m.is_carried());
    let checkins = match needs_checkins.then(|| runtime.block_on(latest_checkins(global))) {
        Some(Ok(checkins)) => checkins,
        // the hosts still say what is staged
        Some(Err(e)) => {
            eprintln!("warning: check-ins not read, booted state unknown: {e}");
            Vec::new()
        }
        None => Vec::new(),
    };
    let targets =
        targets(&conf_dir, &loaded.cluster, &machines, args.generation.as_deref(), &checkins)?;
    let report = runtime.block_on(status::read(&targets, ssh, timeout))?;
    if args.json {
        crate::json::print(&report)?;
    } else {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let rows: Vec<[String; 6]> = report.machines.iter().map(|m| row(m, now)).collect();
        let header =
            ["MACHINE", "STATE", "DRIFT", "UPTIME", "GENERATION", "DETAIL"].map(String::from);
        let mut widths = header.clone().map(|h| h.len());
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for r in std::iter::once(&header).chain(&rows) {
            let cells: Vec<String> =
                r.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
            writeln!(out, "{}", cells.join("  ").trim_end())?;
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What status reads for `machines` (against `generation`, default each one's current
/// build generation), with the check-ins given: `carrier status` and the dashboard's
/// refresher. Reads the local build generations: blocking.
pub fn targets(
    conf_dir: &ConfDir,
    cluster: &Cluster,
    machines: &[&Machine],
    generation: Option<&str>,
    checkins: &[Checkin],
) -> anyhow::Result<Vec<StatusTarget>> {
    let mut targets = status::targets(conf_dir, cluster, machines, generation)?;
    add_checkins(&mut targets, checkins);
    Ok(targets)
}

/// Keeps the dashboard's status board fresh (docs/status.md, "The status page"): reads
/// every machine `carrier status` looks at at start and every `interval`, and the
/// machines of each job that ended (told by the job runner) right after it; never from a
/// request.
pub struct Refresher {
    pub board: Arc<StatusBoard>,
    pub inventory: Arc<InventoryService>,
    pub store: Store,
    pub ssh_config: Option<PathBuf>,
    pub interval: Duration,
    pub jobs_ended: tokio::sync::mpsc::UnboundedReceiver<Vec<String>>,
}

impl Refresher {
    /// Reads on `background`, the runtime of background work (`jobs::background_runtime`).
    pub fn spawn(mut self, background: &tokio::runtime::Handle) {
        background.spawn(async move {
            let mut next = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {
                        self.refresh(None).await;
                        next = tokio::time::Instant::now() + self.interval;
                    }
                    Some(mut machines) = self.jobs_ended.recv() => {
                        // the jobs that ended meanwhile, read together
                        while let Ok(more) = self.jobs_ended.try_recv() {
                            machines.extend(more);
                        }
                        self.refresh(Some(machines)).await;
                    }
                }
            }
        });
    }

    /// Reads every machine, or `only` those (a job's; a carried machine through its
    /// carrier, whose contents are read with it), and puts the result on the board.
    async fn refresh(&self, only: Option<Vec<String>>) {
        let loaded = match self.inventory.load().await {
            Ok(loaded) => loaded,
            Err(e) => return self.board.failed(e.to_string()),
        };
        let checkins = self.store.latest_checkins().await.unwrap_or_else(|e| {
            tracing::warn!("check-ins not read, booted state unknown: {e}");
            Vec::new()
        });
        let timeout = Duration::from_secs(10);
        let ssh =
            SshSettings { config_file: self.ssh_config.clone(), connect_timeout: Some(timeout) };
        let conf_dir = self.inventory.conf_dir().clone();
        // the local build generations are files: read off the async runtime
        let cluster = loaded.cluster.clone();
        let dir = conf_dir.clone();
        let wanted = only.clone();
        let found = tokio::task::spawn_blocking(move || {
            let machines: Vec<&Machine> = cluster
                .machines
                .iter()
                .filter(|m| status::selectable(m))
                .filter(|m| wanted.as_ref().is_none_or(|w| w.contains(&m.name)))
                .collect();
            targets(&dir, &cluster, &machines, None, &checkins)
        })
        .await;
        let read = match found {
            Ok(Ok(targets)) => status::read(&targets, ssh, timeout).await.map_err(Into::into),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("reading the build generations: {e}")),
        };
        match (read, only) {
            (Ok(report), None) => self.board.set(report),
            (Ok(report), Some(_)) => self.board.update(report),
            (Err(e), _) => {
                let message = conf_dir.relative_message(&format!("{e:#}"));
                tracing::warn!("status not read: {message}");
                self.board.failed(message);
            }
        }
    }
}

/// The latest check-in per (carrier, machine); none when nothing was ever recorded here
/// (no database is created just to say so).
async fn latest_checkins(global: &GlobalArgs) -> Result<Vec<Checkin>, StoreError> {
    if global.database_url.is_none() && !crate::history::default_file(global).exists() {
        return Ok(Vec::new());
    }
    let store = Store::open(&global.database_url()).await?;
    let checkins = store.latest_checkins().await;
    store.close().await;
    checkins
}

/// Gives each carried target its latest check-in: the carrier's name and the carried
/// profile's name (the netboot tree's machine name) identify it.
fn add_checkins(targets: &mut [StatusTarget], checkins: &[Checkin]) {
    for t in targets {
        let Kind::Carried { carrier, profile } = &t.kind else { continue };
        let Some(name) = profile.rsplit('/').next().and_then(ProfileName::from_file_name) else {
            continue;
        };
        let found = checkins.iter().find(|c| c.carrier == *carrier && c.machine == name.as_str());
        t.checkin = found.map(|c| Booted {
            generation: c.generation,
            store_path: None,
            time: c.received_at.parse::<jiff::Timestamp>().map_or(0, |t| t.as_second()),
            mac: c.mac.clone(),
        });
    }
}

/// machine, state, age of the drift, uptime, the generation compared with, detail.
fn row(m: &MachineStatus, now: i64) -> [String; 6] {
    let drift = m.drift_since.map(|t| age((now - t).max(0) as f64)).unwrap_or_default();
    let uptime = m.system.as_ref().and_then(|s| s.uptime).map(age).unwrap_or_default();
    let generation = m.desired.as_ref().map(|d| d.generation.clone()).unwrap_or_default();
    [
        m.machine.clone(),
        m.state.as_str().to_string(),
        drift,
        uptime,
        generation,
        m.detail.clone().unwrap_or_default(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A carried target gets the check-in of its carrier and profile name only.
    #[test]
    fn each_carried_machine_gets_its_own_checkin() {
        let target = |kind| StatusTarget {
            machine: "m".into(),
            host: "h".into(),
            port: 22,
            kind,
            desired: None,
            built: Vec::new(),
            checkin: None,
        };
        let carried = |carrier: &str, alias: &str| {
            target(Kind::Carried {
                carrier: carrier.into(),
                profile: ProfileName::for_alias(alias).path(),
            })
        };
        let mut targets =
            [carried("pxe", "prg/node1"), carried("pxe2", "prg/node1"), target(Kind::Standalone)];
        let checkin = |carrier: &str, machine: &str, generation| Checkin {
            received_at: "2026-12-03T12:00:00Z".into(),
            carrier: carrier.into(),
            machine: machine.into(),
            generation,
            mac: "52:54:00:12:34:56".into(),
            cmdline: String::new(),
            source: "10.0.2.15".into(),
        };
        add_checkins(
            &mut targets,
            &[checkin("pxe", "prg:node1", 2), checkin("pxe3", "prg:node1", 9)],
        );
        assert_eq!(
            targets[0].checkin,
            Some(Booted {
                generation: 2,
                store_path: None,
                time: 1_796_299_200,
                mac: "52:54:00:12:34:56".into()
            })
        );
        assert_eq!(targets[1].checkin, None, "another carrier's machine of the same name");
        assert_eq!(targets[2].checkin, None);
    }
}
