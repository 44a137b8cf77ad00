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
use crate::path_io::PathIoError;
use crate::private_dir::{self, PrivateDirError};
use layout::{HostLayout, Layout};
use process::Stopped;

/// How long `up` waits for every host to accept an ssh login, per started group of
/// [`START_GROUP`] hosts (see [`start_timeout`]).
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
pub const START_GROUP: usize = 10;

/// The shared deadline of `up` for `hosts` hosts: their logins are checked one after
/// the other, so a large lab (50 hosts for a benchmark) gets [`START_TIMEOUT`] per
/// [`START_GROUP`] hosts begun.
pub fn start_timeout(hosts: usize) -> Duration {
    START_TIMEOUT * hosts.div_ceil(START_GROUP).max(1) as u32
}

/// The directories bind-mounted on every lab host: whatever lies below them on the
/// developer's machine is invisible on the hosts.
pub const HIDDEN_ON_HOSTS: [&str; 3] = ["/nix", "/root", "/run"];

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Io(#[from] PathIoError),
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
    /// Not the caller's, or writable by others: its files configure root sshds and name
    /// the PIDs `down` signals.
    #[error("the lab state directory cannot be used: {0}")]
    NotPrivate(#[from] PrivateDirError),
    #[error("the lab in '{}' is already up ({hosts}); run `carrier lab down` first", dir.display())]
    AlreadyUp { dir: PathBuf, hosts: String },
    #[error("no lab is up in '{}' (no lab.json)", dir.display())]
    NotUp { dir: PathBuf },
    #[error("invalid lab record '{}': {message}", file.display())]
    Record { file: PathBuf, message: String },
    #[error("`{}` failed ({status}): {stderr}", argv.join(" "))]
    Tool { argv: Vec<String>, status: String, stderr: String },
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    #[error("'{alias}' is not a host of the lab in '{}' (it has: {hosts})", dir.display())]
    UnknownHost { alias: String, dir: PathBuf, hosts: String },
    #[error("lab host '{alias}' did not start: {message}\n--- {} ---\n{log}", log_file.display())]
    Start { alias: String, message: String, log_file: PathBuf, log: String },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LabError {
    let err = PathIoError::at(action, path);
    move |source| LabError::Io(err(source))
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
            return Err(LabError::DuplicateAlias {
                alias,
                first: other.machine.clone(),
                second: m.name.clone(),
            });
        }
        let host_name = m
            .meta_config
            .host
            .as_ref()
            .and_then(|h| h.name.clone())
            .unwrap_or_else(|| m.name.clone());
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
    pub carrier: bool,
    /// How often the host was rebooted (`reboot` on it, see [`reboot`]) since `up`.
    #[serde(default)]
    pub reboots: u32,
}

impl HostRecord {
    /// The host's sshd: this PID, running with the sshd_config of the layout computed
    /// from the state directory and the alias (never a path read from the record).
    fn is_ours(&self, layout: &Layout) -> bool {
        process::pid_alive(self.pid)
            && process::is_lab_sshd(self.pid, &layout.host(&self.alias).sshd_config())
    }

    /// The process is still this host's sshd, and its port accepts connections.
    pub fn alive(&self, layout: &Layout) -> bool {
        self.is_ours(layout) && process::port_accepts(self.port)
    }
}

impl LabRecord {
    /// Reads `lab.json`. Its aliases must be lab aliases: they name directories below
    /// the state directory.
    pub fn load(layout: &Layout) -> Result<Option<LabRecord>, LabError> {
        let file = layout.record();
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("reading", &file)(e)),
        };
        let record: LabRecord = serde_json::from_str(&text)
            .map_err(|e| LabError::Record { file: file.clone(), message: e.to_string() })?;
        if let Some(h) = record.hosts.iter().find(|h| !layout::valid_alias(&h.alias)) {
            let message = format!("host alias {:?} is not a lab alias", h.alias);
            return Err(LabError::Record { file, message });
        }
        Ok(Some(record))
    }
}

/// The layout of an existing state directory, after checking it is the caller's and
/// private (see [`private_dir::check`]).
///
/// The path is made absolute as `up` does, so the sshd_config paths computed here are
/// the ones on the sshds' command lines.
fn existing_layout(dir: &Path) -> Result<Layout, LabError> {
    if !dir.exists() {
        return Err(LabError::NotUp { dir: dir.to_path_buf() });
    }
    private_dir::check(dir)?;
    Ok(Layout::new(std::path::absolute(dir).map_err(io("resolving", dir))?))
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
        return Err(state_dir_err(format!(
            "it lies under {mount}, which every lab host replaces with its own"
        )));
    }
    private_dir::ensure(&dir)?;
    let layout = Layout::new(dir.clone());
    if let Some(record) = LabRecord::load(&layout)? {
        let alive: Vec<String> = record
            .hosts
            .iter()
            .filter(|h| h.is_ours(&layout))
            .map(|h| format!("{} pid {} port {}", h.alias, h.pid, h.port))
            .collect();
        if !alive.is_empty() {
            return Err(LabError::AlreadyUp { dir, hosts: alive.join(", ") });
        }
    }
    remove_file_if_exists(&layout.record())?;

    prepare_shared(&layout, opts)?;
    let ports = process::free_ports(hosts.len())
        .map_err(io("choosing ports on", Path::new("127.0.0.1")))?;
    let mut ssh_config = String::from(
        "# Written by `carrier lab up`. Use with ssh -F / NIX_SSHOPTS=\"-F <this file>\".\n",
    );
    let mut known_hosts = String::new();
    for (plan, port) in hosts.iter().zip(&ports) {
        let host = layout.host(&plan.alias);
        let public_key = prepare_host(&layout, &host, plan, *port, &opts.carrier_bin_dir)?;
        ssh_config.push('\n');
        ssh_config.push_str(&files::ssh_config_block(&layout, &plan.alias, *port));
        known_hosts.push_str(&files::known_hosts_line(&plan.alias, &public_key).ok_or_else(
            || LabError::Record {
                file: host.host_public_key(),
                message: "not an ssh public key".into(),
            },
        )?);
    }
    write(&layout.ssh_config(), &ssh_config)?;
    write(&layout.known_hosts(), &known_hosts)?;

    let mut started: Vec<(HostRecord, Child)> = Vec::new();
    let result = start_all(&layout, hosts, &ports, &mut started);
    if let Err(e) = result {
        let targets: Vec<(u32, PathBuf)> =
            started.iter().map(|(r, _)| (r.pid, layout.host(&r.alias).sshd_config())).collect();
        let results =
            process::stop(&targets.iter().map(|(p, c)| (*p, c.as_path())).collect::<Vec<_>>());
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
    let record = LabRecord {
        hosts: started.into_iter().map(|(r, _)| r).collect(),
        ssh_config: layout.ssh_config(),
    };
    write(&layout.record(), &(serde_json::to_string_pretty(&record).expect("JSON") + "\n"))?;
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
        let child = process::spawn_sshd(&host)
            .map_err(|e| start_error(&host, format!("spawning setsid: {e}")))?;
        let record = HostRecord {
            machine: plan.machine.clone(),
            alias: plan.alias.clone(),
            port: *port,
            pid: child.id(),
            carrier: plan.carrier,
            reboots: 0,
        };
        started.push((record, child));
    }
    let timeout = start_timeout(started.len());
    let deadline = Instant::now() + timeout;
    for (record, child) in started.iter_mut() {
        let host = layout.host(&record.alias);
        let mut last = String::from("its port never accepted a connection");
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(start_error(&host, format!("sshd exited ({status})")));
            }
            if process::port_accepts(record.port) {
                let argv = ssh_ready_argv(layout, &record.alias);
                let left =
                    deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
                let ran = process::run_with_timeout(&argv, left)
                    .map_err(io("running ssh for", &host.dir))?;
                match ran.status {
                    Some(s) if s.success() => break,
                    Some(s) => {
                        last = format!("`{}` failed ({s}): {}", argv.join(" "), ran.stderr.trim())
                    }
                    None => last = format!("`{}` timed out", argv.join(" ")),
                }
            }
            if Instant::now() >= deadline {
                return Err(start_error(
                    &host,
                    format!("not reachable within {timeout:?}: {last}"),
                ));
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
    let ssh =
        ["ssh", "-F", &layout.ssh_config().display().to_string(), alias, "nix-store", "--init"];
    ssh.iter().map(|s| s.to_string()).collect()
}

fn start_error(host: &HostLayout, message: String) -> LabError {
    let log = std::fs::read_to_string(host.log()).unwrap_or_else(|e| format!("(unreadable: {e})"));
    LabError::Start {
        alias: host.alias.clone(),
        message,
        log_file: host.log(),
        log: log.trim_end().to_string(),
    }
}

/// The client key and the lab's nix.conf.
fn prepare_shared(layout: &Layout, opts: &UpOptions) -> Result<(), LabError> {
    mkdir(layout, &layout.hosts_dir())?;
    ensure_key(&layout.client_key(), "carrier-lab-client")?;

    let conf_dir = layout.nix_conf_dir();
    mkdir(layout, &conf_dir)?;
    let registry = conf_dir.join("registry.json");
    write(&registry, files::EMPTY_REGISTRY)?;
    let existing = match opts.nix_conf_dir.as_ref().map(|d| d.join("nix.conf")) {
        Some(file) if file.is_file() => {
            Some(std::fs::read_to_string(&file).map_err(io("reading", &file))?)
        }
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
    let ssh_dir = host.authorized_keys().parent().expect("in .ssh").to_path_buf();
    for d in [profiles, ssh_dir.clone(), host.run().join("sshd"), host.etc(), host.bin()] {
        mkdir(layout, &d)?;
    }
    private_dir::write_file(&host.reboot_script(), files::REBOOT_SCRIPT.as_bytes(), 0o755)
        .map_err(io("writing", &host.reboot_script()))?;
    // sshd refuses a privilege separation directory writable by others, and (StrictModes)
    // authorized keys in a directory or file others could write, up to the home, /root.
    set_mode(&host.run().join("sshd"), 0o755)?;
    set_mode(&host.root(), 0o700)?;
    set_mode(&ssh_dir, 0o700)?;
    let client_key = layout.client_key().with_extension("pub");
    let key = std::fs::read_to_string(&client_key).map_err(io("reading", &client_key))?;
    private_dir::write_file(&host.authorized_keys(), key.as_bytes(), 0o600)
        .map_err(io("writing", &host.authorized_keys()))?;
    ensure_key(&host.host_key(), &format!("carrier-lab-{}", plan.alias))?;
    write(
        &host.sshd_config(),
        &files::sshd_config(layout, host, port, plan.carrier, carrier_bin_dir),
    )?;
    if plan.carrier {
        mkdir(layout, &host.carrier_etc())?;
        mkdir(layout, &host.dir.join("srv"))?;
        write(&host.host_json(), &files::host_json(host))?;
        write(&host.netboot_json(), &files::netboot_json(host, &plan.host_name))?;
        write(&host.record_event(), files::RECORD_EVENT_SCRIPT)?;
    }
    let public = host.host_public_key();
    std::fs::read_to_string(&public).map_err(io("reading", &public))
}

/// Generates an ed25519 key pair at `path` unless one is there (keys survive `down`,
/// so known_hosts entries stay valid across restarts). ssh-keygen writes into a fresh
/// private directory (it would follow a link planted at `path`); the keys are then
/// renamed into place.
fn ensure_key(path: &Path, comment: &str) -> Result<(), LabError> {
    let is_file = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file());
    if is_file(path) && is_file(&path.with_extension("pub")) {
        return Ok(());
    }
    let parent = path.parent().expect("keys live in a directory");
    let fresh = tempfile::Builder::new()
        .prefix(".keygen-")
        .tempdir_in(parent)
        .map_err(io("creating a directory in", parent))?;
    let new_key = fresh.path().join("key");
    let argv: Vec<String> = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"]
        .map(String::from)
        .into_iter()
        .chain([new_key.display().to_string()])
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
    let public = path.with_extension("pub");
    std::fs::rename(new_key.with_extension("pub"), &public).map_err(io("writing", &public))?;
    std::fs::rename(&new_key, path).map_err(io("writing", path))
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
    pub reboots: u32,
}

pub fn status(dir: &Path) -> Result<Vec<HostStatus>, LabError> {
    let layout = existing_layout(dir)?;
    let record =
        LabRecord::load(&layout)?.ok_or_else(|| LabError::NotUp { dir: dir.to_path_buf() })?;
    Ok(record
        .hosts
        .iter()
        .map(|h| HostStatus {
            machine: h.machine.clone(),
            alias: h.alias.clone(),
            port: h.port,
            pid: h.pid,
            alive: h.alive(&layout),
            carrier: h.carrier,
            reboots: h.reboots,
        })
        .collect())
}

/// What a boot does to the lab's part of a host: the system profile's generation (if
/// any) becomes `/run/current-system` and `/run/booted-system`, as NixOS's stage 2 sets
/// them. The profile links are read in the host's own `/nix`.
fn boot_system_profile(host: &HostLayout) -> Result<(), LabError> {
    let profiles = host.nix().join("var/nix/profiles");
    let generation = match std::fs::read_link(profiles.join("system")) {
        Ok(g) => g,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("reading", &profiles.join("system"))(e)),
    };
    // `system-<n>-link` (in the same directory) -> `/nix/store/…` (a path on the host)
    let Some(name) = generation.file_name() else { return Ok(()) };
    let link = profiles.join(name);
    let toplevel = std::fs::read_link(&link).map_err(io("reading", &link))?;
    if !toplevel.starts_with("/nix/store/") {
        return Ok(());
    }
    for name in ["current-system", "booted-system"] {
        let at = host.run().join(name);
        crate::links::swap_link(&at, &toplevel).map_err(io("linking", &at))?;
    }
    Ok(())
}

/// Reboots lab host `alias` as a lab can (the `reboot` on its PATH runs this): stops its
/// sshd as `down` does (the recorded PID, only while it is this host's sshd), boots the
/// system profile (see [`boot_system_profile`]), starts a
/// new one in a new time namespace (its uptime starts at zero, so the deploy engine sees
/// the reboot), waits until its port accepts connections, and records the new PID and
/// one more reboot in `lab.json`. One reboot at a time per lab (`lab.lock`).
pub fn reboot(dir: &Path, alias: &str) -> Result<HostRecord, LabError> {
    let layout = existing_layout(dir)?;
    let lock_file = layout.dir.join("lab.lock");
    let _lock =
        crate::lock::acquire(&lock_file, &format!("reboot of {alias}"), START_TIMEOUT, &|_| {})?;
    let mut record =
        LabRecord::load(&layout)?.ok_or_else(|| LabError::NotUp { dir: dir.to_path_buf() })?;
    let Some(entry) = record.hosts.iter_mut().find(|h| h.alias == alias) else {
        let hosts = record.hosts.iter().map(|h| h.alias.as_str()).collect::<Vec<_>>().join(", ");
        return Err(LabError::UnknownHost {
            alias: alias.to_string(),
            dir: dir.to_path_buf(),
            hosts,
        });
    };
    let host = layout.host(alias);
    process::stop(&[(entry.pid, host.sshd_config().as_path())]);
    boot_system_profile(&host)?;
    let mut child = process::spawn_sshd(&host)
        .map_err(|e| start_error(&host, format!("spawning setsid: {e}")))?;
    let deadline = Instant::now() + START_TIMEOUT;
    while !process::port_accepts(entry.port) {
        let failed = match child.try_wait() {
            Ok(Some(status)) => Some(format!("sshd exited ({status})")),
            _ if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                Some(format!("its port did not accept a connection within {START_TIMEOUT:?}"))
            }
            _ => None,
        };
        if let Some(message) = failed {
            return Err(start_error(&host, message));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    entry.pid = child.id();
    entry.reboots += 1;
    let rebooted = entry.clone();
    write(&layout.record(), &(serde_json::to_string_pretty(&record).expect("JSON") + "\n"))?;
    Ok(rebooted)
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
///
/// A recorded PID is signalled only when its command line names the sshd_config of the
/// layout computed here (state directory and alias): a tampered `lab.json` can name any
/// PID, but not make `down` stop a process that is not one of this lab's sshds.
pub fn down(dir: &Path, purge: bool) -> Result<Vec<HostStopped>, LabError> {
    let layout = existing_layout(dir)?;
    let record =
        LabRecord::load(&layout)?.ok_or_else(|| LabError::NotUp { dir: dir.to_path_buf() })?;
    let configs: Vec<PathBuf> =
        record.hosts.iter().map(|h| layout.host(&h.alias).sshd_config()).collect();
    let targets: Vec<(u32, &Path)> =
        record.hosts.iter().zip(&configs).map(|(h, c)| (h.pid, c.as_path())).collect();
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
    let lock = layout.dir.join("lab.lock");
    for file in [layout.ssh_config(), layout.known_hosts(), key.with_extension("pub"), key, lock] {
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

/// Creates `path`, below the state directory, one level at a time: an existing entry
/// must be a real directory, never a symlink (which would move the lab's files, read by
/// root sshds, somewhere else).
fn mkdir(layout: &Layout, path: &Path) -> Result<(), LabError> {
    let rel = path.strip_prefix(&layout.dir).expect("lab directories lie in the state directory");
    let mut dir = layout.dir.clone();
    for part in rel.components() {
        dir.push(part);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if !std::fs::symlink_metadata(&dir).map_err(io("reading", &dir))?.is_dir() {
                    let source = std::io::Error::other(
                        "it exists and is not a directory (links are not followed)",
                    );
                    return Err(io("creating", &dir)(source));
                }
            }
            Err(e) => return Err(io("creating", &dir)(e)),
        }
    }
    Ok(())
}

/// Replaces `path` with a new file (see [`private_dir::write_file`]: a link planted
/// there is replaced, never written through).
fn write(path: &Path, text: &str) -> Result<(), LabError> {
    private_dir::write_file(path, text.as_bytes(), 0o644).map_err(io("writing", path))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io("changing the mode of", path))
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

    #[test]
    fn larger_labs_get_longer_to_start() {
        assert_eq!(start_timeout(0), Duration::from_secs(10));
        assert_eq!(start_timeout(10), Duration::from_secs(10));
        assert_eq!(start_timeout(11), Duration::from_secs(20));
        assert_eq!(start_timeout(50), Duration::from_secs(50));
    }

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
        let opts = UpOptions {
            dir: "/run/lab".into(),
            carrier_bin_dir: "/usr/bin".into(),
            nix_conf_dir: None,
        };
        let e = up(&[], &opts).unwrap_err().to_string();
        assert!(e.contains("'/run/lab'") && e.contains("under /run"), "{e}");
    }

    #[test]
    fn down_without_a_lab_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let e = down(d.path(), false).unwrap_err().to_string();
        assert_eq!(e, format!("no lab is up in '{}' (no lab.json)", d.path().display()));
    }

    #[test]
    fn down_signals_only_sshds_of_the_layout_it_computes() {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let d = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let foreign_config = elsewhere.path().join("hosts/node1.lab/sshd_config");
        // argv[0] stands in for the sshd_config path on another sshd's command line.
        let mut victim =
            std::process::Command::new("sleep").arg0(&foreign_config).arg("30").spawn().unwrap();
        let record = |alias: &str| {
            let json = serde_json::json!({
                "hosts": [{"machine": "node1", "alias": alias, "port": 1, "pid": victim.id(),
                           "root": elsewhere.path().join("hosts/node1.lab"), "carrier": false}],
                "sshConfig": d.path().join("ssh_config"),
            });
            std::fs::write(d.path().join("lab.json"), json.to_string()).unwrap();
        };
        record("node1.lab");
        let stopped = down(d.path(), false).unwrap();
        let alive = process::pid_alive(victim.id());
        record("../../x");
        let bad_alias = down(d.path(), false).unwrap_err().to_string();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let open = down(d.path(), false).unwrap_err().to_string();
        victim.kill().unwrap();
        victim.wait().unwrap();
        assert_eq!(stopped[0].result, Stopped::NotOurs);
        assert!(alive, "a process outside the lab was stopped");
        assert!(bad_alias.contains("\"../../x\" is not a lab alias"), "{bad_alias}");
        assert!(open.contains("writable by its group and everyone (mode 0777)"), "{open}");
        assert!(status(d.path()).unwrap_err().to_string().contains("(mode 0777)"));
    }
}
