//! Network namespaces, and the lab built from them: a server namespace with one service
//! address and peers on private veth /30s.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};

use super::atftpd::Atftpd;
use super::fetch::{HttpResponse, TftpClient, http_get_in, tftp_get_in};
use super::nginx::{Nginx, NginxOptions};
use super::processes::{command_in, run_ok};

pub(crate) const IP_TIMEOUT: Duration = Duration::from_secs(10);

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
