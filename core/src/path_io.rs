//! An I/O error that says what was being done to which path, shared by core's error enums.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{action} '{}': {source}", path.display())]
pub struct PathIoError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl PathIoError {
    /// The error of `action` ("reading", "creating", …) on `path`, for `map_err`.
    pub fn at(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| PathIoError { action, path, source }
    }
}
