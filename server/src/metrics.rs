//! `GET /metrics`: Prometheus' text format (docs/metrics.md), readers only (a
//! scraper sends a viewer's API token). Everything is read when scraped, from the
//! database (jobs, check-ins) and the status board; nothing is counted in memory, so
//! every instance sharing a database answers the same.

use std::fmt::Write;
use std::sync::Arc;

use app::services::status::StatusBoard;
use app::services::{Caller, Permission};
use axum::Router;
use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use carrier_core::carrier::netboot::{LastBuild, LastOutcome};
use carrier_storage::{JobFilter, JobState, Store};

#[derive(Clone)]
pub struct Metrics {
    pub store: Store,
    pub board: Arc<StatusBoard>,
}

pub fn router(metrics: Metrics) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state(metrics)
}

/// Finished jobs whose durations the summary covers (the newest).
const RECENT: i64 = 1000;

async fn scrape(State(m): State<Metrics>, Extension(caller): Extension<Caller>) -> Response {
    if let Err(e) = caller.require(Permission::ReadInventory) {
        return (app::services::status_of(&e), e.to_string()).into_response();
    }
    match render(&m).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
            .into_response(),
        Err(e) => {
            tracing::error!("metrics: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn render(m: &Metrics) -> Result<String, carrier_storage::StoreError> {
    let mut out = String::new();
    let counts = m.store.job_counts().await?;
    out.push_str("# HELP carrier_jobs Jobs by state.\n# TYPE carrier_jobs gauge\n");
    for state in [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
        JobState::Interrupted,
    ] {
        let n = counts.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "carrier_jobs{{state=\"{}\"}} {n}", state.as_str());
    }
    let mut durations: Vec<(JobState, f64)> = Vec::new();
    for job in m.store.jobs(&JobFilter::default(), RECENT).await? {
        let (Some(start), Some(end)) = (&job.started_at, &job.finished_at) else { continue };
        let (Ok(start), Ok(end)) =
            (start.parse::<jiff::Timestamp>(), end.parse::<jiff::Timestamp>())
        else {
            continue;
        };
        durations.push((job.state, (end.as_second() - start.as_second()).max(0) as f64));
    }
    out.push_str(&format!(
        "# HELP carrier_job_duration_seconds Run time of the newest {RECENT} finished jobs, by \
         final state.\n# TYPE carrier_job_duration_seconds summary\n"
    ));
    for state in [JobState::Succeeded, JobState::Failed, JobState::Cancelled, JobState::Interrupted]
    {
        let of: Vec<f64> = durations.iter().filter(|(s, _)| *s == state).map(|(_, d)| *d).collect();
        let label = state.as_str();
        let _ = writeln!(
            out,
            "carrier_job_duration_seconds_sum{{state=\"{label}\"}} {}",
            of.iter().sum::<f64>()
        );
        let _ =
            writeln!(out, "carrier_job_duration_seconds_count{{state=\"{label}\"}} {}", of.len());
    }
    let checkins = m.store.checkin_count().await?;
    out.push_str("# HELP carrier_checkins_total Check-ins of netbooted machines accepted.\n");
    out.push_str("# TYPE carrier_checkins_total counter\n");
    let _ = writeln!(out, "carrier_checkins_total {checkins}");
    if let Some((read_at, states)) = m.board.counts() {
        out.push_str("# HELP carrier_machines Machines by status, from the latest reading.\n");
        out.push_str("# TYPE carrier_machines gauge\n");
        for (state, n) in states {
            let _ = writeln!(out, "carrier_machines{{status=\"{state}\"}} {n}");
        }
        out.push_str(
            "# HELP carrier_status_read_timestamp_seconds When the hosts were last read.\n",
        );
        out.push_str("# TYPE carrier_status_read_timestamp_seconds gauge\n");
        let _ = writeln!(out, "carrier_status_read_timestamp_seconds {read_at}");
    }
    netboot(&mut out, &m.board.netboot_builds());
    Ok(out)
}

/// The carriers' last netboot builds, as the latest reading found them: when each ended,
/// how long it took, whether it failed and how many machines it left out. (A rebuild
/// shows as a change of its timestamp: `changes()` counts them.)
fn netboot(out: &mut String, builds: &[(String, LastBuild)]) {
    if builds.is_empty() {
        return;
    }
    type Gauge = (&'static str, &'static str, fn(&LastBuild) -> f64);
    let gauges: [Gauge; 4] = [
        (
            "carrier_netboot_last_build_timestamp_seconds",
            "When the last netboot build ended.",
            |b| b.finished_at.parse::<jiff::Timestamp>().map_or(0.0, |t| t.as_second() as f64),
        ),
        (
            "carrier_netboot_last_build_duration_seconds",
            "How long the last netboot build took.",
            |b| b.seconds,
        ),
        ("carrier_netboot_last_build_failed", "1 when the last netboot build failed.", |b| {
            f64::from(u8::from(matches!(b.outcome, LastOutcome::Err(_))))
        }),
        ("carrier_netboot_left_out", "Machines the last netboot build left out.", |b| {
            match &b.outcome {
                LastOutcome::Ok(r) => r.faults.iter().filter(|f| f.left_out).count() as f64,
                LastOutcome::Err(_) => 0.0,
            }
        }),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (carrier, last) in builds {
            let _ = writeln!(out, "{name}{{carrier=\"{}\"}} {}", label(carrier), value(last));
        }
    }
}

/// A label value escaped as the text format wants it.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
