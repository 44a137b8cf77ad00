//! The history of builds and deploys, from the CLI and the dashboard.

mod list_history;

pub use list_history::*;
