//! Shared helpers of server's integration tests (`mod support;` in a test file).
//!
//! Most of them are the netboot lab: real atftpd, real nginx, network namespaces and real
//! PXE boots under QEMU, for tests that prove carrier's TFTP and HTTP trees with the
//! components that serve them in production.
//!
//! Everything here is started by the test and stopped by RAII guards: processes are killed
//! by PID (their own process group) on drop, namespaces are deleted on drop, and every wait
//! has a hard timeout. Traffic goes only to loopback or to addresses inside namespaces
//! created here (`10.213.0.0/16`, checked with `ip route get` before anything is sent).
//!
//! What it needs comes from `scripts/setup`: qemu-system-x86, pxelinux, syslinux-common,
//! cpio, nginx, tftp-hpa, busybox-static, atftpd unpacked in `.local/atftpd` and a Debian
//! cloud kernel in `.local/kernel/vmlinuz`.
//!
//! One module per part: tools, processes, netns, atftpd, nginx, fetch, initramfs, qemu;
//! `postgres` is the storage tests' throw-away PostgreSQL.

// Each test binary uses a different part of the helpers.
#![allow(dead_code)]

pub(crate) mod atftpd;
pub(crate) mod cli;
pub(crate) mod fetch;
pub(crate) mod initramfs;
pub(crate) mod lab;
pub(crate) mod netns;
pub(crate) mod nginx;
/// The storage tests' throw-away PostgreSQL cluster (one harness for both crates).
#[path = "../../../storage/tests/support/mod.rs"]
pub(crate) mod postgres;
pub(crate) mod processes;
pub(crate) mod qemu;
pub(crate) mod serve;
pub(crate) mod tools;
