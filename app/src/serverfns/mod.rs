//! Server functions: each authorises its caller, makes one service call and maps the
//! error. One small file per function.

pub mod account;
pub mod admin;
pub mod carriers;
pub mod history;
pub mod inventory;
pub mod jobs;
pub mod status;
