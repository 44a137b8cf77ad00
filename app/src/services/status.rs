//! The status page's data (docs/status.md, "The status page"): the latest reading of every
//! machine, kept by `carrier serve`'s background refresher on the board, joined with the
//! last recorded build or deploy of each machine. A page never reads a host itself.

use std::collections::BTreeMap;
use std::sync::RwLock;

use carrier_core::carrier::netboot::LastBuild;
use carrier_core::cluster::Cluster;
use carrier_core::status::{CarrierRead, MachineStatus, State, StatusReport};
use carrier_storage::Store;

use super::access::internal;
use crate::error::AppError;
use crate::model::{
    PER_PAGE, StatusGroup, StatusQuery, StatusRow, StatusView, age, page_count, page_number,
};

/// The latest reading, shared by the refresher (writer) and the pages (readers).
#[derive(Default)]
pub struct StatusBoard(RwLock<Board>);

#[derive(Default)]
struct Board {
    report: Option<(jiff::Timestamp, StatusReport)>,
    error: Option<String>,
}

impl StatusBoard {
    pub fn set(&self, report: StatusReport) {
        let mut board = self.0.write().expect("status board lock");
        board.report = Some((jiff::Timestamp::now(), report));
        board.error = None;
    }

    /// A reading of some machines (a job's): their statuses, and the carriers read with
    /// them, replace the board's; the others stay as last read. Before the first whole
    /// reading, it is the board.
    pub fn update(&self, part: StatusReport) {
        let mut board = self.0.write().expect("status board lock");
        let Some((_, report)) = board.report.as_mut() else {
            board.report = Some((jiff::Timestamp::now(), part));
            return;
        };
        for m in part.machines {
            match report.machines.iter_mut().find(|old| old.machine == m.machine) {
                Some(old) => *old = m,
                None => report.machines.push(m),
            }
        }
        for c in part.carriers {
            match report.carriers.iter_mut().find(|old| old.carrier == c.carrier) {
                Some(old) => *old = c,
                None => report.carriers.push(c),
            }
        }
    }

    /// The reading failed as a whole (the cluster does not evaluate, say): the last good
    /// reading stays, with the error beside it.
    pub fn failed(&self, error: String) {
        self.0.write().expect("status board lock").error = Some(error);
    }
}

impl StatusBoard {
    /// Machines per state and when the hosts were last read (epoch seconds), for
    /// `/metrics`; `None` before the first reading.
    pub fn counts(&self) -> Option<(i64, Vec<(&'static str, usize)>)> {
        let board = self.0.read().expect("status board lock");
        let (at, report) = board.report.as_ref()?;
        let counts = ORDER
            .iter()
            .map(|s| (s.as_str(), report.machines.iter().filter(|m| m.state == *s).count()))
            .collect();
        Some((at.as_second(), counts))
    }
}

impl StatusBoard {
    /// What the latest reading says `machine` runs (standalone: the current system;
    /// carried: the staged generation) and its state; `None` when it was not read.
    pub fn now(&self, machine: &str) -> Option<String> {
        let board = self.0.read().expect("status board lock");
        let (_, report) = board.report.as_ref()?;
        let m = report.machines.iter().find(|m| m.machine == machine)?;
        let what = match (&m.system, &m.carried) {
            (Some(system), _) => system.current.as_ref().map(|p| p.display().to_string()),
            (None, Some(c)) => c
                .staged
                .as_ref()
                .map(|g| format!("generation {}: {}", g.number, g.store_path.display())),
            (None, None) => None,
        };
        Some(match what {
            Some(what) => format!("{what} ({})", m.state.as_str()),
            None => m.state.as_str().to_string(),
        })
    }

    /// Each carrier's last netboot build by the latest reading (for `/metrics`).
    pub fn netboot_builds(&self) -> Vec<(String, LastBuild)> {
        let board = self.0.read().expect("status board lock");
        let carriers = board.report.iter().flat_map(|(_, report)| &report.carriers);
        carriers.filter_map(|c| Some((c.carrier.clone(), c.netboot.clone()?))).collect()
    }

    /// What the latest reading says `carrier` holds: when it was read, its contents (None
    /// when the reading did not reach it) and the error of the whole reading.
    pub fn carrier(&self, carrier: &str) -> (Option<String>, Option<CarrierRead>, Option<String>) {
        let board = self.0.read().expect("status board lock");
        let (at, read) = match &board.report {
            Some((at, report)) => (
                Some(read_time(at)),
                report.carriers.iter().find(|c| c.carrier == carrier).cloned(),
            ),
            None => (None, None),
        };
        (at, read, board.error.clone())
    }
}

/// Most urgent first.
const ORDER: [State; 10] = [
    State::Unreachable,
    State::Foreign,
    State::Outdated,
    State::NotStaged,
    State::BootedOlder,
    State::RebootPending,
    State::StagedNotBooted,
    State::Unknown,
    State::Staged,
    State::UpToDate,
];

/// The status page of `state`'s board for `query`, with the cluster's tags (none while it
/// does not evaluate).
pub async fn page(state: &super::AppState, query: &StatusQuery) -> Result<StatusView, AppError> {
    let wanted = match query.state.trim() {
        "" => None,
        name => Some(ORDER.into_iter().find(|s| s.as_str() == name).ok_or_else(|| {
            let names: Vec<&str> = ORDER.iter().map(|s| s.as_str()).collect();
            AppError::BadInput(format!("state: '{name}' is not one of {}", names.join(", ")))
        })?),
    };
    let page = page_number(&query.page).map_err(AppError::BadInput)?;
    let loaded = state.inventory.load().await.ok();
    let cluster = loaded.as_ref().map(|l| &*l.cluster);
    view(&state.status, &state.access.store, cluster, wanted, query.tag.trim(), page).await
}

/// The carrier of a carried machine; standalone machines (`None`) sort first.
fn carrier_of(m: &MachineStatus) -> Option<&str> {
    m.carried.as_ref().map(|c| c.carrier.as_str())
}

/// When the board was read, to the second.
fn read_time(at: &jiff::Timestamp) -> String {
    at.round(jiff::Unit::Second).unwrap_or(*at).to_string()
}

/// The page: counts by state, then one page of the machines in `wanted` (or all), grouped
/// by carrier, each with its last deploy.
async fn view(
    board: &StatusBoard,
    store: &Store,
    cluster: Option<&Cluster>,
    wanted: Option<State>,
    tag: &str,
    page: usize,
) -> Result<StatusView, AppError> {
    let tags = |machine: &str| -> &[String] {
        cluster.and_then(|c| c.get(machine)).map_or(&[], |m| &m.meta_config.tags)
    };
    let (read_at, counts, matched, machines, error) = {
        let board = board.0.read().expect("status board lock");
        let (at, all): (_, &[MachineStatus]) = match &board.report {
            Some((at, report)) => (Some(read_time(at)), &report.machines),
            None => (None, &[]),
        };
        let tagged =
            |m: &&MachineStatus| tag.is_empty() || tags(&m.machine).iter().any(|t| t == tag);
        let all: Vec<&MachineStatus> = all.iter().filter(tagged).collect();
        let mut counts: Vec<(String, usize)> = ORDER
            .iter()
            .map(|s| (s.as_str().to_string(), all.iter().filter(|m| m.state == *s).count()))
            .filter(|(_, n)| *n > 0)
            .collect();
        counts.insert(0, ("machines".into(), all.len()));
        let mut selected: Vec<&MachineStatus> =
            all.iter().copied().filter(|m| wanted.is_none_or(|w| m.state == w)).collect();
        // stable: within a group, the reading's order
        selected.sort_by(|a, b| carrier_of(a).cmp(&carrier_of(b)));
        let matched = selected.len();
        let machines: Vec<MachineStatus> =
            selected.into_iter().skip((page - 1) * PER_PAGE).take(PER_PAGE).cloned().collect();
        (at, counts, matched, machines, board.error.clone())
    };
    let pages = page_count(matched);
    if page > pages {
        return Err(AppError::BadInput(format!(
            "invalid page '{page}': there are {pages} page(s)"
        )));
    }
    let names: Vec<&str> = machines.iter().map(|m| m.machine.as_str()).collect();
    let runs = store.runs(&|m| names.contains(&m), 500).await.map_err(internal)?;
    let mut last: BTreeMap<String, (String, String)> = BTreeMap::new();
    for run in runs {
        for m in run.machines {
            let outcome = match (&m.phase, &m.error) {
                (Some(phase), Some(e)) => format!("{} ({phase}: {e})", m.state),
                (None, Some(e)) => format!("{} ({e})", m.state),
                _ => m.state.clone(),
            };
            last.entry(m.machine).or_insert_with(|| (run.started_at.clone(), outcome));
        }
    }
    let now = jiff::Timestamp::now().as_second();
    let mut groups: Vec<StatusGroup> = Vec::new();
    for m in &machines {
        let name = match carrier_of(m) {
            Some(carrier) => format!("carried by {carrier}"),
            None => "standalone".to_string(),
        };
        let row = row(m, now, tags(&m.machine).to_vec(), last.get(&m.machine));
        match groups.last_mut() {
            Some(g) if g.name == name => g.machines.push(row),
            _ => groups.push(StatusGroup { name, machines: vec![row] }),
        }
    }
    Ok(StatusView {
        state: wanted.map(|s| s.as_str().to_string()).unwrap_or_default(),
        tag: tag.to_string(),
        matched,
        page,
        pages,
        read_at,
        error,
        counts,
        groups,
    })
}

fn row(
    m: &MachineStatus,
    now: i64,
    tags: Vec<String>,
    last: Option<&(String, String)>,
) -> StatusRow {
    let current = match (&m.system, &m.carried) {
        (Some(system), _) => system.current.as_ref().map(|p| p.display().to_string()),
        (None, Some(c)) => c.staged.as_ref().map(|s| format!("generation {}", s.number)),
        _ => None,
    };
    let booted = m
        .carried
        .as_ref()
        .and_then(|c| c.booted.as_ref())
        .map(|b| format!("generation {}", b.generation));
    StatusRow {
        machine: m.machine.clone(),
        state: m.state.as_str().to_string(),
        tags,
        desired: m.desired.as_ref().map(|d| d.generation.clone()),
        current,
        booted,
        drift: m.drift_since.map(|t| age((now - t).max(0) as f64)),
        detail: m.detail.clone(),
        last_deploy: last.cloned(),
    }
}

#[cfg(test)]
mod tests {
    use crate::model::age;

    #[test]
    fn ages_read_like_upstream_uptimes() {
        assert_eq!(age(30.0), "30.0s");
        assert_eq!(age(720.0), "12.0m");
        assert_eq!(age(18000.0), "5.0h");
        assert_eq!(age(3.2 * 86400.0), "3.2d");
    }
}
