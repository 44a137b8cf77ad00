//! `carrier netboot build`: rebuild and publish this carrier's netboot trees.

use std::process::ExitCode;

use carrier_core::carrier::netboot::{NetbootConfig, build};

use crate::cli::{NetbootArgs, NetbootCommand};

pub fn run(args: NetbootArgs) -> anyhow::Result<ExitCode> {
    let NetbootCommand::Build { config, json } = args.command;
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
