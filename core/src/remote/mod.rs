//! The hosts carrier acts on (deploy targets, carriers, the status reader; the
//! generation reader to come): the [`Host`] trait (commands with a deadline, closure copies, the
//! host's deploy lock) and [`Hosts`], which opens and closes them for one run.
//! [`ssh`] implements them over one multiplexed SSH connection per host (or locally
//! for `localhost`); unit tests of the engines use a scripted fake (`fake`).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

pub mod command;
pub mod probe;
pub mod ssh;

#[cfg(test)]
pub(crate) mod fake;

pub use ssh::{Connections, Remote, SshSettings};

/// Where the deploy lock and the activation lock live on every host (`/run`: they
/// vanish with a reboot, as the processes holding them do).
pub const LOCK_DIR: &str = "/run/carrier";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("cannot connect to {host}: {message}")]
    Connect { host: String, message: String },
    #[error("running `{command}` on {host}: {message}")]
    Run { host: String, command: String, message: String },
    #[error("`{command}` did not finish within {secs} s and was killed (on {host})")]
    TimedOut { host: String, command: String, secs: u64 },
    #[error(
        "no answer from {host} within {secs} s while running `{command}`: it may still be running there"
    )]
    NoAnswer { host: String, command: String, secs: u64 },
    #[error("timed out after {secs} s waiting for the {lock} lock on {host}, held by: {holder}")]
    LockTimeout { host: String, lock: String, secs: u64, holder: String },
    #[error("copy to {host} failed: {message}")]
    Copy { host: String, message: String },
    #[error("copy to {host} did not finish within {secs} s and was stopped")]
    CopyTimedOut { host: String, secs: u64 },
}

/// A machine and the host it is reached at directly (its ssh target and port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub machine: String,
    pub host: String,
    pub port: u16,
}

/// Why a machine is not reached directly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReachable {
    #[error(
        "{machine} is a carried machine without a host of its own (host.target is null): it is reached only through its carrier {carrier}"
    )]
    CarriedWithoutHost { machine: String, carrier: String },
    #[error("{0} has no ssh target (host.target is null)")]
    NoTarget(String),
}

impl Destination {
    /// Where `m` itself answers: its ssh target; a carried machine only by a host of its
    /// own (`host.target` of the netbooted machine), never through its carrier.
    pub fn of(m: &crate::cluster::Machine) -> Result<Destination, NotReachable> {
        let host = match &m.carrier {
            Some(carrier) => {
                m.meta_config.host.as_ref().and_then(|h| h.target.as_deref()).ok_or_else(|| {
                    NotReachable::CarriedWithoutHost {
                        machine: m.name.clone(),
                        carrier: carrier.clone(),
                    }
                })?
            }
            None => m.target_host().ok_or_else(|| NotReachable::NoTarget(m.name.clone()))?,
        };
        Ok(Destination { machine: m.name.clone(), host: host.to_string(), port: m.target_port() })
    }
}

/// What a closure copy reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyEvent {
    /// One line of the copy's log.
    Log(String),
    /// Another store path arrived: `done` of `expected`.
    Copied { done: u64, expected: u64 },
}

/// One host, opened by [`Hosts::open`]. Commands are argv vectors; every command has a
/// deadline unless it says otherwise. The futures are `Send`, so a run can be a task.
pub trait Host: Send + Sync {
    /// The name the host is reached by (an ssh_config alias, or `localhost`).
    fn name(&self) -> &str;

    /// The deadline of commands run without one of their own.
    fn command_timeout(&self) -> Duration;

    /// Runs `argv` and returns its output, whatever its exit status. When `limit`
    /// passes the command is killed on the host and the result is
    /// [`HostError::TimedOut`] (or [`HostError::NoAnswer`] when the host does not say).
    fn output_within(
        &self,
        argv: &[&str],
        limit: Duration,
    ) -> impl Future<Output = Result<Output, HostError>> + Send;

    /// [`Host::output_within`] with `input` on the command's standard input.
    fn output_with_input(
        &self,
        argv: &[&str],
        input: &[u8],
        limit: Duration,
    ) -> impl Future<Output = Result<Output, HostError>> + Send;

    /// Runs `argv` with no deadline of its own: for a command that must not be killed
    /// (the auto-rollback script), whose caller bounds the wait itself.
    fn output_unbounded(
        &self,
        argv: &[&str],
    ) -> impl Future<Output = Result<Output, HostError>> + Send;

    /// Copies the closures of `paths` to the host's store, stopped when `limit` passes.
    fn copy_closure(
        &self,
        paths: &[PathBuf],
        limit: Duration,
        on_event: &(dyn Fn(CopyEvent) + Sync),
    ) -> impl Future<Output = Result<(), HostError>> + Send;

    /// Takes the host's deploy lock (`/run/carrier/deploy.lock`), then waits until no
    /// unconfirmed auto-rollback activation is in flight (the activation lock), at most
    /// `wait` for each. `who` is recorded for whoever has to wait next; `on_wait` hears
    /// whom this call waits for. Held until [`HostLock::release`], or until the
    /// connection ends.
    fn lock<'a>(
        &'a self,
        who: &str,
        wait: Duration,
        on_wait: &(dyn Fn(String) + Sync),
    ) -> impl Future<Output = Result<HostLock<'a>, HostError>> + Send;

    /// [`Host::output_within`] with the default deadline.
    fn output(&self, argv: &[&str]) -> impl Future<Output = Result<Output, HostError>> + Send {
        self.output_within(argv, self.command_timeout())
    }

    /// Runs `argv`; a non-zero exit is an error carrying its output.
    fn run(&self, argv: &[&str]) -> impl Future<Output = Result<String, HostError>> + Send {
        async move {
            let out = self.output(argv).await?;
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(HostError::Run {
                    host: self.name().to_string(),
                    command: argv.join(" "),
                    message: failure_message(&out),
                })
            }
        }
    }

    /// The host's uptime in seconds: the first field of `cat /proc/uptime` (how the
    /// reboot and the connection test tell that a host answers, and since when).
    fn uptime(&self, limit: Duration) -> impl Future<Output = Result<f64, HostError>> + Send {
        async move {
            let argv = ["cat", "/proc/uptime"];
            let out = self.output_within(&argv, limit).await?;
            let text = String::from_utf8_lossy(&out.stdout);
            let first = text.split_whitespace().next().filter(|_| out.status.success());
            first.and_then(|f| f.parse().ok()).ok_or_else(|| HostError::Run {
                host: self.name().to_string(),
                command: argv.join(" "),
                message: if out.status.success() {
                    format!("not an uptime: '{}'", text.trim())
                } else {
                    failure_message(&out)
                },
            })
        }
    }

    /// `realpath <path>`, or None when it does not exist (or the host cannot tell).
    fn realpath(&self, path: &str) -> impl Future<Output = Option<String>> + Send {
        async move {
            let out = self.output(&["realpath", "-e", path]).await.ok()?;
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        }
    }

    /// Whether an activation holds the host's activation lock (an auto-rollback script
    /// still running: unconfirmed, or switching back). Unknown counts as no.
    fn activation_in_flight(&self) -> impl Future<Output = bool> + Send {
        async move {
            let lock = format!("{LOCK_DIR}/activation.lock");
            let out = self.output(&["flock", "-n", "-E", "75", &lock, "true"]).await;
            out.is_ok_and(|o| o.status.code() == Some(75))
        }
    }
}

/// The hosts of one run: each opened on first use and shared by every step; a host
/// that cannot be opened is remembered, not retried.
pub trait Hosts: Sync {
    type Host: Host;

    /// The host `name` (reached on `port`).
    fn open(
        &self,
        name: &str,
        port: u16,
    ) -> impl Future<Output = Result<Arc<Self::Host>, HostError>> + Send;

    /// Drops the host's connection (a reboot ends it) and opens a new one; unlike
    /// [`Hosts::open`] this tries again after a failure.
    fn reconnect(
        &self,
        name: &str,
        port: u16,
    ) -> impl Future<Output = Result<Arc<Self::Host>, HostError>> + Send;

    /// This machine, for commands that run here (builder-side health checks).
    fn local(&self) -> Arc<Self::Host>;

    /// How many connections the run opened.
    fn opened(&self) -> usize;

    /// Ends every connection of the run.
    fn close(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized;
}

/// A held deploy lock: awaiting `release` frees it (and returns once it is free);
/// dropping it frees it when the host notices.
pub struct HostLock<'a> {
    release: Pin<Box<dyn Future<Output = ()> + Send + 'a>>,
}

impl<'a> HostLock<'a> {
    /// A lock freed by running `release`.
    pub fn new(release: impl Future<Output = ()> + Send + 'a) -> Self {
        HostLock { release: Box::pin(release) }
    }

    pub async fn release(self) {
        self.release.await
    }
}

/// The argv that runs `argv` holding the host's activation lock until it ends, with
/// `who` as the lock's holder: for the auto-rollback script, which may outlive the
/// deployer's connection (an unconfirmed activation switching back) and must keep the
/// next deploy waiting until then. Only a deploy lock holder starts one, so the lock
/// is free (`-n`). `-o`: the script's children do not inherit the lock.
pub fn holding_activation_lock(who: &str, argv: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = ["flock", "-n", "-o", "-E", "75"].map(String::from).into();
    out.push(format!("{LOCK_DIR}/activation.lock"));
    out.extend([
        "sh".into(),
        "-c".into(),
        r#"printf '%s\n' "$1" > "$2"; shift 2; exec "$@""#.into(),
        "sh".into(),
    ]);
    out.extend([who.to_string(), format!("{LOCK_DIR}/activation.holder")]);
    out.extend(argv.iter().map(|s| s.to_string()));
    out
}

/// The exit status and the last lines of output of a failed command.
pub fn failure_message(out: &Output) -> String {
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
    let status =
        out.status.code().map_or("killed by a signal".to_string(), |c| format!("exit status {c}"));
    if tail.is_empty() { status } else { format!("{status}: {tail}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Spin;
    use crate::cluster::model::tests::machine;

    #[test]
    fn carried_machines_are_reached_at_their_own_host_only() {
        let mut node = machine("node1", Spin::Nixos);
        node.meta_config.host = Some(crate::cluster::Host {
            name: None,
            location: None,
            domain: None,
            full_domain: None,
            fqdn: None,
            target: Some("node1.lab".into()),
            port: 2222,
        });
        let reached = Destination::of(&node).unwrap();
        assert_eq!((reached.host.as_str(), reached.port), ("node1.lab", 2222));

        let mut carried = node.clone();
        carried.name = "pxe#node1".into();
        carried.carrier = Some("pxe".into());
        assert_eq!(Destination::of(&carried).unwrap().host, "node1.lab");
        carried.meta_config.host = None;
        assert_eq!(
            Destination::of(&carried).unwrap_err().to_string(),
            "pxe#node1 is a carried machine without a host of its own (host.target is null): it is reached only through its carrier pxe"
        );
        node.meta_config.host.as_mut().unwrap().target = None;
        assert_eq!(
            Destination::of(&node).unwrap_err().to_string(),
            "node1 has no ssh target (host.target is null)"
        );
    }

    #[test]
    fn the_activation_lock_takes_its_inputs_as_arguments() {
        let who = "x\"; rm -rf / #";
        let argv = holding_activation_lock(who, &["sh", "/nix/store/a-auto-rollback", "-t", "5"]);
        assert_eq!(argv[..6], ["flock", "-n", "-o", "-E", "75", "/run/carrier/activation.lock"]);
        assert_eq!(argv[6..8], ["sh", "-c"]);
        assert!(!argv[8].contains("rm -rf") && !argv[8].contains("auto-rollback"));
        assert_eq!(
            argv[9..],
            [
                "sh",
                who,
                "/run/carrier/activation.holder",
                "sh",
                "/nix/store/a-auto-rollback",
                "-t",
                "5"
            ]
        );
    }
}
