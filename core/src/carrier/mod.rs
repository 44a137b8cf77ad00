//! Carrier-side work: what runs on a carrier when a carried machine is deployed to it.
//!
//! - [`profile_change`] changes a carried profile (`nix-env --set`/`--delete-generations`)
//!   and runs the carrier's on-change hooks (upstream's `carrier-env`).
//! - [`profiles`] reads a Nix profiles directory: every `confctl-<name>-<N>-link`, grouped
//!   by profile, with the current generation, and the typed `machine.json` of a
//!   generation (spec 1.5, 3.2).
//! - [`dist`] reads the files of a carried artifact as untrusted input: only inside the
//!   Nix store, regular files, size-capped.
//! - [`netboot`] builds and atomically publishes the TFTP (PXELINUX and iPXE) and HTTP
//!   trees of a netboot server from those profiles (spec 3.2 to 3.6).
//! - [`kexec`] is the netbooted machines' side: `carrier kexec-netboot` loads another
//!   generation a carrier offers (spec 3.7).

pub mod dist;
mod json_fields;
pub mod kexec;
pub mod netboot;
pub mod profile_change;
pub mod profiles;
