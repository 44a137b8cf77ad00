//! `carrier history [pattern]`: the recorded builds and deploys, newest first, each with
//! its machines' outcomes; the pattern keeps the runs of matching machines (and only
//! those machines' lines). As a table, or JSON (pretty on a terminal).

use std::io::Write;
use std::process::ExitCode;

use carrier_core::cluster::NamePattern;
use carrier_storage::{Run, Store};

use crate::cli::{GlobalArgs, HistoryArgs};

pub fn run(global: &GlobalArgs, args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let pattern = args.pattern.as_deref().map(NamePattern::parse).transpose()?;
    let wanted = |machine: &str| pattern.as_ref().is_none_or(|p| p.matches(machine));
    let runs = if global.database_url.is_none() && !default_file(global).exists() {
        // nothing recorded here yet: no database is created just to say so
        Vec::new()
    } else {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let store = Store::open(&global.database_url()).await?;
            let runs = store.runs(&wanted, args.limit).await;
            store.close().await;
            runs
        })?
    };
    if args.json {
        return crate::json::print(&runs).map(|()| ExitCode::SUCCESS);
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for run in &runs {
        write_run(&mut out, run)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn default_file(global: &GlobalArgs) -> std::path::PathBuf {
    global.config.join(carrier_storage::DEFAULT_FILE)
}

/// `#12 2026-12-03T11:03:46Z deploy switch alice@ws git 0123abcd (dirty) ok`, then one
/// line per machine.
fn write_run(out: &mut impl Write, run: &Run) -> std::io::Result<()> {
    let git = match &run.git {
        None => "no git".to_string(),
        Some(g) => {
            let rev = g.revision.as_deref().map_or("no commit", |r| &r[..r.len().min(12)]);
            format!("git {rev}{}", if g.dirty { " (dirty)" } else { "" })
        }
    };
    let result = match (run.success, &run.finished_at) {
        (_, None) => "UNFINISHED".to_string(),
        (Some(true), Some(_)) => "ok".to_string(),
        _ => match &run.error {
            Some(e) => format!("FAILED: {e}"),
            None => "FAILED".to_string(),
        },
    };
    let kind = match &run.action {
        Some(action) => format!("{} {action}", run.kind.as_str()),
        None => run.kind.as_str().to_string(),
    };
    writeln!(
        out,
        "#{} {} {kind} {}@{} {git} {result}",
        run.id.0, run.started_at, run.user, run.host
    )?;
    for m in &run.machines {
        let mut line = format!(
            "  {:<24} {:<22} {}",
            m.machine,
            m.generation.as_deref().unwrap_or("-"),
            m.state
        );
        if let Some(phase) = &m.phase {
            line.push_str(&format!(" in {phase}"));
        }
        if let Some(error) = m.error.as_deref().filter(|_| run.error.is_none()) {
            line.push_str(&format!(": {error}"));
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}
