//! Deploys as jobs through a real `carrier serve` (the binary) against a real lab: sshd
//! hosts with their own /nix, real nix-build, real carried profiles on the carrier. The
//! requests are what a browser sends without JavaScript (form posts with a session
//! cookie); the live log is read as server-sent events with curl.

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use carrier_storage::{IfBusy, JobFilter, JobId, JobKind, JobState, NewJob, Store};
use serde_json::Value;
use support::cli::ok;
use support::serve::Server;

support::lab::lab_type!();

impl Lab {
    fn db_url(&self) -> String {
        format!("sqlite://{}", self.tmp().join("carrier.db").display())
    }

    /// `carrier` with this test's database.
    fn cli_db(&self, args: &[&str]) -> Output {
        self.cli_on(&self.db_url(), args)
    }

    fn cli_on(&self, url: &str, args: &[&str]) -> Output {
        let mut all = vec!["--database-url", url];
        all.extend(args);
        self.carrier(&all)
    }

    fn add_user(&self, name: &str, role: &str, scope: Option<&str>) {
        self.add_user_on(&self.db_url(), name, role, scope)
    }

    fn add_user_on(&self, url: &str, name: &str, role: &str, scope: Option<&str>) {
        let file = self.tmp().join("password");
        std::fs::write(&file, "a password of eleven\n").unwrap();
        let mut args = vec!["user", "add", name, "--role", role];
        if let Some(scope) = scope {
            args.extend(["--scope", scope]);
        }
        args.extend(["--password-file", file.to_str().unwrap()]);
        ok(&self.cli_on(url, &args));
    }

    /// `carrier serve` of the lab's configuration on a free loopback port.
    fn serve(&self, extra: &[&str]) -> Server {
        self.serve_on(&self.db_url(), extra)
    }

    fn serve_on(&self, url: &str, extra: &[&str]) -> Server {
        let mut cmd = self.cli(&self.conf(), "cache").command(&[
            "--database-url",
            url,
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--site-root",
        ]);
        cmd.arg(self.tmp().join("site"))
            .arg("--ssh-config")
            .arg(self.dir().join("ssh_config"))
            .args(extra)
            .env_remove("CARRIER_TOKEN")
            .env_remove("CARRIER_TOKEN_FILE")
            .env("RUST_LOG", "info");
        Server::start(cmd)
    }

    fn store(&self) -> (tokio::runtime::Runtime, Store) {
        store_at(&self.db_url())
    }
}

fn store_at(url: &str) -> (tokio::runtime::Runtime, Store) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = rt.block_on(Store::open(url)).unwrap();
    (rt, store)
}

/// What a browser without JavaScript (and the hydrated page) sends.
impl Server {
    /// Signs `name` in; the session cookie.
    fn sign_in(&self, name: &str) -> String {
        let out = self.curl(&[
            "-i",
            "--data-urlencode",
            &format!("name={name}"),
            "--data-urlencode",
            "password=a password of eleven",
            &format!("{}/sign-in", self.url()),
        ]);
        let cookie = out
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("set-cookie: carrier_session="))
            .unwrap_or_else(|| panic!("no session for {name}:\n{out}"));
        cookie["set-cookie: ".len()..].split(';').next().unwrap().to_string()
    }

    /// A form post as the browser sends it without JavaScript: (status, location, body).
    fn post(&self, cookie: &str, path: &str, form: &[(&str, &str)]) -> (u16, String, String) {
        let mut args = vec!["-i".to_string(), "-H".into(), format!("Cookie: {cookie}")];
        args.extend(["-H".into(), "Accept: text/html,application/xhtml+xml".into()]);
        for (k, v) in form {
            args.extend(["--data-urlencode".into(), format!("{k}={v}")]);
        }
        args.push(format!("{}{path}", self.url()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.curl(&refs);
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let location = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().starts_with("location: ").then(|| l[10..].trim()))
            .unwrap_or_default()
            .to_string();
        (status, location, body.to_string())
    }

    /// A server function called as JSON (what the hydrated page does).
    fn call(&self, cookie: &str, name: &str, form: &[(&str, &str)]) -> Value {
        let mut args = vec![
            "-H".to_string(),
            format!("Cookie: {cookie}"),
            "-H".into(),
            "Accept: application/json".into(),
        ];
        for (k, v) in form {
            args.extend(["--data-urlencode".into(), format!("{k}={v}")]);
        }
        if form.is_empty() {
            args.extend(["--data".into(), String::new()]);
        }
        args.push(format!("{}/api/{name}", self.url()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.curl(&refs);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{name}: {e}: {out}"))
    }

    /// A form post that starts a job: the job's id from the redirect to its page.
    fn start_job(&self, cookie: &str, path: &str, form: &[(&str, &str)]) -> i64 {
        let (status, location, body) = self.post(cookie, path, form);
        assert!((300..400).contains(&status), "{path}: {status} {body}\n{}", self.output());
        location.strip_prefix("/jobs/").unwrap_or_else(|| panic!("{location}")).parse().unwrap()
    }

    /// Follows job `id`'s live log until the job ends; then the job and its log.
    fn finished(&self, cookie: &str, id: i64) -> Value {
        let url = format!("{}/jobs/{id}/events", self.url());
        let events = self.curl(&["-N", "-H", &format!("Cookie: {cookie}"), &url]);
        assert!(events.contains("event: end"), "{events}\n{}", self.output());
        self.call(cookie, "get_job", &[("id", &id.to_string())])
    }

    fn curl(&self, args: &[&str]) -> String {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "600", "-H", &format!("Origin: {}", self.url())])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn deploy_form<'a>(pattern: &'a str, if_busy: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("form[pattern]", pattern), ("form[action]", "switch"), ("form[if_busy]", if_busy)]
}

/// The acceptance path: a deployer starts a deploy of a carrier and one of its carried
/// machines, gets the job's page at once, follows its log live until it ends, and the
/// carried profile on the carrier is the new generation; a second deploy of those machines
/// is refused naming the job; viewers and deployers outside their scope are refused and
/// audited; the job is in the history.
#[test]
fn a_deployer_deploys_a_carried_machine_as_a_job_and_watches_it_live() {
    let lab = Lab::up();
    lab.add_user("dee", "deployer", None);
    lab.add_user("vic", "viewer", None);
    lab.add_user("oscar", "deployer", Some("os1"));
    let server = lab.serve(&["--instance", "a"]);
    let (dee, vic, oscar) = (server.sign_in("dee"), server.sign_in("vic"), server.sign_in("oscar"));
    let pattern = "{pxe,pxe#node1}";

    // a viewer's direct POST and a deployer outside its scope are refused
    let (status, _, body) = server.post(&vic, "/api/start_deploy", &deploy_form(pattern, "queue"));
    assert_eq!(status, 403, "{body}");
    let (status, _, body) =
        server.post(&oscar, "/api/start_deploy", &deploy_form(pattern, "queue"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("pxe#node1"), "the refusal names the machines: {body}");

    // started: answered at once with the job's page
    let started = Instant::now();
    let (status, location, body) =
        server.post(&dee, "/api/start_deploy", &deploy_form(pattern, "queue"));
    assert!((300..400).contains(&status), "{status} {body}");
    assert!(started.elapsed() < Duration::from_secs(20), "starting waited for the deploy");
    let id: i64 =
        location.strip_prefix("/jobs/").unwrap_or_else(|| panic!("{location}")).parse().unwrap();

    // a second deploy of one of its machines, refused naming the job
    let second = server.call(&dee, "start_deploy", &deploy_form("pxe#node1", "refuse"));
    let second = second.to_string();
    assert!(second.contains(&format!("is in job #{id}")), "{second}");

    // the live log, from the start, until the job ends
    let events = server.curl(&[
        "-N",
        &format!("{}/jobs/{id}/events?after=0", server.url()),
        "-H",
        &format!("Cookie: {vic}"),
    ]);
    assert!(
        events.contains("event: end"),
        "the stream ends with the job:\n{events}\n{}",
        server.output()
    );
    let lines: Vec<Value> = events
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        // the end event's data is `ended`
        .filter(|d| d.starts_with('{'))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let seqs: Vec<i64> = lines.iter().map(|l| l["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "every event once, in order");
    let said = |level: &str, machine: &str, text: &str| {
        lines.iter().any(|l| {
            l["level"] == level
                && l["machine"] == machine
                && l["text"].as_str().unwrap().contains(text)
        })
    };
    assert!(said("ok", "pxe#node1", "carried profile done"), "{events}");
    assert!(said("ok", "pxe", "activate done"), "{events}");

    // the job's final state and outcomes; reading late replays the same log
    let detail = server.call(&vic, "get_job", &[("id", &id.to_string())]);
    assert_eq!(detail["job"]["state"], "succeeded", "{detail}\n{}", server.output());
    assert_eq!(detail["job"]["requested_by"], "dee");
    assert_eq!(detail["events"].as_array().unwrap().len(), lines.len(), "{detail}");
    assert!(detail["job"]["outcomes"].to_string().contains("pxe#node1"), "{detail}");
    let name = lab.generation_name("pxe#node1");
    let generation = lab.conf().join(".confctl/generations/pxe#node1").join(&name);
    let generation: Value =
        serde_json::from_slice(&std::fs::read(generation.join("generation.json")).unwrap())
            .unwrap();
    let dist = generation["toplevel"].as_str().unwrap();
    assert_eq!(
        lab.ssh("pxe.lab", &["realpath", "/nix/var/nix/profiles/confctl-node1"]),
        dist,
        "the carried profile is the job's generation"
    );

    // the page without JavaScript shows it all
    let page =
        server.curl(&["-H", &format!("Cookie: {vic}"), &format!("{}/jobs/{id}", server.url())]);
    assert!(page.contains("succeeded") && page.contains("carried profile done"), "{page}");

    // the status page reflects it: the hosts are read again when a job ends
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        let status = server.call(&vic, "get_status", &[("query[state]", ""), ("query[page]", "")]);
        let row = |machine: &str| {
            let groups = status["groups"].as_array().cloned().unwrap_or_default();
            groups
                .iter()
                .flat_map(|g| g["machines"].as_array().cloned().unwrap_or_default())
                .find(|m| m["machine"] == machine)
        };
        let state = |machine| row(machine).map(|r| r["state"].clone()).unwrap_or_default();
        if state("pxe#node1") == "staged" && state("pxe") == "up to date" {
            let last = row("pxe#node1").unwrap()["last_deploy"].to_string();
            assert!(last.contains("deployed"), "{status}");
            break status;
        }
        assert!(Instant::now() < deadline, "{status}\n{}", server.output());
        std::thread::sleep(Duration::from_millis(500));
    };
    let groups: Vec<&str> =
        status["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(groups, ["standalone", "carried by pxe"], "{status}");
    // by tag: the lab's machines (and their carried copies) carry `lab`; the counts are of
    // the tag's machines
    let lab_only = server.call(&vic, "get_status", &[("query[tag]", "lab")]);
    let names: Vec<&str> = lab_only["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["machines"].as_array().unwrap())
        .map(|m| m["machine"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"pxe") && names.contains(&"pxe#node1"), "{lab_only}");
    assert_eq!(lab_only["counts"][0], serde_json::json!(["machines", names.len()]), "{lab_only}");
    let none = server.call(&vic, "get_status", &[("query[tag]", "no-such-tag")]);
    assert_eq!((&none["matched"], &none["counts"][0][1]), (&Value::from(0), &Value::from(0)));

    // the carrier's page, read with the status: the new generation is current, the
    // netboot build the deploy triggered published node1; the boot preview, asked of the
    // carrier now, gives node1's MAC that generation
    let json = |path: &str| -> Value {
        let out = server.curl(&[
            "-H",
            &format!("Cookie: {vic}"),
            "-H",
            "Accept: application/json",
            &format!("{}{path}", server.url()),
        ]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{path}: {e}: {out}"))
    };
    let carrier = json("/carriers/pxe");
    let profile = carrier["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["machine"] == "pxe#node1")
        .unwrap_or_else(|| panic!("{carrier}"))
        .clone();
    let newest = &profile["generations"][0];
    assert_eq!(
        (&newest["current"], newest["store_path"].as_str()),
        (&Value::Bool(true), Some(dist))
    );
    assert_eq!(newest["macs"], serde_json::json!(["52:54:00:12:34:56"]), "{profile}");
    let generation_number = newest["number"].as_u64().unwrap();
    let netboot = &carrier["netboot"];
    assert_eq!(netboot["error"], Value::Null, "{carrier}");
    assert!(netboot["published"].to_string().contains("node1"), "{carrier}");
    assert_eq!(carrier["may_change"], false, "a viewer may not change the carrier");
    let page = server.curl(&[
        "-H",
        &format!("Cookie: {vic}"),
        &format!("{}/carriers/pxe?mac=52:54:00:12:34:56", server.url()),
    ]);
    assert!(page.contains(&format!("generation {generation_number} by default: {dist}")), "{page}");
    assert!(page.contains("pxelinux.cfg/01-52-54-00-12-34-56"), "{page}");
    let preview =
        server.call(&vic, "preview_boot", &[("carrier", "pxe"), ("mac", "52-54-00-12-34-56")]);
    assert_eq!(preview["generation"][0], generation_number, "{preview}");
    let bad = server.call(&vic, "preview_boot", &[("carrier", "pxe"), ("mac", "52:54:00")]);
    assert!(bad.to_string().contains("mac: '52:54:00' is not a MAC"), "{bad}");
    // the deploy form's preview: what pxe#node1 runs now and what a deploy would give it
    let rows = server.call(&vic, "preview_deploy", &deploy_form("pxe#node1", "queue"));
    let row = &rows[0];
    assert_eq!(
        row["now"].as_str(),
        Some(format!("generation {generation_number}: {dist} (staged)").as_str()),
        "{rows}"
    );
    assert_eq!(
        row["would_get"].as_str(),
        Some(format!("a new build (the last was {name}: {dist})").as_str())
    );
    let mut pinned = deploy_form("pxe#node1", "queue");
    pinned.push(("form[generation]", "1999-01-01--00-00-00"));
    let rows = server.call(&vic, "preview_deploy", &pinned);
    assert!(
        rows[0]["would_get"].as_str().unwrap().starts_with("no build generation '1999"),
        "{rows}"
    );
    let (status_code, _, body) = server.post(
        &vic,
        "/api/preview_boot",
        &[("carrier", "node1"), ("mac", "52:54:00:12:34:56")],
    );
    assert_eq!(status_code, 404, "node1 is no carrier: {body}");
    assert_eq!(json("/carriers/nothing")["error"], "not found: carrier 'nothing'");

    // metrics: from the database and the status board
    let metrics =
        server.curl(&["-H", &format!("Cookie: {vic}"), &format!("{}/metrics", server.url())]);
    assert!(metrics.contains("carrier_jobs{state=\"succeeded\"} 1\n"), "{metrics}");
    assert!(
        metrics.contains("carrier_job_duration_seconds_count{state=\"succeeded\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("carrier_machines{status=\"staged\"} "), "{metrics}");
    assert!(
        metrics.contains("\ncarrier_netboot_last_build_failed{carrier=\"pxe\"} 0\n"),
        "{metrics}"
    );
    assert!(metrics.contains("\ncarrier_netboot_left_out{carrier=\"pxe\"} 0\n"), "{metrics}");

    // a deploy from the command line on the same database joins the dashboard's history,
    // next to the job (linked to it)
    ok(&lab.cli_db(&["deploy", "-y", "pxe#node1"]));
    let runs = json("/history?machine=pxe%23node1");
    let runs = runs.as_array().unwrap_or_else(|| panic!("{runs}"));
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!((&runs[0]["job"], &runs[0]["success"]), (&Value::Null, &Value::Bool(true)));
    assert!(!runs[0]["host"].as_str().unwrap().starts_with("carrier serve"), "{runs:?}");
    assert_eq!(runs[1]["job"], id, "{runs:?}");
    assert!(runs[1]["machines"].to_string().contains("deployed"), "{runs:?}");
    let page =
        server.curl(&["-H", &format!("Cookie: {vic}"), &format!("{}/history", server.url())]);
    assert!(page.contains(&format!("/jobs/{id}")), "{page}");
    let bad = json("/history?outcome=maybe");
    assert_eq!(bad["error"], "outcome: 'maybe' is not one of succeeded, failed, unfinished");

    // history and audit
    let history = ok(&lab.cli_db(&["history", "--json"]));
    let history: Value = serde_json::from_str(&history).unwrap();
    let run = &history[1];
    assert_eq!(run["user"], "dee", "{history}");
    assert!(run["host"].as_str().unwrap().starts_with("carrier serve (a)"), "{history}");
    let audit = ok(&lab.cli_db(&["audit", "--json", "--action", "job.deploy"]));
    let audit: Value = serde_json::from_str(&audit).unwrap();
    let outcomes: Vec<&str> =
        audit.as_array().unwrap().iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert!(outcomes.iter().any(|o| o.starts_with("ok: job")), "{audit}");
    // refused by scope and as busy; the viewer's role was refused before the request was read
    assert_eq!(outcomes.iter().filter(|o| o.starts_with("failed")).count(), 2, "{audit}");

    builds_removals_and_netboot_rebuilds_are_jobs(&lab, &server, [&dee, &vic, &oscar]);
    concurrent_profile_changes_coalesce_their_netboot_builds(&lab);
}

const CARRIED: &str = "/nix/var/nix/profiles/confctl-node1";

/// The carried profile's generations on the carrier, as `carrier profile list` there says:
/// (number, current).
fn carried_generations(lab: &Lab) -> Vec<(u64, bool)> {
    let out = lab.ssh("pxe.lab", &["carrier", "profile", "list", "-p", CARRIED, "--json"]);
    let listing: Value = serde_json::from_str(&out).unwrap();
    let profile = listing.as_array().unwrap().iter().find(|p| p["path"] == CARRIED).unwrap();
    let generations = profile["generations"].as_array().unwrap();
    generations.iter().map(|g| (g["number"].as_u64().unwrap(), g["current"] == true)).collect()
}

/// After the deploy above: a build job makes a new local build generation (a build in
/// the history); deployed by a job, it becomes the carried profile's new generation; the
/// old one is removed by a job (the current one is refused naming it, a viewer and a
/// deployer out of scope are refused); the carrier's netboot trees are rebuilt by a job.
fn builds_removals_and_netboot_rebuilds_are_jobs(lab: &Lab, server: &Server, cookies: [&str; 3]) {
    let [dee, vic, oscar] = cookies;
    lab.set_marker(&["node1"], "built by a job");
    let before = lab.generation_name("pxe#node1");
    let build = [("form[pattern]", "pxe#node1"), ("form[action]", "build")];
    let id = server.start_job(dee, "/api/start_deploy", &build);
    let detail = server.finished(vic, id);
    assert_eq!(detail["job"]["state"], "succeeded", "{detail}\n{}", server.output());
    assert_eq!(detail["job"]["kind"], "build", "{detail}");
    assert_eq!(detail["job"]["outcomes"][0], serde_json::json!(["pxe#node1", "built"]));
    let built = lab.generation_name("pxe#node1");
    assert_ne!(built, before, "a new build generation");
    let history: Value = serde_json::from_str(&ok(&lab.cli_db(&["history", "--json"]))).unwrap();
    let run = &history[0];
    assert_eq!((&run["kind"], &run["user"]), (&"build".into(), &"dee".into()), "{history}");
    assert_eq!(run["generation"], built.as_str(), "{history}");
    assert_eq!(carried_generations(lab), [(1, true)], "a build touches no host");

    let deploy =
        [("form[pattern]", "pxe#node1"), ("form[action]", "switch"), ("form[generation]", &built)];
    let id = server.start_job(dee, "/api/start_deploy", &deploy);
    let detail = server.finished(vic, id);
    assert_eq!(detail["job"]["state"], "succeeded", "{detail}\n{}", server.output());
    assert_eq!(carried_generations(lab), [(1, false), (2, true)]);

    // refused: a viewer, a deployer out of scope, the current generation, one that is not
    let remove = |n: &'static str| [("machine", "pxe#node1"), ("generation", n)];
    let (status, _, body) = server.post(vic, "/api/remove_generation", &remove("1"));
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = server.post(oscar, "/api/remove_generation", &remove("1"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("pxe#node1"), "{body}");
    let (status, _, body) = server.post(dee, "/api/remove_generation", &remove("2"));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("generation 2 of pxe#node1 is the current one"), "{body}");
    let (status, _, body) = server.post(dee, "/api/remove_generation", &remove("9"));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("pxe#node1 has no generation 9"), "{body}");
    assert_eq!(carried_generations(lab), [(1, false), (2, true)], "refusals change nothing");

    let id = server.start_job(dee, "/api/remove_generation", &remove("1"));
    let detail = server.finished(vic, id);
    assert_eq!(detail["job"]["state"], "succeeded", "{detail}\n{}", server.output());
    assert_eq!(detail["job"]["kind"], "generation-rm", "{detail}");
    assert_eq!(detail["job"]["machines"], serde_json::json!(["pxe#node1"]), "{detail}");
    assert!(
        detail["events"].to_string().contains("Removing host generation pxe#node1@"),
        "{detail}"
    );
    assert_eq!(carried_generations(lab), [(2, true)], "generation 1 is gone");
    let audit = ok(&lab.cli_db(&["audit", "--json", "--action", "job.generation-rm"]));
    let audit: Value = serde_json::from_str(&audit).unwrap();
    let outcomes: Vec<&str> =
        audit.as_array().unwrap().iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes.iter().filter(|o| o.starts_with("ok: job")).count(), 1, "{audit}");
    // out of scope, current, unknown; the viewer's role was refused before
    assert_eq!(outcomes.iter().filter(|o| o.starts_with("failed")).count(), 3, "{audit}");

    // the carrier's netboot trees, rebuilt by a job
    let (status, _, body) = server.post(vic, "/api/rebuild_netboot", &[("carrier", "pxe")]);
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = server.post(dee, "/api/rebuild_netboot", &[("carrier", "node1")]);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("'node1' is not a carrier"), "{body}");
    let id = server.start_job(dee, "/api/rebuild_netboot", &[("carrier", "pxe")]);
    let detail = server.finished(vic, id);
    assert_eq!(detail["job"]["state"], "succeeded", "{detail}\n{}", server.output());
    assert_eq!(detail["job"]["kind"], "netboot-rebuild", "{detail}");
    assert_eq!(detail["job"]["machines"], serde_json::json!(["pxe"]), "{detail}");
    let events = detail["events"].as_array().unwrap();
    let said = |level: &str, text: &str| {
        events.iter().any(|e| e["level"] == level && e["text"].as_str().unwrap().contains(text))
    };
    assert!(said("log", "published "), "{detail}");
    assert!(said("ok", "netboot done"), "{detail}");

    // jobs on other machines run at once: while a deploy of node2 waits for the
    // configuration's deploy lock (held here), pxe's trees are rebuilt
    lab.set_marker(&["node2"], "deployed beside a rebuild");
    let lock = lab.conf().join(".confctl/deploy.lock");
    let holder = std::fs::OpenOptions::new().create(true).append(true).open(&lock).unwrap();
    holder.lock().unwrap();
    let deploy = server.start_job(dee, "/api/start_deploy", &deploy_form("node2", "queue"));
    let rebuild = server.start_job(dee, "/api/rebuild_netboot", &[("carrier", "pxe")]);
    let rebuilt = server.finished(vic, rebuild);
    assert_eq!(rebuilt["job"]["state"], "succeeded", "{rebuilt}\n{}", server.output());
    let waiting = server.call(vic, "get_job", &[("id", &deploy.to_string())]);
    assert_eq!(waiting["job"]["state"], "running", "{waiting}");
    assert!(waiting["events"].to_string().contains("deploy.lock"), "it waits: {waiting}");
    drop(holder);
    let deployed = server.finished(vic, deploy);
    assert_eq!(deployed["job"]["state"], "succeeded", "{deployed}\n{}", server.output());
}

/// Several `carrier profile set` at once on the lab's carrier while a netboot build runs
/// (the lab's builds are too quick to overlap by themselves, so the build lock is held
/// for a few seconds in its stead): the changes take turns on the profile lock, their
/// on-change hooks run beside each other, and their netboot builds coalesce into fewer
/// builds than changes. (Were the hooks run under the profile lock, each change would
/// wait for the one before it and build on its own.) The netboot hook is wrapped to keep
/// each build's report (`builds`: how many builds that call ran, 0 when another call's
/// build covered it).
fn concurrent_profile_changes_coalesce_their_netboot_builds(lab: &Lab) {
    const CHANGES: usize = 8;
    let host = lab.host_root("pxe.lab");
    let host_json = host.join("etc/carrier/host.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&host_json).unwrap()).unwrap();
    let reports = lab.tmp().join("netboot-reports.jsonl");
    let hooks = config["onChange"].as_array_mut().unwrap();
    let build = hooks.iter_mut().find(|h| h[1] == "netboot").expect("the lab's netboot hook");
    let netboot_json = build[4].as_str().unwrap().to_string();
    *build = serde_json::json!([
        "/bin/sh",
        "-c",
        "exec carrier netboot build --json --config \"$1\" >> \"$2\"",
        "sh",
        netboot_json,
        reports.display().to_string()
    ]);
    std::fs::write(&host_json, config.to_string()).unwrap();

    // the carried profile's two dists (the two build generations deployed above)
    let dir = lab.conf().join(".confctl/generations/pxe#node1");
    let mut dists: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let json = std::fs::read(e.ok()?.path().join("generation.json")).ok()?;
            let g: Value = serde_json::from_slice(&json).ok()?;
            Some(g["toplevel"].as_str()?.to_string())
        })
        .collect();
    dists.sort();
    dists.dedup();
    assert_eq!(dists.len(), 2, "{dists:?}");
    let before = carried_generations(lab).len();

    let started = Instant::now();
    std::thread::scope(|s| {
        let lock = "/run/carrier/netboot.lock";
        let building = s.spawn(|| lab.ssh("pxe.lab", &["flock", lock, "sleep", "5"]));
        // one string: ssh hands the remote shell one command line
        let held = format!("flock -n -E 75 {lock} true; test $? = 75");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Command::new("ssh")
            .arg("-F")
            .arg(lab.dir().join("ssh_config"))
            .arg("pxe.lab")
            .arg(&held)
            .status()
            .is_ok_and(|s| !s.success())
        {
            assert!(Instant::now() < deadline, "the build lock is not taken");
            std::thread::sleep(Duration::from_millis(100));
        }
        let sets: Vec<_> = (0..CHANGES)
            .map(|i| {
                let dist = dists[i % 2].as_str();
                s.spawn(move || {
                    lab.ssh("pxe.lab", &["carrier", "profile", "set", "-p", CARRIED, dist])
                })
            })
            .collect();
        for set in sets {
            set.join().unwrap();
        }
        building.join().unwrap();
    });
    let took = started.elapsed();
    let text = std::fs::read_to_string(&reports).unwrap();
    let reports: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(reports.len(), CHANGES, "one hook run per change:\n{text}");
    let builds: u64 = reports.iter().map(|r| r["builds"].as_u64().unwrap()).sum();
    eprintln!("{CHANGES} concurrent profile changes: {builds} netboot builds, {took:?}");
    assert!(
        (1..CHANGES as u64).contains(&builds),
        "{builds} builds for {CHANGES} changes:\n{text}"
    );
    assert!(carried_generations(lab).len() > before, "the profile changed");
    let records = "ls -A /nix/var/nix/profiles/.carrier-on-change-pending 2>/dev/null; true";
    let left = lab.ssh("pxe.lab", &[records]);
    assert_eq!(left.trim(), "", "every pending record settled");
}

/// Jobs a server left running are marked interrupted when it starts again (their machines
/// freed); a queued job is cancelled by its requester, not by a viewer; a netboot rebuild
/// asked for while one is queued is coalesced into it.
#[test]
fn a_restart_interrupts_what_ran_and_queued_jobs_are_cancelled() {
    let lab = Lab::up();
    lab.add_user("dee", "deployer", None);
    lab.add_user("vic", "viewer", None);
    let (rt, store) = lab.store();
    let job = NewJob {
        kind: JobKind::Deploy,
        requested_by: "dee".into(),
        request: serde_json::json!({}),
        summary: "switch node1".into(),
        machines: vec!["node1".into()],
    };
    let left = rt.block_on(store.enqueue_job(&job, IfBusy::Refuse)).unwrap();
    rt.block_on(store.register_instance("a")).unwrap();
    let claimed = rt.block_on(store.claim_job("a")).unwrap().unwrap();
    assert_eq!(claimed.id, left);

    // instance a comes back: what it ran is interrupted
    let server = lab.serve(&["--instance", "a", "--no-jobs"]);
    let after = rt.block_on(store.job(left)).unwrap().unwrap();
    assert_eq!(after.state, JobState::Interrupted, "{after:?}");
    assert!(after.error.as_deref().unwrap_or_default().contains("restarted"), "{after:?}");

    // node1 is free again: a new job is queued (this instance runs none)
    let dee = server.sign_in("dee");
    let (status, location, body) =
        server.post(&dee, "/api/start_deploy", &deploy_form("node1", "refuse"));
    assert!((300..400).contains(&status), "{status} {body}");
    let id: i64 = location.strip_prefix("/jobs/").unwrap().parse().unwrap();
    let vic = server.sign_in("vic");
    let (status, _, body) = server.post(&vic, "/api/cancel_job", &[("id", &id.to_string())]);
    assert_eq!(status, 403, "{body}");
    let cancelled = server.call(&dee, "cancel_job", &[("id", &id.to_string())]);
    assert_eq!(cancelled, Value::Null, "{cancelled}");
    let job = rt.block_on(store.job(JobId(id))).unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled, "{job:?}");

    // a netboot rebuild asked for while one is queued is that one
    let first = server.call(&dee, "rebuild_netboot", &[("carrier", "pxe")]);
    let second = server.call(&dee, "rebuild_netboot", &[("carrier", "pxe")]);
    assert!(first.is_i64() && first == second, "{first} {second}");
    let audit = ok(&lab.cli_db(&["audit", "--json", "--action", "job.netboot-rebuild"]));
    assert!(audit.contains(&format!("ok: coalesced into queued job {first}")), "{audit}");
    let rebuilds = JobFilter { machine: Some("pxe".into()), ..JobFilter::default() };
    assert_eq!(rt.block_on(store.jobs(&rebuilds, 10)).unwrap().len(), 1);
    drop(server);
}

/// Two `carrier serve` instances on one throw-away PostgreSQL: a job started through A is
/// run by exactly one of them and followed live through B; the instance that runs the next
/// one is killed while it runs, and the other marks that job interrupted and frees its
/// machine.
#[test]
fn two_instances_share_the_queue_of_one_postgresql() {
    let lab = Lab::up();
    let pg = support::postgres::Postgres::start();
    let url = pg.url();
    lab.add_user_on(&url, "dee", "deployer", None);
    let timeout = ["--heartbeat-timeout", "6"];
    let a = lab.serve_on(&url, &[&["--instance", "a"][..], &timeout].concat());
    let b = lab.serve_on(&url, &[&["--instance", "b"][..], &timeout].concat());
    let (on_a, on_b) = (a.sign_in("dee"), b.sign_in("dee"));

    let (status, location, body) =
        a.post(&on_a, "/api/start_deploy", &deploy_form("node1", "refuse"));
    assert!((300..400).contains(&status), "{status} {body}");
    let id: i64 = location.strip_prefix("/jobs/").unwrap().parse().unwrap();
    let events =
        b.curl(&["-N", "-H", &format!("Cookie: {on_b}"), &format!("{}/jobs/{id}/events", b.url())]);
    assert!(events.contains("event: end"), "{events}");
    assert!(events.contains("activate done"), "{events}");
    let (rt, store) = store_at(&url);
    let job = rt.block_on(store.job(JobId(id))).unwrap().unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}\nA:\n{}\nB:\n{}", a.output(), b.output());
    assert!(["a", "b"].contains(&job.instance.as_deref().unwrap()), "{job:?}");
    let started = format!("job {id} started");
    let runners = [&a, &b].iter().filter(|s| s.output().contains(&started)).count();
    assert_eq!(runners, 1, "run by exactly one instance\nA:\n{}\nB:\n{}", a.output(), b.output());

    // the next job: a new build, long enough to kill its instance while it runs
    lab.set_marker(&["node1"], "killed");
    let (_, location, _) = b.post(&on_b, "/api/start_deploy", &deploy_form("node1", "refuse"));
    let id: i64 = location.strip_prefix("/jobs/").unwrap().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let running = loop {
        let job = rt.block_on(store.job(JobId(id))).unwrap().unwrap();
        if job.state == JobState::Running {
            break job;
        }
        assert!(job.state == JobState::Queued && Instant::now() < deadline, "{job:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let runner = running.instance.clone().unwrap();
    let (victim, survivor) = if runner == "a" { (a, b) } else { (b, a) };
    victim.kill();
    let deadline = Instant::now() + Duration::from_secs(60);
    let interrupted = loop {
        let job = rt.block_on(store.job(JobId(id))).unwrap().unwrap();
        if job.state.is_finished() {
            break job;
        }
        assert!(Instant::now() < deadline, "{job:?}\n{}", survivor.output());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(interrupted.state, JobState::Interrupted, "{interrupted:?}");
    assert!(interrupted.error.as_deref().unwrap().contains(&runner), "{interrupted:?}");
    // node1 is free: the survivor takes the next deploy of it
    let on_survivor = survivor.sign_in("dee");
    let (status, _, body) =
        survivor.post(&on_survivor, "/api/start_deploy", &deploy_form("node1", "refuse"));
    assert!((300..400).contains(&status), "{status} {body}");
}
