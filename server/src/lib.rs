//! The `carrier` binary's commands, as a library so tests can drive them.

pub mod accounts;
pub mod api;
pub mod build;
pub mod checkin;
pub mod cli;
pub mod deploy;
pub mod generation;
pub mod health_check;
pub mod healthz;
pub mod history;
pub mod identity;
pub mod job_feed;
pub mod jobs;
pub mod json;
pub mod kexec_netboot;
pub mod lab;
pub mod ls;
pub mod metrics;
pub mod netboot;
pub mod profile;
pub mod records;
pub mod serve;
pub mod ssh;
pub mod status;
pub mod test_connection;
pub mod web;
