//! `carrier status` against a real lab: sshd hosts with their own /nix (`carrier lab
//! up`), real builds of examples/lab, real deploys; the states a machine goes through
//! (up to date, outdated, reboot pending, unreachable; carried staged, outdated, not
//! staged) read over SSH and, for carried machines, through their carrier.

mod support;

use serde_json::Value;
use support::cli::ok;

support::lab::lab_type!();

impl Lab {
    fn deploy(&self, args: &[&str]) {
        let mut all = vec!["deploy", "-y"];
        all.extend(args);
        ok(&self.carrier(&all));
    }

    /// `carrier status --json <args>`: each machine's record by name.
    fn status(&self, args: &[&str]) -> Status {
        let mut all = vec!["status", "--json"];
        all.extend(args);
        let out = self.carrier(&all);
        ok(&out);
        Status(serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}")))
    }

    fn set_marker(&self, machine: &str, marker: &str) {
        self.0.set_marker(&[machine], marker);
    }
}

struct Status(Value);

impl Status {
    fn machine(&self, name: &str) -> &Value {
        self.0["machines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["machine"] == name)
            .unwrap_or_else(|| panic!("no {name} in {}", self.0))
    }

    fn state(&self, name: &str) -> &str {
        self.machine(name)["state"].as_str().unwrap()
    }
}

/// Standalone machines: up to date, outdated (a newer build not deployed), reboot
/// pending (deployed with `boot`), back to up to date, unreachable (sshd stopped).
#[test]
fn standalone_states_follow_builds_and_deploys() {
    let lab = Lab::up();
    lab.deploy(&["{node1,node2}"]);
    let s = lab.status(&["{node1,node2}"]);
    for m in ["node1", "node2"] {
        assert_eq!(s.state(m), "up-to-date", "{m}: {}", s.0);
        assert_eq!(s.machine(m)["desired"]["generation"], lab.generation_name(m).as_str());
        assert!(s.machine(m)["system"]["uptime"].as_f64().unwrap() > 0.0, "{}", s.0);
        assert_eq!(s.machine(m)["drift_since"], Value::Null);
    }
    assert_eq!(s.0["connections"], 2, "one connection per host");
    assert_eq!(lab.ssh_processes(), Vec::<String>::new(), "no connection is left open");
    let gen_a = lab.generation_name("node1");

    // a newer build, not deployed
    lab.set_marker("node1", "B");
    ok(&lab.carrier(&["build", "node1"]));
    let gen_b = lab.generation_name("node1");
    assert_ne!(gen_a, gen_b);
    let s = lab.status(&["node1"]);
    assert_eq!(s.state("node1"), "outdated", "{}", s.0);
    assert_eq!(s.machine("node1")["detail"], format!("running generation {gen_a}").as_str());
    assert!(s.machine("node1")["drift_since"].is_i64(), "{}", s.0);
    // -g: compared with the generation it runs
    let s = lab.status(&["-g", &gen_a, "node1"]);
    assert_eq!(s.state("node1"), "up-to-date", "{}", s.0);
    let s = lab.status(&["-g", "-1", "node1"]);
    assert_eq!(s.state("node1"), "up-to-date", "-1 is the one before the newest: {}", s.0);

    // deployed with boot: the profile is B, the running system A
    lab.deploy(&["-g", &gen_b, "node1", "boot"]);
    let s = lab.status(&["node1"]);
    assert_eq!(s.state("node1"), "reboot-pending", "{}", s.0);
    assert_eq!(
        s.machine("node1")["detail"],
        format!("the desired generation boots next; running generation {gen_a}").as_str()
    );
    // the host booted A (what a boot would have left), then switched to B
    lab.deploy(&["-g", &gen_b, "node1", "switch"]);
    assert_eq!(lab.status(&["node1"]).state("node1"), "up-to-date");
    let a = lab.ssh("node1.lab", &["readlink", "-f", "/nix/var/nix/profiles/system-1-link"]);
    lab.ssh("node1.lab", &["ln", "-sfn", &a, "/run/booted-system"]);
    let s = lab.status(&["node1"]);
    assert_eq!(s.state("node1"), "reboot-pending", "{}", s.0);
    assert_eq!(
        s.machine("node1")["detail"],
        format!("running the desired generation, booted generation {gen_a}").as_str()
    );

    // a host that is down is unreachable, with the reason; the other is still read
    lab.stop("node2.lab");
    let out = lab.carrier(&["status", "{node1,node2}"]);
    ok(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table.lines().find(|l| l.starts_with("node2 ")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("unreachable") && row.contains("cannot connect to node2.lab"), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("node1 ") && l.contains("reboot pending")),
        "{table}"
    );
}

/// Carried machines read through their carrier: not staged, staged, outdated (a newer
/// build not deployed); booted from a recorded check-in, unknown without one.
#[test]
fn carried_states_are_read_through_the_carrier() {
    let lab = Lab::up();
    lab.deploy(&["pxe"]);
    ok(&lab.carrier(&["build", "pxe#*"]));
    let s = lab.status(&["pxe*"]);
    assert_eq!(s.state("pxe"), "up-to-date", "{}", s.0);
    for m in ["pxe#node1", "pxe#os1"] {
        assert_eq!(s.state(m), "not-staged", "{m}: {}", s.0);
        assert!(s.machine(m)["drift_since"].is_i64(), "{}", s.0);
    }

    lab.deploy(&["-g", &lab.generation_name("pxe#node1"), "pxe#*"]);
    let s = lab.status(&["pxe*"]);
    assert_eq!(s.0["connections"], 1, "carried machines go through the carrier's connection");
    for m in ["pxe#node1", "pxe#os1"] {
        assert_eq!(s.state(m), "staged", "{m}: {}", s.0);
        let carried = &s.machine(m)["carried"];
        assert_eq!(carried["staged"]["number"], 1, "{}", s.0);
        assert_eq!(carried["booted"], Value::Null, "booted is not known yet");
        // the staged generation's machine.json, as the carrier read it
        assert_eq!(carried["staged"]["machine_json"]["marker"], "A", "{}", s.0);
    }

    // node1 checks in (as `POST /api/checkin` records it): it booted the staged generation
    let profile = s.machine("pxe#node1")["carried"]["profile"].as_str().unwrap().to_string();
    let name = carrier_core::profile_name::ProfileName::from_file_name(
        profile.rsplit('/').next().unwrap(),
    )
    .unwrap();
    let url = carrier_storage::default_url(&lab.conf());
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let store = carrier_storage::Store::open(&url).await.unwrap();
        let checkin = carrier_storage::NewCheckin {
            carrier: "pxe".into(),
            machine: name.as_str().into(),
            generation: 1,
            mac: "52:54:00:12:34:56".into(),
            cmdline: "carrier.generation=1".into(),
            source: "10.0.2.15".into(),
        };
        store.record_checkin(&checkin).await.unwrap();
        store.close().await;
    });
    let s = lab.status(&["pxe#*"]);
    let node1 = s.machine("pxe#node1");
    assert_eq!(
        (s.state("pxe#node1"), node1["detail"].as_str()),
        ("staged", Some("staged and booted")),
        "{}",
        s.0
    );
    assert_eq!(node1["carried"]["booted"]["generation"], 1, "{}", s.0);
    assert_eq!(
        node1["carried"]["booted"]["store_path"], node1["carried"]["staged"]["store_path"],
        "{}",
        s.0
    );
    assert_eq!(s.machine("pxe#os1")["carried"]["booted"], Value::Null, "{}", s.0);

    lab.set_marker("node1", "B");
    ok(&lab.carrier(&["build", "pxe#node1"]));
    let s = lab.status(&["pxe#*"]);
    assert_eq!(s.state("pxe#node1"), "outdated", "{}", s.0);
    assert_eq!(
        s.machine("pxe#node1")["detail"],
        format!("staged generation 1 is generation {}", first_generation(&lab, "pxe#node1"))
            .as_str(),
        "{}",
        s.0
    );
    assert_eq!(s.state("pxe#os1"), "staged", "{}", s.0);

    lab.stop("pxe.lab");
    let s = lab.status(&["pxe#*"]);
    assert_eq!(s.state("pxe#node1"), "unreachable", "{}", s.0);
    assert!(
        s.machine("pxe#node1")["detail"].as_str().unwrap().contains("cannot connect to pxe.lab"),
        "{}",
        s.0
    );
}

/// The oldest build generation of `machine`.
fn first_generation(lab: &Lab, machine: &str) -> String {
    let dir = lab.conf().join(".confctl/generations").join(machine);
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "current")
        .collect();
    names.sort();
    names.remove(0)
}
