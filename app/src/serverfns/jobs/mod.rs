//! Jobs: start a deploy or build (with a preview of what it would touch), a generation
//! removal or a netboot rebuild; read one, list the history, cancel.

mod cancel_job;
mod get_job;
mod list_jobs;
mod preview_deploy;
mod rebuild_netboot;
mod remove_generation;
mod start_deploy;

pub use cancel_job::*;
pub use get_job::*;
pub use list_jobs::*;
pub use preview_deploy::*;
pub use rebuild_netboot::*;
pub use remove_generation::*;
pub use start_deploy::*;
