//! `carrier health-check [pattern]`: runs the selected machines' health checks (the
//! deploy engine's, `deploy::health`) against what they run now, without deploying;
//! each check's outcome, upstream's `N checks passed, M failed` and the failures per
//! machine (or JSON). Exits non-zero when a check failed.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use carrier_core::deploy::health::{self, CheckResult, MachineChecks};
use carrier_core::events::{Event, EventSink};
use carrier_core::remote::{Connections, Hosts, SshSettings};
use serde::Serialize;

use crate::cli::{GlobalArgs, HealthCheckArgs};

pub fn run(global: &GlobalArgs, args: HealthCheckArgs) -> anyhow::Result<ExitCode> {
    let selection = args.select.selection()?;
    let conf_dir = global.conf_dir()?;
    let loaded = global.inventory()?.load(&conf_dir)?;
    let selected = selection.select(&loaded.cluster)?;
    let mut checked = Vec::new();
    for m in selected {
        match health::not_checked(m) {
            Some(why) => eprintln!("skipping {}: {why}", m.name),
            None => checked.push((m, health::checks_of(m))),
        }
    }
    if checked.is_empty() {
        bail!(
            "no machines to check: none of the selected machines is a managed, runnable machine with health checks"
        );
    }
    let machines: Vec<MachineChecks> =
        checked.iter().filter_map(|(m, checks)| MachineChecks::of(m, checks)).collect();
    let ssh = SshSettings { config_file: args.ssh_config.clone(), connect_timeout: None };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let results = runtime.block_on(async {
        let hosts = Connections::new(ssh, Duration::from_secs(900))?;
        let results = health::run_all(&machines, &hosts, args.max_jobs as usize, &Quiet).await;
        hosts.close().await;
        anyhow::Ok(results)
    })?;
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    if args.json {
        crate::json::print(&Report::new(&results))?;
    } else {
        print(&results, machines.len())?;
    }
    if failed == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: Health checks failed");
        Ok(ExitCode::FAILURE)
    }
}

/// Failures are printed from the results, once.
struct Quiet;

impl EventSink for Quiet {
    fn emit(&self, _: Event) {}
}

/// Upstream's text: each check, the counts, then the failures by machine.
fn print(results: &[CheckResult], machines: usize) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "Ran health checks on {machines} machine(s)")?;
    let n = results.len();
    for (i, r) in results.iter().enumerate() {
        let prefix = format!("[{}/{n}] {}> {}", i + 1, r.machine, r.description);
        match &r.error {
            None => writeln!(out, "{prefix}: succeeded")?,
            Some(e) => writeln!(out, "{prefix}: error: {e}")?,
        }
    }
    let failures = health::failures(results.to_vec());
    let failed: usize = failures.values().map(Vec::len).sum();
    writeln!(out, "{} checks passed, {failed} failed", n - failed)?;
    for (machine, checks) in failures {
        writeln!(out, "\n{machine}: {} failures", checks.len())?;
        for c in checks {
            writeln!(out, "  {c}")?;
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct Report<'a> {
    checks: Vec<CheckJson<'a>>,
    passed: usize,
    failed: usize,
}

#[derive(Serialize)]
struct CheckJson<'a> {
    machine: &'a str,
    check: &'a str,
    passed: bool,
    error: Option<String>,
}

impl<'a> Report<'a> {
    fn new(results: &'a [CheckResult]) -> Self {
        let checks: Vec<CheckJson> = results
            .iter()
            .map(|r| CheckJson {
                machine: &r.machine,
                check: &r.description,
                passed: r.error.is_none(),
                error: r.error.as_ref().map(ToString::to_string),
            })
            .collect();
        let failed = checks.iter().filter(|c| !c.passed).count();
        Report { passed: checks.len() - failed, failed, checks }
    }
}
