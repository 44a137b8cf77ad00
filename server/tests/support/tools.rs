//! The lab's tools and paths: programs and boot files installed by `scripts/setup`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};

// ------------------------------------------------------------------------------------
// Tools and paths
// ------------------------------------------------------------------------------------

/// The checkout's root (the workspace directory).
pub(crate) fn carrier_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Where the lab's programs and boot files are. All paths exist (checked by [`tools`]).
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    /// The Debian cloud kernel (`.local/kernel/vmlinuz`).
    pub kernel: PathBuf,
    /// atftpd unpacked from its .deb (`.local/atftpd/usr/sbin/atftpd`).
    pub atftpd: PathBuf,
    /// A static busybox (the initramfs payload).
    pub busybox: PathBuf,
    pub nginx: PathBuf,
    pub qemu: PathBuf,
    /// `/usr/lib/PXELINUX` (pxelinux.0).
    pub pxelinux_dir: PathBuf,
    /// `/usr/lib/syslinux/modules/bios` (ldlinux.c32, menu.c32, …).
    pub syslinux_bios_dir: PathBuf,
    /// `/usr/lib/syslinux` (memdisk).
    pub syslinux_dir: PathBuf,
    /// The kernel's virtio-net driver and what it needs (`.local/kernel/modules`: `*.ko`
    /// and `load-order`); checked by [`Tools::kernel_modules`], the boots that use it.
    kernel_modules: PathBuf,
}

impl Tools {
    /// The directory of the kernel's NIC driver modules (the cloud kernel has none built
    /// in); panics with a pointer to `scripts/setup` when it is missing.
    pub(crate) fn kernel_modules(&self) -> &Path {
        let order = self.kernel_modules.join("load-order");
        assert!(order.is_file(), "netlab: {} is missing; run scripts/setup", order.display());
        &self.kernel_modules
    }
}

/// The lab's tools; panics with a pointer to `scripts/setup` when one is missing.
pub(crate) fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let root = carrier_root();
        let t = Tools {
            kernel: root.join(".local/kernel/vmlinuz"),
            atftpd: root.join(".local/atftpd/usr/sbin/atftpd"),
            busybox: PathBuf::from("/bin/busybox"),
            nginx: PathBuf::from("/usr/sbin/nginx"),
            qemu: PathBuf::from("/usr/bin/qemu-system-x86_64"),
            pxelinux_dir: PathBuf::from("/usr/lib/PXELINUX"),
            syslinux_bios_dir: PathBuf::from("/usr/lib/syslinux/modules/bios"),
            syslinux_dir: PathBuf::from("/usr/lib/syslinux"),
            kernel_modules: root.join(".local/kernel/modules"),
        };
        let needed = [
            &t.kernel,
            &t.atftpd,
            &t.busybox,
            &t.nginx,
            &t.qemu,
            &t.pxelinux_dir.join("pxelinux.0"),
            &t.syslinux_bios_dir.join("menu.c32"),
            &t.syslinux_dir.join("memdisk"),
            &PathBuf::from("/usr/bin/cpio"),
            &PathBuf::from("/usr/bin/tftp"),
            &PathBuf::from("/usr/bin/curl"),
        ];
        for p in needed {
            assert!(p.exists(), "netlab: {} is missing; run scripts/setup", p.display());
        }
        t
    })
}

/// The syslinux files of carrier's TFTP tree (spec 3.4), with where they come from.
pub(crate) fn syslinux_files() -> Vec<(&'static str, PathBuf)> {
    let t = tools();
    let bios = |n: &'static str| (n, t.syslinux_bios_dir.join(n));
    vec![
        ("pxelinux.0", t.pxelinux_dir.join("pxelinux.0")),
        bios("ldlinux.c32"),
        bios("libcom32.c32"),
        bios("libutil.c32"),
        ("memdisk", t.syslinux_dir.join("memdisk")),
        bios("menu.c32"),
        bios("reboot.c32"),
    ]
}

/// Copies [`syslinux_files`] into `dir` (a TFTP root).
pub(crate) fn install_syslinux(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    for (name, src) in syslinux_files() {
        fs::copy(&src, dir.join(name)).with_context(|| format!("copy {}", src.display()))?;
    }
    Ok(())
}
