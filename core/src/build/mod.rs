//! Building machines (spec 2.1, 2.4): one `nix-build` of carrier's
//! `nix/build-machines.nix` per group of machines with identical `nix.nixPath`, its
//! progress streamed as events, then the local build generations of spec 1.6.
//!
//! Decisions (docs/build.md): machines are keyed by their flake key in the evaluator
//! (names such as `pxe#node1` or `prg/node1` are not safe in `-A` paths); results are
//! held by `--out-link`s in a temporary directory until the generations' own GC roots
//! exist; generations are recorded only when every group built, so a failed run leaves
//! no partial state.

mod generations;
mod nix_log;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::cluster::{discover_module_files, Machine, Spin};
use crate::events::{Event, EventSink, Outcome, Phase};
use crate::nix::{self, NixError};

pub use generations::{default_gc_roots_dir, find, generations_root, list, machine_dir, Generation};

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Where carrier's Nix code is materialized (the inventory's cache directory).
    pub cache_dir: PathBuf,
    /// Pass `--show-trace` to Nix.
    pub show_trace: bool,
    /// Nix's `--max-jobs` (a number or `auto`).
    pub max_jobs: Option<String>,
    /// Nix's `--cores`.
    pub cores: Option<u32>,
    /// Where GC roots go; default [`default_gc_roots_dir`] of the configuration.
    pub gc_roots_dir: Option<PathBuf>,
}

impl BuildOptions {
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        BuildOptions { cache_dir: cache_dir.into(), show_trace: false, max_jobs: None, cores: None, gc_roots_dir: None }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no machines to build")]
    NoMachines,
    #[error("machine '{machine}' cannot be built: {reason}")]
    NotBuildable { machine: String, reason: String },
    #[error("'{program}' was not found in PATH")]
    NixNotInstalled { program: String },
    /// Nix failed for a group of machines (one nix-build); `message` is Nix's.
    #[error("building {} failed: {message}", quote_list(.machines))]
    Nix { machines: Vec<String>, message: String },
    #[error("generation {}: {message}", .dir.display())]
    Generation { dir: PathBuf, message: String },
    #[error("the cache directory cannot be used: {0}")]
    CacheDir(#[source] crate::private_dir::PrivateDirError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn quote_list(names: &[String]) -> String {
    names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ")
}

/// One entry of `machinesJson` (nix/build-machines.nix).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EvalMachine<'a> {
    key: String,
    name: &'a str,
    cluster_name: &'a str,
    spin: Spin,
    build_attribute: &'a [String],
    extra_modules: &'a [String],
}

/// Builds `machines` of the configuration in `conf_dir` and records a generation for
/// each (a reused one when the toplevel did not change). Returns machine name →
/// generation.
pub fn build(
    conf_dir: &Path,
    machines: &[Machine],
    opts: &BuildOptions,
    sink: &dyn EventSink,
) -> Result<BTreeMap<String, Generation>, BuildError> {
    if machines.is_empty() {
        return Err(BuildError::NoMachines);
    }
    // realpath: the GC roots' directory is keyed by it (spec 1.6)
    let conf_dir = std::fs::canonicalize(conf_dir)
        .map_err(|e| BuildError::Io { context: format!("resolving {}", conf_dir.display()), source: e })?;
    for m in machines {
        if !matches!(m.meta_config.spin, Spin::Nixos | Spin::Vpsadminos) {
            return Err(BuildError::NotBuildable {
                machine: m.name.clone(),
                reason: format!("spin '{}' has no system to build (only nixos and vpsadminos)", m.meta_config.spin),
            });
        }
    }
    let evaluator = nix::materialize_evaluator(&opts.cache_dir).map_err(nix_error(&[]))?;
    let module_files = discover_module_files(&conf_dir.join("cluster")).map_err(|e| BuildError::Io {
        context: format!("reading {}", conf_dir.join("cluster").display()),
        source: std::io::Error::other(e.to_string()),
    })?;
    let module_files_json = serde_json::to_string(&module_files).expect("paths serialize");
    let (gen_name, date) = generation_name(&conf_dir, machines);

    sink.emit(Event::PhaseStarted { phase: Phase::Build, machines: machines.len() });
    // Groups of identical nix.nixPath, in the order of their first machine.
    let mut groups: Vec<(&[String], Vec<&Machine>)> = Vec::new();
    for m in machines {
        let path = m.meta_config.nix.nix_path.as_slice();
        match groups.iter_mut().find(|(p, _)| *p == path) {
            Some((_, ms)) => ms.push(m),
            None => groups.push((path, vec![m])),
        }
    }
    let work = conf_dir.join(".confctl").join("build");
    std::fs::create_dir_all(&work)
        .map_err(|e| BuildError::Io { context: format!("creating {}", work.display()), source: e })?;
    // Holds every result's --out-link (an indirect GC root) until the generations'
    // roots exist; removed when dropped.
    let links = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&work)
        .map_err(|e| BuildError::Io { context: format!("creating a directory in {}", work.display()), source: e })?;
    let mut built: Vec<(&Machine, PathBuf)> = Vec::new();
    let mut auto_rollback = None;
    for (i, (nix_path, group)) in groups.iter().enumerate() {
        let ctx = GroupCtx {
            evaluator: &evaluator,
            conf_dir: &conf_dir,
            module_files_json: &module_files_json,
            nix_path,
            machines: group,
            opts,
        };
        let outs = match build_group(&ctx, &links.path().join(format!("g{i}")), sink) {
            Ok(outs) => outs,
            Err(e) => {
                for m in group {
                    sink.emit(Event::MachineFinished {
                        phase: Phase::Build,
                        machine: m.name.clone(),
                        outcome: Outcome::Failed { error: e.to_string() },
                    });
                }
                sink.emit(Event::PhaseFinished { phase: Phase::Build });
                return Err(e);
            }
        };
        if auto_rollback.is_none() {
            auto_rollback = Some(eval_auto_rollback(&ctx)?);
        }
        built.extend(group.iter().copied().zip(outs));
    }

    let roots_dir = opts.gc_roots_dir.clone().unwrap_or_else(|| default_gc_roots_dir(&conf_dir));
    let mut result = BTreeMap::new();
    for (m, toplevel) in built {
        let record = generations::Built {
            machine: &m.name,
            toplevel: &toplevel,
            auto_rollback: auto_rollback.as_deref(),
        };
        let generation = generations::record(&conf_dir, &record, &gen_name, &date, &roots_dir)?;
        sink.emit(Event::MachineFinished { phase: Phase::Build, machine: m.name.clone(), outcome: Outcome::Ok });
        result.insert(m.name.clone(), generation);
    }
    sink.emit(Event::PhaseFinished { phase: Phase::Build });
    drop(links);
    Ok(result)
}

/// The generation name of this run (local time, `YYYY-MM-DD--HH-MM-SS`) and its ISO
/// 8601 date. One run uses one name for all machines; when a machine already has a
/// directory of that name (two runs within a second), the run waits for the next
/// second rather than overwrite or invent a time.
fn generation_name(conf_dir: &Path, machines: &[Machine]) -> (String, String) {
    loop {
        let now = jiff::Zoned::now();
        let name = now.strftime("%Y-%m-%d--%H-%M-%S").to_string();
        let taken = machines.iter().any(|m| machine_dir(conf_dir, &m.name).join(&name).exists());
        if !taken {
            return (name, now.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string());
        }
        let ms = 1000 - now.timestamp().subsec_millisecond().clamp(0, 999) as u64;
        std::thread::sleep(std::time::Duration::from_millis(ms + 5));
    }
}

struct GroupCtx<'a> {
    evaluator: &'a Path,
    conf_dir: &'a Path,
    module_files_json: &'a str,
    nix_path: &'a [String],
    machines: &'a [&'a Machine],
    opts: &'a BuildOptions,
}

impl GroupCtx<'_> {
    fn names(&self) -> Vec<String> {
        self.machines.iter().map(|m| m.name.clone()).collect()
    }

    fn machines_json(&self) -> String {
        let list: Vec<EvalMachine<'_>> = self
            .machines
            .iter()
            .map(|m| EvalMachine {
                key: m.key(),
                name: &m.name,
                cluster_name: &m.cluster_name,
                spin: m.meta_config.spin,
                build_attribute: &m.meta_config.build_attribute,
                extra_modules: &m.extra_modules,
            })
            .collect();
        serde_json::to_string(&list).expect("machines serialize")
    }

    /// Arguments shared by the build and the evaluation: search path and --argstr's.
    fn common_args(&self) -> Vec<String> {
        let mut argv = vec![self.evaluator.join("build-machines.nix").display().to_string()];
        argv.extend(["-I".to_string(), format!("carrier={}", self.evaluator.display())]);
        for entry in self.nix_path {
            argv.extend(["-I".to_string(), entry.clone()]);
        }
        for (name, value) in [
            ("confDir", self.conf_dir.display().to_string()),
            ("moduleFilesJson", self.module_files_json.to_string()),
            ("machinesJson", self.machines_json()),
        ] {
            argv.extend(["--argstr".to_string(), name.to_string(), value]);
        }
        argv
    }
}

/// The nix-build argv of a group (results linked below `out_link`).
fn build_argv(ctx: &GroupCtx<'_>, out_link: &Path) -> Vec<String> {
    let mut argv = vec![
        "nix-build".to_string(),
        "--out-link".into(),
        out_link.display().to_string(),
        "--log-format".into(),
        "internal-json".into(),
        "-v".into(),
    ];
    if ctx.opts.show_trace {
        argv.push("--show-trace".into());
    }
    if let Some(j) = &ctx.opts.max_jobs {
        argv.extend(["--max-jobs".to_string(), j.clone()]);
    }
    if let Some(c) = ctx.opts.cores {
        argv.extend(["--cores".to_string(), c.to_string()]);
    }
    argv.extend(ctx.common_args());
    for m in ctx.machines {
        argv.extend(["-A".to_string(), format!("{}.toplevel", m.key())]);
    }
    argv
}

/// Runs one group's nix-build, streaming its log; returns the output paths in machine
/// order.
fn build_group(ctx: &GroupCtx<'_>, out_link: &Path, sink: &dyn EventSink) -> Result<Vec<PathBuf>, BuildError> {
    let argv = build_argv(ctx, out_link);
    let (program, args) = argv.split_first().expect("argv has a program");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => BuildError::NixNotInstalled { program: program.clone() },
            _ => BuildError::Io { context: format!("running {program}"), source: e },
        })?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).map(|_| out)
    });
    let single = (ctx.machines.len() == 1).then(|| ctx.machines[0].name.clone());
    let mut parser = nix_log::LogParser::new(sink, single);
    let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    for line in stderr.split(b'\n') {
        let line = line.map_err(|e| BuildError::Io { context: "reading nix-build's output".into(), source: e })?;
        parser.line(&String::from_utf8_lossy(&line));
    }
    let status = child
        .wait()
        .map_err(|e| BuildError::Io { context: "waiting for nix-build".into(), source: e })?;
    let stdout = reader
        .join()
        .expect("stdout reader")
        .map_err(|e| BuildError::Io { context: "reading nix-build's output".into(), source: e })?;
    if !status.success() {
        return Err(BuildError::Nix {
            machines: ctx.names(),
            message: parser.error_message(&format!("nix-build exited with {status}")),
        });
    }
    let outs: Vec<PathBuf> = stdout.lines().filter(|l| !l.is_empty()).map(PathBuf::from).collect();
    if outs.len() != ctx.machines.len() {
        return Err(BuildError::Nix {
            machines: ctx.names(),
            message: format!(
                "nix-build printed {} output paths for {} machines:\n{stdout}",
                outs.len(),
                ctx.machines.len()
            ),
        });
    }
    Ok(outs)
}

/// The auto-rollback script's store path (`builtins.toFile`: written by the
/// evaluation itself, hence --read-write-mode). It is the same for every machine.
fn eval_auto_rollback(ctx: &GroupCtx<'_>) -> Result<PathBuf, BuildError> {
    let mut argv = vec![
        "nix-instantiate".to_string(),
        "--eval".into(),
        "--read-write-mode".into(),
        "--json".into(),
    ];
    argv.extend(ctx.common_args());
    argv.extend(["-A".to_string(), format!("{}.autoRollback", ctx.machines[0].key())]);
    let out = nix::run(&argv).map_err(nix_error(&ctx.names()))?;
    let path: String = serde_json::from_slice(&out).map_err(|e| BuildError::Nix {
        machines: ctx.names(),
        message: format!("unexpected output of the auto-rollback evaluation: {e}"),
    })?;
    Ok(PathBuf::from(path))
}

fn nix_error(machines: &[String]) -> impl FnOnce(NixError) -> BuildError + '_ {
    move |e| match e {
        NixError::NotInstalled { program } => BuildError::NixNotInstalled { program },
        NixError::Failed { message } => BuildError::Nix { machines: machines.to_vec(), message },
        NixError::CacheDir(e) => BuildError::CacheDir(e),
        NixError::Io { context, source } => BuildError::Io { context, source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::tests::machine;

    #[test]
    fn build_argv_is_a_vector_with_search_path_and_keys() {
        let mut m = machine("pxe#node1", Spin::Nixos);
        m.meta_config.nix.nix_path = vec!["nixpkgs=/l/nixpkgs x".into()];
        let ms = [&m];
        let opts = BuildOptions { show_trace: true, max_jobs: Some("2".into()), ..BuildOptions::new("/c") };
        let ctx = GroupCtx {
            evaluator: Path::new("/e"),
            conf_dir: Path::new("/conf"),
            module_files_json: "[]",
            nix_path: &m.meta_config.nix.nix_path,
            machines: &ms,
            opts: &opts,
        };
        let argv = build_argv(&ctx, Path::new("/conf/.confctl/build/x/g0"));
        assert_eq!(&argv[..6], ["nix-build", "--out-link", "/conf/.confctl/build/x/g0", "--log-format", "internal-json", "-v"]);
        let joined = argv.join("\u{0}");
        assert!(joined.contains("-I\u{0}carrier=/e\u{0}-I\u{0}nixpkgs=/l/nixpkgs x\u{0}"), "{argv:?}");
        assert!(joined.contains("--show-trace\u{0}--max-jobs\u{0}2"), "{argv:?}");
        assert_eq!(argv.last().unwrap(), &format!("{}.toplevel", m.key()));
        let json: serde_json::Value = serde_json::from_str(&argv[argv.len() - 3]).unwrap();
        assert_eq!(json[0]["name"], "pxe#node1");
        assert_eq!(json[0]["spin"], "nixos");
        assert_eq!(json[0]["buildAttribute"], serde_json::json!(["system", "build", "toplevel"]));
    }

    #[test]
    fn errors_name_the_machines() {
        let e = BuildError::Nix { machines: vec!["a".into(), "pxe#b".into()], message: "boom".into() };
        assert_eq!(e.to_string(), "building 'a', 'pxe#b' failed: boom");
    }
}
