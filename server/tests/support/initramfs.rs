//! The boot payload: a tiny initramfs printing a marker.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::netns::IP_TIMEOUT;
use super::processes::{run, run_ok};
use super::tools::tools;

/// The marker line an initramfs from [`build_initramfs`] prints.
pub(crate) fn marker_line(machine: &str, generation: u64) -> String {
    format!("NETBOOT-OK machine={machine} gen={generation}")
}

/// Writes a gzip'd newc cpio to `dest`: static busybox and an `/init` that prints
/// `NETBOOT-OK machine=<machine> gen=<generation>` and `NETBOOT-CMDLINE: <cmdline>` to
/// /dev/ttyS0, then powers off. The marker is baked in, so it proves which file was served.
pub(crate) fn build_initramfs(dest: &Path, machine: &str, generation: u64) -> Result<()> {
    if machine.is_empty()
        || !machine.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        bail!("machine name {machine:?}: only [A-Za-z0-9._-]");
    }
    let dir = tempfile::Builder::new().prefix("netlab-initramfs.").tempdir()?;
    let r = dir.path();
    for d in ["bin", "dev", "proc", "sys"] {
        fs::create_dir_all(r.join(d))?;
    }
    fs::copy(&tools().busybox, r.join("bin/busybox"))?;
    std::os::unix::fs::symlink("busybox", r.join("bin/sh"))?;
    let init = format!(
        r#"#!/bin/busybox sh
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t devtmpfs devtmpfs /dev
echo 1 > /proc/sys/kernel/printk
out=/dev/ttyS0
[ -c $out ] || out=/dev/console
cmdline=$($bb cat /proc/cmdline)
$bb printf '\n%s\nNETBOOT-CMDLINE: %s\n' '{marker}' "$cmdline" > $out
$bb sleep 0.2
$bb poweroff -f
"#,
        marker = marker_line(machine, generation)
    );
    fs::write(r.join("init"), init)?;
    fs::set_permissions(r.join("init"), fs::Permissions::from_mode(0o755))?;
    // /dev/console for the kernel's own use before devtmpfs is mounted (root only).
    let _ = run(Command::new("mknod").arg(r.join("dev/console")).args(["c", "5", "1"]), IP_TIMEOUT);
    let script = "find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -6n > \"$1\"";
    let dest_abs = std::path::absolute(dest)?;
    run_ok(
        Command::new("sh").args(["-ec", script, "sh"]).arg(&dest_abs).current_dir(r),
        Duration::from_secs(60),
    )
    .context("build the initramfs")?;
    Ok(())
}
