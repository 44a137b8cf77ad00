//! A carrier's contents and its boot preview.

mod get_carrier;
mod preview_boot;

pub use get_carrier::*;
pub use preview_boot::*;
