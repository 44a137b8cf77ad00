//! The rest of the operator's CLI against a real lab (sshd hosts with their own /nix,
//! real ssh, real Nix): `carrier health-check`, `carrier ssh`, `deploy --interactive`,
//! `build -y` and the `confctl.*` settings of `ls` and builds. Needs root, sshd and
//! ssh-keygen (scripts/setup); traffic stays on 127.0.0.1.

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::cli::{ok, text};
use support::processes::run;

support::lab::lab_type!();

const TIMEOUT: Duration = Duration::from_secs(60);

impl Lab {
    /// Adds `attrs` (Nix attributes) to the machine's metadata in its module.nix.
    fn set_meta(&self, machine: &str, attrs: &str) {
        let module = self.conf().join("cluster").join(machine).join("module.nix");
        let text = std::fs::read_to_string(&module).unwrap();
        let call = format!("{{ name = \"{machine}\"; }}");
        let changed = text.replacen(&call, &format!("{call} // {{ {attrs} }}"), 1);
        assert_ne!(changed, text, "{machine}'s module.nix calls lab-machine.nix");
        std::fs::write(&module, changed).unwrap();
    }

    /// `carrier <args>` with `input` on its standard input (not a terminal).
    fn carrier_with_input(&self, args: &[&str], input: &str) -> Output {
        let mut cmd = self.cli(&self.conf(), "cache").command(args);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Stops the sshd of `alias` (started by this test's `lab up`) by its recorded PID.
    fn stop_host(&self, alias: &str) {
        let status =
            self.carrier(&["lab", "status", "--json", "--dir", self.dir().to_str().unwrap()]);
        let hosts: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        let host = hosts.as_array().unwrap().iter().find(|h| h["alias"] == alias).unwrap();
        let pid = host["pid"].as_u64().unwrap().to_string();
        ok(&run(Command::new("kill").arg(&pid), TIMEOUT).unwrap());
    }
}

#[test]
fn health_check_runs_the_checks_of_what_machines_run_now() {
    let lab = Lab::up();
    // every lab machine's check is `true`, run on its host: no deploy needed
    let o = lab.carrier(&["health-check"]);
    let out = ok(&o);
    for m in ["node1", "node2", "os1", "pxe"] {
        assert!(out.contains(&format!("{m}> true: succeeded")), "{out}");
    }
    assert!(out.contains("4 checks passed, 0 failed"), "{out}");
    let err = text(&o);
    assert!(err.contains("skipping pxe#node1: a carried machine has no health checks"), "{err}");

    // a machine command that fails on node2 fails the run, named in the report
    lab.set_meta(
        "node2",
        "healthChecks = { systemd.enable = false; machineCommands = [ { description = \"marker\"; command = [ \"cat\" \"/etc/no-such-file\" ]; timeout = 2; cooldown = 1; } ]; };",
    );
    let o = lab.carrier(&["health-check", "--json", "-j", "1", "node?"]);
    assert!(!o.status.success(), "{}", text(&o));
    let report: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(report["passed"], 1, "{report}");
    assert_eq!(report["failed"], 1, "{report}");
    let marker = report["checks"].as_array().unwrap().iter().find(|c| c["machine"] == "node2");
    let marker = marker.unwrap_or_else(|| panic!("{report}"));
    assert_eq!(marker["check"], "marker");
    assert_eq!(marker["passed"], false);
    assert!(marker["error"].as_str().unwrap().contains("exit status 1"), "{report}");
    let o = lab.carrier(&["health-check", "node2"]);
    assert!(!o.status.success());
    let out = text(&o);
    assert!(
        out.contains("0 checks passed, 1 failed\n\nnode2: 1 failures\n  marker: exit status 1"),
        "{out}"
    );
    assert!(out.contains("error: Health checks failed"), "{out}");

    // deploy's upstream switch: the last of --health-checks/--no-health-checks wins
    ok(&lab.carrier(&["deploy", "-y", "--health-checks", "--no-health-checks", "node2"]));
    lab.set_marker(&["node2"], "checked");
    let o =
        lab.carrier(&["deploy", "-y", "--json", "--no-health-checks", "--health-checks", "node2"]);
    assert!(!o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["machines"][0]["phase"], "health-check", "{report}");

    // what has no checks of its own is named, and nothing left to check is an error
    let o = lab.carrier(&["health-check", "pxe#*"]);
    assert!(!o.status.success());
    let err = text(&o);
    assert!(err.contains("skipping pxe#os1: a carried machine has no health checks"), "{err}");
    assert!(err.contains("error: no machines to check"), "{err}");
    lab.set_meta("node2", "managed = false;");
    let o = lab.carrier(&["health-check", "--managed", "all", "node2"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains(
            "skipping node2: it is not managed: health checks run on managed machines only"
        ),
        "{}",
        text(&o)
    );

    // an unreachable host fails its checks with the connection error
    lab.stop_host("node1.lab");
    let o = lab.carrier(&["health-check", "node1"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("node1> true: error: cannot connect to node1.lab"), "{}", text(&o));
}

#[test]
fn ssh_runs_a_command_on_each_machine_and_sums_up_exit_statuses() {
    let lab = Lab::up();
    // each word arrives as given: no remote shell re-reads `$HOME; x`
    let out = ok(&lab.carrier(&["ssh", "-y", "node?", "echo", "$HOME; x"]));
    assert!(out.contains("node1: $HOME; x\nnode2: $HOME; x\n"), "{out}");
    assert!(
        out.contains("Exit status:\n  node1: 0\n  node2: 0\nResult: 2 succeeded, 0 failed"),
        "{out}"
    );

    // all at once, with `--`; a failing command fails the run and shows its status
    let o = lab.carrier(&["ssh", "-y", "-p", "node?", "--", "sh", "-c", "hostname; exit 3"]);
    assert!(!o.status.success());
    let out = text(&o);
    assert!(out.contains("node1: node1") && out.contains("node2: node2"), "{out}");
    assert!(out.contains("  node1: 3\n  node2: 3\nResult: 0 succeeded, 2 failed"), "{out}");

    // standard input from a string or a file, and identical outputs grouped
    let out = ok(&lab.carrier(&["ssh", "-y", "-g", "-i", "carried\n", "node?", "cat"]));
    assert!(out.contains("node1, node2:\nExit status: 0\ncarried\n"), "{out}");
    let file = lab.tmp().join("input");
    std::fs::write(&file, "from a file\n").unwrap();
    let out = ok(&lab.carrier(&["ssh", "-y", "-f", file.to_str().unwrap(), "node1", "cat"]));
    assert!(out.contains("node1: from a file\n"), "{out}");
    let o = lab.carrier(&["ssh", "-y", "-f", "/no/such/input", "node1", "cat"]);
    assert!(text(&o).contains("reading --input-file /no/such/input"), "{}", text(&o));

    // a carried machine is reached at its own host (the netbooted machine's target)
    let out = ok(&lab.carrier(&["ssh", "-y", "pxe#node1", "hostname"]));
    assert!(out.contains("pxe#node1: node1"), "{out}");

    // no confirmation on a non-interactive input without -y
    let o = lab.carrier(&["ssh", "node1", "true"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("without confirmation on a non-interactive input: pass -y"));

    // an unreachable host: its status says why, the others still run
    lab.stop_host("node2.lab");
    let o = lab.carrier(&["ssh", "-y", "node?", "true"]);
    assert!(!o.status.success());
    let out = text(&o);
    assert!(out.contains("  node1: 0\n  node2: not run: cannot connect to node2.lab"), "{out}");
}

#[test]
fn ssh_without_a_command_opens_a_session_with_strict_host_keys() {
    let lab = Lab::up();
    // the system ssh, its standard input the session's (not a terminal: no pty)
    let o =
        lab.carrier_with_input(&["ssh", "-y", "node1"], "echo session-on-$(hostname)\nexit 7\n");
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    assert!(text(&o).contains("session-on-node1"), "{}", text(&o));

    let o = lab.carrier(&["ssh", "-y", "node?"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("missing command: an interactive session opens on exactly one machine, 2 selected (node1, node2)"),
        "{}",
        text(&o)
    );

    // a host key that known_hosts does not list: refused
    let config = std::fs::read_to_string(lab.dir().join("ssh_config")).unwrap();
    let empty = lab.tmp().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let known = lab.dir().join("known_hosts").display().to_string();
    assert!(config.contains(&known), "{config}");
    let other = lab.tmp().join("other_ssh_config");
    std::fs::write(&other, config.replace(&known, empty.to_str().unwrap())).unwrap();
    let mut cmd = lab.cli(&lab.conf(), "cache").command(&["ssh", "-y", "node1"]);
    cmd.env("CARRIER_SSH_CONFIG", &other).stdin(Stdio::null());
    let o = run(&mut cmd, TIMEOUT).unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("Host key verification failed"), "{}", text(&o));
}

/// The machine's current build generation's toplevel.
fn toplevel(lab: &Lab, machine: &str) -> String {
    let dir = lab.conf().join(".confctl/generations").join(machine);
    let json = std::fs::read(dir.join(lab.generation_name(machine)).join("generation.json"));
    let json: serde_json::Value = serde_json::from_slice(&json.unwrap()).unwrap();
    json["toplevel"].as_str().unwrap().to_string()
}

#[test]
fn deploy_interactive_asks_before_each_step_and_build_accepts_y() {
    let lab = Lab::up();
    // build -y: upstream's flag, nothing asked (stdin is not a terminal)
    ok(&lab.carrier(&["build", "-y", "node2"]));

    // copy node1? yes; copy node2? no; activate node1? yes
    let o = lab.carrier_with_input(&["deploy", "-y", "-i", "--json", "node?"], "y\nn\ny\n");
    let report: serde_json::Value = serde_json::from_slice(&ok(&o).into_bytes())
        .unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    let state = |m: &str| {
        let r = report["machines"].as_array().unwrap().iter().find(|r| r["machine"] == m);
        r.unwrap_or_else(|| panic!("{report}")).clone()
    };
    assert_eq!(state("node1")["state"], "deployed", "{report}");
    assert_eq!(state("node2")["state"], "declined", "{report}");
    assert_eq!(state("node2")["phase"], "copy", "{report}");
    let err = String::from_utf8_lossy(&o.stderr);
    for question in [
        "Copy the generation to node1? [y/N]",
        "Copy the generation to node2? [y/N]",
        "Activate node1? [y/N]",
    ] {
        assert!(err.contains(question), "{err}");
    }
    assert!(!err.contains("Activate node2?"), "{err}");
    let node1 = toplevel(&lab, "node1");
    assert_eq!(lab.ssh("node1.lab", &["realpath", "/run/current-system"]), node1);
    let node2 = toplevel(&lab, "node2");
    let copied = Command::new("ssh")
        .arg("-F")
        .arg(lab.dir().join("ssh_config"))
        .args(["node2.lab", "test", "-e", &node2])
        .status()
        .unwrap();
    assert!(!copied.success(), "node2 was declined before its copy");

    // the end of the input says no: nothing changes, and that is no failure
    lab.set_marker(&["node1"], "interactive");
    let o = lab.carrier_with_input(&["deploy", "-y", "-i", "node1"], "");
    let out = ok(&o);
    assert!(out.contains("declined before copy"), "{}", text(&o));
    assert_eq!(lab.ssh("node1.lab", &["realpath", "/run/current-system"]), node1);
}

#[test]
fn confctl_settings_give_the_ls_columns_and_the_builds_max_jobs() {
    let lab = Lab::up();
    std::fs::create_dir_all(lab.conf().join("configs")).unwrap();
    std::fs::write(
        lab.conf().join("configs/confctl.nix"),
        r#"{ confctl.list.columns = [ "name" "host.target" ]; confctl.nix.maxJobs = 0; }"#,
    )
    .unwrap();
    let out = ok(&lab.carrier(&["ls", "node?"]));
    assert_eq!(out, "NAME   HOST.TARGET\nnode1  node1.lab\nnode2  node2.lab\n");
    let out = ok(&lab.carrier(&["ls", "-o", "name", "node1"]));
    assert_eq!(out, "NAME\nnode1\n", "-o wins");

    // maxJobs = 0 and no remote builders: Nix itself refuses to build here
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    lab.set_marker(&["node1"], &format!("max-jobs-{}", nanos.as_nanos()));
    let o = lab.carrier(&["build", "-y", "node1"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("max-jobs"), "{}", text(&o));
    ok(&lab.carrier(&["build", "-y", "-j", "1", "node1"]));

    // a setting of the wrong type names the option and the file
    std::fs::write(lab.conf().join("configs/confctl.nix"), r#"{ confctl.list.columns = "name"; }"#)
        .unwrap();
    let o = lab.carrier(&["ls"]);
    assert!(!o.status.success());
    let err = text(&o);
    assert!(err.contains("list.columns") && err.contains("configs/confctl.nix"), "{err}");
}
