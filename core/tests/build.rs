//! Building machines for real: `examples/lab` (nixpkgs-free lab systems, busybox
//! builder) through carrier's build evaluator and real `nix-build`, then the local
//! generations of spec 1.6. Mirrors step 2 and 5 of upstream's carrier-deploy VM test
//! (spec 6.1). Each test works on its own copy of examples/lab.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use carrier_core::build::{self, BuildOptions, Generation};
use carrier_core::cluster::{Inventory, Machine};
use carrier_core::conf_dir::ConfDir;
use carrier_core::events::{Event, Outcome, Recorder};

/// A copy of examples/lab and a private cache; removes the copy's GC roots when done
/// (they live in the real /nix/var/nix/gcroots).
struct Lab {
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        if std::env::var_os("NIX_CONF_DIR").is_none() {
            // SAFETY: set before any thread of this test process reads the environment
            // (tests that need it all run this first; the value is the same for all).
            unsafe { std::env::set_var("NIX_CONF_DIR", common::repo_root().join(".local/nix")) };
        }
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&common::repo_root().join("examples/lab"), dir.path());
        Lab { dir, cache: tempfile::tempdir().unwrap() }
    }

    fn conf(&self) -> ConfDir {
        ConfDir::resolve(self.dir.path()).unwrap()
    }

    fn machines(&self, names: &[&str]) -> Vec<Machine> {
        let loaded = Inventory::new(self.cache.path()).load(&self.conf()).unwrap();
        names
            .iter()
            .map(|n| loaded.cluster.get(n).unwrap_or_else(|| panic!("no machine {n}")).clone())
            .collect()
    }

    fn build(
        &self,
        names: &[&str],
        sink: &Recorder,
    ) -> Result<BTreeMap<String, Generation>, build::BuildError> {
        build::build(
            &self.conf(),
            &self.machines(names),
            &BuildOptions::new(self.cache.path()),
            sink,
        )
    }

    fn edit(&self, rel: &str, from: &str, to: &str) {
        let path = self.dir.path().join(rel);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{rel} has no {from:?}");
        std::fs::write(&path, text.replace(from, to)).unwrap();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(build::default_gc_roots_dir(&self.conf()));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == ".confctl" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn machine_json(dist: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dist.join("machine.json")).unwrap()).unwrap()
}

fn gen_dirs(conf: &ConfDir, machine: &str) -> Vec<String> {
    entries(&build::machine_dir(conf, machine)).into_iter().filter(|n| n != "current").collect()
}

#[test]
fn lab_machines_build_into_generations() {
    let lab = Lab::new();
    let conf = lab.conf();
    // a file unique to this run, so that Nix really builds (and logs) something
    let nonce = format!("environment.etc.nonce.text = \"{:?}\";\n}}", std::time::SystemTime::now());
    for m in ["node1", "os1"] {
        lab.edit(&format!("cluster/{m}/config.nix"), "\n}", &nonce);
    }
    let rec = Recorder::default();
    let all = ["node1", "os1", "pxe#node1", "pxe#os1"];
    let gens = lab.build(&all, &rec).unwrap();
    assert_eq!(
        gens.keys().map(String::as_str).collect::<Vec<_>>(),
        ["node1", "os1", "pxe#node1", "pxe#os1"]
    );
    let names: Vec<&str> = gens.values().map(|g| g.name.as_str()).collect();
    assert!(names.iter().all(|n| *n == names[0]), "one run, one generation name: {names:?}");

    // standalone toplevels
    for m in ["node1", "os1"] {
        let top = &gens[m].toplevel;
        let stc = top.join("bin/switch-to-configuration");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&stc).unwrap().permissions(),
        );
        assert!(mode & 0o111 != 0, "{} is executable", stc.display());
        assert_eq!(std::fs::read_to_string(top.join("etc/confctl-marker")).unwrap(), "A");
        assert!(
            std::fs::read_link(top.join("kernel")).unwrap().to_string_lossy().contains("-linux-")
        );
    }

    // carried dists come from the same configs, only the build attribute differs
    for (carried, source, spin, expected) in [
        (
            "pxe#node1",
            "node1",
            "nixos",
            &["build-mode", "bzImage", "init", "initrd", "kernel", "machine.json"][..],
        ),
        (
            "pxe#os1",
            "os1",
            "vpsadminos",
            &["build-mode", "bzImage", "initrd", "kernel-params", "machine.json", "root.squashfs"]
                [..],
        ),
    ] {
        let dist = &gens[carried].toplevel;
        assert_ne!(dist, &gens[source].toplevel);
        assert_eq!(std::fs::read_to_string(dist.join("build-mode")).unwrap(), "carried\n");
        let mj = machine_json(dist);
        assert_eq!(mj["machine"], source);
        assert_eq!(mj["marker"], "A");
        assert_eq!(mj["spin"], spin);
        assert_eq!(mj["fqdn"], format!("{source}.lab"));
        assert_eq!(
            mj["toplevel"],
            gens[source].toplevel.display().to_string(),
            "{carried}: the standalone toplevel"
        );
        assert_eq!(entries(dist), expected, "{carried}");
    }

    // generation layout (spec 1.6)
    for (m, g) in &gens {
        let dir = build::machine_dir(&conf, m);
        assert_eq!(std::fs::read_link(dir.join("current")).unwrap(), Path::new(&g.name));
        assert_eq!(g.dir, dir.join(&g.name));
        assert_eq!(std::fs::read_link(g.dir.join("toplevel")).unwrap(), g.toplevel);
        let ar = g.auto_rollback.as_ref().expect("auto_rollback");
        assert_eq!(&std::fs::read_link(g.dir.join("auto_rollback")).unwrap(), ar);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(g.dir.join("generation.json")).unwrap()).unwrap();
        assert_eq!(json["toplevel"], g.toplevel.display().to_string());
        assert_eq!(json["auto_rollback"], ar.display().to_string());
        assert_eq!(json["mode"], "swpins");
        assert!(json["date"].as_str().unwrap().contains('T'));
        assert!(g.name.len() == 20 && &g.name[10..12] == "--", "{}", g.name);
        let roots = build::default_gc_roots_dir(&conf);
        let safe = m.replace('/', ":");
        assert_eq!(
            std::fs::read_link(roots.join(format!("{safe}-generation-{}-toplevel", g.name)))
                .unwrap(),
            g.toplevel
        );
        assert_eq!(build::find(&conf, m, "current").as_ref(), Some(g));
        assert_eq!(build::list(&conf, m), std::slice::from_ref(g));
    }
    assert!(
        conf.path().join(".confctl/generations/pxe#node1/current").exists(),
        "'#' is kept in the directory name"
    );

    // events
    let ev = rec.events();
    assert!(
        ev.iter().any(|e| matches!(e, Event::Progress { expected, .. } if *expected > 0)),
        "progress was reported"
    );
    assert!(
        ev.iter().any(|e| matches!(e, Event::Log { line, .. } if line.starts_with("building '")))
    );
    let ok = ev
        .iter()
        .filter(|e| matches!(e, Event::MachineFinished { outcome: Outcome::Ok, .. }))
        .count();
    assert_eq!(ok, 4);

    // dry-activate changes nothing; switch and test work in a private /run
    let top = &gens["node1"].toplevel;
    let script = format!(
        "mount -t tmpfs tmpfs /run || exit 99; {t}/bin/switch-to-configuration dry-activate && ls -A /run && \
         {t}/bin/switch-to-configuration switch && readlink /run/current-system && cat /run/carrier-activations.log; \
         {t}/bin/switch-to-configuration bogus; echo rc=$?",
        t = top.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "/bin/busybox", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let t = top.display();
    assert_eq!(
        stdout,
        format!("would activate {t}\n{t}\nswitch {t}\nrc=1\n"),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // an unchanged rebuild reuses the generations
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let again = lab.build(&all, &Recorder::default()).unwrap();
    assert_eq!(again, gens);
    assert_eq!(gen_dirs(&conf, "node1").len(), 1);

    // a changed marker: new toplevels, new generations, carried ones follow
    lab.edit("cluster/node1/config.nix", "confctl.marker = \"A\"", "confctl.marker = \"B\"");
    let b = lab.build(&["node1", "pxe#node1"], &Recorder::default()).unwrap();
    assert_ne!(b["node1"].toplevel, gens["node1"].toplevel);
    assert_ne!(b["node1"].name, gens["node1"].name);
    assert_eq!(machine_json(&b["pxe#node1"].toplevel)["marker"], "B");
    assert_eq!(
        machine_json(&b["pxe#node1"].toplevel)["toplevel"],
        b["node1"].toplevel.display().to_string()
    );
    assert_eq!(gen_dirs(&conf, "node1").len(), 2);
    assert_eq!(build::find(&conf, "node1", "current").unwrap(), b["node1"]);
    assert_eq!(build::find(&conf, "node1", "-1").unwrap(), gens["node1"]);
    assert_eq!(build::find(&conf, "node1", "1").unwrap(), gens["node1"]);
}

#[test]
fn auto_rollback_switches_back_without_confirmation() {
    let lab = Lab::new();
    lab.edit("cluster/node2/config.nix", "confctl.marker = \"A\"", "confctl.marker = \"C\"");
    let gens = lab.build(&["node2", "pxe"], &Recorder::default()).unwrap();
    let (old, new) = (&gens["pxe"].toplevel, &gens["node2"].toplevel);
    let ar = gens["node2"].auto_rollback.as_ref().unwrap();
    // confirmed: stays on the new system; unconfirmed within 1 s: back to the old one
    let script = format!(
        "mount -t tmpfs tmpfs /run || exit 99; {old}/bin/switch-to-configuration switch || exit 98; \
         (sleep 0.3; echo confirmed > /run/c1) & \
         sh {ar} -t 5 {new} test /run/c1; echo rc=$? $(readlink /run/current-system) $(ls /run | grep -c c1); \
         {old}/bin/switch-to-configuration switch; sh {ar} -t 1 {new} switch /run/c2; echo rc=$? $(readlink /run/current-system) $(cat /run/c2)",
        old = old.display(),
        new = new.display(),
        ar = ar.display(),
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "/bin/busybox", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [format!("rc=0 {} 0", new.display()), format!("rc=1 {} switched", old.display())],
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn failures_name_the_machine() {
    let lab = Lab::new();
    let conf = lab.conf();
    // an evaluation error
    lab.edit("cluster/node2/config.nix", "confctl.marker = \"A\";", "confctl.marker = 42;");
    let rec = Recorder::default();
    let err = lab.build(&["node2"], &rec).unwrap_err().to_string();
    assert!(err.contains("'node2'") && err.contains("confctl.marker"), "{err}");
    assert!(!build::machine_dir(&conf, "node2").exists(), "no generation on failure");
    assert!(rec.events().iter().any(|e| matches!(e, Event::MachineFinished { outcome: Outcome::Failed { .. }, machine, .. } if machine == "node2")));
    // a failing derivation
    // (etc/a is a file, so etc/a/b cannot be written: the builder fails)
    lab.edit("cluster/os1/config.nix", "confctl.marker = \"A\";", "confctl.marker = \"A\"; environment.etc.a.text = \"x\"; environment.etc.\"a/b\".text = \"y\";");
    let err = lab.build(&["os1"], &Recorder::default()).unwrap_err().to_string();
    assert!(err.contains("'os1'") && err.contains("failed"), "{err}");
    // a missing build attribute
    lab.edit(
        "cluster/pxe/module.nix",
        "carrier = {",
        "buildAttribute = [ \"system\" \"build\" \"nope\" ];\n    carrier = {",
    );
    let err = lab.build(&["pxe"], &Recorder::default()).unwrap_err().to_string();
    assert!(err.contains("machine 'pxe'") && err.contains("system.build.nope"), "{err}");
}
