//! confctl configurations built unchanged: what every system module receives (the
//! special arguments and the module list of spec 1.3) and the carrier documentation's
//! example (`examples/confctl-doc`, its files verbatim), built with real `nix-build`
//! on the lab's stand-ins for nixpkgs and vpsAdminOS (`examples/lab/lib`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use carrier_core::build::{self, BuildOptions, Generation};
use carrier_core::cluster::Inventory;
use carrier_core::conf_dir::ConfDir;
use carrier_core::events::Recorder;

/// `examples/lab` and one configuration (`conf`) side by side in a temporary
/// directory, as in the repository; the configuration's GC roots go when done.
struct Conf {
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Conf {
    fn copy(source: &Path) -> Conf {
        if std::env::var_os("NIX_CONF_DIR").is_none() {
            // SAFETY: set before any thread of this test process reads the environment
            // (every test runs this first; the value is the same for all).
            unsafe { std::env::set_var("NIX_CONF_DIR", common::repo_root().join(".local/nix")) };
        }
        let dir = tempfile::tempdir().unwrap();
        for (from, to) in
            [(common::repo_root().join("examples/lab"), "lab"), (source.to_path_buf(), "conf")]
        {
            let out =
                Command::new("cp").arg("-r").arg(&from).arg(dir.path().join(to)).output().unwrap();
            assert!(
                out.status.success(),
                "cp {}: {}",
                from.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = std::fs::remove_dir_all(dir.path().join("conf/.confctl"));
        Conf { dir, cache: tempfile::tempdir().unwrap() }
    }

    fn conf(&self) -> PathBuf {
        self.conf_dir().path().to_path_buf()
    }

    fn conf_dir(&self) -> ConfDir {
        ConfDir::resolve(&self.dir.path().join("conf")).unwrap()
    }

    fn build(&self, names: &[&str]) -> Result<BTreeMap<String, Generation>, build::BuildError> {
        let loaded = Inventory::new(self.cache.path()).load(&self.conf_dir()).unwrap();
        let machines: Vec<_> = names
            .iter()
            .map(|n| loaded.cluster.get(n).unwrap_or_else(|| panic!("no machine {n}")).clone())
            .collect();
        build::build(
            &self.conf_dir(),
            &machines,
            &BuildOptions::new(self.cache.path()),
            &Recorder::default(),
        )
    }
}

impl Drop for Conf {
    fn drop(&mut self) {
        if let Ok(conf) = ConfDir::resolve(&self.dir.path().join("conf")) {
            let _ = std::fs::remove_dir_all(build::default_gc_roots_dir(&conf));
        }
    }
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn system_modules_get_confctls_special_arguments_and_modules() {
    let c = Conf::copy(&common::repo_root().join("core/tests/fixtures/confctl-args"));
    let conf = c.conf();
    let gens = c.build(&["a", "carrier", "carrier#a", "os"]).unwrap();

    let args = json(&gens["a"].toplevel.join("etc/args.json"));
    let lab_lib = conf.parent().unwrap().join("lab/lib");
    let expected = serde_json::json!({
        "confMachine": { "name": "a", "fqdn": "a.args.test" },
        "confDir": conf.display().to_string(),
        "confData": { "answer": 42, "hasLib": true },
        "swpins": {
            "nixpkgs": lab_lib.display().to_string(),
            "vpsadminos": lab_lib.display().to_string(),
        },
        "swpinsInfo": {},
        "inputs": {},
        "inputsInfo": null,
        "configurationInfo": null,
        "flakeInputs": {},
        "clusterMachines": [
            { "name": "a", "clusterName": "a", "carrier": null, "attribute": ["system", "build", "toplevel"] },
            { "name": "carrier", "clusterName": "carrier", "carrier": null, "attribute": ["system", "build", "toplevel"] },
            { "name": "carrier#a", "clusterName": "a", "carrier": "carrier", "attribute": ["system", "build", "toplevel"] },
            { "name": "os", "clusterName": "os", "carrier": null, "attribute": ["system", "build", "toplevel"] },
        ],
        "udev": "ACTION==\"add\", SUBSYSTEM==\"net\", DRIVERS==\"?*\", KERNEL==\"eth*\", ATTR{address}==\"52:54:00:00:00:01\", NAME=\"eth0\"\n",
        "cluster": ["a", "carrier", "os"],
        "carrierMachine": "a",
        "hostName": "a",
        "domain": "args.test",
        "buildGenerationsMax": 30,
        "carrierEnabled": false,
        "userModule": "user nixos module",
    });
    assert_eq!(args, expected);
    assert_eq!(text(&gens["a"].toplevel.join("etc/confctl/swpins-info.json")), "{}");
    assert!(!gens["a"].toplevel.join("etc/carrier").exists(), "a is no carrier");

    // the carried copy: the source's confMachine, its own entry, its extra module
    let carried = json(&gens["carrier#a"].toplevel.join("etc/args.json"));
    assert_eq!(carried["confMachine"], expected["confMachine"]);
    assert_eq!(carried["carrierMachine"], "carrier#a");
    assert_eq!(text(&gens["carrier#a"].toplevel.join("etc/carried")), "only in carrier#a");
    assert!(!gens["a"].toplevel.join("etc/carried").exists());

    // vpsAdminOS: the shared modules and its own user modules, no carrier module
    let os = json(&gens["os"].toplevel.join("etc/args.json"));
    assert_eq!(
        os,
        serde_json::json!({
            "confMachine": "os", "confData": { "answer": 42, "hasLib": true }, "swpinsInfo": {},
            "hostName": "os", "userModule": "user vpsadminos module",
        })
    );

    // kexec-netboot on vpsAdminOS: carrier kexec-netboot with the machine's fqdn
    let wrapper = text(&gens["os"].toplevel.join("sw/bin/kexec-netboot"));
    assert!(wrapper.contains("export CARRIER_MACHINE_FQDN='os.lab'\n"), "{wrapper}");
    assert!(wrapper.contains("/bin/carrier kexec-netboot \"$@\""), "{wrapper}");
    assert!(!gens["a"].toplevel.join("sw/bin/kexec-netboot").exists(), "off unless enabled");

    // cluster.carrier.carrier.enable alone makes a carrier: its on-change lines run as a script
    let top = &gens["carrier"].toplevel;
    let host = json(&top.join("etc/carrier/host.json"));
    let on_change = host["onChange"].as_array().unwrap();
    assert_eq!(on_change.len(), 1, "{host}");
    let script = text(Path::new(on_change[0][0].as_str().unwrap()));
    assert!(script.contains("echo \"changed: $CARRIER_PROFILE\"\n"), "{script}");
    assert!(!script.contains("build-netboot-server"), "netboot is off: {script}");
    assert!(top.join("sw/bin/carrier").exists());
    assert!(!top.join("etc/carrier/netboot.json").exists());

    // confData read without data/default.nix: the error names the file
    std::fs::remove_file(conf.join("data/default.nix")).unwrap();
    let err = c.build(&["os"]).unwrap_err().to_string();
    assert!(
        err.contains("'os'")
            && err.contains(&format!("{}/data/default.nix does not exist", conf.display())),
        "{err}"
    );
}

/// The example of confctl's carrier documentation, whose files are kept verbatim in
/// `examples/confctl-doc` (checked against docs/from-confctl.md).
#[test]
fn documented_carrier_example_builds_unchanged() {
    let c = Conf::copy(&common::repo_root().join("examples/confctl-doc"));
    let gens = c.build(&["node1", "pxe-server", "pxe-server#node1"]).unwrap();

    // node1's netboot dist: ramdisk, kernel, iPXE script and the machine.json it writes
    let node1 = &gens["node1"].toplevel;
    let dist = &gens["pxe-server#node1"].toplevel;
    let mut entries: Vec<String> = std::fs::read_dir(dist)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["bzImage", "initrd", "machine.json", "netboot.ipxe"]);
    let mj = json(&dist.join("machine.json"));
    assert_eq!(
        mj,
        serde_json::json!({
            "spin": "nixos", "fqdn": "node1.lab", "label": "node1.lab",
            "toplevel": node1.display().to_string(),
            "version": "26.05.lab", "revision": "0123456789abcdef0123456789abcdef01234567",
            "macs": ["52:54:00:12:34:56"], "swpins-info": {},
        })
    );
    assert!(
        std::fs::read_link(dist.join("bzImage")).unwrap().to_string_lossy().contains("-linux-")
    );
    assert!(text(&dist.join("netboot.ipxe")).contains(&format!("init={}/init", node1.display())));
    assert!(node1.join("bin/switch-to-configuration").is_file());
    assert!(!node1.join("etc/carrier").exists());

    // pxe-server: carrier and netboot server from the metadata and the two options
    let top = &gens["pxe-server"].toplevel;
    let netboot = json(&top.join("etc/carrier/netboot.json"));
    assert_eq!(netboot["httpUrl"], "http://192.168.100.5");
    assert_eq!(netboot["hostName"], "pxe-server");
    assert_eq!(netboot["tftpRoot"], "/var/lib/confctl/carrier/netboot/tftp");
    let builder = text(&top.join("sw/bin/build-netboot-server"));
    assert!(builder.contains("bin/carrier netboot build --config /nix/store/"), "{builder}");
    let host = json(&top.join("etc/carrier/host.json"));
    let script = text(Path::new(host["onChange"][0][0].as_str().unwrap()));
    let build_at = script.find("/bin/build-netboot-server\n").expect(&script);
    let user_at = script.find("ls -l /nix/var/nix/profiles/confctl-*\n").expect(&script);
    assert!(build_at < user_at, "the netboot build runs first: {script}");
    assert!(script.contains("build-netboot-server failed with $rc"), "{script}");
    let firewall = text(&top.join("etc/lab-firewall"));
    assert!(firewall.contains("-s 192.168.100.0/24 --dport 69 -j nixos-fw-accept"), "{firewall}");
}

/// The example's files are the documentation's text: docs/from-confctl.md quotes
/// confctl's example (one Nix block, a `# cluster/<file>` line before each file);
/// every config.nix equals its part, every module.nix contains it unchanged.
#[test]
fn example_files_are_the_documented_text() {
    let root = common::repo_root();
    let doc = text(&root.join("docs/from-confctl.md"));
    let start = doc.find("```nix\n# cluster/").expect("docs/from-confctl.md quotes the example")
        + "```nix\n".len();
    let block = &doc[start..start + doc[start..].find("```").unwrap()];
    let mut parts: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        match line.strip_prefix("# cluster/") {
            Some(rest) => {
                parts.push((format!("cluster/{}", rest.split(' ').next().unwrap()), String::new()))
            }
            None => {
                let part = &mut parts.last_mut().expect("a file header first").1;
                part.push_str(line);
                part.push('\n');
            }
        }
    }
    assert_eq!(parts.len(), 3, "{parts:?}");
    for (file, part) in parts {
        let part = part.trim_end();
        let actual = text(&root.join("examples/confctl-doc").join(&file));
        if file.ends_with("/config.nix") {
            assert_eq!(actual.trim_end(), part, "{file}");
        } else {
            assert!(
                actual.contains(part),
                "examples/confctl-doc/{file} does not contain the documented text:\n{part}"
            );
        }
    }
}

/// `nix <args>` in `dir` (flake commands need the experimental features nix.conf
/// enables); stdout, the command's failure otherwise.
fn nix_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("nix").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "nix {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Flake mode (spec Appendix A): the same cluster through carrier's
/// `lib.mkConfctlOutputs` (nix/flake.nix, offline `path:` inputs, the lab's stand-ins
/// as the nixpkgs input) gives the machines and keys carrier's inventory gives, and
/// systems that differ only in what the mode provides (inputs instead of swpins).
#[test]
fn flake_outputs_give_the_same_machines_and_systems() {
    let c = Conf::copy(&common::repo_root().join("core/tests/fixtures/confctl-args"));
    let conf = c.conf();
    let lab_lib = conf.parent().unwrap().join("lab/lib");
    std::fs::write(
        conf.join("lab.nix"),
        text(&conf.join("flake/lab.nix.in")).replace("@LAB_LIB@", &lab_lib.display().to_string()),
    )
    .unwrap();
    let names = ["a", "carrier", "carrier#a", "os"];
    let legacy = c.build(&names).unwrap();
    let inventory = Inventory::new(c.cache.path()).load(&c.conf_dir()).unwrap();
    common::make_flake(&conf, &lab_lib);
    let flake_args = ["--no-write-lock-file"];

    // machines: names, keys, carried records (spec 1.3, 1.4)
    let keys: serde_json::Value = serde_json::from_str(&nix_in(
        &conf,
        &[&["eval", "--json"][..], &flake_args, &[".#confctl.machineKeys"]].concat(),
    ))
    .unwrap();
    let expected_keys: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .map(|n| (n.to_string(), inventory.cluster.get(n).unwrap().key().into()))
        .collect();
    assert_eq!(keys, serde_json::Value::Object(expected_keys));
    let built: serde_json::Value = serde_json::from_str(&nix_in(
        &conf,
        &[&["build", "--json", "--no-link"][..], &flake_args, &[".#confctl.machinesJson"]].concat(),
    ))
    .unwrap();
    let records = json(Path::new(built[0]["outputs"]["out"].as_str().unwrap()));
    let carried = &records["carrier#a"];
    assert_eq!(
        (&carried["clusterName"], &carried["carrier"], &carried["alias"], &carried["key"]),
        (&"a".into(), &"carrier".into(), &serde_json::Value::Null, &keys["carrier#a"])
    );
    assert_eq!(
        carried["metaConfig"]["buildAttribute"],
        serde_json::json!(["system", "build", "toplevel"])
    );
    assert!(
        carried["extraModules"][0].as_str().unwrap().ends_with("/modules/carried.nix"),
        "{carried}"
    );
    assert_eq!(records["a"]["carrier"], serde_json::Value::Null);

    // carrier reads the flake configuration: the same machines (the flake's copies of
    // the carried entries' modules live in the store, and it names no definition files)
    let from_flake =
        Inventory::new(tempfile::tempdir().unwrap().path()).load(&c.conf_dir()).unwrap();
    assert_eq!(from_flake.cluster.machines.len(), names.len());
    for m in &from_flake.cluster.machines {
        let mut m = m.clone();
        let l = inventory
            .cluster
            .get(&m.name)
            .unwrap_or_else(|| panic!("{} only in flake mode", m.name))
            .clone();
        assert_eq!(m.key(), l.key());
        assert!(m.files.is_empty(), "{:?}", m.files);
        m.files = l.files.clone();
        for (f, l) in m.extra_modules.iter_mut().zip(&l.extra_modules) {
            assert!(f.starts_with("/nix/store/") && f.ends_with("/modules/carried.nix"), "{f}");
            f.clone_from(l);
        }
        for (f, l) in m.meta_config.carrier.machines.iter_mut().zip(&l.meta_config.carrier.machines)
        {
            f.extra_modules.clone_from(&l.extra_modules);
        }
        assert_eq!(m, l);
    }

    // systems: the same module list and arguments; the mode's own arguments differ
    let installables: Vec<String> = names
        .iter()
        .map(|n| format!(".#confctl.build.{}.toplevel", keys[n].as_str().unwrap()))
        .collect();
    let mut args: Vec<&str> = vec!["build", "--json", "--no-link", "--no-write-lock-file"];
    args.extend(installables.iter().map(String::as_str));
    let outs: serde_json::Value = serde_json::from_str(&nix_in(&conf, &args)).unwrap();
    let outs: Vec<PathBuf> = outs
        .as_array()
        .unwrap()
        .iter()
        .map(|o| PathBuf::from(o["outputs"]["out"].as_str().unwrap()))
        .collect();
    let plan: serde_json::Value = serde_json::from_str(&nix_in(
        &conf,
        &[&["eval", "--json"][..], &flake_args, &[".#confctl.buildPlan.a"]].concat(),
    ))
    .unwrap();
    let lab_input = plan["inputs"]["nixpkgs"].as_str().unwrap();
    assert_eq!(plan["inputs"]["vpsadminos"], lab_input);
    assert_eq!(plan["inputsInfo"]["nixpkgs"]["input"], "nixpkgs");
    for name in ["a", "carrier#a", "os"] {
        let legacy_args = json(&legacy[name].toplevel.join("etc/args.json"));
        let flake_top = outs
            .iter()
            .find(|o| {
                o.join("etc/args.json").exists()
                    && json(&o.join("etc/args.json"))["carrierMachine"]
                        == legacy_args["carrierMachine"]
                    && json(&o.join("etc/args.json"))["confMachine"] == legacy_args["confMachine"]
            })
            .unwrap_or_else(|| panic!("no flake build of {name} among {outs:?}"));
        let mut flake_args = json(&flake_top.join("etc/args.json"));
        let mut legacy_args = legacy_args;
        if name != "os" {
            assert_eq!(flake_args["swpins"], serde_json::json!({}));
            assert_eq!(
                flake_args["inputs"],
                serde_json::json!({ "nixpkgs": lab_input, "vpsadminos": lab_input })
            );
            assert_eq!(flake_args["inputsInfo"], plan["inputsInfo"]);
            assert!(flake_args["confDir"].as_str().unwrap().starts_with("/nix/store/"));
            let flake_inputs: Vec<&String> =
                flake_args["flakeInputs"].as_object().unwrap().keys().collect();
            assert_eq!(flake_inputs, ["confctl", "nixpkgs"]);
            for mode_specific in ["swpins", "inputs", "inputsInfo", "confDir", "flakeInputs"] {
                flake_args.as_object_mut().unwrap().remove(mode_specific);
                legacy_args.as_object_mut().unwrap().remove(mode_specific);
            }
            assert!(flake_top.join("etc/confctl/inputs-info.json").exists(), "{name}");
        }
        assert_eq!(flake_args, legacy_args, "{name}");
    }

    // carrier builds the flake configuration: the flake's outputs, flake-mode generations
    let gens = c.build(&names).unwrap();
    for name in names {
        let g = &gens[name];
        assert!(
            outs.contains(&g.toplevel),
            "{name}: {} is not what `nix build` built",
            g.toplevel.display()
        );
        assert_ne!(g.name, legacy[name].name, "{name}: a new generation, not the legacy one");
        let gj = json(&g.dir.join("generation.json"));
        assert_eq!(gj["mode"], "flakes");
        assert_eq!(
            gj["inputs"],
            serde_json::json!({ "nixpkgs": lab_input, "vpsadminos": lab_input })
        );
        assert_eq!(gj["inputs_info"]["nixpkgs"]["input"], "nixpkgs");
        assert!(gj.get("swpins").is_none(), "{gj}");
        assert_eq!(std::fs::read_link(g.dir.join("nixpkgs.input")).unwrap(), Path::new(lab_input));
        let root = build::default_gc_roots_dir(&c.conf_dir()).join(format!(
            "{}-generation-{}-input.nixpkgs",
            name.replace('/', ":"),
            g.name
        ));
        assert_eq!(std::fs::read_link(&root).unwrap(), Path::new(lab_input));
        let rollback = g.auto_rollback.as_ref().expect("auto_rollback");
        assert!(text(rollback).contains("auto-rollback script"), "{}", rollback.display());
    }
    assert_eq!(json(&gens["a"].dir.join("generation.json"))["inputs_info"], plan["inputsInfo"]);
    // an unchanged rebuild reuses the flake generations
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(c.build(&names).unwrap(), gens);
}

/// The documented example in flake mode: node1's `<nixpkgs/...>` import needs
/// `confctl.nix.impureEval` and `legacyNixPath` (its nixpkgs input on the search path),
/// which carrier reads from `.#confctl.settings`; it builds the same dist.
#[test]
fn documented_example_builds_in_flake_mode() {
    let c = Conf::copy(&common::repo_root().join("examples/confctl-doc"));
    let conf = c.conf();
    let names = ["node1", "pxe-server", "pxe-server#node1"];
    let legacy = c.build(&names).unwrap();
    common::make_flake(&conf, &conf.parent().unwrap().join("lab/lib"));
    let flake = c.build(&names).unwrap();
    for name in names {
        assert_eq!(json(&flake[name].dir.join("generation.json"))["mode"], "flakes", "{name}");
    }
    let (dist, legacy_dist) =
        (&flake["pxe-server#node1"].toplevel, &legacy["pxe-server#node1"].toplevel);
    let mut mj = json(&dist.join("machine.json"));
    assert_eq!(mj["toplevel"], flake["node1"].toplevel.display().to_string());
    let mut legacy_mj = json(&legacy_dist.join("machine.json"));
    mj["toplevel"] = serde_json::Value::Null;
    legacy_mj["toplevel"] = serde_json::Value::Null;
    assert_eq!(mj, legacy_mj);
    for f in ["bzImage", "initrd", "netboot.ipxe"] {
        assert!(dist.join(f).exists(), "{f}");
    }
    let netboot = |g: &Generation| text(&g.toplevel.join("etc/carrier/netboot.json"));
    assert_eq!(netboot(&flake["pxe-server"]), netboot(&legacy["pxe-server"]));

    // legacyNixPath without impureEval: refused, naming both settings
    std::fs::write(conf.join("configs/confctl.nix"), "{ confctl.nix.legacyNixPath = true; }\n")
        .unwrap();
    let err = c.build(&["node1"]).unwrap_err().to_string();
    assert!(err.contains("confctl.nix.legacyNixPath needs confctl.nix.impureEval"), "{err}");
}
