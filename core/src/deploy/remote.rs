//! Commands on deploy targets: one multiplexed SSH connection per host per run
//! (`openssh`, native mux, strict host key checking), or plain local processes for
//! `localhost` targets. Commands are argv vectors; each word is shell-quoted for the
//! remote shell by `openssh`, never joined from user input.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use openssh::{KnownHosts, Session, SessionBuilder};
use tokio::sync::Mutex;

/// How to reach hosts: an ssh_config (`-F`, e.g. the lab's host aliases).
#[derive(Debug, Clone, Default)]
pub struct SshSettings {
    pub config_file: Option<PathBuf>,
    pub connect_timeout: Option<Duration>,
}

/// A connected host.
pub enum Remote {
    Ssh { host: String, session: Session },
    Local,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot connect to {host}: {message}")]
    Connect { host: String, message: String },
    #[error("running `{command}` on {host}: {message}")]
    Run { host: String, command: String, message: String },
}

impl Remote {
    /// The control socket of the SSH connection, for other ssh clients (nix-copy-closure)
    /// to reuse the same connection.
    pub fn control_socket(&self) -> Option<&Path> {
        match self {
            Remote::Ssh { session, .. } => Some(session.control_socket()),
            Remote::Local => None,
        }
    }

    pub fn host(&self) -> &str {
        match self {
            Remote::Ssh { host, .. } => host,
            Remote::Local => "localhost",
        }
    }

    /// Runs `argv` and returns its output, whatever its exit status.
    pub async fn output(&self, argv: &[&str]) -> Result<Output, RemoteError> {
        let (program, args) = argv.split_first().expect("argv has a program");
        let err = |message: String| RemoteError::Run {
            host: self.host().to_string(),
            command: argv.join(" "),
            message,
        };
        match self {
            Remote::Ssh { session, .. } => {
                session.command(*program).args(args.iter().copied()).output().await.map_err(|e| err(e.to_string()))
            }
            Remote::Local => {
                tokio::process::Command::new(program).args(args).output().await.map_err(|e| err(e.to_string()))
            }
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
    control_dir: tempfile::TempDir,
    open: Mutex<HashMap<(String, u16), Connection>>,
    connects: std::sync::atomic::AtomicUsize,
}

impl Connections {
    pub fn new(settings: SshSettings) -> std::io::Result<Self> {
        Ok(Connections {
            settings,
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
            if let Ok(Ok(Remote::Ssh { session, .. })) = connection.map(Arc::try_unwrap) {
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
            Ok(Arc::new(Remote::Local))
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
        Ok(Remote::Ssh { host: host.to_string(), session })
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
