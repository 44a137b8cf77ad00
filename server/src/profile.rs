//! `carrier profile`: carried profiles on this carrier.

use std::process::ExitCode;

use carrier_core::carrier::profile_change::{apply, HostConfig, ProfileChange};

use crate::cli::{ProfileArgs, ProfileCommand};

pub fn run(args: ProfileArgs) -> anyhow::Result<ExitCode> {
    let config = HostConfig::load(&args.host_config)?;
    let (profile, change) = match args.command {
        ProfileCommand::Set { profile, store_path } => (profile, ProfileChange::Set { store_path }),
        ProfileCommand::DeleteGenerations { profile, generations } => {
            (profile, ProfileChange::DeleteGenerations { generations })
        }
    };
    apply(&config, &profile, &change)?;
    Ok(ExitCode::SUCCESS)
}
