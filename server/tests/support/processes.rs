//! Commands with hard timeouts, and process guards killed by PID (their own process group) on drop.

use std::fs;
use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::{self};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Runs a command to completion, killing it after `timeout`.
pub(crate) fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {desc}"))?;
    let drain = |r: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {timeout:?}: {desc}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// [`run`], failing on a non-zero exit; returns stdout.
pub(crate) fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let desc = format!("{cmd:?}");
    let out = run(cmd, timeout)?;
    if !out.status.success() {
        bail!("{desc} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn signal_group(pgid: u32, sig: &str) {
    // The process group id is the PID of the process this guard started.
    let _ = Command::new("kill")
        .args(["-s", sig, "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A started daemon. It runs in its own process group (its PID); dropping the guard sends
/// SIGTERM to that group, waits up to 3 s, then SIGKILLs the group (nginx workers included).
pub(crate) struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    stopped: bool,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    pub(crate) fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc> {
        let file = fs::OpenOptions::new().create(true).append(true).open(log)?;
        cmd.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file).process_group(0);
        let child = cmd.spawn().with_context(|| format!("spawn {name}: {cmd:?}"))?;
        Ok(Proc { name: name.to_string(), child, log: log.to_path_buf(), stopped: false })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process still runs (false once it exited).
    pub(crate) fn alive(&mut self) -> bool {
        !self.stopped && matches!(self.child.try_wait(), Ok(None))
    }

    /// Its output so far.
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the process group (TERM, then KILL after 3 s). Idempotent.
    pub(crate) fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let pid = self.child.id();
        if matches!(self.child.try_wait(), Ok(None)) {
            signal_group(pid, "TERM");
            let deadline = Instant::now() + Duration::from_secs(3);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
        }
        signal_group(pid, "KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Fails with the log when the process has exited.
    fn check_alive(&mut self) -> Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("{} exited ({status}):\n{}", self.name, self.log());
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `ready` every 50 ms until it returns true, the process dies, or `timeout` passes.
pub(crate) fn wait_ready(
    proc: &mut Proc,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        proc.check_alive()?;
        if ready() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{} not ready after {timeout:?}:\n{}", proc.name, proc.log());
        }
        thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn free_tcp_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) fn free_udp_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A command, run inside network namespace `netns` when given (`ip netns exec` execs the
/// program itself, so the PID is the program's).
pub(crate) fn command_in(netns: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        None => Command::new(program),
    }
}
