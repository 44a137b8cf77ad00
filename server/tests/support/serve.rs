//! A `carrier serve` a test started: its output collected, the address it announced,
//! stopped (its PID) when dropped.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `carrier serve`; stopped (its PID, which this test started) when dropped.
pub(crate) struct Server {
    child: Child,
    /// `host:port` it listens on.
    pub(crate) addr: String,
    output: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `cmd` and waits for the line announcing the address it listens on.
    pub(crate) fn start(cmd: Command) -> Server {
        Server::try_start(cmd)
            .unwrap_or_else(|out| panic!("carrier serve exited before listening:\n{out}"))
    }

    /// Starts `cmd`: the server once it listens, or its output once it exited.
    pub(crate) fn try_start(mut cmd: Command) -> Result<Server, String> {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let readers: Vec<_> = [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ]
        .into_iter()
        .map(|stream| {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            })
        })
        .collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = output.lock().unwrap().clone();
            if let Some(rest) = out.split(" on http://").nth(1) {
                let addr = rest[..rest.find('/').unwrap()].to_string();
                return Ok(Server { child, addr, output });
            }
            if child.try_wait().unwrap().is_some() {
                readers.into_iter().for_each(|r| r.join().unwrap());
                return Err(output.lock().unwrap().clone());
            }
            assert!(Instant::now() < deadline, "carrier serve did not start:\n{out}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The PID of the server process.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Server {
    /// `http://host:port`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Ends the server at once (SIGKILL to the PID this test started): no goodbye, as when
    /// its machine dies.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
