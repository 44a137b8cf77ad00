//! A real nginx for the lab, serving an HTTP root like carrier's virtual host.

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};

use super::processes::{Proc, command_in, free_tcp_port, wait_ready};
use super::qemu::GUEST_HOST;
use super::tools::tools;

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
