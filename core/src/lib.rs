//! carrier's domain: everything a user can do, independent of the CLI and the web.
//!
//! The CLI (`server` crate) and the dashboard (`app` crate) are thin adapters over
//! the functions here.

pub mod auth;
pub mod build;
pub mod carrier;
pub mod checkin;
pub mod cluster;
pub mod conf_dir;
pub mod deploy;
pub mod events;
pub mod generation;
pub mod lab;
mod links;
pub mod lock;
pub mod nix;
pub mod path_io;
pub mod private_dir;
pub mod process;
pub mod profile_name;
pub mod remote;
pub mod settings;
pub mod status;
