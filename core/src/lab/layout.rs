//! Where everything of a lab lives in its state directory (docs/lab.md shows the tree).
//! One place for the paths, so `up`, `down`, `status` and the file renderers agree.

use std::path::{Path, PathBuf};

/// The state directory of one lab.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: PathBuf) -> Self {
        Layout { dir }
    }

    /// The record `down` and `status` read; present exactly while the lab is up.
    pub fn record(&self) -> PathBuf {
        self.dir.join("lab.json")
    }
    pub fn ssh_config(&self) -> PathBuf {
        self.dir.join("ssh_config")
    }
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }
    /// The one client key every lab host accepts.
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }
    /// `NIX_CONF_DIR` of every lab session.
    pub fn nix_conf_dir(&self) -> PathBuf {
        self.dir.join("nix-conf")
    }
    pub fn hosts_dir(&self) -> PathBuf {
        self.dir.join("hosts")
    }
    pub fn host(&self, alias: &str) -> HostLayout {
        HostLayout { alias: alias.to_string(), dir: self.hosts_dir().join(alias) }
    }
}

/// The directory of one lab host, `<state dir>/hosts/<alias>`.
#[derive(Debug, Clone)]
pub struct HostLayout {
    pub alias: String,
    pub dir: PathBuf,
}

impl HostLayout {
    /// Bind-mounted over `/nix`: the host's own store and profiles.
    pub fn nix(&self) -> PathBuf {
        self.dir.join("nix")
    }
    /// First on the PATH of the host's sessions: the lab's `reboot`.
    pub fn bin(&self) -> PathBuf {
        self.dir.join("bin")
    }
    pub fn reboot_script(&self) -> PathBuf {
        self.bin().join("reboot")
    }
    /// Bind-mounted over `/root`, with nothing but `.ssh/authorized_keys`: a shell rc
    /// file would cost time per command and anything it prints would corrupt
    /// `nix-store --serve`.
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
    /// `/root/.ssh/authorized_keys` on the host: the lab's client key.
    pub fn authorized_keys(&self) -> PathBuf {
        self.root().join(".ssh/authorized_keys")
    }
    /// Bind-mounted over `/run` (activation state, locks, sshd's privsep directory).
    pub fn run(&self) -> PathBuf {
        self.dir.join("run")
    }
    pub fn etc(&self) -> PathBuf {
        self.dir.join("etc")
    }
    pub fn sshd_config(&self) -> PathBuf {
        self.dir.join("sshd_config")
    }
    pub fn host_key(&self) -> PathBuf {
        self.dir.join("ssh_host_ed25519_key")
    }
    pub fn host_public_key(&self) -> PathBuf {
        self.dir.join("ssh_host_ed25519_key.pub")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("sshd.pid")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("sshd.log")
    }
    pub fn carrier_etc(&self) -> PathBuf {
        self.etc().join("carrier")
    }
    pub fn host_json(&self) -> PathBuf {
        self.carrier_etc().join("host.json")
    }
    pub fn netboot_json(&self) -> PathBuf {
        self.carrier_etc().join("netboot.json")
    }
    pub fn record_event(&self) -> PathBuf {
        self.carrier_etc().join("record-event")
    }
    pub fn tftp_root(&self) -> PathBuf {
        self.dir.join("srv/tftp")
    }
    pub fn http_root(&self) -> PathBuf {
        self.dir.join("srv/http")
    }
}

/// Paths written into sshd_config/ssh_config must survive their tokenizers: no
/// whitespace or quotes (word splitting), no `%` or `~` (ssh's token expansion), no `#`.
pub fn config_safe(path: &Path) -> bool {
    path.to_str().is_some_and(|s| !s.chars().any(|c| c.is_whitespace() || "\"'%~#\\".contains(c)))
}

/// Machines' ssh aliases become directory names and `Host` lines: a hostname-like
/// word, no glob characters, no path separators.
pub fn valid_alias(alias: &str) -> bool {
    !alias.is_empty()
        && !alias.starts_with(['.', '-'])
        && alias.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_paths() {
        assert!(valid_alias("node1.lab") && valid_alias("pxe_1-a"));
        for bad in ["", ".x", "-x", "a/b", "a*", "a b", "..", "node?"] {
            assert!(!valid_alias(bad), "{bad:?}");
        }
        assert!(config_safe(Path::new("/tmp/.tmpAb12/lab")));
        for bad in ["/tmp/a b", "/tmp/%h", "/tmp/~x", "/tmp/\"x"] {
            assert!(!config_safe(Path::new(bad)), "{bad:?}");
        }
    }
}
