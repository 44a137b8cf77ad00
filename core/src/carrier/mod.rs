//! Carrier-side work: what runs on a carrier when a carried machine is deployed to it.

pub mod profile_change;
