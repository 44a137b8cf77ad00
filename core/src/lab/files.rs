//! The text of every file a lab writes: sshd and ssh configurations, known_hosts, the
//! carrier's `host.json`/`netboot.json`, the on-change event recorder and `nix.conf`.
//! Pure functions of the layout, so they are unit-tested without starting anything.

use std::path::Path;

use serde_json::json;

use super::layout::{HostLayout, Layout};

/// The fixed script every lab sshd starts through. Paths arrive as positional
/// arguments (`$1` nix, `$2` root, `$3` run, `$4` sshd_config, `$5` hostname) and are
/// never interpolated into the script, so no path can inject shell syntax.
pub const START_SCRIPT: &str = r#"set -e
mount --bind "$1" /nix
mount --bind "$2" /root
mount --bind "$3" /run
hostname "$5"
exec /usr/sbin/sshd -D -e -f "$4"
"#;

/// A lab host's `reboot` (first on its sessions' PATH, instead of the machine's own):
/// `carrier lab reboot` restarts this host's sshd, whose uptime then starts at zero.
/// The state directory and alias come from the session's environment (sshd_config's
/// `SetEnv`), never from the script's text.
pub const REBOOT_SCRIPT: &str = r#"#!/bin/sh
# Written by `carrier lab up`: a lab host reboots by restarting its sshd (docs/lab.md).
exec carrier lab reboot --dir "$CARRIER_LAB_DIR" "$CARRIER_LAB_HOST"
"#;

/// Mirrors the upstream acceptance test's event hook: every on-change run appends
/// `on-change`, then `<profile> -> <target>` for each carried profile (not the
/// `-N-link` generations), to `/run/carrier-events.log` (the host's own /run).
pub const RECORD_EVENT_SCRIPT: &str = r#"# Written by `carrier lab up`: the on-change hook that records profile changes.
set -eu
log=/run/carrier-events.log
echo on-change >> "$log"
for p in /nix/var/nix/profiles/confctl-*; do
  case "$p" in *-link) continue ;; esac
  [ -L "$p" ] || continue
  echo "$p -> $(readlink "$p")" >> "$log"
done
"#;

/// Settings a lab's Nix must have whatever the developer's `nix.conf` says: no build
/// users (there is no nixbld group in a lab host) and no binary cache (loopback only).
const FORCED_NIX_SETTINGS: &str = "build-users-group =\nsubstituters =\ntrusted-substituters =\n";

/// The PATH of every lab session: the running carrier's directory first, so `carrier`
/// on a lab host is the binary that started the lab.
pub fn session_path(carrier_bin_dir: &Path) -> String {
    format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        carrier_bin_dir.display()
    )
}

/// sshd reads the keys from `/root/.ssh/authorized_keys` inside the host's namespace
/// (the host's own `root/` directory) and checks, as on a real host (`StrictModes yes`),
/// that neither the file nor a directory up to `/root` is writable by others.
pub fn sshd_config(
    layout: &Layout,
    host: &HostLayout,
    port: u16,
    carrier: bool,
    carrier_bin_dir: &Path,
) -> String {
    let mut env = format!(
        "PATH={}:{} NIX_CONF_DIR={} HOME=/root CARRIER_LAB_DIR={} CARRIER_LAB_HOST={}",
        host.bin().display(),
        session_path(carrier_bin_dir),
        layout.nix_conf_dir().display(),
        layout.dir.display(),
        host.alias,
    );
    if carrier {
        env.push_str(&format!(
            " CARRIER_HOST_CONFIG={} CARRIER_NETBOOT_CONFIG={}",
            host.host_json().display(),
            host.netboot_json().display()
        ));
    }
    format!(
        "# Written by `carrier lab up` for lab host {alias}.\n\
         ListenAddress 127.0.0.1\n\
         Port {port}\n\
         HostKey {host_key}\n\
         PidFile {pid_file}\n\
         AuthorizedKeysFile /root/.ssh/authorized_keys\n\
         PermitRootLogin prohibit-password\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         StrictModes yes\n\
         MaxSessions 100\n\
         MaxStartups 100:30:200\n\
         SetEnv {env}\n",
        alias = host.alias,
        host_key = host.host_key().display(),
        pid_file = host.pid_file().display(),
    )
}

/// One `Host` block; `HostKeyAlias` makes known_hosts entries per lab host even though
/// every host is 127.0.0.1.
pub fn ssh_config_block(layout: &Layout, alias: &str, port: u16) -> String {
    format!(
        "Host {alias}\n\
         \x20 HostName 127.0.0.1\n\
         \x20 Port {port}\n\
         \x20 User root\n\
         \x20 IdentityFile {identity}\n\
         \x20 IdentitiesOnly yes\n\
         \x20 HostKeyAlias {alias}\n\
         \x20 UserKnownHostsFile {known_hosts}\n\
         \x20 GlobalKnownHostsFile /dev/null\n\
         \x20 StrictHostKeyChecking yes\n\
         \x20 UpdateHostKeys no\n\
         \x20 BatchMode yes\n\
         \x20 ConnectTimeout 5\n",
        identity = layout.client_key().display(),
        known_hosts = layout.known_hosts().display(),
    )
}

/// `<alias> <type> <base64>` from a public key file's text (`<type> <base64> <comment>`).
pub fn known_hosts_line(alias: &str, public_key: &str) -> Option<String> {
    let mut fields = public_key.split_whitespace();
    let (kind, key) = (fields.next()?, fields.next()?);
    Some(format!("{alias} {kind} {key}\n"))
}

/// The carrier's `host.json` (see `HostConfig`): record the event, then rebuild netboot.
pub fn host_json(host: &HostLayout) -> String {
    let value = json!({
        "profilesDir": crate::profile_name::PROFILES_DIR,
        "lockFile": "/run/carrier/profile.lock",
        "onChange": [
            ["/bin/sh", host.record_event().display().to_string()],
            ["carrier", "netboot", "build", "--config", host.netboot_json().display().to_string()],
        ],
    });
    serde_json::to_string_pretty(&value).expect("JSON") + "\n"
}

/// The carrier's `netboot.json` (see `NetbootConfig`), trees under the host's `srv/`.
/// Nothing serves them in the lab; `httpUrl` only has to be well-formed.
pub fn netboot_json(host: &HostLayout, host_name: &str) -> String {
    let value = json!({
        "tftpRoot": host.tftp_root().display().to_string(),
        "httpRoot": host.http_root().display().to_string(),
        "hostName": host_name,
        "httpUrl": format!("http://{}", host.alias),
        "syslinux": ["/usr/lib/PXELINUX", "/usr/lib/syslinux/modules/bios", "/usr/lib/syslinux"],
        "profilesDir": crate::profile_name::PROFILES_DIR,
        "lockFile": "/run/carrier/netboot.lock",
    });
    serde_json::to_string_pretty(&value).expect("JSON") + "\n"
}

/// The lab's `nix.conf`: the developer's settings (`existing`, the content of
/// `$NIX_CONF_DIR/nix.conf`) without any substituter line, or guide's defaults, then
/// the forced settings (later lines win in nix.conf).
pub fn nix_conf(existing: Option<&str>, registry: &Path) -> String {
    let base = match existing {
        Some(text) => text
            .lines()
            .filter(|l| {
                let key = l.split('=').next().unwrap_or("").trim();
                !key.ends_with("substituters") && key != "build-users-group"
            })
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
        None => format!(
            "sandbox = true\nrequire-sigs = false\nexperimental-features = nix-command flakes\nflake-registry = {}\n",
            registry.display()
        ),
    };
    format!(
        "{base}# Forced by `carrier lab up`: no build users, no binary cache.\n{FORCED_NIX_SETTINGS}"
    )
}

pub const EMPTY_REGISTRY: &str = "{\"flakes\":[],\"version\":2}\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carrier::netboot::NetbootConfig;
    use crate::carrier::profile_change::HostConfig;

    fn layout() -> Layout {
        Layout::new("/tmp/lab".into())
    }

    #[test]
    fn sshd_config_of_a_carrier() {
        let l = layout();
        let h = l.host("pxe.lab");
        let text = sshd_config(&l, &h, 2201, true, Path::new("/opt/carrier/bin"));
        assert!(text.contains("\nPort 2201\n"));
        assert!(text.contains("\nHostKey /tmp/lab/hosts/pxe.lab/ssh_host_ed25519_key\n"));
        assert!(text.contains(
            "\nAuthorizedKeysFile /root/.ssh/authorized_keys\nPermitRootLogin prohibit-password\n"
        ));
        assert!(text.contains("\nStrictModes yes\n"));
        assert!(text.contains(
            "\nSetEnv PATH=/tmp/lab/hosts/pxe.lab/bin:/opt/carrier/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
             NIX_CONF_DIR=/tmp/lab/nix-conf HOME=/root CARRIER_LAB_DIR=/tmp/lab CARRIER_LAB_HOST=pxe.lab \
             CARRIER_HOST_CONFIG=/tmp/lab/hosts/pxe.lab/etc/carrier/host.json \
             CARRIER_NETBOOT_CONFIG=/tmp/lab/hosts/pxe.lab/etc/carrier/netboot.json\n"
        ));
        let plain = sshd_config(&l, &l.host("node1.lab"), 2202, false, Path::new("/bin"));
        assert!(!plain.contains("CARRIER_HOST_CONFIG") && !plain.contains("CARRIER_NETBOOT"));
    }

    #[test]
    fn ssh_config_and_known_hosts() {
        let block = ssh_config_block(&layout(), "node1.lab", 2202);
        assert!(block.starts_with("Host node1.lab\n  HostName 127.0.0.1\n  Port 2202\n"));
        assert!(
            block.contains("  HostKeyAlias node1.lab\n  UserKnownHostsFile /tmp/lab/known_hosts\n")
        );
        assert_eq!(
            known_hosts_line("node1.lab", "ssh-ed25519 AAAAC3 carrier-lab\n").unwrap(),
            "node1.lab ssh-ed25519 AAAAC3\n"
        );
        assert_eq!(known_hosts_line("x", "garbage"), None);
    }

    #[test]
    fn carrier_files_load_with_the_real_readers() {
        let l = layout();
        let h = l.host("pxe.lab");
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host.json");
        std::fs::write(&host, host_json(&h)).unwrap();
        let c = HostConfig::load(&host).unwrap();
        assert_eq!(c.lock_file, Path::new("/run/carrier/profile.lock"));
        assert_eq!(c.on_change[0], ["/bin/sh", "/tmp/lab/hosts/pxe.lab/etc/carrier/record-event"]);
        assert_eq!(c.on_change[1][4], "/tmp/lab/hosts/pxe.lab/etc/carrier/netboot.json");
        let nb = dir.path().join("netboot.json");
        std::fs::write(&nb, netboot_json(&h, "pxe")).unwrap();
        let n = NetbootConfig::load(&nb).unwrap();
        assert_eq!(n.tftp_root, Path::new("/tmp/lab/hosts/pxe.lab/srv/tftp"));
        assert_eq!(n.http_root, Path::new("/tmp/lab/hosts/pxe.lab/srv/http"));
    }

    #[test]
    fn nix_conf_never_substitutes() {
        let dev = "sandbox = true\nsubstituters = https://cache.nixos.org\nextra-substituters = x\nbuild-users-group = nixbld\n";
        let text = nix_conf(Some(dev), Path::new("/r.json"));
        assert!(
            !text.contains("cache.nixos.org")
                && !text.contains("extra-substituters")
                && !text.contains("nixbld")
        );
        assert!(
            text.starts_with("sandbox = true\n")
                && text.ends_with("substituters =\ntrusted-substituters =\n")
        );
        assert!(nix_conf(None, Path::new("/r.json")).contains("flake-registry = /r.json\n"));
    }
}
