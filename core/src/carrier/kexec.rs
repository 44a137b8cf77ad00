//! `carrier kexec-netboot` (spec 3.7): on a machine netbooted by a carrier, load another
//! generation the carrier offers with kexec. The carrier's `machines.json` (found from
//! the `httproot=` of the running kernel's command line) says which machines and
//! generations there are; the chosen generation's `bzImage` and `initrd` are downloaded
//! and handed to `kexec --load` with its kernel parameters.
//!
//! Upstream's quirks fixed on purpose: the parameters never pass through a shell (argv
//! only, so `--append` may hold any text); `--exec` syncs unless `--no-sync` is given
//! (upstream always passed `--no-sync`); a machine missing from `machines.json` is an
//! error naming the machines there, not a crash.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum KexecError {
    #[error(
        "the kernel command line has no httproot= (was this machine netbooted by a carrier?): {0}"
    )]
    NoHttproot(String),
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{url}: not a machines.json of a carrier: {message}")]
    Json { url: String, message: String },
    #[error("machine '{fqdn}' is not in machines.json (it has: {})", available.join(", "))]
    UnknownMachine { fqdn: String, available: Vec<String> },
    #[error("machine '{fqdn}' has no generation {selector} (it has: {})", available.join(", "))]
    UnknownGeneration { fqdn: String, selector: i64, available: Vec<String> },
    #[error("generation {generation} of '{fqdn}' has no variant '{variant}' (it has: {})", available.join(", "))]
    UnknownVariant { fqdn: String, generation: u64, variant: String, available: Vec<String> },
    #[error("generation {generation} of '{fqdn}' has no {file} to boot")]
    MissingBootFile { fqdn: String, generation: u64, file: String },
    #[error("{program} failed: {message}")]
    Kexec { program: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// `machines.json` of a carrier's HTTP tree (spec 3.6), the fields used here.
#[derive(Debug, Clone, Deserialize)]
pub struct MachinesJson {
    pub machines: Vec<NetbootMachine>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NetbootMachine {
    pub fqdn: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub spin: String,
    /// Newest first.
    pub generations: Vec<NetbootGeneration>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NetbootGeneration {
    pub generation: u64,
    #[serde(default)]
    pub current: bool,
    #[serde(default)]
    pub time_s: String,
    #[serde(default)]
    pub kernel_params: Vec<String>,
    /// File name (`bzImage`, `initrd`, …) → URL.
    #[serde(default)]
    pub boot_files: BTreeMap<String, String>,
    #[serde(default)]
    pub variants: Vec<Variant>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Variant {
    pub name: String,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub kernel_params: Vec<String>,
}

/// What to load: a generation of a machine, and the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub fqdn: String,
    pub generation: u64,
    pub variant: Option<String>,
    pub kernel_url: String,
    pub initrd_url: String,
    /// The generation's kernel parameters, the variant's, then `--append` (spec 3.7 step 7).
    pub params: String,
}

/// The URL of `machines.json`: `<server_url>/machines.json`, or derived from the running
/// kernel's `httproot=<url>/<fqdn>/<N>/<file>` by dropping its last three path components.
/// `cmdline` must hold `httproot=` either way (upstream's rule: only netbooted machines).
pub fn machines_url(cmdline: &str, server_url: Option<&str>) -> Result<String, KexecError> {
    let httproot = cmdline
        .split_whitespace()
        .find_map(|p| p.strip_prefix("httproot="))
        .ok_or_else(|| KexecError::NoHttproot(cmdline.trim().to_string()))?;
    if let Some(server) = server_url {
        return Ok(format!("{}/machines.json", server.trim_end_matches('/')));
    }
    let bad = || {
        KexecError::NoHttproot(format!(
            "httproot={httproot} is not http://<host>/…/<fqdn>/<N>/<file>"
        ))
    };
    let rest = httproot.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = rest.split_once('/').ok_or_else(bad)?;
    let mut parts: Vec<&str> = path.split('/').collect();
    if parts.len() < 3 || authority.is_empty() {
        return Err(bad());
    }
    parts.truncate(parts.len() - 3);
    parts.push("machines.json");
    Ok(format!("http://{authority}/{}", parts.join("/")))
}

/// Spec 3.7 steps 4 to 7: the machine `fqdn`, the generation (`Some(n >= 0)`: that
/// number; `Some(-k)`: the (k+1)-th newest; `None`: the current one, else the newest),
/// the variant (`None`: the first, if any), and the parameters with `append` last.
pub fn choose(
    machines: &MachinesJson,
    fqdn: &str,
    generation: Option<i64>,
    variant: Option<&str>,
    append: &str,
) -> Result<Choice, KexecError> {
    let machine = machines.machines.iter().find(|m| m.fqdn == fqdn).ok_or_else(|| {
        KexecError::UnknownMachine {
            fqdn: fqdn.to_string(),
            available: machines.machines.iter().map(|m| m.fqdn.clone()).collect(),
        }
    })?;
    let gens = &machine.generations;
    let chosen = match generation {
        Some(n) if n >= 0 => gens.iter().find(|g| g.generation == n as u64),
        Some(n) => gens.get(n.unsigned_abs() as usize),
        None => gens.iter().find(|g| g.current).or(gens.first()),
    }
    .ok_or_else(|| KexecError::UnknownGeneration {
        fqdn: fqdn.to_string(),
        selector: generation.unwrap_or(0),
        available: gens.iter().map(|g| g.generation.to_string()).collect(),
    })?;
    let variant = match variant {
        Some(name) => Some(chosen.variants.iter().find(|v| v.name == name).ok_or_else(|| {
            KexecError::UnknownVariant {
                fqdn: fqdn.to_string(),
                generation: chosen.generation,
                variant: name.to_string(),
                available: chosen.variants.iter().map(|v| v.name.clone()).collect(),
            }
        })?),
        None => chosen.variants.first(),
    };
    let file = |name: &str| {
        chosen.boot_files.get(name).cloned().ok_or_else(|| KexecError::MissingBootFile {
            fqdn: fqdn.to_string(),
            generation: chosen.generation,
            file: name.to_string(),
        })
    };
    let mut params: Vec<&str> = chosen.kernel_params.iter().map(String::as_str).collect();
    params.extend(variant.iter().flat_map(|v| v.kernel_params.iter().map(String::as_str)));
    params.push(append);
    Ok(Choice {
        fqdn: fqdn.to_string(),
        generation: chosen.generation,
        variant: variant.map(|v| v.name.clone()),
        kernel_url: file("bzImage")?,
        initrd_url: file("initrd")?,
        params: params.join(" ").trim_end().to_string(),
    })
}

/// Downloads and parses `machines.json`.
pub fn fetch_machines(url: &str) -> Result<MachinesJson, KexecError> {
    let mut body = Vec::new();
    http_get(url, &mut body)?;
    serde_json::from_slice(&body)
        .map_err(|e| KexecError::Json { url: url.to_string(), message: e.to_string() })
}

/// `kexec --load <kernel> --initrd=<initrd> --append=<params>`: the boot files are
/// downloaded into `work` (removed with it by the caller), and the argv never goes
/// through a shell. Returns the argv that ran.
pub fn load(choice: &Choice, kexec: &Path, work: &Path) -> Result<Vec<String>, KexecError> {
    let mut files = Vec::new();
    for (name, url) in [("bzImage", &choice.kernel_url), ("initrd", &choice.initrd_url)] {
        let path = work.join(name);
        let io = |e| KexecError::Io { context: format!("writing {}", path.display()), source: e };
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io)?);
        http_get(url, &mut out)?;
        out.flush().map_err(io)?;
        files.push(path);
    }
    let argv = vec![
        "--load".to_string(),
        files[0].display().to_string(),
        format!("--initrd={}", files[1].display()),
        format!("--append={}", choice.params),
    ];
    run_kexec(kexec, &argv)?;
    Ok(argv)
}

/// `kexec --exec` (with `--no-sync` when `no_sync`).
pub fn exec(kexec: &Path, no_sync: bool) -> Result<(), KexecError> {
    let mut argv = vec!["--exec".to_string()];
    if no_sync {
        argv.push("--no-sync".into());
    }
    run_kexec(kexec, &argv)
}

/// `kexec --unload`.
pub fn unload(kexec: &Path) -> Result<(), KexecError> {
    run_kexec(kexec, &["--unload".to_string()])
}

fn run_kexec(kexec: &Path, args: &[String]) -> Result<(), KexecError> {
    let program = kexec.display().to_string();
    let out = Command::new(kexec)
        .args(args)
        .output()
        .map_err(|e| KexecError::Kexec { program: program.clone(), message: e.to_string() })?;
    if out.status.success() {
        return Ok(());
    }
    let message = format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    Err(KexecError::Kexec { program, message })
}

/// A plain HTTP/1.1 GET of an `http://host[:port]/path` URL into `out` (a carrier's
/// trees are served over HTTP only, spec 3.1). Any status but 2xx is an error.
pub fn http_get(url: &str, out: &mut dyn Write) -> Result<(), KexecError> {
    let fail = |message: String| KexecError::Http { url: url.to_string(), message };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| fail("only http:// URLs are supported".into()))?;
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, format!("/{p}")),
        None => (rest, "/".to_string()),
    };
    let address =
        if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    let stream = TcpStream::connect(&address).map_err(|e| fail(e.to_string()))?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| fail(e.to_string()))?;
    let mut writer = stream.try_clone().map_err(|e| fail(e.to_string()))?;
    write!(writer, "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: carrier\r\n\r\n")
        .map_err(|e| fail(e.to_string()))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| fail(e.to_string()))?;
    let status = line.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with('2') {
        return Err(fail(format!("HTTP status {}", line.trim())));
    }
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(|e| fail(e.to_string()))?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse::<u64>().ok(),
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let copy = |r: &mut dyn Read, out: &mut dyn Write| {
        std::io::copy(r, out).map_err(|e| fail(e.to_string()))
    };
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).map_err(|e| fail(e.to_string()))?;
            let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| fail(format!("bad chunk size {:?}", line.trim())))?;
            if size == 0 {
                return Ok(());
            }
            let copied = copy(&mut (&mut reader).take(size), out)?;
            if copied != size {
                return Err(fail("the response ended early".into()));
            }
            line.clear();
            reader.read_line(&mut line).map_err(|e| fail(e.to_string()))?;
        }
    }
    match length {
        Some(n) => {
            if copy(&mut reader.take(n), out)? != n {
                return Err(fail("the response ended early".into()));
            }
        }
        None => {
            copy(&mut reader, out)?;
        }
    }
    Ok(())
}

/// Where the running kernel's command line is read from.
pub const PROC_CMDLINE: &str = "/proc/cmdline";

/// Reads a kernel command line file.
pub fn read_cmdline(path: &Path) -> Result<String, KexecError> {
    std::fs::read_to_string(path)
        .map_err(|e| KexecError::Io { context: format!("reading {}", path.display()), source: e })
}

/// A scratch directory for the downloads.
pub fn work_dir() -> Result<tempfile::TempDir, KexecError> {
    tempfile::Builder::new()
        .prefix("carrier-kexec.")
        .tempdir()
        .map_err(|e| KexecError::Io { context: "creating a temporary directory".into(), source: e })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machines() -> MachinesJson {
        serde_json::from_value(serde_json::json!({"machines": [
            {"fqdn": "a.lab", "label": "a", "spin": "nixos", "generations": [
                {"generation": 3, "current": false, "kernel_params": ["init=/t3/init"],
                 "boot_files": {"bzImage": "http://h/a.lab/3/bzImage", "initrd": "http://h/a.lab/3/initrd"}, "variants": []},
                {"generation": 2, "current": true, "kernel_params": ["init=/t2/init", "console=ttyS0"],
                 "boot_files": {"bzImage": "http://h/a.lab/2/bzImage", "initrd": "http://h/a.lab/2/initrd"}, "variants": []},
                {"generation": 1, "current": false, "kernel_params": [], "boot_files": {"bzImage": "k"}, "variants": []}
            ]},
            {"fqdn": "os.lab", "spin": "vpsadminos", "generations": [
                {"generation": 7, "current": true, "kernel_params": ["httproot=x"],
                 "boot_files": {"bzImage": "b", "initrd": "i"},
                 "variants": [{"name": "default", "label": "Default", "kernel_params": []},
                              {"name": "nopools", "label": "No pools", "kernel_params": ["osctl.pools=0"]}]}
            ]}
        ]}))
        .unwrap()
    }

    #[test]
    fn machines_url_comes_from_httproot() {
        let cmdline = "console=ttyS0 httproot=http://pxe:8080/nb/a.lab/2/initrd init=/x\n";
        assert_eq!(machines_url(cmdline, None).unwrap(), "http://pxe:8080/nb/machines.json");
        assert_eq!(
            machines_url("httproot=http://pxe/a.lab/2/root.squashfs", None).unwrap(),
            "http://pxe/machines.json"
        );
        assert_eq!(
            machines_url(cmdline, Some("http://other/")).unwrap(),
            "http://other/machines.json"
        );
        assert!(matches!(
            machines_url("console=ttyS0", Some("http://other")),
            Err(KexecError::NoHttproot(_))
        ));
        assert!(matches!(
            machines_url("httproot=http://pxe/initrd", None),
            Err(KexecError::NoHttproot(_))
        ));
    }

    #[test]
    fn generation_and_variant_selection() {
        let m = machines();
        let c = choose(&m, "a.lab", None, None, "").unwrap();
        assert_eq!(
            (c.generation, c.params.as_str()),
            (2, "init=/t2/init console=ttyS0"),
            "the current one"
        );
        assert_eq!(c.kernel_url, "http://h/a.lab/2/bzImage");
        assert_eq!(choose(&m, "a.lab", Some(3), None, "").unwrap().generation, 3);
        assert_eq!(
            choose(&m, "a.lab", Some(-1), None, "").unwrap().generation,
            2,
            "-1: the second newest"
        );
        let e = choose(&m, "a.lab", Some(-3), None, "").unwrap_err().to_string();
        assert!(e.contains("no generation -3") && e.contains("3, 2, 1"), "{e}");
        let e = choose(&m, "a.lab", Some(1), None, "").unwrap_err().to_string();
        assert!(e.contains("no initrd"), "{e}");
        let e = choose(&m, "b.lab", None, None, "").unwrap_err().to_string();
        assert!(e.contains("'b.lab'") && e.contains("a.lab, os.lab"), "{e}");

        let c = choose(&m, "os.lab", None, None, "quiet 'x y' $(reboot)").unwrap();
        assert_eq!(c.variant.as_deref(), Some("default"));
        assert_eq!(
            c.params, "httproot=x quiet 'x y' $(reboot)",
            "appended as text, never run through a shell"
        );
        let c = choose(&m, "os.lab", None, Some("nopools"), "").unwrap();
        assert_eq!(c.params, "httproot=x osctl.pools=0");
        assert!(
            choose(&m, "os.lab", None, Some("nope"), "")
                .unwrap_err()
                .to_string()
                .contains("default, nopools")
        );
    }

    #[test]
    fn kexec_failures_are_reported() {
        let e = unload(Path::new("/bin/false")).unwrap_err().to_string();
        assert!(e.starts_with("/bin/false failed: exit status: 1"), "{e}");
        let e = exec(Path::new("/nonexistent/kexec"), true).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/kexec failed"), "{e}");
    }

    #[test]
    fn http_get_reads_length_and_chunked_bodies_and_rejects_errors() {
        use std::net::TcpListener;
        let serve = |response: &'static [u8]| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                s.write_all(response).unwrap();
            });
            format!("http://127.0.0.1:{port}/x")
        };
        let get = |url: &str| {
            let mut body = Vec::new();
            http_get(url, &mut body).map(|_| String::from_utf8(body).unwrap())
        };
        assert_eq!(
            get(&serve(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello and more")).unwrap(),
            "hello"
        );
        assert_eq!(
            get(&serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")).unwrap(),
            "abcde"
        );
        let e = get(&serve(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("404"), "{e}");
        assert!(get("https://h/x").unwrap_err().to_string().contains("only http://"));
    }
}
