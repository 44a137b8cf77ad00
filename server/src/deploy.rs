//! `carrier deploy [pattern [action]]`: selection, confirmation, then carrier-core's
//! build and deploy engine; progress as lines, the report as a table or JSON. The run
//! is recorded (`carrier history`); a deploy goes on when it cannot be.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use carrier_core::conf_dir::ConfDir;
use carrier_core::deploy::{self, Action, DeployOptions, MachineState, SshSettings, Timeouts};
use carrier_core::events::{Event, EventSink, Outcome, Phase};
use carrier_storage::RunKind;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{DeployArgs, GlobalArgs};
use crate::records::{Recorder, Request};

pub fn run(global: &GlobalArgs, mut args: DeployArgs) -> anyhow::Result<ExitCode> {
    let action: Action = args.action.as_deref().unwrap_or("switch").parse()?;
    if args.reboot && action != Action::Boot {
        bail!("--reboot can be used only with action boot (not {})", action.as_str());
    }
    let selection = args.select.selection()?;
    let conf_dir = global.conf_dir()?;
    let inventory = global.inventory()?;
    let loaded = inventory.load(&conf_dir)?;
    let machines = selection.select_managed(&loaded.cluster, "deploy")?;
    if args.generation.is_none() {
        args.nix.default_max_jobs(&conf_dir, inventory.cache_dir())?;
    }
    if !args.yes {
        confirm(&machines, args.generation.as_deref(), action, args.reboot)?;
    }
    let recorder = Recorder::start(
        global,
        Request {
            kind: RunKind::Deploy,
            select: &args.select,
            action: Some(action.as_str()),
            options: serde_json::to_value(&args)?,
            generation: args.generation.as_deref(),
            machines: machines.iter().map(|m| m.name.clone()).collect(),
        },
    );
    let sink = Printer::new(args.json, args.interactive);
    let report =
        match execute(&conf_dir, &args, action, &inventory, &loaded.cluster, &machines, &sink) {
            Ok(Done::Built(artifacts)) => {
                recorder
                    .built(artifacts.iter().map(|a| (a.machine.as_str(), a.generation.as_str())));
                return Ok(ExitCode::SUCCESS);
            }
            Ok(Done::Deployed(report)) => {
                recorder.deployed(&report);
                report
            }
            Err(e) => {
                let phase = e.downcast_ref::<deploy::PrepareError>().and_then(|e| e.phase());
                recorder.failed(phase, &e);
                return Err(e);
            }
        };
    if args.json {
        crate::json::print(&report)?;
    } else {
        for m in &report.machines {
            let state = match &m.state {
                MachineState::Deployed => "deployed".to_string(),
                MachineState::Copied => "copied".to_string(),
                MachineState::Current => "already current".to_string(),
                MachineState::Failed { phase, error, changed } => {
                    let now = if *changed { "changed" } else { "unchanged" };
                    format!("FAILED in {phase:?} ({now}): {error}")
                }
                MachineState::NotAttempted { reason } => format!("not attempted: {reason}"),
                MachineState::Declined { phase } => {
                    format!("declined before {}", Phase::name(*phase))
                }
            };
            println!("{:<24} {:<22} {state}", m.machine, m.generation);
        }
    }
    Ok(if report.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// How a deploy that did not fail as a whole ended.
enum Done {
    /// `--build-only`: the artifacts built (or found).
    Built(Vec<deploy::Artifact>),
    Deployed(deploy::DeployReport),
}

/// Everything after the confirmation: lock, build (or find) the artifacts, deploy.
fn execute(
    conf_dir: &ConfDir,
    args: &DeployArgs,
    action: Action,
    inventory: &carrier_core::cluster::Inventory,
    cluster: &carrier_core::cluster::Cluster,
    machines: &[&carrier_core::cluster::Machine],
    sink: &Printer,
) -> anyhow::Result<Done> {
    let opts = options(args, action);
    let build_options = args.nix.options(inventory.cache_dir(), args.ssh_config.clone());
    // one deploy per configuration directory at a time (its builds and generations)
    let prepared = deploy::prepare(
        conf_dir,
        cluster,
        machines,
        args.generation.as_deref(),
        args.build_only,
        &build_options,
        opts.timeouts.lock,
        sink,
    )?;
    let Some(targets) = prepared.targets else {
        return Ok(Done::Built(prepared.artifacts));
    };
    let ssh = SshSettings { config_file: args.ssh_config.clone(), connect_timeout: None };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    Ok(Done::Deployed(runtime.block_on(deploy::run(targets, &opts, ssh, sink))))
}

/// The engine's options from the command line.
fn options(args: &DeployArgs, action: Action) -> DeployOptions {
    DeployOptions {
        action,
        max_concurrent_copy: args.max_concurrent_copy,
        one_by_one: args.one_by_one,
        copy_only: args.copy_only,
        dry_activate_first: args.dry_activate_first,
        interactive: args.interactive,
        auto_rollback: match (args.enable_auto_rollback, args.disable_auto_rollback) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        health_checks: !args.no_health_checks,
        keep_going: args.keep_going,
        reboot: args.reboot,
        wait_online: args.wait_online,
        timeouts: Timeouts {
            command: Duration::from_secs(args.command_timeout),
            copy: Duration::from_secs(args.copy_timeout),
            lock: Duration::from_secs(args.lock_timeout),
        },
    }
}

/// Upstream's confirmation: the machines, the generation and the action, then y/N.
fn confirm(
    machines: &[&carrier_core::cluster::Machine],
    generation: Option<&str>,
    action: Action,
    reboot: bool,
) -> anyhow::Result<()> {
    let mut summary = String::new();
    for m in machines {
        summary.push_str(&format!("  {}\n", m.name));
    }
    summary.push_str(&format!("Generation: {}\n", generation.unwrap_or("new build")));
    let reboot = if reboot { " + reboot" } else { "" };
    summary.push_str(&format!("Target action: {}{reboot}\n", action.as_str()));
    ask_to_continue("deploy", &summary)
}

/// Shows `summary` on stderr and asks `Continue? [y/N]`; only `y`/`yes` goes on. A
/// non-interactive input is refused: `-y` says yes up front.
pub(crate) fn ask_to_continue(what: &str, summary: &str) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("refusing to {what} without confirmation on a non-interactive input: pass -y/--yes");
    }
    let mut err = std::io::stderr().lock();
    write!(err, "{summary}Continue? [y/N] ")?;
    err.flush()?;
    let mut line = String::new();
    stdin.lock().read_line(&mut line).context("reading the answer")?;
    if matches!(line.trim(), "y" | "Y" | "yes") { Ok(()) } else { bail!("aborted") }
}

/// Progress on stderr (stdout carries the report): a bar per phase on a terminal,
/// plain lines otherwise (and always for skips and failures). An interactive deploy's
/// questions are asked on stderr and answered on stdin (no bars then).
struct Printer {
    json: bool,
    bar: Option<std::sync::Mutex<Option<ProgressBar>>>,
}

impl Printer {
    fn new(json: bool, interactive: bool) -> Self {
        let bar =
            (std::io::stderr().is_terminal() && !interactive).then(|| std::sync::Mutex::new(None));
        Printer { json, bar }
    }

    fn line(&self, line: String) {
        match self.bar.as_ref().and_then(|b| b.lock().expect("bar lock").clone()) {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

impl EventSink for Printer {
    /// Upstream's per-machine question; only `y`/`yes` goes on, the end of the input is
    /// no. It blocks the run, which waits for the answer anyway (interactive steps run
    /// one at a time).
    fn confirm(&self, phase: Phase, machine: &str) -> bool {
        let question = match phase {
            Phase::Copy => format!("Copy the generation to {machine}?"),
            Phase::Activate => format!("Activate {machine}?"),
            Phase::CarriedProfile => format!("Set the carried profile of {machine}?"),
            Phase::Reboot => format!("Reboot {machine}?"),
            other => format!("Go on with {} of {machine}?", Phase::name(other)),
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{question} [y/N] ");
        let _ = err.flush();
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(n) if n > 0 => matches!(line.trim(), "y" | "Y" | "yes"),
            _ => {
                let _ = writeln!(err);
                false
            }
        }
    }

    fn emit(&self, event: Event) {
        if let Some(slot) = &self.bar {
            let mut slot = slot.lock().expect("bar lock");
            match &event {
                Event::PhaseStarted { phase, machines } => {
                    let bar = ProgressBar::new(*machines as u64).with_prefix(Phase::name(*phase));
                    bar.set_style(
                        ProgressStyle::with_template("{prefix:>15} [{bar:30}] {pos}/{len} {msg}")
                            .expect("valid template")
                            .progress_chars("=> "),
                    );
                    *slot = Some(bar);
                    return;
                }
                Event::MachineFinished { machine, .. } => {
                    if let Some(bar) = slot.as_ref() {
                        bar.inc(1);
                        bar.set_message(machine.clone());
                    }
                }
                Event::PhaseFinished { .. } => {
                    if let Some(bar) = slot.take() {
                        bar.finish_and_clear();
                    }
                    return;
                }
                Event::Progress { .. } | Event::Log { .. } => return,
                Event::Notice { .. } => {}
            }
        }
        let line = match event {
            Event::PhaseStarted { phase, machines } => {
                format!("{}: {machines} machine(s)", Phase::name(phase))
            }
            Event::MachineFinished {
                phase: Phase::Status,
                machine,
                outcome: Outcome::Skipped { reason },
            } => {
                format!("Skipping {machine}: {reason}")
            }
            Event::MachineFinished { phase, machine, outcome } => match outcome {
                Outcome::Ok if self.bar.is_some() => return,
                Outcome::Ok => format!("[{machine}] {} done", Phase::name(phase)),
                Outcome::Skipped { reason } => {
                    format!("[{machine}] {} skipped: {reason}", Phase::name(phase))
                }
                Outcome::Failed { error } => {
                    format!("[{machine}] {} failed: {error}", Phase::name(phase))
                }
            },
            Event::Notice { machine: Some(m), line, .. } => format!("[{m}] {line}"),
            Event::Notice { machine: None, line, .. } => line,
            Event::Progress { phase, machine: Some(m), done, expected, .. } if !self.json => {
                format!("[{m}] {} [{done}/{expected}]", Phase::name(phase))
            }
            _ => return,
        };
        self.line(line);
    }
}
