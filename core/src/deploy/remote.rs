//! Commands on deploy targets: one multiplexed SSH connection per host per run
//! (`openssh`, native mux, strict host key checking), or plain local processes for
//! `localhost` targets. Commands are argv vectors; each word is shell-quoted for the
//! remote shell by `openssh`, never joined from user input. Every command has a
//! deadline: it runs under `timeout` on the host (killed there when it passes), and the
//! answer is awaited a little longer than that here. The host's deploy lock
//! ([`Remote::lock`]) is held by a command that lives as long as the lock is wanted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssh::{KnownHosts, Session, SessionBuilder};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::Mutex;

/// How to reach hosts: an ssh_config (`-F`, e.g. the lab's host aliases).
#[derive(Debug, Clone, Default)]
pub struct SshSettings {
    pub config_file: Option<PathBuf>,
    pub connect_timeout: Option<Duration>,
}

/// Where the deploy lock and the activation lock live on every host (`/run`: they
/// vanish with a reboot, as the processes holding them do).
pub const LOCK_DIR: &str = "/run/carrier";

/// After a command's deadline `timeout` sends SIGTERM, then SIGKILL this much later.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How much longer than a command's deadline its answer is awaited here (the kill, a
/// slow connection) before the host is given up on.
const ANSWER_GRACE: Duration = Duration::from_secs(15);

/// A connected host.
pub struct Remote {
    conn: Conn,
    /// The deadline of a command unless the caller gives another.
    command_timeout: Duration,
}

enum Conn {
    Ssh { host: String, session: Session },
    Local,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot connect to {host}: {message}")]
    Connect { host: String, message: String },
    #[error("running `{command}` on {host}: {message}")]
    Run { host: String, command: String, message: String },
    #[error("`{command}` did not finish within {secs} s and was killed (on {host})")]
    TimedOut { host: String, command: String, secs: u64 },
    #[error("no answer from {host} within {secs} s while running `{command}`: it may still be running there")]
    NoAnswer { host: String, command: String, secs: u64 },
    #[error("timed out after {secs} s waiting for the {lock} lock on {host}, held by: {holder}")]
    LockTimeout { host: String, lock: String, secs: u64, holder: String },
}

impl Remote {
    /// This machine, as a target (`localhost`) or for checks run here.
    pub fn local(command_timeout: Duration) -> Remote {
        Remote { conn: Conn::Local, command_timeout }
    }

    /// The control socket of the SSH connection, for other ssh clients (nix-copy-closure)
    /// to reuse the same connection.
    pub fn control_socket(&self) -> Option<&Path> {
        match &self.conn {
            Conn::Ssh { session, .. } => Some(session.control_socket()),
            Conn::Local => None,
        }
    }

    pub fn host(&self) -> &str {
        match &self.conn {
            Conn::Ssh { host, .. } => host,
            Conn::Local => "localhost",
        }
    }

    /// The deadline of commands run without one of their own.
    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// Runs `argv` and returns its output, whatever its exit status, killing it when the
    /// default deadline passes.
    pub async fn output(&self, argv: &[&str]) -> Result<Output, RemoteError> {
        self.output_within(argv, self.command_timeout).await
    }

    /// Runs `argv` under `timeout`: killed on the host when `limit` passes (whole
    /// seconds, rounded up).
    pub async fn output_within(&self, argv: &[&str], limit: Duration) -> Result<Output, RemoteError> {
        let secs = limit.as_secs_f64().ceil().max(1.0) as u64;
        let (secs_s, grace_s) = (secs.to_string(), KILL_GRACE.as_secs().to_string());
        let mut wrapped = vec!["timeout", "-k", &grace_s, &secs_s];
        wrapped.extend_from_slice(argv);
        let started = Instant::now();
        let answer = Duration::from_secs(secs) + KILL_GRACE + ANSWER_GRACE;
        let out = match tokio::time::timeout(answer, self.spawn_output(&wrapped, argv)).await {
            Ok(out) => out?,
            Err(_) => return Err(RemoteError::NoAnswer { host: self.host().into(), command: argv.join(" "), secs }),
        };
        // 124: timeout's SIGTERM ended it; 137: the SIGKILL after the grace did
        let killed = matches!(out.status.code(), Some(124 | 137)) && started.elapsed() >= Duration::from_secs(secs);
        if killed {
            return Err(RemoteError::TimedOut { host: self.host().into(), command: argv.join(" "), secs });
        }
        Ok(out)
    }

    /// Runs `argv` with no deadline of its own: for a command that must not be killed
    /// (the auto-rollback script), whose caller bounds the wait itself.
    pub async fn output_unbounded(&self, argv: &[&str]) -> Result<Output, RemoteError> {
        self.spawn_output(argv, argv).await
    }

    async fn spawn_output(&self, argv: &[&str], shown: &[&str]) -> Result<Output, RemoteError> {
        let (program, args) = argv.split_first().expect("argv has a program");
        let err = |message: String| RemoteError::Run { host: self.host().to_string(), command: shown.join(" "), message };
        match &self.conn {
            Conn::Ssh { session, .. } => {
                session.command(*program).args(args.iter().copied()).output().await.map_err(|e| err(e.to_string()))
            }
            Conn::Local => tokio::process::Command::new(program)
                .args(args)
                .kill_on_drop(true)
                .output()
                .await
                .map_err(|e| err(e.to_string())),
        }
    }

    /// Runs `argv`; a non-zero exit is an error carrying its output.
    pub async fn run(&self, argv: &[&str]) -> Result<String, RemoteError> {
        let out = self.output(argv).await?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(RemoteError::Run {
                host: self.host().to_string(),
                command: argv.join(" "),
                message: failure_message(&out),
            })
        }
    }

    /// `realpath <path>`, or None when it does not exist (or the host cannot tell).
    pub async fn realpath(&self, path: &str) -> Option<String> {
        let out = self.output(&["realpath", "-e", path]).await.ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Whether an activation holds the host's activation lock (an auto-rollback script
    /// still running: unconfirmed, or switching back). Unknown counts as no.
    pub async fn activation_in_flight(&self) -> bool {
        let lock = format!("{LOCK_DIR}/activation.lock");
        let out = self.output(&["flock", "-n", "-E", "75", &lock, "true"]).await;
        out.is_ok_and(|o| o.status.code() == Some(75))
    }

    /// Takes the host's deploy lock (`flock` on `/run/carrier/deploy.lock`, util-linux),
    /// then waits until no unconfirmed auto-rollback activation is in flight (the
    /// activation lock). `who` is recorded for whoever has to wait next; `on_wait` hears
    /// whom this call waits for. The lock is held until [`HostLock::release`] or until
    /// this connection ends.
    pub async fn lock(&self, who: &str, wait: Duration, on_wait: &(dyn Fn(String) + Sync)) -> Result<HostLock<'_>, RemoteError> {
        let wait_s = wait.as_secs().to_string();
        let argv = ["sh", "-c", LOCK_SCRIPT, "sh", LOCK_DIR, who, &wait_s];
        let shown = "flock /run/carrier/deploy.lock";
        let err = |message: String| RemoteError::Run { host: self.host().to_string(), command: shown.into(), message };
        let (program, args) = argv.split_first().expect("argv");
        let (child, mut stdout, mut stderr): (HolderChild<'_>, Box<dyn AsyncRead + Unpin + Send>, Box<dyn AsyncRead + Unpin + Send>) = match &self.conn {
            Conn::Ssh { session, .. } => {
                let mut child = session
                    .command(*program)
                    .args(args.iter().copied())
                    .stdin(openssh::Stdio::piped())
                    .stdout(openssh::Stdio::piped())
                    .stderr(openssh::Stdio::piped())
                    .spawn()
                    .await
                    .map_err(|e| err(e.to_string()))?;
                let stdout = child.stdout().take().expect("piped");
                let stderr = child.stderr().take().expect("piped");
                (HolderChild::Ssh(child), Box::new(stdout), Box::new(stderr))
            }
            Conn::Local => {
                let mut child = tokio::process::Command::new(program)
                    .args(args)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| err(e.to_string()))?;
                let stdout = child.stdout.take().expect("piped");
                let stderr = child.stderr.take().expect("piped");
                (HolderChild::Local(child), Box::new(stdout), Box::new(stderr))
            }
        };
        // two waits of at most `wait` each, and the answer
        let answer = wait * 2 + ANSWER_GRACE;
        let result = tokio::time::timeout(answer, async {
            let mut lines = BufReader::new(&mut stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let (word, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                let (lock, holder) = rest.split_once(' ').unwrap_or((rest, ""));
                let holder = if holder.trim().is_empty() { "(unknown)".to_string() } else { holder.trim().to_string() };
                match word {
                    "locked" => return Ok(()),
                    "wait" => on_wait(format!("waiting for the {lock} lock on {}, held by: {holder}", self.host())),
                    "timeout" => {
                        return Err(RemoteError::LockTimeout {
                            host: self.host().into(),
                            lock: lock.into(),
                            secs: wait.as_secs(),
                            holder,
                        });
                    }
                    _ => {}
                }
            }
            let mut text = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
            Err(err(format!("the lock command ended without the lock: {}", text.trim())))
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(HostLock { child }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(RemoteError::NoAnswer { host: self.host().into(), command: shown.into(), secs: answer.as_secs() }),
        }
    }
}

/// Takes `$1/deploy.lock` (waiting at most `$3` seconds in all, saying whom for), writes
/// `$2` as its holder, waits until `$1/activation.lock` is free, says `locked` and keeps
/// the lock until its standard input ends. Constant text: every input is an argument.
const LOCK_SCRIPT: &str = r#"set -u
dir=$1 who=$2 wait=$3
start=$(date +%s)
take() {
  if ! flock -n "$1"; then
    echo "wait $3 $(head -n 1 "$2" 2>/dev/null)"
    left=$((wait - ($(date +%s) - start)))
    [ "$left" -lt 0 ] && left=0
    if ! flock -w "$left" "$1"; then
      echo "timeout $3 $(head -n 1 "$2" 2>/dev/null)"
      exit 75
    fi
  fi
}
mkdir -p "$dir" || exit 1
exec 9>>"$dir/deploy.lock" || exit 1
take 9 "$dir/deploy.holder" deploy
printf '%s
' "$who" > "$dir/deploy.holder"
exec 8>>"$dir/activation.lock" || exit 1
take 8 "$dir/activation.holder" activation
exec 8>&-
echo locked
exec cat >/dev/null
"#;

/// The argv that runs `argv` holding the host's activation lock until it ends, with
/// `who` as the lock's holder: for the auto-rollback script, which may outlive the
/// deployer's connection (an unconfirmed activation switching back) and must keep the
/// next deploy waiting until then. Only a deploy lock holder starts one, so the lock
/// is free (`-n`). `-o`: the script's children do not inherit the lock.
pub fn holding_activation_lock(who: &str, argv: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = ["flock", "-n", "-o", "-E", "75"].map(String::from).into();
    out.push(format!("{LOCK_DIR}/activation.lock"));
    out.extend(["sh".into(), "-c".into(), r#"printf '%s\n' "$1" > "$2"; shift 2; exec "$@""#.into(), "sh".into()]);
    out.extend([who.to_string(), format!("{LOCK_DIR}/activation.holder")]);
    out.extend(argv.iter().map(|s| s.to_string()));
    out
}

/// A held deploy lock: the command holding it on the host.
pub struct HostLock<'a> {
    child: HolderChild<'a>,
}

enum HolderChild<'a> {
    Ssh(openssh::Child<&'a Session>),
    Local(tokio::process::Child),
}

impl HostLock<'_> {
    /// Ends the holding command (its standard input closes) and waits for it, so the
    /// lock is free when this returns. A lost connection has freed it already.
    pub async fn release(self) {
        let wait = async {
            match self.child {
                HolderChild::Ssh(child) => {
                    let _ = child.wait().await;
                }
                HolderChild::Local(mut child) => {
                    drop(child.stdin.take());
                    let _ = child.wait().await;
                }
            }
        };
        let _ = tokio::time::timeout(ANSWER_GRACE, wait).await;
    }
}

/// The exit status and the last lines of output of a failed command.
pub fn failure_message(out: &Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
    let status = out.status.code().map_or("killed by a signal".to_string(), |c| format!("exit status {c}"));
    if tail.is_empty() { status } else { format!("{status}: {tail}") }
}

/// A host's connection, or why there is none (remembered: no retry within a run).
type Connection = Result<Arc<Remote>, RemoteError>;

/// The run's connections, opened on first use and shared by every step.
pub struct Connections {
    settings: SshSettings,
    command_timeout: Duration,
    control_dir: tempfile::TempDir,
    open: Mutex<HashMap<(String, u16), Connection>>,
    connects: std::sync::atomic::AtomicUsize,
}

impl Connections {
    /// `command_timeout`: the deadline of every command on the hosts unless a step
    /// gives its own.
    pub fn new(settings: SshSettings, command_timeout: Duration) -> std::io::Result<Self> {
        Ok(Connections {
            settings,
            command_timeout,
            control_dir: tempfile::Builder::new().prefix("carrier-ssh-").tempdir()?,
            open: Mutex::new(HashMap::new()),
            connects: 0.into(),
        })
    }

    /// How many SSH connections this run opened.
    pub fn connection_count(&self) -> usize {
        self.connects.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Ends every SSH connection of the run. The masters are started with
    /// `ControlPersist`: without an explicit close they (and their sshd sessions on the
    /// hosts) would outlive the run.
    pub async fn close(self) {
        for (_, connection) in self.open.into_inner() {
            if let Ok(Ok(Remote { conn: Conn::Ssh { session, .. }, .. })) = connection.map(Arc::try_unwrap) {
                let _ = session.close().await;
            }
        }
    }

    /// The connection to `host`; a failed connection is remembered, not retried.
    pub async fn get(&self, host: &str, port: u16) -> Result<Arc<Remote>, RemoteError> {
        let mut open = self.open.lock().await;
        if let Some(r) = open.get(&(host.to_string(), port)) {
            return r.clone();
        }
        let result = if host == "localhost" {
            Ok(Arc::new(Remote::local(self.command_timeout)))
        } else {
            self.connects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.connect(host, port).await.map(Arc::new)
        };
        open.insert((host.to_string(), port), result.clone());
        result
    }

    async fn connect(&self, host: &str, port: u16) -> Result<Remote, RemoteError> {
        let mut b = SessionBuilder::default();
        b.known_hosts_check(KnownHosts::Strict)
            .control_directory(self.control_dir.path())
            .user("root".into())
            .connect_timeout(self.settings.connect_timeout.unwrap_or(Duration::from_secs(10)))
            .server_alive_interval(Duration::from_secs(15));
        if port != 22 {
            b.port(port);
        }
        if let Some(cfg) = &self.settings.config_file {
            b.config_file(cfg);
        }
        let session = b.connect_mux(host).await.map_err(|e| RemoteError::Connect {
            host: host.to_string(),
            message: connect_message(&e),
        })?;
        Ok(Remote { conn: Conn::Ssh { host: host.to_string(), session }, command_timeout: self.command_timeout })
    }

    /// `NIX_SSHOPTS` for nix-copy-closure: the same ssh_config, and the run's connection
    /// to `host` (so a copy opens no connection of its own).
    pub fn nix_sshopts(&self, remote: &Remote, port: u16) -> String {
        let mut opts = std::env::var("NIX_SSHOPTS").unwrap_or_default();
        if let Some(cfg) = &self.settings.config_file {
            opts.push_str(&format!(" -F {}", cfg.display()));
        }
        if let Some(socket) = remote.control_socket() {
            opts.push_str(&format!(" -o ControlPath={} -o ControlMaster=no", socket.display()));
        }
        if port != 22 {
            opts.push_str(&format!(" -p {port}"));
        }
        opts.trim().to_string()
    }
}

/// openssh reports the master's stderr; a changed host key is called out explicitly.
fn connect_message(e: &openssh::Error) -> String {
    let text = format!("{e}: {}", std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_default());
    if text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") || text.contains("Host key verification failed") {
        format!("the host key does not match known_hosts (refusing to connect): {}", text.trim())
    } else {
        text.trim().trim_end_matches(':').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_activation_lock_takes_its_inputs_as_arguments() {
        let who = "x\"; rm -rf / #";
        let argv = holding_activation_lock(who, &["sh", "/nix/store/a-auto-rollback", "-t", "5"]);
        assert_eq!(argv[..6], ["flock", "-n", "-o", "-E", "75", "/run/carrier/activation.lock"]);
        assert_eq!(argv[6..8], ["sh", "-c"]);
        assert!(!argv[8].contains("rm -rf") && !argv[8].contains("auto-rollback"));
        assert_eq!(argv[9..], ["sh", who, "/run/carrier/activation.holder", "sh", "/nix/store/a-auto-rollback", "-t", "5"]);
    }

    #[tokio::test]
    async fn a_local_command_past_its_deadline_is_killed_and_reported() {
        let started = Instant::now();
        let e = Remote::local(Duration::from_secs(1)).output(&["sleep", "30"]).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert_eq!(e.to_string(), "`sleep 30` did not finish within 1 s and was killed (on localhost)");
        let out = Remote::local(Duration::from_secs(5)).output(&["sh", "-c", "exit 124"]).await.unwrap();
        assert_eq!(out.status.code(), Some(124), "a command's own status 124 is not a timeout");
    }
}
