//! `carrier ssh [pattern] [command ...]`: with one machine and no command, an
//! interactive session (the system `ssh`, exec'd with carrier's ssh_config, user and
//! strict host keys); with a command, that argv on every selected machine over one
//! connection each, one after the other or all at once (`-p`), each output line
//! prefixed by its machine (or grouped, `-g`), then every machine's exit status.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use carrier_core::remote::command::{self, CommandResult, CommandRun};
use carrier_core::remote::{Connections, Destination, Hosts, SshSettings, ssh};

use crate::cli::{GlobalArgs, SshArgs};
use crate::deploy::ask_to_continue;

pub fn run(global: &GlobalArgs, args: SshArgs) -> anyhow::Result<ExitCode> {
    let selection = args.select.selection()?;
    let conf_dir = global.conf_dir()?;
    let loaded = global.inventory()?.load(&conf_dir)?;
    let selected = selection.select(&loaded.cluster)?;
    let mut destinations = Vec::new();
    let mut not_reachable = Vec::new();
    for m in selected {
        match Destination::of(m) {
            Ok(d) => destinations.push(d),
            Err(e) => not_reachable.push(e.to_string()),
        }
    }
    if destinations.is_empty() {
        if not_reachable.is_empty() {
            bail!("no machines selected");
        }
        bail!("no machine to ssh to: {}", not_reachable.join("; "));
    }
    for why in &not_reachable {
        eprintln!("skipping {why}");
    }
    let settings = SshSettings {
        config_file: args.ssh_config.clone(),
        connect_timeout: Some(Duration::from_secs(args.timeout)),
    };
    let names: String = destinations.iter().map(|d| format!("  {}\n", d.machine)).collect();
    if args.command.is_empty() {
        let [d] = destinations.as_slice() else {
            bail!(
                "missing command: an interactive session opens on exactly one machine, {} selected ({})",
                destinations.len(),
                destinations.iter().map(|d| d.machine.as_str()).collect::<Vec<_>>().join(", ")
            );
        };
        if args.input_string.is_some() || args.input_file.is_some() {
            bail!("--input-string and --input-file need a command to read them");
        }
        if !args.yes {
            ask_to_continue(
                "open a shell",
                &format!("Open interactive shell on the following machine:\n{names}"),
            )?;
        }
        let argv = ssh::interactive_argv(&settings, &d.host, d.port);
        let e = std::process::Command::new(&argv[0]).args(&argv[1..]).exec();
        bail!("running {}: {e}", argv[0]);
    }
    let input = match (&args.input_string, &args.input_file) {
        (Some(s), _) => Some(s.as_bytes().to_vec()),
        (None, Some(f)) => Some(
            std::fs::read(f).with_context(|| format!("reading --input-file {}", f.display()))?,
        ),
        (None, None) => None,
    };
    if !args.yes {
        let summary = format!(
            "Run command over SSH on the following machines:\n{names}Command: {}\n",
            shown(&args.command)
        );
        ask_to_continue("run the command", &summary)?;
    }
    let run = CommandRun {
        argv: &args.command,
        input: input.as_deref(),
        parallel: args.parallel,
        limit: Duration::from_secs(args.command_timeout),
    };
    let aggregate = args.aggregate;
    let print_result = |r: &CommandResult| {
        if aggregate {
            return;
        }
        let mut out = std::io::stdout().lock();
        for line in r.text().lines() {
            let _ = writeln!(out, "{}: {line}", r.machine);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let results = runtime.block_on(async {
        let hosts = Connections::new(settings, run.limit)?;
        let results = command::run_on(&destinations, &run, &hosts, &print_result).await;
        hosts.close().await;
        anyhow::Ok(results)
    })?;
    let mut out = std::io::stdout().lock();
    if aggregate {
        for (machines, status, text) in command::aggregate(&results) {
            writeln!(out, "{}:\nExit status: {status}\n{text}", machines.join(", "))?;
        }
    }
    writeln!(out, "Exit status:")?;
    for r in &results {
        writeln!(out, "  {}: {}", r.machine, r.status())?;
    }
    let failed = results.iter().filter(|r| !r.success()).count();
    writeln!(out, "Result: {} succeeded, {failed} failed", results.len() - failed)?;
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The command as the confirmation shows it: words with spaces quoted.
fn shown(argv: &[String]) -> String {
    let words: Vec<String> = argv
        .iter()
        .map(|w| {
            if w.contains(char::is_whitespace) || w.is_empty() {
                format!("{w:?}")
            } else {
                w.clone()
            }
        })
        .collect();
    words.join(" ")
}
