//! The copy phase (spec 2.2): `nix-copy-closure --to <host> <paths>` per target, at most
//! `max_concurrent` at a time, in the interleaved order of [`super::plan::copy_order`].
//! The ssh that Nix starts goes through the run's own connection to the host. Each copy
//! has a deadline; a copy still running then is killed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::sync::Semaphore;

use super::plan::Target;
use super::remote::{Connections, failure_message};
use crate::events::{Event, EventSink, Phase};

/// Copies every target's paths; returns per machine the error of a failed copy.
pub async fn copy_all(
    targets: &[&Target],
    paths: impl Fn(&Target) -> Vec<PathBuf>,
    connections: &Connections,
    max_concurrent: usize,
    limit: Duration,
    sink: &dyn EventSink,
) -> Vec<(String, Result<(), String>)> {
    let semaphore = Arc::new(Semaphore::new(max_concurrent.max(1)));
    let jobs = targets.iter().map(|t| {
        let semaphore = semaphore.clone();
        let paths = paths(t);
        async move {
            let _permit = semaphore.acquire().await.expect("semaphore open");
            let result = match tokio::time::timeout(limit, copy_one(t, &paths, connections, sink)).await {
                Ok(result) => result,
                // kill_on_drop: nix-copy-closure is killed; the ssh it started ends when its pipes close
                Err(_) => Err(format!("copy to {} did not finish within {} s and was stopped", t.host, limit.as_secs())),
            };
            (t.machine.clone(), result)
        }
    });
    futures::future::join_all(jobs).await
}

async fn copy_one(t: &Target, paths: &[PathBuf], connections: &Connections, sink: &dyn EventSink) -> Result<(), String> {
    if t.is_local() {
        return Ok(());
    }
    let remote = connections.get(&t.host, t.port).await.map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new("nix-copy-closure");
    cmd.arg("--to").arg(&t.host).args(paths);
    cmd.env("NIX_SSHOPTS", connections.nix_sshopts(&remote, t.port));
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("running nix-copy-closure: {e}"))?;
    let stderr = child.stderr.take().expect("piped");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let (mut done, mut expected) = (0u64, 0u64);
    let mut log = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(n) = line.trim().strip_prefix("copying ").and_then(|r| r.strip_suffix(" paths...")) {
            expected = n.trim().parse().unwrap_or(expected);
        } else if line.trim_start().starts_with("copying path ") {
            done += 1;
            sink.emit(Event::Progress {
                phase: Phase::Copy,
                machine: Some(t.machine.clone()),
                done,
                expected: expected.max(done),
                bytes: 0,
            });
        }
        sink.emit(Event::Log { phase: Phase::Copy, machine: Some(t.machine.clone()), line: line.clone() });
        log.push(line);
    }
    let out = child.wait_with_output().await.map_err(|e| format!("waiting for nix-copy-closure: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let out = std::process::Output { status: out.status, stdout: out.stdout, stderr: log.join("\n").into_bytes() };
        Err(format!("copy to {} failed: {}", t.host, failure_message(&out)))
    }
}
