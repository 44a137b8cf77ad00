//! The one error type server functions return. Its variants are safe to show in a
//! browser: internal detail (absolute paths, SQL, stderr of internal tools) is logged
//! on the server and never sent.

use leptos::prelude::{FromServerFnError, ServerFnErrorErr};
use leptos::server_fn::codec::JsonEncoding;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AppError {
    /// The request named something invalid (a pattern, filter or name); the message
    /// names the value.
    #[error("{0}")]
    BadInput(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The caller is not signed in (401).
    #[error("not authorised: {0}")]
    Unauthorized(String),
    /// The caller is known and may not do this (403); the message says why.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The cluster configuration does not evaluate; the message is Nix's, with paths
    /// shown relative to the configuration directory.
    #[error("{0}")]
    Cluster(String),
    /// A host the answer needs could not be asked, or did not answer (502); the message
    /// names the host and says why.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error (see the server log)")]
    Internal,
    #[error("request failed: {0}")]
    Transport(String),
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::Transport(value.to_string())
    }
}
