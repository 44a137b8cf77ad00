//! `carrier generation ls|rm|rotate` and `carrier collect-garbage`: selection, one SSH
//! connection per host, carrier-core's generation functions, tables or JSON.

use carrier_core::conf_dir::ConfDir;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use carrier_core::cluster::{Cluster, Machine};
use carrier_core::generation::{self, Record, Selector, Settings};
use carrier_core::remote::{Connections, HostError, Hosts, SshSettings};

use crate::cli::{
    CollectGarbageArgs, GcArgs, GenerationArgs, GenerationCommand, GenerationLsArgs,
    GenerationRmArgs, GenerationRotateArgs, GenerationSource, GlobalArgs, SelectArgs,
};
use crate::deploy::ask_to_continue;
use crate::ls::write_table;

pub fn run(global: &GlobalArgs, args: GenerationArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        GenerationCommand::Ls(args) => ls(global, args),
        GenerationCommand::Rm(args) => rm(global, args),
        GenerationCommand::Rotate(args) => rotate(global, args),
    }
}

/// The selected machines and where their generations are.
struct Selected {
    cluster: Arc<Cluster>,
    names: Vec<String>,
    /// The configuration directory's real path (its GC roots are named after it).
    conf_dir: ConfDir,
    cache_dir: PathBuf,
}

impl Selected {
    fn load(global: &GlobalArgs, select: &SelectArgs) -> anyhow::Result<Selected> {
        let selection = select.selection()?;
        let inventory = global.inventory()?;
        let conf_dir = global.conf_dir()?;
        let loaded = inventory.load(&conf_dir)?;
        let names: Vec<String> =
            selection.select(&loaded.cluster)?.into_iter().map(|m| m.name.clone()).collect();
        if names.is_empty() {
            bail!("no machines selected");
        }
        Ok(Selected {
            cluster: loaded.cluster.clone(),
            names,
            conf_dir,
            cache_dir: inventory.cache_dir().to_path_buf(),
        })
    }

    fn machines(&self) -> impl Iterator<Item = &Machine> {
        self.names.iter().filter_map(|n| self.cluster.get(n))
    }

    fn roots_dir(&self) -> PathBuf {
        carrier_core::build::default_gc_roots_dir(&self.conf_dir)
    }
}

/// Which sources a command reads: local unless only -r is given (upstream's rule).
fn sources(source: &GenerationSource) -> (bool, bool) {
    (source.local || !source.remote, source.remote)
}

fn connections(ssh_config: Option<PathBuf>, timeout: u64) -> anyhow::Result<Connections> {
    let ssh = SshSettings { config_file: ssh_config, connect_timeout: None };
    Connections::new(ssh, Duration::from_secs(timeout)).context("preparing SSH connections")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Every selected machine's generations (see `generation::gather`); machines whose
/// remote generations cannot be read are reported on stderr and counted.
async fn gather(
    ctx: &Selected,
    hosts: &impl Hosts,
    local: bool,
    remote: bool,
) -> (Vec<Vec<Record>>, usize) {
    let machines: Vec<&Machine> = ctx.machines().collect();
    let gathered =
        generation::gather(&ctx.cluster, &machines, &ctx.conf_dir, hosts, local, remote).await;
    for (machine, e) in &gathered.errors {
        eprintln!("{machine}: {e}");
    }
    (gathered.machines.into_iter().map(|(_, g)| g).collect(), gathered.errors.len())
}

fn print_records(records: &[&Record]) -> anyhow::Result<()> {
    let header = ["host", "name", "id", "presence", "current", "kernel", "version"]
        .map(String::from)
        .to_vec();
    let mut sorted = records.to_vec();
    sorted.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.machine.cmp(&b.machine)));
    let rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|r| {
            vec![
                r.machine.clone(),
                r.name.clone(),
                r.host.as_ref().map(|h| h.number.to_string()).unwrap_or_default(),
                r.presence().to_string(),
                r.current_str().to_string(),
                r.kernel.clone().unwrap_or_default(),
                r.version.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = std::io::stdout().lock();
    write_table(&mut out, &header, &rows, true)?;
    Ok(out.flush()?)
}

fn ls(global: &GlobalArgs, args: GenerationLsArgs) -> anyhow::Result<ExitCode> {
    let selector = args.generation.as_deref().map(str::parse::<Selector>).transpose()?;
    let ctx = Selected::load(global, &args.select)?;
    let (local, remote) = sources(&args.source);
    let hosts = connections(args.source.ssh_config.clone(), args.source.command_timeout)?;
    let rt = runtime()?;
    let (gens, failures) = rt.block_on(async {
        let out = gather(&ctx, &hosts, local, remote).await;
        hosts.close().await;
        out
    });
    let now = jiff::Timestamp::now();
    let shown: Vec<&Record> = gens
        .iter()
        .flat_map(|g| match &selector {
            Some(s) => s.matches(g, now).into_iter().map(|i| &g[i]).collect::<Vec<_>>(),
            None => g.iter().collect(),
        })
        .collect();
    if args.json {
        crate::json::print(&shown)?;
    } else {
        print_records(&shown)?;
    }
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn rm(global: &GlobalArgs, mut args: GenerationRmArgs) -> anyhow::Result<ExitCode> {
    // `rm <selector>`: the only argument is the selector, for every selected machine
    let selector =
        match args.selector.take() {
            Some(s) => s,
            None => args.select.pattern.take().context(
                "give a generation selector: a number, `old`, `Nd`, `+N` or a name or glob",
            )?,
        };
    let selector: Selector = selector.parse()?;
    let ctx = Selected::load(global, &args.select)?;
    let (local, remote) = sources(&args.source);
    let hosts = connections(args.source.ssh_config.clone(), args.source.command_timeout)?;
    let rt = runtime()?;
    let result: anyhow::Result<bool> = rt.block_on(async {
        let (gens, failures) = gather(&ctx, &hosts, local, remote).await;
        if failures > 0 {
            bail!("the generations of {failures} machine(s) could not be read: nothing removed");
        }
        let now = jiff::Timestamp::now();
        let mut picked: Vec<&Record> = Vec::new();
        for g in &gens {
            picked.extend(selector.select(g, now)?.into_iter().map(|i| &g[i]));
        }
        if picked.is_empty() {
            println!("No generations found");
            return Ok(true);
        }
        let gc = remote && !args.gc.no_gc;
        if !args.yes {
            println!("The following generations will be removed:");
            print_records(&picked)?;
            let summary = format!("\nGarbage collection: {}\n", if gc { "yes" } else { "no" });
            ask_to_continue("remove generations", &summary)?;
        }
        let gc_hosts = |_: &Machine| gc;
        remove(&ctx, &hosts, &picked, &args.gc, gc_hosts).await
    });
    rt.block_on(hosts.close());
    Ok(if result? { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn rotate(global: &GlobalArgs, args: GenerationRotateArgs) -> anyhow::Result<ExitCode> {
    let ctx = Selected::load(global, &args.select)?;
    let settings = Settings::load(&ctx.conf_dir, &ctx.cache_dir)?;
    let (local, remote) = sources(&args.source);
    let hosts = connections(args.source.ssh_config.clone(), args.source.command_timeout)?;
    let rt = runtime()?;
    let result: anyhow::Result<bool> = rt.block_on(async {
        let now = jiff::Timestamp::now();
        let mut plan: Vec<Record> = Vec::new();
        let mut failures = 0;
        if remote {
            let (gens, failed) = gather(&ctx, &hosts, false, true).await;
            failures += failed;
            for (m, g) in ctx.machines().zip(gens) {
                let drop = generation::rotation(&g, settings.host_limits(m), now);
                plan.extend(drop.into_iter().map(|i| g[i].clone()));
            }
        }
        if local {
            for m in ctx.machines() {
                let g = generation::local(&ctx.conf_dir, &m.name);
                let drop = generation::rotation(&g, settings.build_limits(m), now);
                plan.extend(drop.into_iter().map(|i| g[i].clone()));
            }
        }
        if plan.is_empty() {
            println!("No generations to delete");
            return Ok(failures == 0);
        }
        print_plan(&plan, args.dry_run)?;
        if args.dry_run {
            return Ok(failures == 0);
        }
        let gc = remote && !args.gc.no_gc;
        if !args.yes {
            let when = if gc { "when enabled in the configuration" } else { "no" };
            ask_to_continue("remove generations", &format!("\nGarbage collection: {when}\n"))?;
        }
        let plan: Vec<&Record> = plan.iter().collect();
        let gc_hosts = |host_machine: &Machine| gc && settings.collects_garbage(host_machine);
        Ok(remove(&ctx, &hosts, &plan, &args.gc, gc_hosts).await? && failures == 0)
    });
    rt.block_on(hosts.close());
    Ok(if result? { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Upstream's rotation table: `host name type id`.
fn print_plan(plan: &[Record], dry_run: bool) -> anyhow::Result<()> {
    let header = ["host", "name", "type", "id"].map(String::from).to_vec();
    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|r| {
            let id = r.host.as_ref().map(|h| h.number.to_string()).unwrap_or_default();
            let kind = if r.host.is_some() { "host" } else { "build" };
            vec![r.machine.clone(), r.name.clone(), kind.to_string(), id]
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if dry_run {
        writeln!(out, "Would remove (dry run, nothing changes):")?;
    } else {
        writeln!(out, "The following generations will be removed:")?;
    }
    write_table(&mut out, &header, &rows, true)?;
    Ok(out.flush()?)
}

/// Removes `records` and collects garbage where `gc_on` says (see
/// `generation::remove`), printing what happens; whether everything succeeded.
async fn remove(
    ctx: &Selected,
    hosts: &impl Hosts,
    records: &[&Record],
    gc: &GcArgs,
    gc_on: impl Fn(&Machine) -> bool + Sync,
) -> anyhow::Result<bool> {
    let max = usize::try_from(gc.max_concurrent_gc).unwrap_or(usize::MAX);
    let removed = generation::remove(
        &ctx.cluster,
        &ctx.conf_dir,
        &ctx.roots_dir(),
        hosts,
        records,
        generation::Gc { on: &gc_on, max_concurrent: max },
        &|line| println!("{line}"),
    )
    .await?;
    for e in &removed.errors {
        eprintln!("{e}");
    }
    let gc_ok = print_gc(&removed.gc);
    Ok(removed.errors.is_empty() && gc_ok)
}

/// Prints `<host>: <summary>` per host; false when one failed.
fn print_gc(results: &[(String, Result<String, HostError>)]) -> bool {
    let mut failed = Vec::new();
    for (host, result) in results {
        match result {
            Ok(summary) => println!("{host}: {summary}"),
            Err(e) => {
                eprintln!("{host}: {e}");
                failed.push(host.as_str());
            }
        }
    }
    if !failed.is_empty() {
        eprintln!("garbage collection failed on: {}", failed.join(", "));
    }
    failed.is_empty()
}

/// `carrier collect-garbage [pattern]`: runnable machines only; a carried machine is
/// named with its carrier, whose store holds its generations.
pub fn collect_garbage(global: &GlobalArgs, args: CollectGarbageArgs) -> anyhow::Result<ExitCode> {
    let ctx = Selected::load(global, &args.select)?;
    let mut targets: Vec<(String, u16)> = Vec::new();
    for m in ctx.machines() {
        match (&m.carrier, m.target_host()) {
            (Some(carrier), _) => eprintln!(
                "skipping {}: a carried machine has no store of its own; select its carrier {carrier}",
                m.name
            ),
            (None, None) => eprintln!("skipping {}: no SSH target (host.target is null)", m.name),
            (None, Some(host)) => {
                let target = (host.to_string(), m.target_port());
                if !targets.contains(&target) {
                    targets.push(target);
                }
            }
        }
    }
    if targets.is_empty() {
        bail!("no machines to collect garbage on");
    }
    if !args.yes {
        let list: String = targets.iter().map(|(h, _)| format!("  {h}\n")).collect();
        let summary = format!("Collect garbage on the following machines:\n{list}");
        ask_to_continue("collect garbage", &summary)?;
    }
    let hosts = connections(args.ssh_config.clone(), args.command_timeout)?;
    let rt = runtime()?;
    let ok = rt.block_on(async {
        let max = usize::try_from(args.max_concurrent_gc).unwrap_or(usize::MAX);
        println!("Collecting garbage on {} host(s)", targets.len());
        let results = generation::collect_garbage(&hosts, &targets, max).await;
        hosts.close().await;
        print_gc(&results)
    });
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
