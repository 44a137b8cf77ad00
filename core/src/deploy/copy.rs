//! The copy phase (spec 2.2): each target's closure copied to its host
//! ([`Host::copy_closure`]), at most `max_concurrent` at a time, in the interleaved order
//! of [`super::plan::copy_order`]. Each copy has a deadline.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::plan::Target;
use crate::events::{Event, EventSink, Phase};
use crate::remote::{CopyEvent, Host, HostError, Hosts};

/// Copies every target's paths; returns per target how its copy ended.
pub async fn copy_all<'t>(
    targets: &[&'t Target],
    paths: impl Fn(&Target) -> Vec<PathBuf>,
    hosts: &impl Hosts,
    max_concurrent: usize,
    limit: Duration,
    sink: &dyn EventSink,
) -> Vec<(&'t Target, Result<(), HostError>)> {
    let semaphore = &Semaphore::new(max_concurrent.max(1));
    let jobs = targets.iter().map(|&t| {
        let paths = paths(t);
        async move {
            let _permit = semaphore.acquire().await.expect("semaphore open");
            (t, copy_one(t, &paths, hosts, limit, sink).await)
        }
    });
    futures::future::join_all(jobs).await
}

async fn copy_one(
    t: &Target,
    paths: &[PathBuf],
    hosts: &impl Hosts,
    limit: Duration,
    sink: &dyn EventSink,
) -> Result<(), HostError> {
    let host = hosts.open(&t.host, t.port).await?;
    let machine = || Some(t.machine.clone());
    let on_event = |event| match event {
        CopyEvent::Copied { done, expected } => sink.emit(Event::Progress {
            phase: Phase::Copy,
            machine: machine(),
            done,
            expected,
            bytes: 0,
        }),
        CopyEvent::Log(line) => {
            sink.emit(Event::Log { phase: Phase::Copy, machine: machine(), line })
        }
    };
    host.copy_closure(paths, limit, &on_event).await
}
