//! `carrier serve` as an operator starts it: the real binary, real Nix (counted through a
//! wrapper on PATH), real HTTP over loopback. Addresses other than loopback are only
//! ever bound inside a network namespace of the test's own (`unshare --net`).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::cli::Carrier;
use support::serve::Server;

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster")
}

/// `carrier serve` with a fresh database and cache below `state`; `args` follow `serve`.
fn serve_command(conf: &Path, state: &Path, args: &[&str]) -> Command {
    let mut cmd = Carrier::new().conf(conf).cache(state.join("cache")).command(&["serve"]);
    cmd.arg("--database-url")
        .arg(format!("sqlite://{}", state.join("carrier.db").display()))
        .arg("--site-root")
        .arg(state.join("site"))
        .args(args)
        // the example's hosts do not exist: no background reading of them
        .args(["--status-interval", "0"])
        .env_remove("CARRIER_TOKEN")
        .env_remove("CARRIER_TOKEN_FILE")
        .env_remove("CARRIER_ADDR")
        .env("RUST_LOG", "info");
    cmd
}

/// One HTTP/1.1 request over a fresh connection: (status, head, body with chunked
/// transfer coding removed).
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    if method == "POST" {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, head.to_string(), body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    out
}

/// A directory whose `nix-instantiate` appends a line to `runs` and then runs the real one.
fn counting_nix(dir: &Path, runs: &Path) -> String {
    let real = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join("nix-instantiate"))
        .find(|p| p.is_file())
        .expect("nix-instantiate in PATH");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let wrapper = bin.join("nix-instantiate");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\necho run >> '{}'\nexec '{}' \"$@\"\n", runs.display(), real.display()),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::join_paths(
        std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    );
    path.unwrap().into_string().unwrap()
}

/// The configuration directory is resolved once, at start: one that does not exist is
/// refused by name before anything listens.
#[test]
fn a_missing_configuration_directory_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("nowhere");
    let cmd = serve_command(&conf, tmp.path(), &["--addr", "127.0.0.1:0"]);
    let out = Server::try_start(cmd).err().expect("served a configuration that does not exist");
    assert!(out.contains("nowhere/cluster' does not exist"), "{out}");
    assert!(!tmp.path().join("carrier.db").exists(), "no database created: {out}");
}

/// The acceptance test of the failure cache: a configuration that does not evaluate,
/// 50 requests (pages and server functions, 10 connections at a time): Nix runs once
/// (when the server starts) and the database holds one evaluation.
#[test]
fn a_broken_cluster_runs_nix_once_for_50_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("conf");
    std::fs::create_dir_all(conf.join("cluster/broken")).unwrap();
    std::fs::write(
        conf.join("cluster/broken/module.nix"),
        "{ cluster.broken = { spin = \"nixos\"; ",
    )
    .unwrap();
    let runs = tmp.path().join("nix-runs");
    let mut cmd = serve_command(&conf, tmp.path(), &["--addr", "127.0.0.1:0", "--anonymous-read"]);
    cmd.env("PATH", counting_nix(tmp.path(), &runs));
    let server = Server::start(cmd);

    let mut answered = 0;
    for round in 0..5 {
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let addr = server.addr.clone();
                std::thread::spawn(move || match (i + round) % 3 {
                    0 => http(&addr, "GET", "/machines", &[]),
                    1 => http(&addr, "GET", "/carriers", &[]),
                    _ => http(&addr, "POST", "/api/list_carriers", &[]),
                })
            })
            .collect();
        for handle in handles {
            let (status, head, body) = handle.join().unwrap();
            assert!(body.contains("cluster/broken/module.nix"), "{status} {head}\n{body}");
            answered += 1;
        }
    }
    assert_eq!(answered, 50);
    let nix_runs = std::fs::read_to_string(&runs).unwrap_or_default().lines().count();
    let rows = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let db = sqlx::SqlitePool::connect(&format!(
            "sqlite://{}",
            tmp.path().join("carrier.db").display()
        ))
        .await
        .unwrap();
        let rows: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM evaluations").fetch_one(&db).await.unwrap();
        rows
    });
    assert_eq!((nix_runs, rows), (1, 1), "Nix runs and evaluation rows for 50 requests");

    // an edit is a new content key: evaluated (and recorded) once more, once the files
    // are looked at again
    std::fs::write(
        conf.join("cluster/broken/module.nix"),
        "{ cluster.broken = { spin = \"nixos\"; }; ",
    )
    .unwrap();
    std::thread::sleep(app::services::REVALIDATE_AFTER);
    for _ in 0..3 {
        http(&server.addr, "POST", "/api/list_carriers", &[]);
    }
    assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 2);
}

/// Runs `carrier serve` in a network namespace of its own, where 0.0.0.0 reaches no one.
fn serve_in_netns(state: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let inner = serve_command(&example(), state, args);
    let mut cmd = Command::new("unshare");
    cmd.arg("--net").arg("--").arg(inner.get_program()).args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

#[test]
fn anonymous_reading_is_an_option_and_public_on_a_non_loopback_address() {
    let tmp = tempfile::tempdir().unwrap();
    let anonymous = ["--addr", "0.0.0.0:0", "--anonymous-read"];
    let refused = Server::try_start(serve_in_netns(tmp.path(), &anonymous, &[]));
    let err = refused.err().expect("served 0.0.0.0 to anonymous readers without --public");
    assert!(
        err.contains("refusing to serve 0.0.0.0:0 with --anonymous-read")
            && err.contains("--public"),
        "{err}"
    );
    assert!(!tmp.path().join("carrier.db").exists(), "refused before anything was created");

    // told to serve publicly, it starts, and anonymous callers read
    let server =
        Server::start(serve_in_netns(tmp.path(), &["--addr", "0.0.0.0:0", "--public"], &[]));
    assert!(server.output().contains("to everyone (--public)"), "{}", server.output());
    drop(server);
    // without anonymous reading every caller signs in or presents a token: it starts
    let server = Server::start(serve_in_netns(tmp.path(), &["--addr", "0.0.0.0:0"], &[]));
    drop(server);

    // on loopback: anonymous callers are sent to sign in, unless --anonymous-read
    let server = Server::start(serve_command(&example(), tmp.path(), &["--addr", "127.0.0.1:0"]));
    let (status, headers, _) = http(&server.addr, "GET", "/machines", &[]);
    assert!(status == 303 && headers.contains("/sign-in"), "{status} {headers}");
    let (status, _, _) = http(&server.addr, "POST", "/api/list_carriers", &[]);
    assert_eq!(status, 401);
    drop(server);
    let args = ["--addr", "127.0.0.1:0", "--anonymous-read"];
    let server = Server::start(serve_command(&example(), tmp.path(), &args));
    let (status, _, body) = http(&server.addr, "GET", "/machines", &[]);
    assert!(status == 200 && body.contains("pxe-server"), "{status}");
}

#[test]
fn the_token_comes_from_a_file_or_the_environment_never_the_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let loopback = ["--addr", "127.0.0.1:0"];

    let refused = Server::try_start(serve_command(
        &example(),
        tmp.path(),
        &[&loopback[..], &["--token", "s3cret"]].concat(),
    ));
    let err = refused.err().expect("a token on the command line was accepted");
    assert!(err.contains("--token is not accepted") && err.contains("--token-file"), "{err}");

    let file = tmp.path().join("token");
    std::fs::write(&file, "s3cret-from-a-file\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let with_file = || {
        serve_command(
            &example(),
            tmp.path(),
            &[&loopback[..], &["--token-file", file.to_str().unwrap()]].concat(),
        )
    };
    let err =
        Server::try_start(with_file()).err().expect("a world-readable token file was accepted");
    assert!(
        err.contains(&format!("the token file {}", file.display())) && err.contains("chmod o-rwx"),
        "{err}"
    );

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = Server::start(with_file());
    let (status, _, body) = http(&server.addr, "POST", "/api/list_carriers", &[]);
    assert!(status == 401 && body.contains("sign in first"), "{status} {body}");
    let (status, _, body) = http(
        &server.addr,
        "POST",
        "/api/list_carriers",
        &[("Authorization", "Bearer s3cret-from-a-file")],
    );
    assert!(status == 200 && body.contains("pxe-server"), "{status} {body}");
    drop(server);

    let mut cmd = serve_command(&example(), tmp.path(), &loopback);
    cmd.env("CARRIER_TOKEN", "s3cret-from-the-environment");
    let server = Server::start(cmd);
    let origin = format!("http://{}", server.addr);
    let (status, _, _) = http(
        &server.addr,
        "POST",
        "/api/list_carriers",
        &[("Authorization", "Bearer s3cret-from-a-file")],
    );
    assert_ne!(status, 200);
    let (status, _, _) = http(
        &server.addr,
        "POST",
        "/api/list_carriers",
        &[("Cookie", "carrier_token=s3cret-from-the-environment"), ("Origin", &origin)],
    );
    assert_eq!(status, 200);
    // a write with cookies must name its origin (browsers always do)
    let (status, _, _) = http(
        &server.addr,
        "POST",
        "/api/list_carriers",
        &[("Cookie", "carrier_token=s3cret-from-the-environment")],
    );
    assert_eq!(status, 403);
}

#[test]
fn requests_are_traced_and_foreign_hosts_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let args = ["--addr", "127.0.0.1:0", "--anonymous-read"];
    let server = Server::start(serve_command(&example(), tmp.path(), &args));
    let (status, _, _) = http(&server.addr, "GET", "/carriers", &[]);
    assert_eq!(status, 200);
    let (status, _, body) = http(&server.addr, "GET", "/carriers", &[("Host", "evil.example")]);
    assert_eq!(status, 421, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.output();
        let traced = |path: &str, status: u16| {
            log.lines().any(|l| {
                l.contains("method=GET")
                    && l.contains(&format!("uri={path}"))
                    && l.contains(&format!("status={status}"))
            })
        };
        if traced("/carriers", 200) && traced("/carriers", 421) && log.contains("evil.example") {
            break;
        }
        assert!(Instant::now() < deadline, "requests not in the log:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `--log-format json`: one JSON object per line; a request's line has its status and
/// latency, and its method and URI from the request's span.
#[test]
fn requests_are_logged_as_json_lines_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let args = ["--addr", "127.0.0.1:0", "--anonymous-read", "--log-format", "json"];
    let server = Server::start(serve_command(&example(), tmp.path(), &args));
    let (status, _, _) = http(&server.addr, "GET", "/carriers", &[]);
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.output();
        let logged = log
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
            })
            .any(|l| {
                l["fields"]["status"] == 200
                    && l["span"]["uri"] == "/carriers"
                    && l["span"]["method"] == "GET"
                    && l["level"] == "INFO"
            });
        if logged {
            break;
        }
        assert!(Instant::now() < deadline, "no JSON line of the request:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let e = Carrier::new().output(&["serve", "--log-format", "xml"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("'xml'"), "{e:?}");
}

/// `(thread id, name, nice value)` of every thread of process `pid`, from
/// `/proc/<pid>/task/*/stat`.
fn threads_nice(pid: u32) -> Vec<(u32, String, i32)> {
    let mut threads = vec![];
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap();
        let (open, close) = (stat.find('(').unwrap(), stat.rfind(')').unwrap());
        // after the name: state (field 3) ... nice (field 19)
        let nice = stat[close + 2..].split(' ').nth(16).unwrap().parse().unwrap();
        let tid = stat[..open].trim().parse().unwrap();
        threads.push((tid, stat[open + 1..close].to_string(), nice));
    }
    threads
}

/// Jobs and status readings run on threads of their own, `--background-nice` below the
/// server's priority (the processes they start inherit it); the threads answering
/// requests keep the server's.
#[test]
fn background_work_runs_at_a_lower_cpu_priority_than_the_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let args = ["--addr", "127.0.0.1:0", "--anonymous-read", "--background-nice", "7"];
    let server = Server::start(serve_command(&example(), tmp.path(), &args));
    let (status, _, _) = http(&server.addr, "GET", "/jobs", &[]);
    assert_eq!(status, 200);
    let threads = threads_nice(server.pid());
    // the main thread: the priority the server was started with
    let base = threads.iter().find(|t| t.0 == server.pid()).unwrap().2;
    let (jobs, others): (Vec<_>, Vec<_>) =
        threads.iter().partition(|(_, name, _)| name == "carrier-bg");
    // the runtime's own thread and its two workers
    assert!(jobs.len() >= 3, "{threads:?}");
    assert!(jobs.iter().all(|(_, _, nice)| *nice == (base + 7).min(19)), "{threads:?}");
    assert!(others.iter().all(|(_, _, nice)| *nice == base), "{threads:?}");

    let refused = Carrier::new().output(&["serve", "--background-nice", "20"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--background-nice"), "{refused:?}");
}
