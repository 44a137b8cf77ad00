//! confctl's configuration-wide settings (`confctl.*`): upstream's defaults overridden
//! by `<configuration>/configs/confctl.nix`, evaluated once by `nix/eval-settings.nix`.
//! Read by generation rotation (limits, garbage collection), `carrier ls` (default
//! columns) and builds (default `--max-jobs`).

use std::path::{Path, PathBuf};

use crate::conf_dir::ConfDir;
use crate::generation::{Limits, Settings as GenerationSettings};
use crate::nix;

/// Every `confctl.*` value carrier honours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfctlSettings {
    pub generations: GenerationSettings,
    /// `confctl.list.columns`: the columns of `carrier ls` without `-o`.
    pub list_columns: Vec<String>,
    /// `confctl.nix.maxJobs` (a number or `auto`): Nix's `--max-jobs` without `-j`.
    pub nix_max_jobs: Option<String>,
}

impl Default for ConfctlSettings {
    /// Upstream's defaults (modules/confctl/settings.nix).
    fn default() -> Self {
        ConfctlSettings {
            generations: GenerationSettings::default(),
            list_columns: ["name", "spin", "host.fqdn"].map(String::from).to_vec(),
            nix_max_jobs: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("reading the confctl settings of {}: {source}", conf_dir.display())]
pub struct SettingsError {
    pub conf_dir: PathBuf,
    #[source]
    pub source: nix::NixError,
}

/// `confctl.*` as `eval-settings.nix` prints it.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SettingsJson {
    build_generations: Limits,
    host_generations: HostSettingsJson,
    list: ListJson,
    nix: NixJson,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct HostSettingsJson {
    #[serde(flatten)]
    limits: Limits,
    collect_garbage: bool,
}

#[derive(serde::Deserialize)]
struct ListJson {
    columns: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct NixJson {
    /// An integer or `"auto"` (the option's type checks it).
    max_jobs: Option<serde_json::Value>,
}

impl ConfctlSettings {
    /// Evaluates the configuration's settings.
    pub fn load(conf_dir: &ConfDir, cache_dir: &Path) -> Result<ConfctlSettings, SettingsError> {
        let failed = |source| SettingsError { conf_dir: conf_dir.path().to_path_buf(), source };
        let evaluator = nix::materialize_evaluator(cache_dir).map_err(failed)?;
        let conf = conf_dir.path().display().to_string();
        let argv = nix::eval_json_argv(&evaluator.join("eval-settings.nix"), &[("confDir", &conf)]);
        let out = nix::run(&argv).map_err(failed)?;
        let json: SettingsJson = serde_json::from_slice(&out)
            .map_err(|e| failed(nix::NixError::Failed { message: e.to_string() }))?;
        Ok(ConfctlSettings {
            generations: GenerationSettings {
                build_generations: json.build_generations,
                host_generations: json.host_generations.limits,
                collect_garbage: json.host_generations.collect_garbage,
            },
            list_columns: json.list.columns,
            nix_max_jobs: json.nix.max_jobs.map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            }),
        })
    }
}
