//! Fetch helpers with real clients (curl, tftp-hpa), and whole-tree checks over TFTP and HTTP.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::processes::{command_in, run, run_ok};

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
    curl_in(netns, "GET", url, &[])
}

/// HTTP POST of the JSON `body` with curl from `netns`, with more `headers` (`Name: value`).
/// Any status is returned; transport errors are errors.
pub(crate) fn http_post_json_in(
    netns: Option<&str>,
    url: &str,
    headers: &[String],
    body: &str,
) -> Result<HttpResponse> {
    let mut args = vec!["-H", "Content-Type: application/json", "--data-binary", body];
    for h in headers {
        args.extend(["-H", h.as_str()]);
    }
    curl_in(netns, "POST", url, &args)
}

fn curl_in(netns: Option<&str>, method: &str, url: &str, args: &[&str]) -> Result<HttpResponse> {
    let tmp = tempfile::NamedTempFile::new()?;
    let mut c = command_in(netns, "curl");
    c.args(["-sS", "--noproxy", "*", "--max-time", "30", "-X", method, "-w", "%{http_code}"])
        .args(args)
        .arg("-o")
        .arg(tmp.path())
        .arg(url);
    let code = run_ok(&mut c, FETCH_TIMEOUT).with_context(|| format!("{method} {url}"))?;
    let status = code.trim().parse().with_context(|| format!("{method} {url}: status {code:?}"))?;
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
