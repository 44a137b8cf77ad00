//! `carrier status [pattern]`: selection, then carrier-core's status reader; a table with
//! one state per machine and the age of any drift, or JSON.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use carrier_core::profile_name::ProfileName;
use carrier_core::remote::SshSettings;
use carrier_core::status::{self, Booted, Kind, MachineStatus, StatusTarget};
use carrier_storage::{Checkin, Store, StoreError};

use crate::cli::{GlobalArgs, StatusArgs};

pub fn run(global: &GlobalArgs, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let selection = args.select.selection()?;
    let conf_dir = global.conf_dir()?;
    let loaded = global.inventory()?.load(&conf_dir)?;
    let machines: Vec<_> =
        selection.select(&loaded.cluster)?.into_iter().filter(|m| status::selectable(m)).collect();
    if machines.is_empty() {
        bail!("no machines to check (managed machines with a target, and carried machines)");
    }
    let mut targets =
        status::targets(&conf_dir, &loaded.cluster, &machines, args.generation.as_deref())?;
    let timeout = Duration::from_secs(args.timeout);
    let ssh = SshSettings { config_file: args.ssh_config.clone(), connect_timeout: Some(timeout) };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    if targets.iter().any(|t| matches!(t.kind, Kind::Carried { .. })) {
        match runtime.block_on(latest_checkins(global)) {
            Ok(checkins) => add_checkins(&mut targets, &checkins),
            // the hosts still say what is staged
            Err(e) => eprintln!("warning: check-ins not read, booted state unknown: {e}"),
        }
    }
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

/// Upstream's uptime format: `3.2d`, `5.0h`, `12.0m`, `30.0s`.
fn age(secs: f64) -> String {
    match secs {
        s if s >= 86400.0 => format!("{:.1}d", s / 86400.0),
        s if s >= 3600.0 => format!("{:.1}h", s / 3600.0),
        s if s >= 60.0 => format!("{:.1}m", s / 60.0),
        s => format!("{s:.1}s"),
    }
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

    #[test]
    fn ages_read_like_upstream_uptimes() {
        assert_eq!(age(30.0), "30.0s");
        assert_eq!(age(720.0), "12.0m");
        assert_eq!(age(18000.0), "5.0h");
        assert_eq!(age(3.2 * 86400.0), "3.2d");
    }
}
