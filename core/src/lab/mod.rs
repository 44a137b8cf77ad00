//! The lab: simulated hosts for real deploys. Each runnable machine of a cluster gets an
//! `sshd` on 127.0.0.1 inside its own mount and UTS namespace, with its own directories
//! over `/nix`, `/root` and `/run`, reachable as the machine's ssh target through a
//! generated ssh_config. Production command lines (`nix-copy-closure --to <alias>`,
//! `nix-env -p … --set`, `carrier profile set` on a carrier) then run unchanged against
//! it. docs/lab.md describes the commands, the state directory and the limits.
//!
//! - [`layout`]: every path of the state directory.
//! - [`files`]: the text of every file written (pure, unit-tested).
//! - [`process`]: starting, checking and stopping the sshds (by recorded PID only).

pub mod files;
pub mod layout;
pub mod process;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use layout::{HostLayout, Layout};
use process::Stopped;

/// How long `up` waits for every host to accept an ssh login.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The directories bind-mounted on every lab host: whatever lies below them on the
/// developer's machine is invisible on the hosts.
pub const HIDDEN_ON_HOSTS: [&str; 3] = ["/nix", "/root", "/run"];

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{action} '{}': {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("machine '{machine}': its ssh target '{alias}' cannot be a lab host alias ({reason})")]
    Alias { machine: String, alias: String, reason: &'static str },
    #[error("machines '{first}' and '{second}' have the same ssh target '{alias}'")]
    DuplicateAlias { alias: String, first: String, second: String },
    #[error("the cluster has no runnable, non-carried machine: nothing to simulate")]
    NoHosts,
    #[error(
        "the lab state directory '{}' cannot be used: {reason}",
        path.display()
    )]
    StateDir { path: PathBuf, reason: String },
    #[error("the lab in '{}' is already up ({hosts}); run `carrier lab down` first", dir.display())]
    AlreadyUp { dir: PathBuf, hosts: String },
    #[error("no lab is up in '{}' (no lab.json)", dir.display())]
    NotUp { dir: PathBuf },
    #[error("invalid lab record '{}': {message}", file.display())]
    Record { file: PathBuf, message: String },
    #[error("`{}` failed ({status}): {stderr}", argv.join(" "))]
    Tool { argv: Vec<String>, status: String, stderr: String },
    #[error("lab host '{alias}' did not start: {message}\n--- {} ---\n{log}", log_file.display())]
    Start { alias: String, message: String, log_file: PathBuf, log: String },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LabError {
    let path = path.to_path_buf();
    move |source| LabError::Io { action, path, source }
}

/// One host to simulate, taken from a cluster machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlan {
    pub machine: String,
    /// The machine's ssh target: the `Host` alias of the lab's ssh_config.
    pub alias: String,
    pub carrier: bool,
    /// The netboot menu title of a carrier (`host.name`, else the machine name).
    pub host_name: String,
}

/// The hosts of `cluster`: every runnable, non-carried machine, under its ssh target.
pub fn plan(cluster: &Cluster) -> Result<Vec<HostPlan>, LabError> {
    let mut hosts: Vec<HostPlan> = Vec::new();
    for m in cluster.machines.iter().filter(|m| m.is_runnable()) {
        let alias = m.target_host().expect("runnable machines have a target").to_string();
        if !layout::valid_alias(&alias) {
            return Err(LabError::Alias {
                machine: m.name.clone(),
                alias,
                reason: "expected letters, digits, '.', '-' or '_', not starting with '.' or '-'",
            });
        }
        if let Some(other) = hosts.iter().find(|h| h.alias == alias) {
            return Err(LabError::DuplicateAlias { alias, first: other.machine.clone(), second: m.name.clone() });
        }
        let host_name = m.meta_config.host.as_ref().and_then(|h| h.name.clone()).unwrap_or_else(|| m.name.clone());
        hosts.push(HostPlan { machine: m.name.clone(), alias, carrier: m.is_carrier(), host_name });
    }
    if hosts.is_empty() {
        return Err(LabError::NoHosts);
    }
    Ok(hosts)
}

/// `lab.json`: the running lab, written by `up` once every host answers, removed by `down`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabRecord {
    pub hosts: Vec<HostRecord>,
    pub ssh_config: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostRecord {
    pub machine: String,
    pub alias: String,
    pub port: u16,
    /// sshd's PID (its own session; `down` signals exactly this PID).
    pub pid: u32,
    /// The host's directory, `<state dir>/hosts/<alias>`.
    pub root: PathBuf,
    pub carrier: bool,
}

impl HostRecord {
    fn layout(&self) -> HostLayout {
        HostLayout { alias: self.alias.clone(), dir: self.root.clone() }
    }

    /// The process exists, is still this host's sshd, and its port accepts connections.
    pub fn alive(&self) -> bool {
        process::pid_alive(self.pid)
            && process::is_lab_sshd(self.pid, &self.layout().sshd_config())
            && process::port_accepts(self.port)
    }
}

impl LabRecord {
    pub fn load(layout: &Layout) -> Result<Option<LabRecord>, LabError> {
        let file = layout.record();
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("reading", &file)(e)),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| LabError::Record { file, message: e.to_string() })
    }
}

/// The default state directory of a configuration directory.
pub fn default_dir(conf_dir: &Path) -> PathBuf {
    conf_dir.join(".carrier-lab")
}

/// The bind-mounted directory `path` lies under, if any (then lab hosts cannot see it).
pub fn hidden_on_hosts(path: &Path) -> Option<&'static str> {
    HIDDEN_ON_HOSTS.into_iter().find(|d| path.starts_with(d))
}

/// What `up` needs besides the hosts.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The state directory (created when missing).
    pub dir: PathBuf,
    /// Put first on every session's PATH: the directory of the running `carrier`.
    pub carrier_bin_dir: PathBuf,
    /// The developer's `NIX_CONF_DIR`: its `nix.conf` is the base of the lab's.
    pub nix_conf_dir: Option<PathBuf>,
}

/// Starts the lab. An already running lab (a record with a live host) is an error
/// naming its hosts; a stale record (no host alive) is replaced. Host keys, the client
/// key and each host's `/nix` are kept from an earlier run in the same directory.
/// When a host fails, the hosts already started are stopped and no record is written.
pub fn up(hosts: &[HostPlan], opts: &UpOptions) -> Result<LabRecord, LabError> {
    let dir = std::path::absolute(&opts.dir).map_err(io("resolving", &opts.dir))?;
    let state_dir_err = |reason: String| LabError::StateDir { path: dir.clone(), reason };
    if !layout::config_safe(&dir) {
        return Err(state_dir_err(
            "it goes into ssh configuration files, so it must be UTF-8 without whitespace, quotes, '%', '~', '#' or '\\'"
                .into(),
        ));
    }
    if let Some(mount) = hidden_on_hosts(&dir) {
        return Err(state_dir_err(format!("it lies under {mount}, which every lab host replaces with its own")));
    }
    let layout = Layout::new(dir.clone());
    if let Some(record) = LabRecord::load(&layout)? {
        let alive: Vec<String> = record
            .hosts
            .iter()
            .filter(|h| process::pid_alive(h.pid) && process::is_lab_sshd(h.pid, &h.layout().sshd_config()))
            .map(|h| format!("{} pid {} port {}", h.alias, h.pid, h.port))
            .collect();
        if !alive.is_empty() {
            return Err(LabError::AlreadyUp { dir, hosts: alive.join(", ") });
        }
    }
    remove_file_if_exists(&layout.record())?;

    prepare_shared(&layout, opts)?;
    let ports = process::free_ports(hosts.len()).map_err(io("choosing ports on", Path::new("127.0.0.1")))?;
    let mut ssh_config = String::from("# Written by `carrier lab up`. Use with ssh -F / NIX_SSHOPTS=\"-F <this file>\".\n");
    let mut known_hosts = String::new();
    for (plan, port) in hosts.iter().zip(&ports) {
        let host = layout.host(&plan.alias);
        let public_key = prepare_host(&layout, &host, plan, *port, &opts.carrier_bin_dir)?;
        ssh_config.push('\n');
        ssh_config.push_str(&files::ssh_config_block(&layout, &plan.alias, *port));
        known_hosts.push_str(&files::known_hosts_line(&plan.alias, &public_key).ok_or_else(|| LabError::Record {
            file: host.host_public_key(),
            message: "not an ssh public key".into(),
        })?);
    }
    write(&layout.ssh_config(), &ssh_config)?;
    write(&layout.known_hosts(), &known_hosts)?;

    let mut started: Vec<(HostRecord, Child)> = Vec::new();
    let result = start_all(&layout, hosts, &ports, &mut started);
    if let Err(e) = result {
        let targets: Vec<(u32, PathBuf)> = started.iter().map(|(r, _)| (r.pid, r.layout().sshd_config())).collect();
        let results = process::stop(&targets.iter().map(|(p, c)| (*p, c.as_path())).collect::<Vec<_>>());
        for ((_, mut child), result) in started.into_iter().zip(results) {
            // Unreaped children of this process cannot have a reused PID: one that has not
            // reached sshd's exec yet (so did not look like ours) is killed directly.
            if result == Stopped::NotOurs {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        return Err(e);
    }
    let record = LabRecord { hosts: started.into_iter().map(|(r, _)| r).collect(), ssh_config: layout.ssh_config() };
    let tmp = layout.dir.join("lab.json.tmp");
    write(&tmp, &(serde_json::to_string_pretty(&record).expect("JSON") + "\n"))?;
    std::fs::rename(&tmp, layout.record()).map_err(io("writing", &layout.record()))?;
    Ok(record)
}

/// Spawns every sshd, then waits (one shared deadline) until each accepts an ssh login.
fn start_all(
    layout: &Layout,
    hosts: &[HostPlan],
    ports: &[u16],
    started: &mut Vec<(HostRecord, Child)>,
) -> Result<(), LabError> {
    for (plan, port) in hosts.iter().zip(ports) {
        let host = layout.host(&plan.alias);
        let child = process::spawn_sshd(&host).map_err(|e| start_error(&host, format!("spawning setsid: {e}")))?;
        let record = HostRecord {
            machine: plan.machine.clone(),
            alias: plan.alias.clone(),
            port: *port,
            pid: child.id(),
            root: host.dir.clone(),
            carrier: plan.carrier,
        };
        started.push((record, child));
    }
    let deadline = Instant::now() + START_TIMEOUT;
    for (record, child) in started.iter_mut() {
        let host = record.layout();
        let mut last = String::from("its port never accepted a connection");
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(start_error(&host, format!("sshd exited ({status})")));
            }
            if process::port_accepts(record.port) {
                let argv = ssh_ready_argv(layout, &record.alias);
                let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
                let ran = process::run_with_timeout(&argv, left).map_err(io("running ssh for", &host.dir))?;
                match ran.status {
                    Some(s) if s.success() => break,
                    Some(s) => last = format!("`{}` failed ({s}): {}", argv.join(" "), ran.stderr.trim()),
                    None => last = format!("`{}` timed out", argv.join(" ")),
                }
            }
            if Instant::now() >= deadline {
                return Err(start_error(&host, format!("not reachable within {START_TIMEOUT:?}: {last}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// The readiness check: the host answers over ssh and its store gets its database
/// (`nix-store --init`), as a real host's has. Without one, concurrent first copies to
/// the host race to create it and fail with "SQLite database is busy".
fn ssh_ready_argv(layout: &Layout, alias: &str) -> Vec<String> {
    let ssh = ["ssh", "-F", &layout.ssh_config().display().to_string(), alias, "nix-store", "--init"];
    ssh.iter().map(|s| s.to_string()).collect()
}

fn start_error(host: &HostLayout, message: String) -> LabError {
    let log = std::fs::read_to_string(host.log()).unwrap_or_else(|e| format!("(unreadable: {e})"));
    LabError::Start { alias: host.alias.clone(), message, log_file: host.log(), log: log.trim_end().to_string() }
}

/// The client key, authorized_keys and the lab's nix.conf.
fn prepare_shared(layout: &Layout, opts: &UpOptions) -> Result<(), LabError> {
    mkdir(&layout.hosts_dir())?;
    ensure_key(&layout.client_key(), "carrier-lab-client")?;
    let public = layout.client_key().with_extension("pub");
    let key = std::fs::read_to_string(&public).map_err(io("reading", &public))?;
    write(&layout.authorized_keys(), &key)?;

    let conf_dir = layout.nix_conf_dir();
    mkdir(&conf_dir)?;
    let registry = conf_dir.join("registry.json");
    write(&registry, files::EMPTY_REGISTRY)?;
    let existing = match opts.nix_conf_dir.as_ref().map(|d| d.join("nix.conf")) {
        Some(file) if file.is_file() => Some(std::fs::read_to_string(&file).map_err(io("reading", &file))?),
        _ => None,
    };
    write(&conf_dir.join("nix.conf"), &files::nix_conf(existing.as_deref(), &registry))
}

/// A host's directories, host key, sshd_config and (carriers) carrier files. Returns
/// the host's public key.
fn prepare_host(
    layout: &Layout,
    host: &HostLayout,
    plan: &HostPlan,
    port: u16,
    carrier_bin_dir: &Path,
) -> Result<String, LabError> {
    // A real NixOS host always has its profiles directory; `carrier profile list` needs it.
    let profiles = host.nix().join("var/nix/profiles");
    for d in [profiles, host.root(), host.run().join("sshd"), host.etc()] {
        mkdir(&d)?;
    }
    // sshd refuses a privilege separation directory writable by others.
    set_mode(&host.run().join("sshd"), 0o755)?;
    ensure_key(&host.host_key(), &format!("carrier-lab-{}", plan.alias))?;
    write(&host.sshd_config(), &files::sshd_config(layout, host, port, plan.carrier, carrier_bin_dir))?;
    if plan.carrier {
        mkdir(&host.carrier_etc())?;
        mkdir(&host.dir.join("srv"))?;
        write(&host.host_json(), &files::host_json(host))?;
        write(&host.netboot_json(), &files::netboot_json(host, &plan.host_name))?;
        write(&host.record_event(), files::RECORD_EVENT_SCRIPT)?;
    }
    let public = host.host_public_key();
    std::fs::read_to_string(&public).map_err(io("reading", &public))
}

/// Generates an ed25519 key pair at `path` unless one is there (keys survive `down`,
/// so known_hosts entries stay valid across restarts).
fn ensure_key(path: &Path, comment: &str) -> Result<(), LabError> {
    if path.is_file() && path.with_extension("pub").is_file() {
        return Ok(());
    }
    remove_file_if_exists(path)?;
    remove_file_if_exists(&path.with_extension("pub"))?;
    let argv: Vec<String> = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"]
        .map(String::from)
        .into_iter()
        .chain([path.display().to_string()])
        .collect();
    let out = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(io("running ssh-keygen for", path))?;
    if !out.status.success() {
        return Err(LabError::Tool {
            argv,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// One host as `status` sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostStatus {
    pub machine: String,
    pub alias: String,
    pub port: u16,
    pub pid: u32,
    pub alive: bool,
    pub carrier: bool,
}

pub fn status(dir: &Path) -> Result<Vec<HostStatus>, LabError> {
    let layout = Layout::new(dir.to_path_buf());
    let record = LabRecord::load(&layout)?.ok_or_else(|| LabError::NotUp { dir: dir.to_path_buf() })?;
    Ok(record
        .hosts
        .iter()
        .map(|h| HostStatus {
            machine: h.machine.clone(),
            alias: h.alias.clone(),
            port: h.port,
            pid: h.pid,
            alive: h.alive(),
            carrier: h.carrier,
        })
        .collect())
}

/// What `down` did to one host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostStopped {
    pub alias: String,
    pub pid: u32,
    pub result: Stopped,
}

/// Stops the recorded sshds (see [`process::stop`]) and removes `lab.json`. With
/// `purge`, also removes everything `up` wrote (host directories with their stores),
/// and the state directory itself when that leaves it empty.
pub fn down(dir: &Path, purge: bool) -> Result<Vec<HostStopped>, LabError> {
    let layout = Layout::new(dir.to_path_buf());
    let record = LabRecord::load(&layout)?.ok_or_else(|| LabError::NotUp { dir: dir.to_path_buf() })?;
    let configs: Vec<PathBuf> = record.hosts.iter().map(|h| h.layout().sshd_config()).collect();
    let targets: Vec<(u32, &Path)> = record.hosts.iter().zip(&configs).map(|(h, c)| (h.pid, c.as_path())).collect();
    let results = process::stop(&targets);
    remove_file_if_exists(&layout.record())?;
    if purge {
        self::purge(&layout)?;
    }
    Ok(record
        .hosts
        .iter()
        .zip(results)
        .map(|(h, result)| HostStopped { alias: h.alias.clone(), pid: h.pid, result })
        .collect())
}

/// Removes only the entries `up` creates, never anything else in the directory.
fn purge(layout: &Layout) -> Result<(), LabError> {
    let key = layout.client_key();
    for file in [layout.ssh_config(), layout.known_hosts(), layout.authorized_keys(), key.with_extension("pub"), key] {
        remove_file_if_exists(&file)?;
    }
    for d in [layout.hosts_dir(), layout.nix_conf_dir()] {
        remove_tree(&d)?;
    }
    match std::fs::remove_dir(&layout.dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        // Something else lives there: keep it.
        Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => Ok(()),
        Err(e) => Err(io("removing", &layout.dir)(e)),
    }
}

/// `remove_dir_all` after making every directory writable: a lab host's /nix/store
/// holds read-only directories. Symlinks are never followed.
fn remove_tree(path: &Path) -> Result<(), LabError> {
    fn writable(path: &Path) -> Result<(), LabError> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("reading", path)(e)),
        };
        if meta.is_dir() {
            set_mode(path, 0o755)?;
            for entry in std::fs::read_dir(path).map_err(io("reading", path))? {
                writable(&entry.map_err(io("reading", path))?.path())?;
            }
        }
        Ok(())
    }
    writable(path)?;
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("removing", path)(e)),
    }
}

fn mkdir(path: &Path) -> Result<(), LabError> {
    std::fs::create_dir_all(path).map_err(io("creating", path))
}

fn write(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(io("writing", path))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io("changing the mode of", path))
}

fn remove_file_if_exists(path: &Path) -> Result<(), LabError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("removing", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::model::tests::machine;
    use crate::cluster::{Host, Spin};

    fn host(target: Option<&str>) -> Option<Host> {
        Some(Host {
            name: None,
            location: None,
            domain: None,
            full_domain: None,
            fqdn: None,
            target: target.map(String::from),
            port: 22,
        })
    }

    #[test]
    fn plan_takes_runnable_machines_under_their_target() {
        let mut pxe = machine("pxe", Spin::Nixos);
        pxe.meta_config.carrier.enable = true;
        pxe.meta_config.host = host(Some("pxe.lab"));
        let mut node1 = machine("node1", Spin::Nixos);
        node1.meta_config.host = host(Some("node1.lab"));
        let mut carried = machine("pxe#node1", Spin::Nixos);
        carried.carrier = Some("pxe".into());
        let mut off = machine("off", Spin::Nixos);
        off.meta_config.host = host(None);
        let cluster = Cluster { machines: vec![node1.clone(), off, pxe, carried] };
        let p = plan(&cluster).unwrap();
        assert_eq!(
            p.iter().map(|h| (h.machine.as_str(), h.alias.as_str(), h.carrier)).collect::<Vec<_>>(),
            [("node1", "node1.lab", false), ("pxe", "pxe.lab", true)]
        );

        let mut twin = machine("twin", Spin::Nixos);
        twin.meta_config.host = host(Some("node1.lab"));
        let e = plan(&Cluster { machines: vec![node1, twin] }).unwrap_err().to_string();
        assert_eq!(e, "machines 'node1' and 'twin' have the same ssh target 'node1.lab'");
        let bad = machine("prg/node3", Spin::Other);
        let e = plan(&Cluster { machines: vec![bad] }).unwrap_err().to_string();
        assert!(e.starts_with("machine 'prg/node3': its ssh target 'prg/node3' cannot be"), "{e}");
    }

    #[test]
    fn state_dir_must_be_visible_on_hosts() {
        assert_eq!(hidden_on_hosts(Path::new("/root/conf/.carrier-lab")), Some("/root"));
        assert_eq!(hidden_on_hosts(Path::new("/nixos/lab")), None);
        let opts = UpOptions { dir: "/run/lab".into(), carrier_bin_dir: "/usr/bin".into(), nix_conf_dir: None };
        let e = up(&[], &opts).unwrap_err().to_string();
        assert!(e.contains("'/run/lab'") && e.contains("under /run"), "{e}");
    }

    #[test]
    fn down_without_a_lab_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let e = down(d.path(), false).unwrap_err().to_string();
        assert_eq!(e, format!("no lab is up in '{}' (no lab.json)", d.path().display()));
    }
}
