//! Building machines (spec 2.1, 2.4): one `nix-build` of carrier's
//! `nix/build-machines.nix` per group of machines with identical `nix.nixPath` (a flake
//! configuration: one `nix build` of its `.#confctl.build.<key>.toplevel`s, spec
//! Appendix A), its progress streamed as events, then the local build generations of
//! spec 1.6.
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

use serde::{Deserialize, Serialize};

use crate::cluster::{
    Machine, Spin, discover_module_files, flake_argv, flake_installable, is_flake,
};
use crate::conf_dir::ConfDir;
use crate::events::{Event, EventSink, Outcome, Phase};
use crate::nix::{self, NixError};

use generations::FlakeInputs;
pub use generations::{Generation, default_gc_roots_dir, find, list, machine_dir, remove_roots};

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
    /// Nix's `--builders`: remote machines that build (e.g. `ssh://builder x86_64-linux - 4`,
    /// or `@<machines file>`); the results are copied back. `max_jobs = 0` builds only there.
    pub builders: Option<String>,
    /// An ssh_config added to Nix's `NIX_SSHOPTS` (`-F`), so builders may be its aliases.
    pub ssh_config: Option<PathBuf>,
}

impl BuildOptions {
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        BuildOptions {
            cache_dir: cache_dir.into(),
            show_trace: false,
            max_jobs: None,
            cores: None,
            gc_roots_dir: None,
            builders: None,
            ssh_config: None,
        }
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
    conf: &ConfDir,
    machines: &[Machine],
    opts: &BuildOptions,
    sink: &dyn EventSink,
) -> Result<BTreeMap<String, Generation>, BuildError> {
    if machines.is_empty() {
        return Err(BuildError::NoMachines);
    }
    for m in machines {
        if !matches!(m.meta_config.spin, Spin::Nixos | Spin::Vpsadminos) {
            return Err(BuildError::NotBuildable {
                machine: m.name.clone(),
                reason: format!(
                    "spin '{}' has no system to build (only nixos and vpsadminos)",
                    m.meta_config.spin
                ),
            });
        }
    }
    let evaluator = nix::materialize_evaluator(&opts.cache_dir).map_err(nix_error(&[]))?;
    let conf_dir = conf.path();
    let flake = is_flake(conf_dir);
    let module_files = if flake {
        Vec::new()
    } else {
        discover_module_files(&conf.cluster_dir()).map_err(|e| BuildError::Io {
            context: format!("reading {}", conf.cluster_dir().display()),
            source: std::io::Error::other(e.to_string()),
        })?
    };
    let module_files_json = serde_json::to_string(&module_files).expect("paths serialize");
    let (gen_name, date) = generation_name(conf, machines);

    let settings = if flake { Some(eval_flake_settings(conf_dir, machines)?) } else { None };

    sink.emit(Event::PhaseStarted { phase: Phase::Build, machines: machines.len() });
    // Groups of identical search paths, in the order of their first machine: nix.nixPath,
    // or for a flake the `-I` entries of confctl.nix.legacyNixPath (none: one group).
    let mut groups: Vec<(Vec<String>, Vec<&Machine>)> = Vec::new();
    for m in machines {
        let path = match &settings {
            Some(s) => s.search_path(m),
            None => m.meta_config.nix.nix_path.clone(),
        };
        match groups.iter_mut().find(|(p, _)| *p == path) {
            Some((_, ms)) => ms.push(m),
            None => groups.push((path, vec![m])),
        }
    }
    let work = conf.build_dir();
    std::fs::create_dir_all(&work).map_err(|e| BuildError::Io {
        context: format!("creating {}", work.display()),
        source: e,
    })?;
    // Holds every result's --out-link (an indirect GC root) until the generations'
    // roots exist; removed when dropped.
    let links = tempfile::Builder::new().prefix("build-").tempdir_in(&work).map_err(|e| {
        BuildError::Io { context: format!("creating a directory in {}", work.display()), source: e }
    })?;
    let mut built: Vec<(&Machine, PathBuf, Option<FlakeInputs>)> = Vec::new();
    let mut auto_rollback = None;
    for (i, (nix_path, group)) in groups.iter().enumerate() {
        let ctx = GroupCtx {
            evaluator: &evaluator,
            conf_dir,
            module_files_json: &module_files_json,
            nix_path,
            machines: group,
            opts,
            flake,
            impure: settings.as_ref().is_some_and(|s| s.nix.impure_eval),
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
        if flake {
            let results = eval_flake_results(&ctx)?;
            auto_rollback = Some(results.auto_rollback);
            let per_machine = results.toplevels.into_iter().zip(results.inputs);
            built.extend(group.iter().copied().zip(per_machine).map(|(m, (t, i))| (m, t, Some(i))));
            continue;
        }
        if auto_rollback.is_none() {
            auto_rollback = Some(eval_auto_rollback(&ctx)?);
        }
        built.extend(group.iter().copied().zip(outs).map(|(m, t)| (m, t, None)));
    }

    let roots_dir = opts.gc_roots_dir.clone().unwrap_or_else(|| default_gc_roots_dir(conf));
    let mut result = BTreeMap::new();
    for (m, toplevel, inputs) in built {
        let record = generations::Built {
            machine: &m.name,
            toplevel: &toplevel,
            auto_rollback: auto_rollback.as_deref(),
            flake: inputs.as_ref(),
        };
        let generation = generations::record(conf, &record, &gen_name, &date, &roots_dir)?;
        sink.emit(Event::MachineFinished {
            phase: Phase::Build,
            machine: m.name.clone(),
            outcome: Outcome::Ok,
        });
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
fn generation_name(conf_dir: &ConfDir, machines: &[Machine]) -> (String, String) {
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
    /// A flake configuration: `nix build` of its outputs instead of nix-build.
    flake: bool,
    /// Flake: `--impure` (confctl.nix.impureEval).
    impure: bool,
}

impl GroupCtx<'_> {
    fn names(&self) -> Vec<String> {
        self.machines.iter().map(|m| m.name.clone()).collect()
    }

    /// A flake's `nix` argv: `--impure` and `-I` entries as the settings say.
    fn flake_argv(&self, command: &[&str]) -> Vec<String> {
        let mut argv = flake_argv(command);
        if self.impure {
            argv.push("--impure".into());
        }
        for entry in self.nix_path {
            argv.extend(["-I".to_string(), entry.clone()]);
        }
        argv
    }

    /// `<conf>#<attr>`.
    fn installable(&self, attr: &str) -> Result<String, BuildError> {
        flake_installable(self.conf_dir, attr)
            .map_err(|e| BuildError::Nix { machines: self.names(), message: e.to_string() })
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

/// The nix-build (flake: nix build) argv of a group (results linked below `out_link`).
fn build_argv(ctx: &GroupCtx<'_>, out_link: &Path) -> Result<Vec<String>, BuildError> {
    let mut argv =
        if ctx.flake { ctx.flake_argv(&["build"]) } else { vec!["nix-build".to_string()] };
    argv.extend([
        "--out-link".into(),
        out_link.display().to_string(),
        "--log-format".into(),
        "internal-json".into(),
        "-v".into(),
    ]);
    if ctx.opts.show_trace {
        argv.push("--show-trace".into());
    }
    if let Some(j) = &ctx.opts.max_jobs {
        argv.extend(["--max-jobs".to_string(), j.clone()]);
    }
    if let Some(c) = ctx.opts.cores {
        argv.extend(["--cores".to_string(), c.to_string()]);
    }
    if let Some(b) = &ctx.opts.builders {
        argv.extend(["--builders".to_string(), b.clone()]);
    }
    if ctx.flake {
        for m in ctx.machines {
            argv.push(ctx.installable(&format!("confctl.build.{}.toplevel", m.key()))?);
        }
        argv.push(
            ctx.installable(&format!("confctl.build.{}.autoRollback", ctx.machines[0].key()))?,
        );
        return Ok(argv);
    }
    argv.extend(ctx.common_args());
    for m in ctx.machines {
        argv.extend(["-A".to_string(), format!("{}.toplevel", m.key())]);
    }
    Ok(argv)
}

/// Runs one group's nix-build, streaming its log; returns the output paths in machine
/// order.
fn build_group(
    ctx: &GroupCtx<'_>,
    out_link: &Path,
    sink: &dyn EventSink,
) -> Result<Vec<PathBuf>, BuildError> {
    let argv = build_argv(ctx, out_link)?;
    let (program, args) = argv.split_first().expect("argv has a program");
    let mut cmd = Command::new(program);
    if let Some(cfg) = &ctx.opts.ssh_config {
        // remote builders are reached by Nix's own ssh, configured by NIX_SSHOPTS
        let opts = std::env::var("NIX_SSHOPTS").unwrap_or_default();
        cmd.env("NIX_SSHOPTS", format!("{opts} -F {}", cfg.display()).trim_start());
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                BuildError::NixNotInstalled { program: program.clone() }
            }
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
        let line = line.map_err(|e| BuildError::Io {
            context: "reading nix-build's output".into(),
            source: e,
        })?;
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
    if ctx.flake {
        // nix build prints nothing; the paths are read from the flake (eval_flake_results)
        return Ok(Vec::new());
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

/// A flake configuration's `confctl.nix` settings and machines' inputs (spec 2.1).
#[derive(Deserialize)]
struct FlakeSettings {
    nix: FlakeNixSettings,
    /// Machine key → role → store path.
    inputs: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FlakeNixSettings {
    impure_eval: bool,
    legacy_nix_path: bool,
    legacy_nix_path_map: Vec<String>,
}

impl FlakeSettings {
    /// With legacyNixPath: `<name>=<input path>` for each name of legacyNixPathMap the
    /// machine has an input for, so that `<nixpkgs/...>` lookups find its input.
    fn search_path(&self, m: &Machine) -> Vec<String> {
        if !self.nix.legacy_nix_path {
            return Vec::new();
        }
        let inputs = self.inputs.get(&m.key());
        self.nix
            .legacy_nix_path_map
            .iter()
            .filter_map(|name| inputs?.get(name).map(|path| format!("{name}={path}")))
            .collect()
    }
}

/// One `nix eval` of the flake's settings and inputs, before building.
fn eval_flake_settings(conf_dir: &Path, machines: &[Machine]) -> Result<FlakeSettings, BuildError> {
    let names: Vec<String> = machines.iter().map(|m| m.name.clone()).collect();
    let installable = flake_installable(conf_dir, "confctl")
        .map_err(|e| BuildError::Nix { machines: names.clone(), message: e.to_string() })?;
    let mut argv = flake_argv(&["eval", "--json"]);
    argv.extend([
        installable,
        "--apply".into(),
        "c: { nix = c.settings.nix; inputs = c.inputs; }".into(),
    ]);
    let out = nix::run(&argv).map_err(nix_error(&names))?;
    let settings: FlakeSettings = serde_json::from_slice(&out).map_err(|e| BuildError::Nix {
        machines: names.clone(),
        message: format!("unexpected settings in {}#confctl: {e}", conf_dir.display()),
    })?;
    if settings.nix.legacy_nix_path && !settings.nix.impure_eval {
        return Err(BuildError::Nix {
            machines: names,
            message: "confctl.nix.legacyNixPath needs confctl.nix.impureEval: `<...>` lookups are impure (configs/confctl.nix)".into(),
        });
    }
    Ok(settings)
}

/// What a flake configuration's outputs say about a built group (spec Appendix A).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FlakeResults {
    toplevels: Vec<PathBuf>,
    auto_rollback: PathBuf,
    inputs: Vec<FlakeInputs>,
}

/// One `nix eval` of `.#confctl` for the group's toplevels, the auto-rollback script and
/// each machine's inputs, in machine order (`nix build --json` does not keep the
/// installables' order). Keys are `[A-Za-z0-9_]` only, safe inside the expression.
fn eval_flake_results(ctx: &GroupCtx<'_>) -> Result<FlakeResults, BuildError> {
    let keys: Vec<String> = ctx.machines.iter().map(|m| format!("\"{}\"", m.key())).collect();
    let keys = keys.join(" ");
    let apply = format!(
        "c: {{ toplevels = map (k: c.build.${{k}}.toplevel) [ {keys} ]; \
         autoRollback = c.build.{first}.autoRollback; \
         inputs = map (k: {{ inputs = c.inputs.${{k}}; inputs_info = c.inputsInfo.${{k}}; }}) [ {keys} ]; }}",
        first = ctx.machines[0].key()
    );
    let mut argv = ctx.flake_argv(&["eval", "--json"]);
    argv.extend([ctx.installable("confctl")?, "--apply".into(), apply]);
    let out = nix::run(&argv).map_err(nix_error(&ctx.names()))?;
    let results: FlakeResults = serde_json::from_slice(&out).map_err(|e| BuildError::Nix {
        machines: ctx.names(),
        message: format!("unexpected output of {}#confctl: {e}", ctx.conf_dir.display()),
    })?;
    for (m, i) in ctx.machines.iter().zip(&results.inputs) {
        if let Some(role) = i.inputs.keys().find(|r| !is_file_name(r)) {
            return Err(BuildError::Nix {
                machines: vec![m.name.clone()],
                message: format!(
                    "input role {role:?}: only letters, digits, '.', '_' and '-' can name a file"
                ),
            });
        }
    }
    if results.toplevels.len() != ctx.machines.len() || results.inputs.len() != ctx.machines.len() {
        return Err(BuildError::Nix {
            machines: ctx.names(),
            message: "the flake returned results for other machines".into(),
        });
    }
    Ok(results)
}

/// Whether `s` can name a file in a generation directory (`<role>.input`).
fn is_file_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
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
        let opts = BuildOptions {
            show_trace: true,
            max_jobs: Some("2".into()),
            builders: Some("ssh://b x86_64-linux".into()),
            ..BuildOptions::new("/c")
        };
        let ctx = GroupCtx {
            evaluator: Path::new("/e"),
            conf_dir: Path::new("/conf"),
            module_files_json: "[]",
            nix_path: &m.meta_config.nix.nix_path,
            machines: &ms,
            opts: &opts,
            flake: false,
            impure: false,
        };
        let argv = build_argv(&ctx, Path::new("/conf/.confctl/build/x/g0")).unwrap();
        assert_eq!(
            &argv[..6],
            [
                "nix-build",
                "--out-link",
                "/conf/.confctl/build/x/g0",
                "--log-format",
                "internal-json",
                "-v"
            ]
        );
        let joined = argv.join("\u{0}");
        assert!(
            joined.contains("-I\u{0}carrier=/e\u{0}-I\u{0}nixpkgs=/l/nixpkgs x\u{0}"),
            "{argv:?}"
        );
        assert!(
            joined.contains(
                "--show-trace\u{0}--max-jobs\u{0}2\u{0}--builders\u{0}ssh://b x86_64-linux\u{0}"
            ),
            "{argv:?}"
        );
        assert_eq!(argv.last().unwrap(), &format!("{}.toplevel", m.key()));
        let json: serde_json::Value = serde_json::from_str(&argv[argv.len() - 3]).unwrap();
        assert_eq!(json[0]["name"], "pxe#node1");
        assert_eq!(json[0]["spin"], "nixos");
        assert_eq!(json[0]["buildAttribute"], serde_json::json!(["system", "build", "toplevel"]));
    }

    #[test]
    fn input_roles_name_files_only_when_safe() {
        assert!(is_file_name("nixpkgs") && is_file_name("vpsadmin-os_2.x"));
        for bad in ["", ".hidden", "../x", "a/b", "a b"] {
            assert!(!is_file_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn legacy_nix_path_maps_the_machines_inputs() {
        let m = machine("pxe#node1", Spin::Nixos);
        let json = serde_json::json!({
            "nix": { "impureEval": true, "legacyNixPath": true, "legacyNixPathMap": ["nixpkgs", "vpsadminos"] },
            "inputs": { m.key(): { "nixpkgs": "/nix/store/a-source", "other": "/nix/store/b-source" } },
        });
        let mut settings: FlakeSettings = serde_json::from_value(json).unwrap();
        assert_eq!(settings.search_path(&m), ["nixpkgs=/nix/store/a-source"]);
        assert!(
            settings.search_path(&machine("other", Spin::Nixos)).is_empty(),
            "no inputs, no entries"
        );
        settings.nix.legacy_nix_path = false;
        assert!(settings.search_path(&m).is_empty());
    }

    #[test]
    fn errors_name_the_machines() {
        let e =
            BuildError::Nix { machines: vec!["a".into(), "pxe#b".into()], message: "boom".into() };
        assert_eq!(e.to_string(), "building 'a', 'pxe#b' failed: boom");
    }
}
