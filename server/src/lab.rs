//! `carrier lab up|down|status|reboot`: simulated hosts for real deploys (carrier_core::lab,
//! docs/lab.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use carrier_core::lab::{self, HostStatus, UpOptions};

use crate::cli::{GlobalArgs, LabArgs, LabCommand};

pub fn run(global: &GlobalArgs, args: LabArgs) -> anyhow::Result<ExitCode> {
    // `down` and `status` need the configuration only for the default state directory
    let lab_dir = |dir: Option<PathBuf>| match dir {
        Some(dir) => anyhow::Ok(dir),
        None => Ok(global.conf_dir()?.lab_dir()),
    };
    match args.command {
        LabCommand::Up => up(global, args.dir),
        LabCommand::Down { purge } => down(lab_dir(args.dir)?, purge),
        LabCommand::Status { json } => status(lab_dir(args.dir)?, json),
        LabCommand::Reboot { alias } => {
            let host = lab::reboot(&lab_dir(args.dir)?, &alias)?;
            eprintln!("{alias}: rebooted (sshd pid {}, reboot {})", host.pid, host.reboots);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn up(global: &GlobalArgs, dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let conf_dir = global.conf_dir()?;
    let dir = dir.unwrap_or_else(|| conf_dir.lab_dir());
    let loaded = global.inventory()?.load(&conf_dir)?;
    let hosts = lab::plan(&loaded.cluster)?;
    let exe = std::env::current_exe().context("locating the running carrier binary")?;
    let carrier_bin_dir =
        exe.parent().context("the carrier binary has no directory")?.to_path_buf();
    if let Some(mount) = lab::hidden_on_hosts(&carrier_bin_dir) {
        eprintln!(
            "warning: {} lies under {mount}, which lab hosts replace: `carrier` will not be on their PATH",
            carrier_bin_dir.display()
        );
    }
    let nix_conf_dir =
        std::env::var_os("NIX_CONF_DIR").filter(|v| !v.is_empty()).map(PathBuf::from);
    let record = lab::up(&hosts, &UpOptions { dir, carrier_bin_dir, nix_conf_dir })?;
    for h in &record.hosts {
        let role = if h.carrier { " (carrier)" } else { "" };
        eprintln!("{:<24} port {:<5} pid {:<7} {}{role}", h.alias, h.port, h.pid, h.machine);
    }
    // The one line on stdout: `eval "$(carrier lab up)"` sets it.
    println!("export CARRIER_SSH_CONFIG={}", record.ssh_config.display());
    Ok(ExitCode::SUCCESS)
}

fn down(dir: PathBuf, purge: bool) -> anyhow::Result<ExitCode> {
    let stopped = lab::down(&dir, purge)?;
    for s in &stopped {
        let what = match s.result {
            lab::process::Stopped::Terminated => "stopped",
            lab::process::Stopped::Killed => "killed (did not stop on SIGTERM)",
            lab::process::Stopped::NotRunning => "was not running",
            lab::process::Stopped::NotOurs => "left alone (the PID is not this lab's sshd)",
        };
        eprintln!("{:<24} pid {:<7} {what}", s.alias, s.pid);
    }
    if purge {
        eprintln!("removed the lab's files in {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn status(dir: PathBuf, json: bool) -> anyhow::Result<ExitCode> {
    let hosts = lab::status(&dir)?;
    if json {
        crate::json::print(&hosts)?;
    } else {
        print!("{}", table(&hosts));
    }
    // Non-zero when a host is down, so scripts can check the lab with one command.
    Ok(if hosts.iter().all(|h| h.alive) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn table(hosts: &[HostStatus]) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let width = hosts.iter().map(|h| h.alias.len()).max().unwrap_or(0).max("ALIAS".len());
    let mut out =
        format!("{:<width$}  {:<5}  {:<7}  {:<5}  CARRIER\n", "ALIAS", "PORT", "PID", "ALIVE");
    for h in hosts {
        out.push_str(&format!(
            "{:<width$}  {:<5}  {:<7}  {:<5}  {}\n",
            h.alias,
            h.port,
            h.pid,
            yes(h.alive),
            yes(h.carrier)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let h = |alias: &str, alive, carrier| HostStatus {
            machine: "m".into(),
            alias: alias.into(),
            port: 40001,
            pid: 123,
            alive,
            carrier,
            reboots: 0,
        };
        assert_eq!(
            table(&[h("node1.lab", true, false), h("pxe.lab", false, true)]),
            "ALIAS      PORT   PID      ALIVE  CARRIER\n\
             node1.lab  40001  123      yes    no\n\
             pxe.lab    40001  123      no     yes\n"
        );
    }
}
