//! The status page's data.

mod get_status;

pub use get_status::*;
