//! [`Host`] over SSH: one multiplexed connection per host per run (`openssh`, native
//! mux, strict host key checking), or plain local processes for `localhost` targets.
//! Commands are argv vectors; each word is shell-quoted for the remote shell by
//! `openssh`, never joined from user input. Every command has a deadline: it runs under
//! `timeout` on the host (killed there when it passes), and the answer is awaited a
//! little longer than that here. The host's deploy lock is held by a command that lives
//! as long as the lock is wanted. Closures are copied by `nix-copy-closure` through the
//! run's connection.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openssh::{KnownHosts, Session, SessionBuilder};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::OnceCell;

use super::{CopyEvent, Host, HostError, HostLock, Hosts, LOCK_DIR, failure_message};

/// How to reach hosts: an ssh_config (`-F`, e.g. the lab's host aliases).
#[derive(Debug, Clone, Default)]
pub struct SshSettings {
    pub config_file: Option<PathBuf>,
    pub connect_timeout: Option<Duration>,
}

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
    /// `nix_sshopts`: `NIX_SSHOPTS` for nix-copy-closure that reuse this connection.
    Ssh {
        host: String,
        session: Session,
        nix_sshopts: String,
    },
    Local,
}

impl Remote {
    /// This machine, as a target (`localhost`) or for checks run here.
    pub fn local(command_timeout: Duration) -> Remote {
        Remote { conn: Conn::Local, command_timeout }
    }

    /// Runs `argv` (shown as `shown` in errors), with `input` on its standard input
    /// (written while the output is read, so neither side waits for the other).
    async fn spawn_output(
        &self,
        argv: &[&str],
        shown: &[&str],
        input: Option<&[u8]>,
    ) -> Result<Output, HostError> {
        let (program, args) = argv.split_first().expect("argv has a program");
        let err = |message: String| HostError::Run {
            host: self.name().to_string(),
            command: shown.join(" "),
            message,
        };
        match &self.conn {
            Conn::Ssh { session, .. } => {
                let mut cmd = session.command(*program);
                cmd.args(args.iter().copied());
                let Some(_) = input else {
                    return cmd.output().await.map_err(|e| err(e.to_string()));
                };
                let mut child = cmd
                    .stdin(openssh::Stdio::piped())
                    .stdout(openssh::Stdio::piped())
                    .stderr(openssh::Stdio::piped())
                    .spawn()
                    .await
                    .map_err(|e| err(e.to_string()))?;
                let stdin = child.stdin().take();
                let (_, out) = tokio::join!(feed(stdin, input), child.wait_with_output());
                out.map_err(|e| err(e.to_string()))
            }
            Conn::Local => {
                let mut cmd = tokio::process::Command::new(program);
                cmd.args(args).kill_on_drop(true);
                let Some(_) = input else {
                    return cmd.output().await.map_err(|e| err(e.to_string()));
                };
                let mut child = cmd
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| err(e.to_string()))?;
                let stdin = child.stdin.take();
                let (_, out) = tokio::join!(feed(stdin, input), child.wait_with_output());
                out.map_err(|e| err(e.to_string()))
            }
        }
    }

    /// Runs `argv` under `timeout`: killed on the host when `limit` passes (whole
    /// seconds, rounded up).
    async fn timed_output(
        &self,
        argv: &[&str],
        input: Option<&[u8]>,
        limit: Duration,
    ) -> Result<Output, HostError> {
        let secs = limit.as_secs_f64().ceil().max(1.0) as u64;
        let (secs_s, grace_s) = (secs.to_string(), KILL_GRACE.as_secs().to_string());
        let mut wrapped = vec!["timeout", "-k", &grace_s, &secs_s];
        wrapped.extend_from_slice(argv);
        let started = Instant::now();
        let answer = Duration::from_secs(secs) + KILL_GRACE + ANSWER_GRACE;
        let run = self.spawn_output(&wrapped, argv, input);
        let out = match tokio::time::timeout(answer, run).await {
            Ok(out) => out?,
            Err(_) => {
                return Err(HostError::NoAnswer {
                    host: self.name().into(),
                    command: argv.join(" "),
                    secs,
                });
            }
        };
        // 124: timeout's SIGTERM ended it; 137: the SIGKILL after the grace did
        let killed = matches!(out.status.code(), Some(124 | 137))
            && started.elapsed() >= Duration::from_secs(secs);
        if killed {
            return Err(HostError::TimedOut {
                host: self.name().into(),
                command: argv.join(" "),
                secs,
            });
        }
        Ok(out)
    }

    async fn copy(
        &self,
        paths: &[PathBuf],
        on_event: &(dyn Fn(CopyEvent) + Sync),
    ) -> Result<(), HostError> {
        let Conn::Ssh { host, nix_sshopts, .. } = &self.conn else {
            // the same store
            return Ok(());
        };
        let err = |message: String| HostError::Copy { host: host.clone(), message };
        let mut cmd = tokio::process::Command::new("nix-copy-closure");
        cmd.arg("--to").arg(host).args(paths);
        cmd.env("NIX_SSHOPTS", nix_sshopts);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| err(format!("running nix-copy-closure: {e}")))?;
        let stderr = child.stderr.take().expect("piped");
        let mut lines = BufReader::new(stderr).lines();
        let (mut done, mut expected) = (0u64, 0u64);
        let mut log = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(n) =
                line.trim().strip_prefix("copying ").and_then(|r| r.strip_suffix(" paths..."))
            {
                expected = n.trim().parse().unwrap_or(expected);
            } else if line.trim_start().starts_with("copying path ") {
                done += 1;
                on_event(CopyEvent::Copied { done, expected: expected.max(done) });
            }
            on_event(CopyEvent::Log(line.clone()));
            log.push(line);
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| err(format!("waiting for nix-copy-closure: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            let out = Output {
                status: out.status,
                stdout: out.stdout,
                stderr: log.join("\n").into_bytes(),
            };
            Err(err(failure_message(&out)))
        }
    }

    async fn take_lock<'a>(
        &'a self,
        who: &str,
        wait: Duration,
        on_wait: &(dyn Fn(String) + Sync),
    ) -> Result<HostLock<'a>, HostError> {
        let wait_s = wait.as_secs().to_string();
        let argv = ["sh", "-c", LOCK_SCRIPT, "sh", LOCK_DIR, who, &wait_s];
        let shown = "flock /run/carrier/deploy.lock";
        let err = |message: String| HostError::Run {
            host: self.name().to_string(),
            command: shown.into(),
            message,
        };
        let (program, args) = argv.split_first().expect("argv");
        let (child, mut stdout, mut stderr): (
            HolderChild<'_>,
            Box<dyn AsyncRead + Unpin + Send>,
            Box<dyn AsyncRead + Unpin + Send>,
        ) = match &self.conn {
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
                let holder = if holder.trim().is_empty() {
                    "(unknown)".to_string()
                } else {
                    holder.trim().to_string()
                };
                match word {
                    "locked" => return Ok(()),
                    "wait" => on_wait(format!(
                        "waiting for the {lock} lock on {}, held by: {holder}",
                        self.name()
                    )),
                    "timeout" => {
                        return Err(HostError::LockTimeout {
                            host: self.name().into(),
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
            // ending the holding command (its standard input closes) frees the lock; a
            // lost connection has freed it already
            Ok(Ok(())) => Ok(HostLock::new(async move {
                let wait = async {
                    match child {
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
            })),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(HostError::NoAnswer {
                host: self.name().into(),
                command: shown.into(),
                secs: answer.as_secs(),
            }),
        }
    }
}

impl Host for Remote {
    fn name(&self) -> &str {
        match &self.conn {
            Conn::Ssh { host, .. } => host,
            Conn::Local => "localhost",
        }
    }

    fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    async fn output_within(&self, argv: &[&str], limit: Duration) -> Result<Output, HostError> {
        self.timed_output(argv, None, limit).await
    }

    async fn output_with_input(
        &self,
        argv: &[&str],
        input: &[u8],
        limit: Duration,
    ) -> Result<Output, HostError> {
        self.timed_output(argv, Some(input), limit).await
    }

    async fn output_unbounded(&self, argv: &[&str]) -> Result<Output, HostError> {
        self.spawn_output(argv, argv, None).await
    }

    /// `nix-copy-closure --to <host>` through this connection (`NIX_SSHOPTS`), killed
    /// when `limit` passes; nothing to copy to `localhost`.
    async fn copy_closure(
        &self,
        paths: &[PathBuf],
        limit: Duration,
        on_event: &(dyn Fn(CopyEvent) + Sync),
    ) -> Result<(), HostError> {
        // kill_on_drop: nix-copy-closure is killed; the ssh it started ends when its pipes close
        tokio::time::timeout(limit, self.copy(paths, on_event)).await.unwrap_or_else(|_| {
            Err(HostError::CopyTimedOut { host: self.name().to_string(), secs: limit.as_secs() })
        })
    }

    /// `flock` on the host through a fixed script (`LOCK_SCRIPT`), whose inputs are
    /// arguments.
    fn lock<'a>(
        &'a self,
        who: &str,
        wait: Duration,
        on_wait: &(dyn Fn(String) + Sync),
    ) -> impl Future<Output = Result<HostLock<'a>, HostError>> + Send {
        self.take_lock(who, wait, on_wait)
    }
}

/// Writes `input` to a command's standard input, then closes it.
async fn feed<W: tokio::io::AsyncWrite + Unpin>(stdin: Option<W>, input: Option<&[u8]>) {
    if let (Some(mut stdin), Some(input)) = (stdin, input) {
        // a command that does not read all of it closes the pipe: not an error
        let _ = tokio::io::AsyncWriteExt::write_all(&mut stdin, input).await;
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

/// The command holding a deploy lock on the host.
enum HolderChild<'a> {
    Ssh(openssh::Child<&'a Session>),
    Local(tokio::process::Child),
}

/// A host's connection, or why there is none (remembered: no retry within a run), set
/// by the first to ask.
type Connection = Arc<OnceCell<Result<Arc<Remote>, HostError>>>;

/// The run's connections, opened on first use and shared by every step. Hosts are
/// connected to concurrently; concurrent users of one host wait for its one connection.
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

    /// The connection to `host`; a failed connection is remembered, not retried.
    async fn get(&self, host: &str, port: u16) -> Result<Arc<Remote>, HostError> {
        let cell = self
            .open
            .lock()
            .expect("connections")
            .entry((host.to_string(), port))
            .or_default()
            .clone();
        let connection = cell.get_or_init(|| async {
            if host == "localhost" {
                Ok(Arc::new(Remote::local(self.command_timeout)))
            } else {
                self.connects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.connect(host, port).await.map(Arc::new)
            }
        });
        connection.await.clone()
    }

    async fn connect(&self, host: &str, port: u16) -> Result<Remote, HostError> {
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
        let session = b.connect_mux(host).await.map_err(|e| HostError::Connect {
            host: host.to_string(),
            message: connect_message(&e),
        })?;
        let nix_sshopts = self.nix_sshopts(session.control_socket(), port);
        Ok(Remote {
            conn: Conn::Ssh { host: host.to_string(), session, nix_sshopts },
            command_timeout: self.command_timeout,
        })
    }

    /// `NIX_SSHOPTS` for nix-copy-closure: the same ssh_config, and the run's connection
    /// to the host (so a copy opens no connection of its own).
    fn nix_sshopts(&self, control_socket: &Path, port: u16) -> String {
        let mut opts = std::env::var("NIX_SSHOPTS").unwrap_or_default();
        if let Some(cfg) = &self.settings.config_file {
            opts.push_str(&format!(" -F {}", cfg.display()));
        }
        opts.push_str(&format!(" -o ControlPath={} -o ControlMaster=no", control_socket.display()));
        if port != 22 {
            opts.push_str(&format!(" -p {port}"));
        }
        opts.trim().to_string()
    }
}

impl Hosts for Connections {
    type Host = Remote;

    fn open(
        &self,
        name: &str,
        port: u16,
    ) -> impl Future<Output = Result<Arc<Remote>, HostError>> + Send {
        self.get(name, port)
    }

    async fn reconnect(&self, name: &str, port: u16) -> Result<Arc<Remote>, HostError> {
        self.open.lock().expect("connections").remove(&(name.to_string(), port));
        self.get(name, port).await
    }

    fn local(&self) -> Arc<Remote> {
        Arc::new(Remote::local(self.command_timeout))
    }

    fn opened(&self) -> usize {
        self.connects.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The masters are started with `ControlPersist`: without an explicit close they
    /// (and their sshd sessions on the hosts) would outlive the run.
    async fn close(self) {
        let open = self.open.into_inner().expect("connections");
        for connection in open.into_values().filter_map(|cell| Arc::into_inner(cell)?.into_inner())
        {
            if let Ok(Ok(Remote { conn: Conn::Ssh { session, .. }, .. })) =
                connection.map(Arc::try_unwrap)
            {
                let _ = session.close().await;
            }
        }
    }
}

/// The system `ssh` argv of an interactive session on `host` (`carrier ssh <machine>`),
/// with what carrier's own connections use: the same ssh_config, user root, strict
/// host key checking.
pub fn interactive_argv(settings: &SshSettings, host: &str, port: u16) -> Vec<String> {
    let mut argv = vec!["ssh".to_string()];
    if let Some(cfg) = &settings.config_file {
        argv.extend(["-F".to_string(), cfg.display().to_string()]);
    }
    argv.extend(["-o", "StrictHostKeyChecking=yes", "-l", "root"].map(String::from));
    if let Some(t) = settings.connect_timeout {
        argv.extend(["-o".to_string(), format!("ConnectTimeout={}", t.as_secs().max(1))]);
    }
    if port != 22 {
        argv.extend(["-p".to_string(), port.to_string()]);
    }
    argv.extend(["--".to_string(), host.to_string()]);
    argv
}

/// openssh reports the master's stderr; a changed host key is called out explicitly.
fn connect_message(e: &openssh::Error) -> String {
    let text =
        format!("{e}: {}", std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_default());
    if text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || text.contains("Host key verification failed")
    {
        format!("the host key does not match known_hosts (refusing to connect): {}", text.trim())
    } else {
        text.trim().trim_end_matches(':').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interactive_session_checks_host_keys_with_the_same_config() {
        let settings = SshSettings {
            config_file: Some("/lab/ssh_config".into()),
            connect_timeout: Some(Duration::from_secs(3)),
        };
        assert_eq!(
            interactive_argv(&settings, "-oProxyCommand=x", 2222),
            [
                "ssh",
                "-F",
                "/lab/ssh_config",
                "-o",
                "StrictHostKeyChecking=yes",
                "-l",
                "root",
                "-o",
                "ConnectTimeout=3",
                "-p",
                "2222",
                "--",
                "-oProxyCommand=x"
            ]
        );
        assert_eq!(
            interactive_argv(&SshSettings::default(), "node1", 22),
            ["ssh", "-o", "StrictHostKeyChecking=yes", "-l", "root", "--", "node1"]
        );
    }

    #[tokio::test]
    async fn a_local_command_with_input_reads_it() {
        let out = Remote::local(Duration::from_secs(5))
            .output_with_input(&["cat"], b"carried\n", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(out.stdout, b"carried\n");
    }

    #[tokio::test]
    async fn a_local_command_past_its_deadline_is_killed_and_reported() {
        let started = Instant::now();
        let e = Remote::local(Duration::from_secs(1)).output(&["sleep", "30"]).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert_eq!(
            e.to_string(),
            "`sleep 30` did not finish within 1 s and was killed (on localhost)"
        );
        let out =
            Remote::local(Duration::from_secs(5)).output(&["sh", "-c", "exit 124"]).await.unwrap();
        assert_eq!(out.status.code(), Some(124), "a command's own status 124 is not a timeout");
    }

    /// Hosts that never answer (loopback listeners that accept and stay silent): the
    /// connections are attempted at the same time, so opening two takes one timeout.
    #[tokio::test]
    async fn hosts_are_connected_to_concurrently() {
        let silent: Vec<std::net::TcpListener> =
            (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let settings =
            SshSettings { config_file: None, connect_timeout: Some(Duration::from_secs(2)) };
        let connections = Connections::new(settings, Duration::from_secs(5)).unwrap();
        let started = Instant::now();
        let opened =
            silent.iter().map(|l| connections.open("127.0.0.1", l.local_addr().unwrap().port()));
        let results = futures::future::join_all(opened).await;
        assert!(
            results.iter().all(|r| matches!(r, Err(HostError::Connect { .. }))),
            "{:?}",
            results.iter().map(|r| r.as_ref().err()).collect::<Vec<_>>()
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "one after the other: {:?}",
            started.elapsed()
        );
        assert_eq!(connections.opened(), 2);
        connections.close().await;
    }
}
