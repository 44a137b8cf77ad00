//! `carrier netboot build`: rebuild and publish this carrier's netboot trees;
//! `carrier netboot preview`: what a MAC gets from them;
//! `carrier netboot last-build`: the last build's outcome;
//! `carrier netboot checkin-secret`: a new check-in secret for them.

use std::process::ExitCode;

use carrier_core::carrier::netboot::{
    BootPreview, LastOutcome, NetbootConfig, build, last_build, preview,
};

use crate::cli::{NetbootArgs, NetbootCommand};

pub fn run(args: NetbootArgs) -> anyhow::Result<ExitCode> {
    let (config, json) = match args.command {
        NetbootCommand::Build { config, json } => (config, json),
        NetbootCommand::Preview { mac, config, json } => {
            let preview = preview(&NetbootConfig::load(&config)?, &mac)?;
            if json {
                crate::json::print(&preview)?;
            } else {
                print!("{}", preview_text(&preview));
            }
            return Ok(ExitCode::SUCCESS);
        }
        NetbootCommand::LastBuild { config, json } => {
            let last = last_build(&NetbootConfig::load(&config)?.lock_file)?;
            if json {
                crate::json::print(&last)?;
                return Ok(ExitCode::SUCCESS);
            }
            match last {
                None => {
                    println!("no build of the netboot trees recorded since the carrier started")
                }
                Some(last) => {
                    println!("last build ended {} after {:.3} s", last.finished_at, last.seconds);
                    match last.outcome {
                        LastOutcome::Ok(report) => println!("{}", report.summary()),
                        LastOutcome::Err(error) => println!("failed: {error}"),
                    }
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        NetbootCommand::CheckinSecret { file } => {
            carrier_core::checkin::Secret::create(&file)?;
            eprintln!("wrote a new check-in secret to {}", file.display());
            return Ok(ExitCode::SUCCESS);
        }
    };
    let config = NetbootConfig::load(&config)?;
    let report = build(&config)?;
    if json {
        crate::json::print(&report)?;
    } else {
        print!("{}", report.progress());
    }
    eprintln!("{}", report.summary());
    Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The machine and generation, the conflicts, then each served file under a header
/// naming its tree and path.
fn preview_text(p: &BootPreview) -> String {
    let mut out = format!("MAC {}: ", p.mac);
    match &p.machine {
        Some(m) => {
            let g = &m.generation;
            out.push_str(&format!("machine {} ({}, \"{}\")\n", m.name, m.fqdn, m.label));
            out.push_str(&format!(
                "boots generation {} by default: {}\n",
                g.number,
                g.store_path.display()
            ));
            out.push_str(&format!("kernel parameters: {}\n", g.kernel_params.join(" ")));
        }
        None => out.push_str("no machine: the client gets the default menus\n"),
    }
    for f in &p.conflicts {
        out.push_str(&format!("conflict: {f}\n"));
    }
    for name in &p.unserved_claimants {
        out.push_str(&format!(
            "not served: profile '{name}' lists this MAC but the published trees do not boot it \
             (left out by the last build, or deployed since: run `carrier netboot build`)\n"
        ));
    }
    for (tree, file) in [("TFTP", &p.pxelinux), ("TFTP", &p.ipxe_tftp), ("HTTP", &p.ipxe_http)] {
        out.push_str(&format!("\n--- {tree} {} ---\n{}", file.path, file.content));
        if !file.content.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}
