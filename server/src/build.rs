//! `carrier build`: builds the selected managed machines (spec 2.0, 2.1) and records
//! their local build generations (spec 1.6). Nix's progress goes to stderr; the result
//! to stdout: `Built generations:`, each generation name, its machines indented (or
//! JSON: machine name -> generation). The run is recorded (`carrier history`).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use carrier_core::build;
use carrier_core::cluster::Machine;
use carrier_core::events::{Event, EventSink, Phase};
use carrier_storage::RunKind;

use crate::cli::{BuildArgs, GlobalArgs};
use crate::records::{Recorder, Request};

pub fn run(global: &GlobalArgs, mut args: BuildArgs) -> anyhow::Result<ExitCode> {
    let selection = args.select.selection()?;
    let conf_dir = global.conf_dir()?;
    let inventory = global.inventory()?;
    let loaded = inventory.load(&conf_dir)?;
    let machines: Vec<Machine> =
        selection.select_managed(&loaded.cluster, "build")?.into_iter().cloned().collect();
    args.nix.default_max_jobs(&conf_dir, inventory.cache_dir())?;
    let opts = args.nix.options(inventory.cache_dir(), args.ssh_config.clone());
    let recorder = Recorder::start(
        global,
        Request {
            kind: RunKind::Build,
            select: &args.select,
            action: None,
            options: serde_json::to_value(&args)?,
            generation: None,
            machines: machines.iter().map(|m| m.name.clone()).collect(),
        },
    );
    let generations = match build::build(&conf_dir, &machines, &opts, &StderrProgress) {
        Ok(generations) => {
            recorder.built(generations.iter().map(|(m, g)| (m.as_str(), g.name.as_str())));
            generations
        }
        Err(e) => {
            let e = anyhow::Error::from(e);
            recorder.failed(Some(Phase::Build), &e);
            return Err(e);
        }
    };
    if args.json {
        crate::json::print(&generations)?;
    } else {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut by_gen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (machine, g) in &generations {
            by_gen.entry(g.name.as_str()).or_default().push(machine);
        }
        writeln!(out, "Built generations:")?;
        for (name, hosts) in by_gen {
            writeln!(out, "{name}")?;
            for h in hosts {
                writeln!(out, "  {h}")?;
            }
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Nix's messages and derivation counts, one line each, on stderr.
struct StderrProgress;

impl EventSink for StderrProgress {
    fn emit(&self, event: Event) {
        let line = match event {
            Event::Log { machine, line, .. } => match machine {
                Some(m) => format!("[{m}] {line}"),
                None => line,
            },
            Event::Progress { done, expected, .. } => {
                format!("built {done}/{expected} derivations")
            }
            _ => return,
        };
        eprintln!("{line}");
    }
}
