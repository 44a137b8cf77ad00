//! Running a local command with a deadline: in its own process group, killed with
//! everything it started when the deadline passes, its output collected.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How a command with a deadline ended.
#[derive(Debug)]
pub struct Ran {
    /// None when it was killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Non-empty when, after the kill, something outside the process group still held
    /// the command's output open (it was left running): what is known about it.
    pub left_running: String,
}

/// Runs `cmd` (stdin closed) in a new process group; when `limit` passes, SIGKILLs the
/// whole group.
pub fn run_with_deadline(mut cmd: Command, limit: Duration) -> std::io::Result<Ran> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut child = cmd.spawn()?;
    let (tx, rx) = mpsc::channel();
    for (i, mut pipe) in [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ]
    .into_iter()
    .enumerate()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send((i, buf));
        });
    }
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            // the group id is the child's pid (process_group(0))
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // the pipes close when every process holding them has ended
    let mut out = [Vec::new(), Vec::new()];
    let mut left_running = String::new();
    for _ in 0..2 {
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok((i, buf)) => out[i] = buf,
            Err(_) => {
                left_running =
                    "a process it started outside its process group still holds its output".into();
                break;
            }
        }
    }
    let [stdout, stderr] = out;
    Ok(Ran { status, stdout, stderr, left_running })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_group_is_killed_at_the_deadline() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; sleep 30 & wait"]);
        let started = Instant::now();
        let ran = run_with_deadline(cmd, Duration::from_millis(300)).unwrap();
        assert!(ran.status.is_none());
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the sleep (same group) was killed too: {:?}",
            started.elapsed()
        );
        assert_eq!(ran.stdout, b"started\n");
        assert_eq!(ran.left_running, "");
    }

    #[test]
    fn a_command_that_ends_in_time_keeps_its_status_and_output() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let ran = run_with_deadline(cmd, Duration::from_secs(10)).unwrap();
        assert_eq!(ran.status.and_then(|s| s.code()), Some(3));
        assert_eq!((ran.stdout.as_slice(), ran.stderr.as_slice()), (&b"out\n"[..], &b"err\n"[..]));
    }
}
