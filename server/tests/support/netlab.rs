//! The netboot lab: real atftpd, real nginx, network namespaces and real PXE boots under
//! QEMU, for tests that prove carrier's TFTP and HTTP trees with the components that serve
//! them in production.
//!
//! Everything here is started by the test and stopped by RAII guards: processes are killed
//! by PID (their own process group) on drop, namespaces are deleted on drop, and every wait
//! has a hard timeout. Traffic goes only to loopback or to addresses inside namespaces
//! created here (`10.213.0.0/16`, checked with `ip route get` before anything is sent).
//!
//! What it needs comes from `scripts/setup`: qemu-system-x86, pxelinux, syslinux-common,
//! cpio, nginx, tftp-hpa, busybox-static, atftpd unpacked in `.local/atftpd` and a Debian
//! cloud kernel in `.local/kernel/vmlinuz`. See `/work/shared/guides/lab.md`.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

// ------------------------------------------------------------------------------------
// Tools and paths
// ------------------------------------------------------------------------------------

/// The checkout's root (the workspace directory).
pub(crate) fn carrier_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Where the lab's programs and boot files are. All paths exist (checked by [`tools`]).
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    /// The Debian cloud kernel (`.local/kernel/vmlinuz`).
    pub kernel: PathBuf,
    /// atftpd unpacked from its .deb (`.local/atftpd/usr/sbin/atftpd`).
    pub atftpd: PathBuf,
    /// A static busybox (the initramfs payload).
    pub busybox: PathBuf,
    pub nginx: PathBuf,
    pub qemu: PathBuf,
    /// `/usr/lib/PXELINUX` (pxelinux.0).
    pub pxelinux_dir: PathBuf,
    /// `/usr/lib/syslinux/modules/bios` (ldlinux.c32, menu.c32, …).
    pub syslinux_bios_dir: PathBuf,
    /// `/usr/lib/syslinux` (memdisk).
    pub syslinux_dir: PathBuf,
}

/// The lab's tools; panics with a pointer to `scripts/setup` when one is missing.
pub(crate) fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let root = carrier_root();
        let t = Tools {
            kernel: root.join(".local/kernel/vmlinuz"),
            atftpd: root.join(".local/atftpd/usr/sbin/atftpd"),
            busybox: PathBuf::from("/bin/busybox"),
            nginx: PathBuf::from("/usr/sbin/nginx"),
            qemu: PathBuf::from("/usr/bin/qemu-system-x86_64"),
            pxelinux_dir: PathBuf::from("/usr/lib/PXELINUX"),
            syslinux_bios_dir: PathBuf::from("/usr/lib/syslinux/modules/bios"),
            syslinux_dir: PathBuf::from("/usr/lib/syslinux"),
        };
        let needed = [
            &t.kernel,
            &t.atftpd,
            &t.busybox,
            &t.nginx,
            &t.qemu,
            &t.pxelinux_dir.join("pxelinux.0"),
            &t.syslinux_bios_dir.join("menu.c32"),
            &t.syslinux_dir.join("memdisk"),
            &PathBuf::from("/usr/bin/cpio"),
            &PathBuf::from("/usr/bin/tftp"),
            &PathBuf::from("/usr/bin/curl"),
        ];
        for p in needed {
            assert!(p.exists(), "netlab: {} is missing; run scripts/setup", p.display());
        }
        t
    })
}

/// The syslinux files of carrier's TFTP tree (spec 3.4), with where they come from.
pub(crate) fn syslinux_files() -> Vec<(&'static str, PathBuf)> {
    let t = tools();
    let bios = |n: &'static str| (n, t.syslinux_bios_dir.join(n));
    vec![
        ("pxelinux.0", t.pxelinux_dir.join("pxelinux.0")),
        bios("ldlinux.c32"),
        bios("libcom32.c32"),
        bios("libutil.c32"),
        ("memdisk", t.syslinux_dir.join("memdisk")),
        bios("menu.c32"),
        bios("reboot.c32"),
    ]
}

/// Copies [`syslinux_files`] into `dir` (a TFTP root).
pub(crate) fn install_syslinux(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    for (name, src) in syslinux_files() {
        fs::copy(&src, dir.join(name)).with_context(|| format!("copy {}", src.display()))?;
    }
    Ok(())
}

// ------------------------------------------------------------------------------------
// Commands with hard timeouts, and process guards
// ------------------------------------------------------------------------------------

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
fn wait_ready(proc: &mut Proc, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
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

fn free_tcp_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn free_udp_port() -> Result<u16> {
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

// ------------------------------------------------------------------------------------
// Network namespaces
// ------------------------------------------------------------------------------------

const IP_TIMEOUT: Duration = Duration::from_secs(10);

fn ip(args: &[&str]) -> Result<String> {
    run_ok(Command::new("ip").args(args), IP_TIMEOUT)
}

fn ip_in(netns: Option<&str>, args: &[&str]) -> Result<String> {
    let mut c = Command::new("ip");
    if let Some(ns) = netns {
        c.args(["-n", ns]);
    }
    run_ok(c.args(args), IP_TIMEOUT)
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A unique name with the lab's prefix: `cnl<pid><tag><n>` (at most 15 characters, so it
/// also fits an interface name).
fn unique_name(tag: char) -> String {
    format!("cnl{}{tag}{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

/// Deletes lab namespaces left behind by test processes that no longer exist.
fn remove_stale_namespaces() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(list) = ip(&["netns", "list"]) else { return };
        for line in list.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(rest) = name.strip_prefix("cnl") else { continue };
            let pid: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            if rest[pid.len()..].starts_with('n')
                && !pid.is_empty()
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = ip(&["netns", "del", name]);
            }
        }
    });
}

/// A network namespace with `lo` up; deleted on drop.
pub(crate) struct Netns {
    name: String,
}

impl Netns {
    pub(crate) fn new() -> Result<Netns> {
        remove_stale_namespaces();
        let name = unique_name('n');
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ip_in(Some(&ns.name), &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Allocates a /30 inside 10.213.0.0/16 that no route or address of the root namespace
/// touches; returns its two host addresses (.1, .2).
fn alloc_net30() -> Result<(Ipv4Addr, Ipv4Addr)> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let start = (std::process::id() as usize % 256) * 64;
    for _ in 0..16384 {
        let i = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % 16384;
        let base = u32::from(Ipv4Addr::new(10, 213, 0, 0)) + (i as u32) * 4;
        let net = format!("{}/30", Ipv4Addr::from(base));
        let routes = ip(&["-4", "-o", "route", "show", "root", &net])?;
        let addrs = ip(&["-4", "-o", "addr", "show", "to", &net])?;
        if routes.trim().is_empty() && addrs.trim().is_empty() {
            return Ok((Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2)));
        }
    }
    bail!("no free /30 in 10.213.0.0/16")
}

/// One end of the lab: the root namespace (the host, where QEMU runs) or a client namespace,
/// linked to the lab's server namespace by a veth pair with a private /30.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub label: String,
    /// This end's address (the source address the server sees).
    pub addr: Ipv4Addr,
    /// The server end of the link.
    pub server_side: Ipv4Addr,
    /// The link's network, e.g. `10.213.4.4/30` (an allow-list entry that admits this peer).
    pub net: String,
    /// The client namespace; `None` for the host.
    pub netns: Option<String>,
}

impl Peer {
    /// A command run from this peer.
    pub(crate) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        command_in(self.netns.as_deref(), program)
    }

    /// HTTP GET from this peer.
    pub(crate) fn http_get(&self, url: &str) -> Result<HttpResponse> {
        http_get_in(self.netns.as_deref(), url)
    }

    /// TFTP get from this peer (non-empty result, see [`tftp_get_in`]).
    pub(crate) fn tftp_get(
        &self,
        client: TftpClient,
        server: SocketAddr,
        path: &str,
    ) -> Result<Vec<u8>> {
        tftp_get_in(self.netns.as_deref(), client, server, path)
    }
}

/// A server namespace with one service address (a /32 on its `lo`, like a host's public
/// address) and any number of peers, each on its own veth /30 with a route to the service
/// address. Start nginx/atftpd on the service address with [`Lab::start_nginx`] and
/// [`Lab::start_atftpd`]; [`Lab::link_host`] makes it reachable from the root namespace
/// (and thus from QEMU's user-mode network).
pub(crate) struct Lab {
    server: Netns,
    service: Ipv4Addr,
    clients: Vec<Netns>,
    host_links: Vec<String>,
}

impl Lab {
    pub(crate) fn new() -> Result<Lab> {
        let server = Netns::new()?;
        let (service, _) = alloc_net30()?;
        ip_in(Some(server.name()), &["addr", "add", &format!("{service}/32"), "dev", "lo"])?;
        Ok(Lab { server, service, clients: Vec::new(), host_links: Vec::new() })
    }

    /// The address the services listen on.
    pub(crate) fn service_addr(&self) -> Ipv4Addr {
        self.service
    }

    /// The server namespace's name.
    pub(crate) fn server_netns(&self) -> &str {
        self.server.name()
    }

    /// A new client namespace linked to the server.
    pub(crate) fn add_client(&mut self, label: &str) -> Result<Peer> {
        let ns = Netns::new()?;
        let peer = self.link(label, Some(ns.name()))?;
        self.clients.push(ns);
        Ok(peer)
    }

    /// Links the root namespace to the server (a host route to the service address).
    pub(crate) fn link_host(&mut self) -> Result<Peer> {
        self.link("host", None)
    }

    fn link(&mut self, label: &str, peer_ns: Option<&str>) -> Result<Peer> {
        let (addr, server_side) = alloc_net30()?;
        let net = format!("{}/30", Ipv4Addr::from(u32::from(addr) - 1));
        let (pv, sv) = (unique_name('a'), unique_name('b'));
        let srv = self.server.name().to_string();
        ip_in(peer_ns, &["link", "add", &pv, "type", "veth", "peer", "name", &sv, "netns", &srv])?;
        if peer_ns.is_none() {
            self.host_links.push(pv.clone());
        }
        ip_in(peer_ns, &["addr", "add", &format!("{addr}/30"), "dev", &pv])?;
        ip_in(peer_ns, &["link", "set", &pv, "up"])?;
        ip_in(Some(&srv), &["addr", "add", &format!("{server_side}/30"), "dev", &sv])?;
        ip_in(Some(&srv), &["link", "set", &sv, "up"])?;
        let service = self.service.to_string();
        ip_in(
            peer_ns,
            &[
                "route",
                "add",
                &format!("{service}/32"),
                "via",
                &server_side.to_string(),
                "dev",
                &pv,
            ],
        )?;
        // Confirm both directions stay on this link before anything is sent.
        let there = ip_in(peer_ns, &["route", "get", &service])?;
        if !there.contains(&format!("dev {pv} ")) || !there.contains(&format!("src {addr} ")) {
            bail!("route from {label} to {service} does not use {pv} (src {addr}): {there}");
        }
        let back = ip_in(Some(&srv), &["route", "get", &addr.to_string()])?;
        if !back.contains(&format!("dev {sv} ")) {
            bail!("route from the server to {addr} does not use {sv}: {back}");
        }
        Ok(Peer {
            label: label.to_string(),
            addr,
            server_side,
            net,
            netns: peer_ns.map(str::to_string),
        })
    }

    /// nginx in the server namespace on `<service>:80`.
    pub(crate) fn start_nginx(&self, root: &Path, opts: &NginxOptions) -> Result<Nginx> {
        Nginx::start_in(Some(self.server.name()), SocketAddr::from((self.service, 80)), root, opts)
    }

    /// atftpd in the server namespace, `--bind-address <service>`, port 69.
    pub(crate) fn start_atftpd(&self, root: &Path) -> Result<Atftpd> {
        Atftpd::start_in(Some(self.server.name()), SocketAddr::from((self.service, 69)), root)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for link in &self.host_links {
            let _ = ip(&["link", "del", link]);
        }
        // The namespaces (server, clients) go with their guards.
    }
}

// ------------------------------------------------------------------------------------
// atftpd
// ------------------------------------------------------------------------------------

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

// ------------------------------------------------------------------------------------
// nginx
// ------------------------------------------------------------------------------------

/// How [`Nginx`] serves its root.
#[derive(Debug, Clone)]
pub(crate) struct NginxOptions {
    /// `allow <range>;` per entry, then `deny all;` (carrier's `allowedIPv4Ranges`); empty:
    /// no access control.
    pub allow: Vec<String>,
    /// Extra single files outside the root: (URL path such as `/boot.ipxe`, file).
    pub extra_files: Vec<(String, PathBuf)>,
    /// The `user` directive for the workers (default `root`, so private temp trees are
    /// readable; a tree under /nix/store is readable by `nobody` too).
    pub user: String,
}

impl Default for NginxOptions {
    fn default() -> Self {
        NginxOptions { allow: Vec::new(), extra_files: Vec::new(), user: "root".into() }
    }
}

impl NginxOptions {
    pub(crate) fn allow(ranges: &[&str]) -> Self {
        NginxOptions { allow: ranges.iter().map(|s| s.to_string()).collect(), ..Default::default() }
    }
}

/// A real nginx (master + worker) with its own prefix, config, logs, temp dirs and pid
/// file in a temp dir, serving `root` with `autoindex on;` like carrier's virtual host.
pub(crate) struct Nginx {
    proc: Proc,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// On 127.0.0.1, a free port.
    pub(crate) fn start(root: &Path, opts: &NginxOptions) -> Result<Nginx> {
        let mut last = None;
        for _ in 0..3 {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_tcp_port()?));
            match Nginx::start_in(None, addr, root, opts) {
                Ok(n) => return Ok(n),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap())
    }

    /// Listening on `listen` inside `netns` (or the root namespace).
    pub(crate) fn start_in(
        netns: Option<&str>,
        listen: SocketAddr,
        root: &Path,
        opts: &NginxOptions,
    ) -> Result<Nginx> {
        let dir = tempfile::Builder::new().prefix("netlab-nginx.").tempdir()?;
        let d = dir.path();
        fs::create_dir_all(d.join("tmp"))?;
        let mut access = String::new();
        for range in &opts.allow {
            writeln!(access, "      allow {range};")?;
        }
        if !opts.allow.is_empty() {
            access.push_str("      deny all;\n");
        }
        let mut extra = String::new();
        for (url, file) in &opts.extra_files {
            writeln!(
                extra,
                "    location = {url} {{\n      alias {};\n{access}    }}",
                file.display()
            )?;
        }
        let conf = format!(
            r#"user {user};
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log {d}/access.log;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  server {{
    listen {listen};
    server_name _;
    root {root};
    location / {{
      autoindex on;
{access}    }}
{extra}  }}
}}
"#,
            user = opts.user,
            d = d.display(),
            root = root.display(),
        );
        let conf_path = d.join("nginx.conf");
        fs::write(&conf_path, conf)?;
        let mut cmd = command_in(netns, &tools().nginx);
        cmd.arg("-p").arg(d).arg("-c").arg(&conf_path).arg("-e").arg(d.join("error.log"));
        cmd.args(["-g", "daemon off;"]);
        let mut proc = Proc::spawn("nginx", cmd, &d.join("stderr.log"))?;
        // nginx writes its pid file after it has bound the listening sockets.
        let pidfile = d.join("nginx.pid");
        let res = wait_ready(&mut proc, Duration::from_secs(10), || pidfile.exists());
        if let Err(e) = res {
            let errlog = fs::read_to_string(d.join("error.log")).unwrap_or_default();
            bail!("{e}\nerror.log:\n{errlog}");
        }
        Ok(Nginx { proc, addr: listen, dir })
    }

    /// `http://<addr>`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL as QEMU's guest sees it: the host's loopback is 10.0.2.2 there.
    pub(crate) fn guest_url(&self) -> String {
        if self.addr.ip().is_loopback() {
            format!("http://{GUEST_HOST}:{}", self.addr.port())
        } else {
            self.url()
        }
    }

    pub(crate) fn access_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    pub(crate) fn error_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

// ------------------------------------------------------------------------------------
// Fetch helpers (real clients: curl, tftp-hpa)
// ------------------------------------------------------------------------------------

const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub(crate) struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// HTTP GET with curl (no proxy), from the root namespace.
pub(crate) fn http_get(url: &str) -> Result<HttpResponse> {
    http_get_in(None, url)
}

/// HTTP GET with curl from `netns`. Any status is returned; transport errors are errors.
pub(crate) fn http_get_in(netns: Option<&str>, url: &str) -> Result<HttpResponse> {
    let tmp = tempfile::NamedTempFile::new()?;
    let mut c = command_in(netns, "curl");
    c.args(["-sS", "--noproxy", "*", "--max-time", "30", "-w", "%{http_code}", "-o"])
        .arg(tmp.path())
        .arg(url);
    let code = run_ok(&mut c, FETCH_TIMEOUT).with_context(|| format!("GET {url}"))?;
    let status = code.trim().parse().with_context(|| format!("GET {url}: status {code:?}"))?;
    Ok(HttpResponse { status, body: fs::read(tmp.path())? })
}

/// A real TFTP client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TftpClient {
    /// `curl tftp://…` with `--tftp-blksize 1428` (RFC 2348 negotiation).
    Curl,
    /// tftp-hpa's `tftp -m binary … -c get` (512-byte blocks, like PXE ROMs).
    TftpHpa,
}

/// TFTP get with curl from the root namespace.
pub(crate) fn tftp_get(server: SocketAddr, path: &str) -> Result<Vec<u8>> {
    tftp_get_in(None, TftpClient::Curl, server, path)
}

/// TFTP get from `netns`. Clients may exit 0 and leave an empty file on a TFTP error, so an
/// empty result is an error too.
pub(crate) fn tftp_get_in(
    netns: Option<&str>,
    client: TftpClient,
    server: SocketAddr,
    path: &str,
) -> Result<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    let dest = dir.path().join("file");
    let mut c;
    match client {
        TftpClient::Curl => {
            c = command_in(netns, "curl");
            c.args(["-sS", "--noproxy", "*", "--max-time", "50", "--tftp-blksize", "1428", "-o"])
                .arg(&dest)
                .arg(format!("tftp://{server}/{path}"));
        }
        TftpClient::TftpHpa => {
            c = command_in(netns, "tftp");
            c.args([
                "-m",
                "binary",
                &server.ip().to_string(),
                &server.port().to_string(),
                "-c",
                "get",
                path,
            ])
            .arg(&dest);
        }
    }
    let out =
        run(&mut c, FETCH_TIMEOUT).with_context(|| format!("tftp get {path} from {server}"))?;
    let body = fs::read(&dest).unwrap_or_default();
    if !out.status.success() || body.is_empty() {
        bail!(
            "tftp get {path} from {server} with {client:?}: exit {}, {} bytes: {}{}",
            out.status,
            body.len(),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(body)
}

/// One file of a served tree.
#[derive(Debug, Clone)]
pub(crate) struct TreeFile {
    /// Path relative to the root, `/`-separated (what a client requests).
    pub rel: String,
    /// Where it really is (all symlinks resolved).
    pub target: PathBuf,
    pub size: u64,
}

/// Every file and directory of a tree as a server sees it: symlinks (to files or to
/// directories, inside or outside the root, and the root itself) are followed. A dangling
/// symlink is an error. Sorted by path.
pub(crate) fn tree_files(root: &Path) -> Result<(Vec<TreeFile>, Vec<String>)> {
    fn walk(
        dir: &Path,
        rel: &str,
        depth: usize,
        files: &mut Vec<TreeFile>,
        dirs: &mut Vec<String>,
    ) -> Result<()> {
        if depth > 16 {
            bail!("{} nests too deep (a symlink loop?)", dir.display());
        }
        dirs.push(rel.to_string());
        let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let child_rel = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
            let path = e.path();
            let meta = fs::metadata(&path)
                .with_context(|| format!("{} (dangling symlink?)", path.display()))?;
            if meta.is_dir() {
                walk(&path, &child_rel, depth + 1, files, dirs)?;
            } else {
                files.push(TreeFile {
                    rel: child_rel,
                    target: fs::canonicalize(&path)?,
                    size: meta.len(),
                });
            }
        }
        Ok(())
    }
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    walk(root, "", 0, &mut files, &mut dirs)?;
    Ok((files, dirs))
}

/// Fetches every file of `root` over TFTP from `server` and compares it byte for byte with
/// the file on disk. Returns the paths checked.
pub(crate) fn verify_tree_tftp(
    root: &Path,
    server: SocketAddr,
    client: TftpClient,
) -> Result<Vec<String>> {
    let (files, _) = tree_files(root)?;
    let mut checked = Vec::new();
    for f in files {
        let got = tftp_get_in(None, client, server, &f.rel)?;
        let want = fs::read(&f.target)?;
        if got != want {
            bail!(
                "tftp {}: got {} bytes, want {} ({})",
                f.rel,
                got.len(),
                want.len(),
                f.target.display()
            );
        }
        checked.push(f.rel);
    }
    Ok(checked)
}

/// Fetches every file of `root` over HTTP below `base_url` (200 and byte-equal), and every
/// directory (200, an autoindex listing each entry). Returns the paths checked.
pub(crate) fn verify_tree_http(root: &Path, base_url: &str) -> Result<Vec<String>> {
    let (files, dirs) = tree_files(root)?;
    let base = base_url.trim_end_matches('/');
    let mut checked = Vec::new();
    for f in files {
        let r = http_get(&format!("{base}/{}", f.rel))?;
        let want = fs::read(&f.target)?;
        if r.status != 200 || r.body != want {
            bail!(
                "GET {}: status {}, {} bytes, want 200 and {} bytes",
                f.rel,
                r.status,
                r.body.len(),
                want.len()
            );
        }
        checked.push(f.rel);
    }
    for d in dirs {
        let url = if d.is_empty() { format!("{base}/") } else { format!("{base}/{d}/") };
        let r = http_get(&url)?;
        let page = r.text();
        if r.status != 200 || !page.contains("Index of") {
            bail!("GET {url}: status {}, not an autoindex page:\n{page}", r.status);
        }
        let dir = if d.is_empty() { root.to_path_buf() } else { root.join(&d) };
        for e in fs::read_dir(&dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let slash = if fs::metadata(e.path())?.is_dir() { "/" } else { "" };
            if !page.contains(&format!("href=\"{name}{slash}\"")) {
                bail!("GET {url}: the autoindex does not list {name}{slash}:\n{page}");
            }
        }
        checked.push(format!("{d}/"));
    }
    Ok(checked)
}

// ------------------------------------------------------------------------------------
// The payload: a tiny initramfs printing a marker
// ------------------------------------------------------------------------------------

/// The marker line an initramfs from [`build_initramfs`] prints.
pub(crate) fn marker_line(machine: &str, generation: u64) -> String {
    format!("NETBOOT-OK machine={machine} gen={generation}")
}

/// Writes a gzip'd newc cpio to `dest`: static busybox and an `/init` that prints
/// `NETBOOT-OK machine=<machine> gen=<generation>` and `NETBOOT-CMDLINE: <cmdline>` to
/// /dev/ttyS0, then powers off. The marker is baked in, so it proves which file was served.
pub(crate) fn build_initramfs(dest: &Path, machine: &str, generation: u64) -> Result<()> {
    if machine.is_empty()
        || !machine.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        bail!("machine name {machine:?}: only [A-Za-z0-9._-]");
    }
    let dir = tempfile::Builder::new().prefix("netlab-initramfs.").tempdir()?;
    let r = dir.path();
    for d in ["bin", "dev", "proc", "sys"] {
        fs::create_dir_all(r.join(d))?;
    }
    fs::copy(&tools().busybox, r.join("bin/busybox"))?;
    std::os::unix::fs::symlink("busybox", r.join("bin/sh"))?;
    let init = format!(
        r#"#!/bin/busybox sh
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t devtmpfs devtmpfs /dev
echo 1 > /proc/sys/kernel/printk
out=/dev/ttyS0
[ -c $out ] || out=/dev/console
cmdline=$($bb cat /proc/cmdline)
$bb printf '\n%s\nNETBOOT-CMDLINE: %s\n' '{marker}' "$cmdline" > $out
$bb sleep 0.2
$bb poweroff -f
"#,
        marker = marker_line(machine, generation)
    );
    fs::write(r.join("init"), init)?;
    fs::set_permissions(r.join("init"), fs::Permissions::from_mode(0o755))?;
    // /dev/console for the kernel's own use before devtmpfs is mounted (root only).
    let _ = run(Command::new("mknod").arg(r.join("dev/console")).args(["c", "5", "1"]), IP_TIMEOUT);
    let script = "find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -6n > \"$1\"";
    let dest_abs = std::path::absolute(dest)?;
    run_ok(
        Command::new("sh").args(["-ec", script, "sh"]).arg(&dest_abs).current_dir(r),
        Duration::from_secs(60),
    )
    .context("build the initramfs")?;
    Ok(())
}

// ------------------------------------------------------------------------------------
// QEMU
// ------------------------------------------------------------------------------------

/// The host's loopback as QEMU's user-mode guest sees it.
pub(crate) const GUEST_HOST: &str = "10.0.2.2";

/// Boot failures that end a boot early instead of waiting for the timeout.
pub(crate) const DEFAULT_FAIL_PATTERNS: &[&str] = &[
    "Could not find kernel image",
    "failed: No such file or directory",
    "\nboot: ",
    "Failed to load ",
    "Kernel panic",
    "No more network devices",
    "(http://ipxe.org/",
    "PXE-E",
    "Boot failed",
];

/// Where the guest's boot program comes from.
#[derive(Debug, Clone)]
pub(crate) enum BootSource {
    /// QEMU's built-in TFTP server serves `root`; DHCP hands out `bootfile` (`pxelinux.0`,
    /// or an iPXE script).
    BuiltinTftp { root: PathBuf, bootfile: String },
    /// DHCP hands out a URL that iPXE fetches: `http://10.0.2.2:<port>/x.ipxe` (nginx on
    /// loopback), `tftp://<lab service address>/pxelinux.0` (real atftpd in a [`Lab`]).
    /// QEMU's built-in TFTP server is off.
    Url(String),
    /// No network boot: QEMU loads `kernel` and `initrd` itself with the command line
    /// `append` (what a kexec of them would start).
    Direct { kernel: PathBuf, initrd: PathBuf, append: String },
}

/// One QEMU PXE boot.
#[derive(Debug, Clone)]
pub(crate) struct BootSpec {
    pub source: BootSource,
    /// The NIC's MAC, e.g. `52:54:00:12:34:56` (pxelinux asks for `01-52-54-00-12-34-56`).
    pub mac: String,
    /// Hard limit for the whole boot (default 60 s), from QEMU's start.
    pub timeout: Duration,
    /// Serial output that fails the boot at once.
    pub fail_on: Vec<String>,
    pub memory_mb: u32,
    /// UEFI firmware (OVMF) instead of the BIOS: the NIC's iPXE runs as an EFI driver.
    pub uefi: bool,
}

/// Debian's OVMF (package `ovmf`).
pub(crate) const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

impl BootSpec {
    pub(crate) fn new(source: BootSource, mac: &str) -> BootSpec {
        BootSpec {
            source,
            mac: mac.to_string(),
            timeout: Duration::from_secs(60),
            fail_on: DEFAULT_FAIL_PATTERNS.iter().map(|s| s.to_string()).collect(),
            memory_mb: 256,
            uefi: false,
        }
    }
}

/// A key sent to the serial console (a menu.c32 menu reads serial input as key presses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    Up,
    Down,
    Enter,
    Tab,
    Esc,
    Text(String),
}

impl Key {
    pub(crate) fn bytes(&self) -> Vec<u8> {
        match self {
            Key::Up => b"\x1b[A".to_vec(),
            Key::Down => b"\x1b[B".to_vec(),
            Key::Enter => b"\r".to_vec(),
            Key::Tab => b"\t".to_vec(),
            Key::Esc => b"\x1b".to_vec(),
            Key::Text(s) => s.as_bytes().to_vec(),
        }
    }
}

/// Wait until `wait_for` appears in the serial output (after the previous step's match),
/// then send `keys`.
#[derive(Debug, Clone)]
pub(crate) struct MenuStep {
    pub wait_for: String,
    pub keys: Vec<Key>,
}

impl MenuStep {
    pub(crate) fn new(wait_for: &str, keys: &[Key]) -> MenuStep {
        MenuStep { wait_for: wait_for.to_string(), keys: keys.to_vec() }
    }
}

/// Removes ANSI escape sequences, carriage returns and other control characters (SO/SI,
/// BEL) from serial output.
pub(crate) fn strip_ansi(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\x1b' => match it.next() {
                Some('[') => {
                    // CSI: parameter and intermediate bytes, then one final byte 0x40..=0x7e.
                    for n in it.by_ref() {
                        if ('\x40'..='\x7e').contains(&n) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    // OSC: up to BEL or ESC \.
                    while let Some(n) = it.next() {
                        if n == '\x07' {
                            break;
                        }
                        if n == '\x1b' {
                            it.next();
                            break;
                        }
                    }
                }
                Some('(' | ')' | '*' | '+' | '#' | '%') => {
                    it.next();
                }
                _ => {}
            },
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// What an initramfs from [`build_initramfs`] printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    pub machine: String,
    pub generation: u64,
    /// `/proc/cmdline` of the booted kernel.
    pub cmdline: String,
}

/// The first marker in (stripped) serial output.
pub(crate) fn find_marker(serial: &str) -> Option<Marker> {
    let start = serial.find("NETBOOT-OK machine=")?;
    let rest = &serial[start + "NETBOOT-OK machine=".len()..];
    let machine: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
    let rest = rest[machine.len()..].trim_start_matches(' ').strip_prefix("gen=")?;
    let generation =
        rest.chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()?;
    let cl = rest.find("NETBOOT-CMDLINE: ")?;
    let cmdline =
        rest[cl + "NETBOOT-CMDLINE: ".len()..].lines().next().unwrap_or("").trim().to_string();
    Some(Marker { machine, generation, cmdline })
}

/// The result of a finished boot.
#[derive(Debug, Clone)]
pub(crate) struct BootLog {
    /// Serial output, ANSI escapes stripped.
    pub serial: String,
    /// QEMU's stderr.
    pub stderr: String,
    pub status: ExitStatus,
    pub elapsed: Duration,
}

impl BootLog {
    pub(crate) fn marker(&self) -> Option<Marker> {
        find_marker(&self.serial)
    }

    /// The marker, which must name `machine` and `generation`.
    pub(crate) fn expect_marker(&self, machine: &str, generation: u64) -> Result<Marker> {
        match self.marker() {
            Some(m) if m.machine == machine && m.generation == generation => Ok(m),
            other => bail!(
                "expected {}, found {other:?}; serial output:\n{}",
                marker_line(machine, generation),
                tail(&self.serial, 4000)
            ),
        }
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut i = s.len().saturating_sub(n);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    &s[i..]
}

// Boots take a core each under TCG: at most CARRIER_NETLAB_BOOTS (default 2) at a time.
struct Slots {
    free: Mutex<usize>,
    cv: Condvar,
}

fn slots() -> &'static Slots {
    static SLOTS: OnceLock<Slots> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let n = std::env::var("CARRIER_NETLAB_BOOTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2usize)
            .max(1);
        Slots { free: Mutex::new(n), cv: Condvar::new() }
    })
}

struct SlotPermit;

impl SlotPermit {
    fn acquire() -> SlotPermit {
        let s = slots();
        let mut free = s.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = s.cv.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        SlotPermit
    }
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        let s = slots();
        *s.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        s.cv.notify_one();
    }
}

/// A running QEMU PXE boot: serial console on stdio (`-nographic`), captured; keys go to
/// its stdin. Killed (by PID) on drop or when the boot's deadline passes.
pub(crate) struct Qemu {
    child: Child,
    stdin: Option<ChildStdin>,
    serial: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    cursor: usize,
    started: Instant,
    deadline: Instant,
    spec: BootSpec,
    _slot: SlotPermit,
}

fn capture(r: impl Read + Send + 'static, buf: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut r = r;
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&chunk[..n]);
        }
    })
}

impl Qemu {
    /// Starts the boot (waiting first for a free boot slot; the timeout starts after that).
    pub(crate) fn start(spec: &BootSpec) -> Result<Qemu> {
        let slot = SlotPermit::acquire();
        let esc = |p: &str| p.replace(',', ",,");
        let netdev = match &spec.source {
            BootSource::BuiltinTftp { root, bootfile } => {
                format!(
                    "user,id=n0,tftp={},bootfile={}",
                    esc(&root.to_string_lossy()),
                    esc(bootfile)
                )
            }
            BootSource::Url(url) => format!("user,id=n0,bootfile={}", esc(url)),
            BootSource::Direct { .. } => "user,id=n0".to_string(),
        };
        let mut cmd = Command::new(&tools().qemu);
        cmd.args(["-machine", "pc,accel=tcg", "-m", &spec.memory_mb.to_string(), "-smp", "1"])
            .args(["-nographic", "-no-reboot", "-boot", "order=n,reboot-timeout=0"])
            .args(if spec.uefi { vec!["-bios", OVMF] } else { vec![] })
            .args(match &spec.source {
                BootSource::Direct { kernel, initrd, append } => {
                    vec![
                        "-kernel".into(),
                        kernel.clone().into_os_string(),
                        "-initrd".into(),
                        initrd.clone().into_os_string(),
                        "-append".into(),
                        append.into(),
                    ]
                }
                _ => Vec::<std::ffi::OsString>::new(),
            })
            .args(["-netdev", &netdev])
            .args(["-device", &format!("e1000,netdev=n0,mac={}", spec.mac)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let started = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
        let serial = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            capture(child.stdout.take().expect("stdout"), serial.clone()),
            capture(child.stderr.take().expect("stderr"), stderr.clone()),
        ];
        Ok(Qemu {
            stdin: child.stdin.take(),
            child,
            serial,
            stderr,
            readers,
            cursor: 0,
            started,
            deadline: started + spec.timeout,
            spec: spec.clone(),
            _slot: slot,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The serial output so far, ANSI escapes stripped.
    pub(crate) fn serial(&self) -> String {
        strip_ansi(&self.serial.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    fn failure(&self, what: &str) -> anyhow::Error {
        anyhow!(
            "QEMU boot (mac {}, {:?}): {what} after {:.1}s\nstderr: {}\nserial output:\n{}",
            self.spec.mac,
            self.spec.source,
            self.started.elapsed().as_secs_f64(),
            self.stderr_text().trim(),
            tail(&self.serial(), 4000)
        )
    }

    fn check_failed(&self, serial: &str) -> Result<()> {
        for p in &self.spec.fail_on {
            if serial.contains(p.as_str()) {
                return Err(self.failure(&format!("the serial output shows {p:?}")));
            }
        }
        Ok(())
    }

    /// Waits until `needle` appears in the serial output after the previous match, at most
    /// `timeout` (and never past the boot's deadline).
    pub(crate) fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = self.deadline.min(Instant::now() + timeout);
        loop {
            let serial = self.serial();
            if let Some(pos) = serial.get(self.cursor..).and_then(|s| s.find(needle)) {
                self.cursor += pos + needle.len();
                return Ok(());
            }
            self.check_failed(&serial)?;
            if let Some(status) = self.child.try_wait()? {
                return Err(
                    self.failure(&format!("QEMU exited ({status}) before {needle:?} appeared"))
                );
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                return Err(self.failure(&format!("timeout waiting for {needle:?}")));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends keys to the serial console, 200 ms apart.
    pub(crate) fn send_keys(&mut self, keys: &[Key]) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| anyhow!("QEMU's stdin is closed"))?;
        for k in keys {
            stdin.write_all(&k.bytes())?;
            stdin.flush()?;
            thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// Waits for QEMU to exit (the initramfs powers off; `-no-reboot`), killing it at the
    /// boot's deadline.
    pub(crate) fn wait_exit(mut self) -> Result<BootLog> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return Ok(BootLog {
                    serial: self.serial(),
                    stderr: self.stderr_text(),
                    status,
                    elapsed: self.started.elapsed(),
                });
            }
            self.check_failed(&self.serial())?;
            if Instant::now() >= self.deadline {
                let _ = self.child.kill();
                return Err(self.failure("timeout (QEMU killed)"));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.stdin.take();
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Boots `spec`, walking the menu `steps`, and waits for QEMU to power off.
pub(crate) fn boot(spec: &BootSpec, steps: &[MenuStep]) -> Result<BootLog> {
    let mut q = Qemu::start(spec)?;
    for step in steps {
        q.wait_for(&step.wait_for, spec.timeout)?;
        q.send_keys(&step.keys)?;
    }
    let log = q.wait_exit()?;
    eprintln!(
        "netlab: boot of {} ({:?}) took {:.1}s",
        spec.mac,
        spec.source,
        log.elapsed.as_secs_f64()
    );
    Ok(log)
}

/// [`boot`], then the marker, which must name `machine` and `generation`.
pub(crate) fn boot_expect(
    spec: &BootSpec,
    steps: &[MenuStep],
    machine: &str,
    generation: u64,
) -> Result<(Marker, BootLog)> {
    let log = boot(spec, steps)?;
    let m = log.expect_marker(machine, generation)?;
    Ok((m, log))
}

/// An iPXE script booting `kernel` with `initrd` and the kernel command line `cmdline`.
pub(crate) fn ipxe_script(kernel_url: &str, initrd_url: &str, cmdline: &str) -> String {
    format!("#!ipxe\nkernel {kernel_url} {cmdline}\ninitrd {initrd_url}\nboot\n")
}

/// A set of names, for checks such as "atftpd served exactly these files".
pub(crate) fn served_by_atftpd(log: &str) -> BTreeSet<String> {
    log.lines()
        .filter_map(|l| l.split("Serving ").nth(1))
        .filter_map(|r| r.split(" to ").next())
        .map(str::to_string)
        .collect()
}
