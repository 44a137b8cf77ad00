//! A real atftpd for the lab, serving a TFTP root.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::netns::IP_TIMEOUT;
use super::processes::{Proc, command_in, free_udp_port, run_ok, wait_ready};
use super::tools::tools;

/// A real atftpd (`--daemon --no-fork --logfile -`) serving a root that may be a symlink
/// and may contain symlinks out of the root. It runs as root (`--user root --group root`)
/// so that private temp trees are readable.
pub(crate) struct Atftpd {
    proc: Proc,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Atftpd {
    /// On 127.0.0.1, a free UDP port.
    pub(crate) fn start(root: &Path) -> Result<Atftpd> {
        let mut last = None;
        for _ in 0..3 {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_udp_port()?));
            match Atftpd::start_in(None, addr, root) {
                Ok(a) => return Ok(a),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap())
    }

    /// Bound to `bind` inside `netns` (or the root namespace).
    pub(crate) fn start_in(netns: Option<&str>, bind: SocketAddr, root: &Path) -> Result<Atftpd> {
        let dir = tempfile::Builder::new().prefix("netlab-atftpd.").tempdir()?;
        let log = dir.path().join("atftpd.log");
        let mut cmd = command_in(netns, &tools().atftpd);
        cmd.args(["--daemon", "--no-fork", "--logfile", "-", "--user", "root", "--group", "root"])
            .args(["--bind-address", &bind.ip().to_string(), "--port", &bind.port().to_string()])
            .arg(root);
        let mut proc = Proc::spawn("atftpd", cmd, &log)?;
        let ns = netns.map(str::to_string);
        let want = bind.to_string();
        wait_ready(&mut proc, Duration::from_secs(10), || {
            let mut c = command_in(ns.as_deref(), "ss");
            c.args(["-H", "-u", "-l", "-n"]);
            run_ok(&mut c, IP_TIMEOUT)
                .map(|s| s.split_whitespace().any(|w| w == want))
                .unwrap_or(false)
        })?;
        Ok(Atftpd { proc, addr: bind, _dir: dir })
    }

    /// Its log (`Serving <file> to <addr>:<port>` per request).
    pub(crate) fn log(&self) -> String {
        self.proc.log()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// `tftp://<addr>[:port]/<path>`, a URL QEMU's guest (iPXE) can boot when the address is
    /// routed from the host (a [`Lab`] service address after [`Lab::link_host`]).
    pub(crate) fn url(&self, path: &str) -> String {
        if self.addr.port() == 69 {
            format!("tftp://{}/{path}", self.addr.ip())
        } else {
            format!("tftp://{}/{path}", self.addr)
        }
    }
}
