//! `carrier netboot build`: rebuild and publish this carrier's netboot trees;
//! `carrier netboot checkin-secret`: a new check-in secret for them.

use std::process::ExitCode;

use carrier_core::carrier::netboot::{NetbootConfig, build};

use crate::cli::{NetbootArgs, NetbootCommand};

pub fn run(args: NetbootArgs) -> anyhow::Result<ExitCode> {
    let (config, json) = match args.command {
        NetbootCommand::Build { config, json } => (config, json),
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
