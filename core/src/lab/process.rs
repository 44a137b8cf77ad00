//! Processes of a lab: starting a host's sshd in its own mount and UTS namespace,
//! checking that a recorded PID is still that sshd, and stopping it.
//!
//! Only recorded PIDs are ever signalled, and only after `/proc/<pid>/cmdline` shows
//! the host's own sshd_config path: a PID reused by an unrelated process is left alone.

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::files::START_SCRIPT;
use super::layout::HostLayout;

/// How long `stop` waits after SIGTERM before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(3);

/// `count` distinct free loopback ports. The listeners are held until all are picked
/// (no duplicates), then dropped; sshd binds them a moment later.
pub fn free_ports(count: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// The argv starting a host's sshd: `setsid` (own session, survives the CLI),
/// `unshare` (own mounts, hostname and boot time: `boottime_offset`, see
/// [`boottime_offset`]), then [`START_SCRIPT`] with the paths as positional arguments.
pub fn sshd_argv(host: &HostLayout, boottime_offset: i64) -> Vec<String> {
    let p = |p: &Path| p.display().to_string();
    let mut argv: Vec<String> =
        ["setsid", "unshare", "--mount", "--uts", "--time"].map(String::from).to_vec();
    argv.extend(["--boottime".to_string(), boottime_offset.to_string()]);
    argv.extend(["--propagation", "private", "sh", "-c"].map(String::from));
    argv.push(START_SCRIPT.to_string());
    argv.push("sh".into());
    argv.extend([
        p(&host.nix()),
        p(&host.root()),
        p(&host.run()),
        p(&host.sshd_config()),
        host.alias.clone(),
    ]);
    argv
}

/// The `CLOCK_BOOTTIME` offset of a new time namespace in which `/proc/uptime` starts
/// at zero (less than a second): a lab host "boots" when its sshd starts, so a restarted
/// host reads a lower uptime, as a rebooted one does. Offsets count from the machine's
/// own clock, so the caller's own offset (when it runs on a lab host) is taken out.
pub fn boottime_offset() -> std::io::Result<i64> {
    let uptime = std::fs::read_to_string("/proc/uptime")?;
    let seen: f64 =
        uptime.split_whitespace().next().and_then(|f| f.parse().ok()).ok_or_else(|| {
            std::io::Error::other(format!("/proc/uptime: not an uptime: {uptime:?}"))
        })?;
    // "boottime <seconds> <nanoseconds>"; absent on kernels without time namespaces
    let own = std::fs::read_to_string("/proc/self/timens_offsets").unwrap_or_default();
    let own: i64 = own
        .lines()
        .find_map(|l| l.strip_prefix("boottime")?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Ok(-((seen as i64) - own))
}

/// Starts the sshd with stdout and stderr going to the host's `sshd.log`. The child's
/// PID is sshd's: `setsid` (not a group leader here), `unshare` and `sh` all exec.
pub fn spawn_sshd(host: &HostLayout) -> std::io::Result<Child> {
    let log = crate::private_dir::create_file(&host.log(), 0o644)?;
    let argv = sshd_argv(host, boottime_offset()?);
    Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
}

/// True while `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may contain spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// True when `pid` runs with `sshd_config` on its command line: the sshd started for
/// this host (or its start script, before the exec). sshd rewrites its title into one
/// string (`sshd: /usr/sbin/sshd -D -e -f <config> [listener] …`), so words are split
/// on spaces as well as NULs (lab paths never contain spaces, see `config_safe`).
pub fn is_lab_sshd(pid: u32, sshd_config: &Path) -> bool {
    let mut buf = Vec::new();
    let Ok(mut f) = File::open(format!("/proc/{pid}/cmdline")) else { return false };
    if f.read_to_end(&mut buf).is_err() {
        return false;
    }
    let want = sshd_config.as_os_str().as_encoded_bytes();
    buf.split(|b| *b == 0 || *b == b' ').any(|arg| arg == want)
}

pub fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return };
    if pid > 0 {
        // SAFETY: kill(2) with a positive PID signals that one process only.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Reaps `pid` when it is our child (a lab started in this process); harmless otherwise.
fn reap(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        let mut status = 0;
        // SAFETY: waitpid with WNOHANG on one PID; ECHILD when it is not our child.
        unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    }
}

/// What happened to one recorded PID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stopped {
    /// Ended after SIGTERM.
    Terminated,
    /// Still there after the grace period; SIGKILL.
    Killed,
    /// Already gone.
    NotRunning,
    /// The PID is not (or no longer) this lab's sshd: left alone.
    NotOurs,
}

/// Stops the recorded sshds: SIGTERM to each one that still is this lab's sshd, SIGKILL
/// to those still alive after [`TERM_GRACE`].
pub fn stop(targets: &[(u32, &Path)]) -> Vec<Stopped> {
    let mut result: Vec<Stopped> = targets
        .iter()
        .map(|&(pid, config)| {
            reap(pid);
            if !pid_alive(pid) {
                Stopped::NotRunning
            } else if !is_lab_sshd(pid, config) {
                Stopped::NotOurs
            } else {
                signal(pid, libc::SIGTERM);
                Stopped::Terminated
            }
        })
        .collect();
    let deadline = Instant::now() + TERM_GRACE;
    loop {
        let pending: Vec<usize> = (0..targets.len())
            .filter(|&i| result[i] == Stopped::Terminated)
            .filter(|&i| {
                reap(targets[i].0);
                pid_alive(targets[i].0)
            })
            .collect();
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            for i in pending {
                signal(targets[i].0, libc::SIGKILL);
                result[i] = Stopped::Killed;
            }
            // SIGKILL cannot be refused; wait briefly until the kernel has removed them.
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until
                && targets.iter().any(|(pid, _)| {
                    reap(*pid);
                    pid_alive(*pid)
                })
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    result
}

/// The outcome of a command run with a deadline.
pub struct Ran {
    /// None when the command was killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stderr: String,
}

/// Runs `argv` with stdin and stdout closed, killing it after `timeout`.
pub fn run_with_timeout(argv: &[String], timeout: Duration) -> std::io::Result<Ran> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Ran { status, stderr: reader.join().unwrap_or_default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_arguments_not_script() {
        let host = HostLayout { alias: "node1.lab".into(), dir: "/tmp/x; rm -rf /".into() };
        let argv = sshd_argv(&host, -1234);
        assert_eq!(
            argv[..11],
            [
                "setsid",
                "unshare",
                "--mount",
                "--uts",
                "--time",
                "--boottime",
                "-1234",
                "--propagation",
                "private",
                "sh",
                "-c"
            ]
        );
        assert_eq!(argv[11], START_SCRIPT);
        assert_eq!(argv[12], "sh");
        assert_eq!(argv[13], "/tmp/x; rm -rf /nix");
        assert_eq!(argv[16], "/tmp/x; rm -rf /sshd_config");
        assert_eq!(argv[17], "node1.lab");
        assert!(!START_SCRIPT.contains("/tmp"));
    }

    #[test]
    fn a_new_boot_time_starts_the_uptime_at_zero() {
        let out = Command::new("unshare")
            .args(["--time", "--boottime", &boottime_offset().unwrap().to_string()])
            .args(["cat", "/proc/uptime"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let uptime: f64 = text.split_whitespace().next().unwrap().parse().unwrap();
        assert!((0.0..2.0).contains(&uptime), "{text}");
    }

    #[test]
    fn stop_leaves_foreign_pids_alone() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        assert!(pid_alive(pid));
        let r = stop(&[(pid, Path::new("/nonexistent/sshd_config"))]);
        assert_eq!(r, [Stopped::NotOurs]);
        assert!(pid_alive(pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!pid_alive(pid));
        assert_eq!(stop(&[(pid, Path::new("/x"))]), [Stopped::NotRunning]);
    }

    #[test]
    fn stop_terminates_a_matching_process() {
        use std::os::unix::process::CommandExt;
        // argv[0] stands in for the sshd_config path on an sshd's command line.
        let mut child =
            Command::new("sleep").arg0("/tmp/lab-test/sshd_config").arg("30").spawn().unwrap();
        let until = Instant::now() + Duration::from_secs(2);
        while !is_lab_sshd(child.id(), Path::new("/tmp/lab-test/sshd_config"))
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let r = stop(&[(child.id(), Path::new("/tmp/lab-test/sshd_config"))]);
        assert_eq!(r, [Stopped::Terminated]);
        assert!(!pid_alive(child.id()));
        // `stop` reaped it already; this only satisfies the Child's contract.
        let _ = child.wait();
    }
}
