//! `carrier profile`: carried profiles on this carrier.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use carrier_core::carrier::profile_change::{HostConfig, ProfileChange, apply_all, check_profile};
use carrier_core::carrier::profiles;

use crate::cli::{ProfileArgs, ProfileCommand};

pub fn run(args: ProfileArgs) -> anyhow::Result<ExitCode> {
    let config = HostConfig::load(&args.host_config)?;
    let changes: Vec<_> = match args.command {
        ProfileCommand::Set { profile, store_path } => {
            if profile.len() != store_path.len() {
                anyhow::bail!(
                    "{} profiles (-p) but {} store paths: give one store path per profile, in the same order",
                    profile.len(),
                    store_path.len()
                );
            }
            profile
                .into_iter()
                .zip(store_path)
                .map(|(p, store_path)| (p, ProfileChange::Set { store_path }))
                .collect()
        }
        ProfileCommand::DeleteGenerations { profile, generations } => {
            delete_lists(profile, generations)?
                .into_iter()
                .map(|(p, generations)| (p, ProfileChange::DeleteGenerations { generations }))
                .collect()
        }
        ProfileCommand::List { profile, json } => return list(&config, profile.as_deref(), json),
    };
    apply_all(&config, &changes, &|line| eprintln!("{line}"))?;
    Ok(ExitCode::SUCCESS)
}

/// Pairs profiles with their generations: one profile takes every argument; several
/// take one argument each, a comma-separated list. Each item is checked by `apply_all`.
fn delete_lists(
    profiles: Vec<PathBuf>,
    lists: Vec<String>,
) -> anyhow::Result<Vec<(PathBuf, Vec<String>)>> {
    let split = |l: &str| l.split(',').map(str::to_string).collect::<Vec<_>>();
    if profiles.len() == 1 {
        return Ok(profiles
            .into_iter()
            .map(|p| (p, lists.iter().flat_map(|l| split(l)).collect()))
            .collect());
    }
    if profiles.len() != lists.len() {
        anyhow::bail!(
            "{} profiles (-p) but {} generation lists: give one comma-separated list per profile, in the same order",
            profiles.len(),
            lists.len()
        );
    }
    Ok(profiles.into_iter().zip(lists.iter().map(|l| split(l))).collect())
}

fn list(
    config: &HostConfig,
    profile: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let only = profile.map(|p| check_profile(config, p)).transpose()?;
    let listing = profiles::list(&config.profiles_dir, only.as_ref())?;
    if json {
        crate::json::print(&listing)?;
    } else {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for p in &listing {
            writeln!(out, "{}", p.path.display())?;
            for g in &p.generations {
                let what = match (&g.machine, &g.error) {
                    (Some(m), _) => format!(
                        "{} {}{}",
                        m.spin,
                        m.fqdn.as_deref().unwrap_or("-"),
                        m.version.as_deref().map(|v| format!(" {v}")).unwrap_or_default()
                    ),
                    (None, Some(e)) => format!("invalid: {e}"),
                    (None, None) => String::new(),
                };
                let mark = if g.current { " (current)" } else { "" };
                writeln!(
                    out,
                    "  {:>4}  {}  {}  {what}{mark}",
                    g.number,
                    g.date,
                    g.store_path.display()
                )?;
            }
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}
