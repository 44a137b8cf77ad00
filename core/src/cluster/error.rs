//! Errors of reading a cluster. Each names the file and the machine or option concerned.

use std::path::PathBuf;
use std::sync::Arc;

/// Cloneable, so that a configuration's error can be remembered and returned again.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InventoryError {
    #[error("{}", crate::conf_dir::missing_cluster_dir(.0))]
    MissingClusterDir(PathBuf),

    #[error(
        "Nix is not installed: '{program}' was not found in PATH. Install Nix (on Debian: \
         `apt-get install --no-install-recommends nix-bin`, or run scripts/setup) and try again"
    )]
    NixNotInstalled { program: String },

    /// Nix rejected the cluster: syntax errors (with Nix's location), unknown options,
    /// wrong types, conflicting definitions, missing required options.
    #[error("evaluating the cluster in '{}' failed:\n{message}", conf_dir.display())]
    Eval { conf_dir: PathBuf, message: String },

    #[error(
        "carrier '{carrier}' (defined in {}) carries machine '{machine}', which does not exist in the cluster",
        files.join(", ")
    )]
    UnknownCarriedMachine { carrier: String, machine: String, files: Vec<String> },

    #[error(
        "two machines are both named '{name}': {first} and {second}; give one of the carried entries a distinct alias"
    )]
    DuplicateName { name: String, first: String, second: String },

    #[error("machine '{machine}' (defined in {}): {message}", files.join(", "))]
    Invalid { machine: String, files: Vec<String>, message: String },

    #[error(
        "no cache directory: set CARRIER_CACHE_DIR (or pass --cache-dir), XDG_CACHE_HOME or HOME; \
         carrier does not fall back to a shared temporary directory"
    )]
    NoCacheDir,

    #[error("the cache directory cannot be used: {0}")]
    CacheDir(Arc<crate::private_dir::PrivateDirError>),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: Arc<std::io::Error>,
    },

    #[error("the evaluator's output could not be read: {0}")]
    Output(String),
}

impl InventoryError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        InventoryError::Io { context: context.into(), source: Arc::new(source) }
    }
}

impl From<crate::private_dir::PrivateDirError> for InventoryError {
    fn from(e: crate::private_dir::PrivateDirError) -> Self {
        InventoryError::CacheDir(Arc::new(e))
    }
}
