//! `carrier test-connection [pattern]`: reads every selected runnable machine's uptime
//! over SSH at once and says, per machine, reachable (with the uptime) or why not;
//! then upstream's `Result: N successful, M failed` and the failed machines.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use carrier_core::remote::probe::probe_all;
use carrier_core::remote::{Connections, Destination, Hosts, SshSettings};

use crate::cli::{GlobalArgs, TestConnectionArgs};

pub fn run(global: &GlobalArgs, args: TestConnectionArgs) -> anyhow::Result<ExitCode> {
    let selection = args.select.selection()?;
    let conf_dir = global.conf_dir()?;
    let loaded = global.inventory()?.load(&conf_dir)?;
    let selected = selection.select(&loaded.cluster)?;
    let (runnable, not): (Vec<_>, Vec<_>) = selected.into_iter().partition(|m| m.is_runnable());
    for m in &not {
        let why = if m.is_carried() {
            "a carried machine is reached only through its carrier: test the carrier"
        } else {
            "it has no ssh target"
        };
        eprintln!("skipping {}: {why}", m.name);
    }
    if runnable.is_empty() {
        bail!(
            "no runnable machines selected (carried machines and machines without a target are not)"
        );
    }
    let probes: Vec<Destination> =
        runnable.iter().filter_map(|m| Destination::of(m).ok()).collect();
    let limit = Duration::from_secs(args.timeout);
    let ssh = SshSettings { config_file: args.ssh_config.clone(), connect_timeout: Some(limit) };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let results = runtime.block_on(async {
        let hosts = Connections::new(ssh, limit)?;
        let results = probe_all(&probes, &hosts, limit).await;
        hosts.close().await;
        anyhow::Ok(results)
    })?;
    let mut out = std::io::stdout().lock();
    let mut failed = Vec::new();
    for (machine, result) in &results {
        match result {
            Ok(uptime) => writeln!(out, "{machine}: reachable (up {uptime:.0} s)")?,
            Err(e) => {
                writeln!(out, "{machine}: unreachable: {e}")?;
                failed.push(machine.as_str());
            }
        }
    }
    writeln!(out, "Result: {} successful, {} failed", results.len() - failed.len(), failed.len())?;
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "Failed machines:")?;
    for machine in failed {
        writeln!(out, "  {machine}")?;
    }
    Ok(ExitCode::FAILURE)
}
