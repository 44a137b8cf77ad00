//! Evaluates fixture clusters with the real `nix-instantiate` through carrier's evaluator.
//! Fixtures and their expected outcomes: tests/fixtures/README.md.

use std::path::{Path, PathBuf};

use carrier_core::cluster::{Cluster, Inventory, InventoryError, Selection, Spin};
use carrier_core::conf_dir::ConfDir;
use serde_json::json;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn resolved(dir: &Path) -> ConfDir {
    ConfDir::resolve(dir).unwrap()
}

fn load(dir: &Path) -> Result<Cluster, InventoryError> {
    let cache = tempfile::tempdir().unwrap();
    Inventory::new(cache.path()).load(&resolved(dir)).map(|l| (*l.cluster).clone())
}

fn load_err(name: &str) -> String {
    match load(&fixture(name)) {
        Ok(c) => {
            panic!("{name} evaluated: {:?}", c.machines.iter().map(|m| &m.name).collect::<Vec<_>>())
        }
        Err(e) => e.to_string(),
    }
}

#[test]
fn helpers_follow_module_system_semantics() {
    let c = load(&fixture("helpers")).unwrap();
    let names: Vec<_> = c.machines.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["node1", "node2", "prg/node3", "pxe", "pxe#node1", "pxe#os/node2"]);

    let node1 = &c.get("node1").unwrap().meta_config;
    let host = node1.host.as_ref().unwrap();
    assert_eq!(host.fqdn.as_deref(), Some("node1.prg.example.org"), "fqdn derived");
    assert_eq!(host.full_domain.as_deref(), Some("prg.example.org"));
    assert_eq!(host.target.as_deref(), Some("node1.prg.example.org"), "target defaults to fqdn");
    assert_eq!(host.port, 2201, "a plain definition beats mkDefault");
    assert_eq!(node1.auto_rollback.timeout, 120, "mkForce beats a plain definition");
    assert_eq!(node1.host_generations.max, Some(40), "mkOverride 900 beats mkDefault");
    for tag in ["web", "extra", "has-os-peer"] {
        assert!(node1.tags.contains(&tag.to_string()), "lists concatenate: {:?}", node1.tags);
    }
    assert!(!node1.tags.contains(&"never".to_string()), "mkIf false drops: {:?}", node1.tags);
    assert_eq!(node1.labels.get("role"), Some(&json!("web")));
    assert_eq!(node1.labels.get("team"), Some(&json!("ops")), "attrsets merge");
    assert!(!node1.labels.contains_key("never"));
    assert!(node1.netboot.enable, "mkIf true inside mkMerge");
    assert_eq!(
        node1.addresses.primary.as_ref().unwrap().address,
        "192.0.2.11",
        "primary = first v4"
    );
    assert_eq!(
        node1.health_checks.machine_commands[0].command,
        ["curl", "-sf", "http://{host.fqdn}/"]
    );
    assert_eq!(node1.health_checks.machine_commands[0].timeout, 60, "submodule defaults");
    assert_eq!(node1.build_attribute, ["system", "build", "toplevel"]);
    assert!(node1.auto_rollback.enable);

    let node2 = c.get("node2").unwrap();
    assert_eq!(node2.meta_config.spin, Spin::Vpsadminos);
    assert_eq!(
        node2.target_host(),
        Some("node1.prg.example.org"),
        "cross reference through config"
    );

    let node3 = c.get("prg/node3").unwrap();
    assert!(node3.is_localhost());
    assert!(!node3.is_managed(), "spin other is unmanaged by default");
    assert_eq!(node3.meta_config.host.as_ref().unwrap().port, 22);

    let pxe = c.get("pxe").unwrap();
    assert!(pxe.is_carrier());
    let os = c.get("pxe#os/node2").unwrap();
    assert_eq!(os.carrier.as_deref(), Some("pxe"));
    assert_eq!(os.cluster_name, "node2");
    assert_eq!(os.profile(), "/nix/var/nix/profiles/confctl-os:node2");
    assert_eq!(os.meta_config.tags, ["os", "pxe"]);
    assert_eq!(os.meta_config.labels.get("netboot"), Some(&json!("yes")));
    assert_eq!(os.meta_config.host_generations.max, Some(5));
    assert_eq!(os.meta_config.build_attribute, ["system", "build", "dist"]);
    assert_eq!(os.extra_modules.len(), 1);
    assert!(
        os.extra_modules[0].ends_with("/helpers/cluster/pxe/pxe-only.nix"),
        "{:?}",
        os.extra_modules
    );
    assert_eq!(os.target_host(), node2.target_host(), "host is inherited");
    assert!(!os.is_runnable());
    let plain = c.get("pxe#node1").unwrap();
    assert_eq!(plain.alias, None);
    assert_eq!(plain.profile(), "/nix/var/nix/profiles/confctl-node1");
    assert!(
        plain.files.iter().any(|f| f.ends_with("helpers/cluster/node1/module.nix")),
        "{:?}",
        plain.files
    );

    let sel = Selection::parse(Some("pxe#*"), &[], &[], None).unwrap();
    let carried: Vec<_> = sel.select(&c).unwrap().into_iter().map(|m| m.name.as_str()).collect();
    assert_eq!(carried, ["pxe#node1", "pxe#os/node2"]);
}

#[test]
fn module_list_wins_and_cluster_modules_extend_options() {
    let c = load(&fixture("module-list")).unwrap();
    let names: Vec<_> = c.machines.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["listed", "nested/deep"], "unlisted/module.nix is not evaluated");
    let listed = c.get("listed").unwrap();
    assert_eq!(listed.meta_config.extra["monitoring"], json!({"enable": false, "name": "listed"}));
    let deep = c.get("nested/deep").unwrap();
    assert_eq!(deep.fqdn(), Some("deep.nested.example.org"));
    assert_eq!(deep.meta_config.extra["monitoring"]["enable"], json!(true));
}

#[test]
fn syntax_error_shows_nix_location() {
    let err = load_err("bad-syntax");
    assert!(err.contains("syntax error"), "{err}");
    assert!(err.contains("bad-syntax/cluster/node1/module.nix:"), "{err}");
}

#[test]
fn unknown_option_names_option_and_file() {
    let err = load_err("unknown-option");
    assert!(err.contains("does not exist"), "{err}");
    assert!(err.contains("'cluster.node1."), "{err}");
    assert!(err.contains("unknown-option/cluster/node1/module.nix"), "{err}");
}

#[test]
fn wrong_type_names_option_file_and_value() {
    let err = load_err("wrong-type");
    assert!(err.contains("is not of type"), "{err}");
    assert!(err.contains("'cluster.node1."), "{err}");
    assert!(err.contains("wrong-type/cluster/node1/module.nix"), "{err}");
}

#[test]
fn conflicting_definitions_name_both_files() {
    let err = load_err("conflict");
    assert!(err.contains("conflicting definitions"), "{err}");
    assert!(err.contains("conflict/cluster/node1/module.nix"), "{err}");
    assert!(err.contains("conflict/cluster/overrides/module.nix"), "{err}");
}

#[test]
fn missing_required_option_is_named() {
    let err = load_err("missing-spin");
    assert!(err.contains("spin") && err.contains("used but not defined"), "{err}");
    assert!(err.contains("missing-spin/cluster/"), "{err}");
}

fn write_cluster(dir: &Path, modules: &[(&str, &str)]) {
    for (name, body) in modules {
        let d = dir.join("cluster").join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("module.nix"), body).unwrap();
    }
}

#[test]
fn carried_entry_naming_a_missing_machine_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    write_cluster(
        tmp.path(),
        &[(
            "pxe",
            r#"{ cluster.pxe = { spin = "nixos"; carrier.enable = true; carrier.machines = [ { machine = "ghost"; } ]; }; }"#,
        )],
    );
    let err = load(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("carrier 'pxe'") && err.contains("'ghost'"), "{err}");
    assert!(err.contains("cluster/pxe/module.nix"), "{err}");
}

#[test]
fn two_carried_entries_with_one_name_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    write_cluster(
        tmp.path(),
        &[
            ("node", r#"{ cluster.node.spin = "nixos"; }"#),
            (
                "pxe",
                r#"{ cluster.pxe = { spin = "nixos"; carrier.enable = true; carrier.machines = [ { machine = "node"; } { machine = "node"; alias = null; } ]; }; }"#,
            ),
        ],
    );
    let err = load(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("'pxe#node'"), "{err}");
}

#[test]
fn missing_cluster_directory_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let err = ConfDir::resolve(&tmp.path().join("absent")).unwrap_err().to_string();
    assert!(err.contains("absent/cluster") && err.contains("does not exist"), "{err}");
}

#[test]
fn unchanged_cluster_is_not_evaluated_again() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let conf = tmp.path().join("conf");
    write_cluster(&conf, &[("a", r#"{ cluster.a = { spin = "nixos"; tags = [ "one" ]; }; }"#)]);

    let first = Inventory::new(&cache).load(&resolved(&conf)).unwrap();
    assert!(!first.cached, "first load evaluates");
    // a new Inventory (a new process) reads the on-disk cache
    let inv = Inventory::new(&cache);
    let second = inv.load(&resolved(&conf)).unwrap();
    assert!(second.cached);
    assert_eq!(first.key, second.key);
    assert_eq!(*first.cluster, *second.cluster);

    write_cluster(&conf, &[("a", r#"{ cluster.a = { spin = "nixos"; tags = [ "two" ]; }; }"#)]);
    let third = inv.load(&resolved(&conf)).unwrap();
    assert!(!third.cached, "an edit re-evaluates");
    assert_eq!(third.cluster.get("a").unwrap().meta_config.tags, ["two"]);

    // an error is not cached: fixing the file works at once
    write_cluster(&conf, &[("a", r#"{ cluster.a = { spin = "nixos"; tags = "x"; }; }"#)]);
    assert!(inv.load(&resolved(&conf)).is_err());
    write_cluster(&conf, &[("a", r#"{ cluster.a = { spin = "nixos"; tags = [ "one" ]; }; }"#)]);
    let fixed = inv.load(&resolved(&conf)).unwrap();
    assert!(fixed.cached, "back to the first content: served from the cache");
    assert_eq!(fixed.cluster.get("a").unwrap().meta_config.tags, ["one"]);
}

/// A configuration that does not evaluate is remembered by its content key like one
/// that does: asking again runs Nix again only after a file changed.
#[test]
fn a_configuration_error_is_remembered_by_content_key() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("conf");
    let inv = Inventory::new(tmp.path().join("cache"));
    for (module, error) in [
        (r#"{ cluster.a = { spin = "nixos"; tags = "x"; }; }"#, "tags"),
        (
            r#"{ cluster.a = { spin = "nixos"; carrier.enable = true; carrier.machines = [ { machine = "ghost"; } ]; }; }"#,
            "'ghost'",
        ),
    ] {
        write_cluster(&conf, &[("a", module)]);
        let first = inv.load_outcome(&resolved(&conf)).unwrap();
        let message = first.cluster.as_ref().unwrap_err().to_string();
        assert!(!first.cached && message.contains(error), "{message}");
        let again = inv.load_outcome(&resolved(&conf)).unwrap();
        assert!(again.cached, "the same content is not evaluated again");
        assert_eq!(
            (again.key, again.cluster.unwrap_err().to_string()),
            (first.key, message.clone())
        );
        assert_eq!(inv.load(&resolved(&conf)).unwrap_err().to_string(), message);
    }
}

#[test]
fn example_cluster_evaluates() {
    let c = load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster")).unwrap();
    let carriers: Vec<_> = c.carriers().map(|m| m.name.as_str()).collect();
    assert_eq!(carriers, ["pxe-server"]);
    let carried: Vec<_> = c.carried_by("pxe-server").collect();
    assert_eq!(carried.len(), 2);
    let spins: std::collections::BTreeSet<_> = carried.iter().map(|m| m.meta_config.spin).collect();
    assert_eq!(spins.len(), 2, "one nixos and one vpsadminos carried machine");
    assert!(carried.iter().any(|m| m.alias.is_some()));
}

/// The evaluator's raw output equals the golden file (`@CONFDIR@` = the fixture path).
fn assert_golden(name: &str) {
    let dir = fixture(name);
    let cache = tempfile::tempdir().unwrap();
    let evaluator = carrier_core::nix::materialize_evaluator(cache.path()).unwrap();
    let modules = carrier_core::cluster::discover_module_files(&dir.join("cluster")).unwrap();
    let argv = carrier_core::nix::eval_json_argv(
        &evaluator.join("eval-cluster.nix"),
        &[
            ("confDir", &dir.display().to_string()),
            ("moduleFilesJson", &serde_json::to_string(&modules).unwrap()),
        ],
    );
    let got: serde_json::Value =
        serde_json::from_slice(&carrier_core::nix::run(&argv).unwrap()).unwrap();
    let expected = std::fs::read_to_string(dir.join("expected.json"))
        .unwrap()
        .replace("@CONFDIR@", &dir.display().to_string());
    let expected: serde_json::Value = serde_json::from_str(&expected).unwrap();
    assert_eq!(got, expected, "{name}: evaluator output differs from expected.json");
}

#[test]
fn evaluator_output_matches_golden_files() {
    assert_golden("helpers");
    assert_golden("module-list");
}

#[test]
fn concurrent_loads_share_one_evaluation() {
    let cache = tempfile::tempdir().unwrap();
    let inventory = Inventory::new(cache.path());
    let dir = resolved(&fixture("helpers"));
    let loads: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6).map(|_| s.spawn(|| inventory.load(&dir))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let fresh = loads.iter().filter(|l| !l.as_ref().unwrap().cached).count();
    assert_eq!(fresh, 1, "Nix ran once for six concurrent loads");
    let key = &loads[0].as_ref().unwrap().key;
    assert!(cache.path().join("inventory").join(format!("{key}.json")).is_file());
    let leftovers: Vec<_> = std::fs::read_dir(cache.path().join("inventory"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "no temporary files left: {leftovers:?}");
}

#[test]
fn planted_evaluator_files_are_replaced_before_use() {
    let cache = tempfile::tempdir().unwrap();
    let evaluator = carrier_core::nix::materialize_evaluator(cache.path()).unwrap();
    // Someone with a foothold in the cache rewrites the evaluator (build-machines.nix and
    // auto-rollback.sh run as root on every target) and links a library file elsewhere.
    std::fs::write(evaluator.join("eval-cluster.nix"), "throw \"planted evaluator\"\n").unwrap();
    std::fs::write(evaluator.join("auto-rollback.sh"), "#!/bin/sh\necho planted\n").unwrap();
    let elsewhere = cache.path().join("elsewhere.nix");
    std::fs::write(&elsewhere, "throw \"planted library\"\n").unwrap();
    std::fs::remove_file(evaluator.join("lib/modules.nix")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, evaluator.join("lib/modules.nix")).unwrap();
    std::fs::write(evaluator.join("extra.nix"), "throw \"planted extra\"\n").unwrap();

    let loaded = Inventory::new(cache.path())
        .load(&resolved(&fixture("helpers")))
        .expect("the embedded evaluator is used");
    assert!(!loaded.cached);
    assert!(loaded.cluster.get("prg/node3").is_some());
    for (rel, content) in carrier_core::nix::EVALUATOR_FILES {
        let path = evaluator.join(rel);
        assert!(
            !path.symlink_metadata().unwrap().file_type().is_symlink(),
            "{rel} is still a link"
        );
        assert_eq!(&std::fs::read_to_string(&path).unwrap(), content, "{rel}");
    }
    assert!(!evaluator.join("extra.nix").exists(), "unknown files are not kept");
}

/// Loads `conf` while this thread serves the FIFO `cluster/a/gate`, which the module reads
/// before `tag.json`: each time the gate can be opened (Nix has it open for reading),
/// `on_open` runs with the number of opens so far, then the gate is written and closed. Nix blocks on the gate, so an edit
/// made in `on_open` lands after carrier hashed the files and before Nix reads tag.json.
fn load_through_gate(
    inventory: &Inventory,
    conf: &Path,
    mut on_open: impl FnMut(usize),
) -> Result<carrier_core::cluster::Loaded, InventoryError> {
    use std::os::unix::fs::OpenOptionsExt;
    let gate = conf.join("cluster/a/gate");
    let started = std::time::Instant::now();
    let result = std::thread::scope(|s| {
        let load = s.spawn(|| inventory.load(&resolved(conf)));
        let mut opens = 0;
        // Nothing in this loop may panic: the scope would wait for the load, and the
        // load for Nix, which waits at the gate for this loop.
        while !load.is_finished() {
            // Succeeds only while a reader (Nix) has the FIFO open.
            match std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&gate)
            {
                Ok(mut w) => {
                    opens += 1;
                    on_open(opens);
                    // EPIPE when Nix closed the gate after the open: it has read already.
                    let _ = std::io::Write::write_all(&mut w, b"open");
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        load.join().unwrap()
    });
    assert!(
        started.elapsed() < std::time::Duration::from_secs(120),
        "the load took {:?}",
        started.elapsed()
    );
    result
}

#[test]
fn an_edit_during_evaluation_is_not_cached_under_the_old_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let conf = tmp.path().join("conf");
    write_cluster(
        &conf,
        &[(
            "a",
            r#"{ cluster.a = { spin = "nixos"; tags = builtins.seq (builtins.readFile ./gate) [ (builtins.fromJSON (builtins.readFile ./tag.json)) ]; }; }"#,
        )],
    );
    let tag = conf.join("cluster/a/tag.json");
    std::fs::write(&tag, "\"one\"").unwrap();
    let gate = conf.join("cluster/a/gate");
    let c = std::ffi::CString::new(gate.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");

    // tag.json changes while Nix waits at the gate: carrier hashed "one", Nix reads "two".
    let first = load_through_gate(&Inventory::new(&cache), &conf, |n| {
        if n == 1 {
            // (an error here only shows as the wrong tags below)
            let _ = std::fs::write(&tag, "\"two\"");
        }
    })
    .unwrap();
    assert_eq!(first.cluster.get("a").unwrap().meta_config.tags, ["two"]);

    // Back to "one" (a new process): the result of "two" must not be served for it.
    std::fs::write(&tag, "\"one\"").unwrap();
    let second = load_through_gate(&Inventory::new(&cache), &conf, |_| {}).unwrap();
    assert_eq!(
        second.cluster.get("a").unwrap().meta_config.tags,
        ["one"],
        "cached: {}",
        second.cached
    );
    // And "two" again: served from the cache, under its own key (the first load evaluated
    // again once the files had changed, and stored that stable result).
    std::fs::write(&tag, "\"two\"").unwrap();
    let third = load_through_gate(&Inventory::new(&cache), &conf, |_| {}).unwrap();
    assert_eq!(third.cluster.get("a").unwrap().meta_config.tags, ["two"]);
    assert!(third.cached, "the result for \"two\" was stored under its key");
}

/// Writes `cluster/m/module.nix` defining `cluster.<name>` with `body` and returns the error.
fn load_machine_err(name: &str, body: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    // A JSON string is a Nix string for these names (no `${`, no \u escapes).
    let quoted = serde_json::to_string(name).unwrap();
    write_cluster(tmp.path(), &[("m", &format!("{{ cluster.{quoted} = {body}; }}"))]);
    match load(tmp.path()) {
        Ok(c) => panic!(
            "{name:?} was accepted: {:?}",
            c.machines.iter().map(|m| &m.name).collect::<Vec<_>>()
        ),
        Err(e) => e.to_string(),
    }
}

#[test]
fn machine_names_that_would_be_paths_are_refused() {
    for (name, shown) in [
        ("..", "'..'"),
        (".", "'.'"),
        ("prg/../../etc", "'prg/../../etc'"),
        ("/abs", "'/abs'"),
        ("prg//node", "'prg//node'"),
        ("prg/", "'prg/'"),
        ("./node", "'./node'"),
        ("node\n1", "'node\\n1'"),
    ] {
        let err = load_machine_err(name, r#"{ spin = "nixos"; }"#);
        assert!(err.contains(&format!("machine {shown}")), "{name:?}: {err}");
        assert!(err.contains("cluster/m/module.nix"), "{name:?}: {err}");
    }
    // A carried alias becomes a profile and a netboot directory name.
    let tmp = tempfile::tempdir().unwrap();
    write_cluster(
        tmp.path(),
        &[
            ("node", r#"{ cluster.node.spin = "nixos"; }"#),
            (
                "pxe",
                r#"{ cluster.pxe = { spin = "nixos"; carrier.enable = true; carrier.machines = [ { machine = "node"; alias = ".."; } ]; }; }"#,
            ),
        ],
    );
    let err = load(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("machine 'pxe'") && err.contains("alias '..'"), "{err}");
    // Names with `/` that stay inside their directory remain fine (see helpers: prg/node3, os/node2).
}

#[test]
fn host_targets_that_would_be_options_are_refused() {
    for (target, shown) in [
        ("-oProxyCommand=touch /tmp/pwned", "'-oProxyCommand=touch /tmp/pwned'"),
        ("node 1", "'node 1'"),
        ("node\t1", "'node\\t1'"),
        ("node1\n", "'node1\\n'"),
        ("", "''"),
    ] {
        let body = format!(
            r#"{{ spin = "nixos"; host.target = {}; }}"#,
            serde_json::to_string(target).unwrap()
        );
        let err = load_machine_err("node1", &body);
        assert!(
            err.contains("machine 'node1'") && err.contains(&format!("host.target {shown}")),
            "{target:?}: {err}"
        );
    }
    // Without `host`, the machine name is the target.
    let err = load_machine_err("-node1", r#"{ spin = "nixos"; }"#);
    assert!(err.contains("machine '-node1'") && err.contains("ssh target '-node1'"), "{err}");
}
