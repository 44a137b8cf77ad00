//! Where the builder's directories sit next to the roots, and the relative link targets
//! that tie the trees to the objects (docs/netboot.md, "Reusing unchanged output").
//!
//! ```text
//! <parent>/tftp           → tftp.<suffix>      (the root symlinks, see `publish`)
//! <parent>/tftp.objects/  <key>/boot, <key>/menus, d-<hash>/   (see `objects`)
//! <parent>/http.objects/  <key>/tree, d-<hash>/, index
//! ```
//! Every target is relative, so a tree keeps working when the whole directory is moved,
//! and short: ext4 keeps a symlink of under 60 bytes in its inode.

use std::path::{Path, PathBuf};

use super::config::NetbootConfig;

/// Which tree a directory belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Tftp,
    Http,
}

/// The names of the roots and of their objects directories.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    tftp_objects: PathBuf,
    http_objects: PathBuf,
    tftp_objects_name: String,
    http_objects_name: String,
    tftp_root_name: String,
    http_root_name: String,
}

impl Layout {
    pub(super) fn new(cfg: &NetbootConfig) -> Layout {
        let (tftp_objects, http_objects) = (cfg.tftp_objects(), cfg.http_objects());
        Layout {
            tftp_objects_name: file_name(&tftp_objects),
            http_objects_name: file_name(&http_objects),
            tftp_root_name: file_name(&cfg.tftp_root),
            http_root_name: file_name(&cfg.http_root),
            tftp_objects,
            http_objects,
        }
    }

    /// The objects directory of a tree (`<root>.objects`).
    pub(super) fn objects(&self, side: Side) -> &Path {
        match side {
            Side::Tftp => &self.tftp_objects,
            Side::Http => &self.http_objects,
        }
    }

    /// `boot/<fqdn>` in the TFTP tree → the object's boot directory.
    pub(super) fn tftp_boot_target(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("../../{}/{key}/boot", self.tftp_objects_name))
    }

    /// `pxeserver/machines/<fqdn>` in the TFTP tree → the object's menus.
    pub(super) fn tftp_menus_target(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("../../../{}/{key}/menus", self.tftp_objects_name))
    }

    /// `<fqdn>` in the HTTP tree → the object's tree.
    pub(super) fn http_target(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("../{}/{key}/tree", self.http_objects_name))
    }

    /// `<name>` at a tree's root → the shared directory `key` in the objects directory.
    pub(super) fn shared_target(&self, side: Side, key: &str) -> PathBuf {
        let objects = match side {
            Side::Tftp => &self.tftp_objects_name,
            Side::Http => &self.http_objects_name,
        };
        PathBuf::from(format!("../{objects}/{key}"))
    }

    /// A link target from inside a shared directory to `path` (relative to the tree root)
    /// in the tree being served: through the root symlink, which sits next to the
    /// objects directory. A shared directory is reached from every tree that uses it, so
    /// a link in it cannot lead into one tree directly.
    pub(super) fn via_root(&self, side: Side, path: &str) -> PathBuf {
        let root = match side {
            Side::Tftp => &self.tftp_root_name,
            Side::Http => &self.http_root_name,
        };
        PathBuf::from(format!("../../{root}/{path}"))
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}
