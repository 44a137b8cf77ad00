//! Deploy jobs: start one (with a preview of what it would touch), read it, list the
//! history, cancel.

mod cancel_job;
mod get_job;
mod list_jobs;
mod preview_deploy;
mod start_deploy;

pub use cancel_job::*;
pub use get_job::*;
pub use list_jobs::*;
pub use preview_deploy::*;
pub use start_deploy::*;
