//! The remote reads and changes against scripted hosts (`remote::fake`): which commands
//! run where, and how their output is read. server/tests/generation.rs proves the same
//! paths against real lab hosts with real Nix.

use super::remote::{Deletion, deletions};
use super::*;
use crate::cluster::Machine;
use crate::conf_dir::ConfDir;
use crate::remote::fake::{FakeHost, FakeHosts, Reply};

const DAY: i64 = 24 * 60 * 60;

/// A host generation `n` of `machine` on `<machine>.lab`, `age` days before day 100.
pub(crate) fn record(machine: &str, n: u64, age: i64, current: bool) -> Record {
    let date = jiff::Timestamp::from_second((100 - age) * DAY).unwrap();
    Record {
        machine: machine.into(),
        name: format!("g{n}"),
        date,
        store_path: format!("/nix/store/{machine}-{n}"),
        build: None,
        host: Some(HostPart {
            number: n,
            current,
            host: format!("{machine}.lab"),
            port: 22,
            profile: "/nix/var/nix/profiles/system".into(),
            carrier: None,
        }),
        kernel: None,
        version: None,
        revision: None,
    }
}

fn standalone(machine: &str) -> RemoteTarget {
    RemoteTarget {
        machine: machine.into(),
        host: format!("{machine}.lab"),
        port: 22,
        profile: "/nix/var/nix/profiles/system".into(),
        carrier: None,
    }
}

fn carried(carrier: &str, alias: &str) -> RemoteTarget {
    RemoteTarget {
        machine: format!("{carrier}#{alias}"),
        host: format!("{carrier}.lab"),
        port: 22,
        profile: format!("/nix/var/nix/profiles/confctl-{alias}"),
        carrier: Some(carrier.into()),
    }
}

fn carried_record(carrier: &str, alias: &str, n: u64, current: bool) -> Record {
    let t = carried(carrier, alias);
    let mut r = record(&t.machine, n, 1, current);
    r.host =
        Some(HostPart { host: t.host, profile: t.profile, carrier: t.carrier, ..r.host.unwrap() });
    r
}

const SYSTEM: &str = "/nix/var/nix/profiles/system";

#[tokio::test]
async fn host_generations_are_read_with_the_profile_as_an_argument() {
    let host = FakeHost::new("node1.lab");
    let listing = format!(
        "/nix/store/bbb-b\n\
         {SYSTEM}-2-link;/nix/store/bbb-b;200000;/nix/store/kkk-linux-6.6.1/bzImage;26.05.lab\n\
         {SYSTEM}-1-link;/nix/store/aaa-a;100000;;\n\
         {SYSTEM}-x-1-link;/nix/store/ccc-c;100000;;\n"
    );
    host.reply("sh -c", [Reply::ok(&listing)]);
    let results = list_remote(&FakeHosts::new(&[&host]), &[standalone("node1")]).await;
    let gens = results.into_iter().next().unwrap().unwrap();
    assert_eq!(gens.len(), 2, "the link of another profile is dropped: {gens:?}");
    let (g1, g2) = (&gens[0], &gens[1]);
    assert_eq!((g1.host.as_ref().unwrap().number, g1.is_current()), (1, false));
    assert_eq!((g2.host.as_ref().unwrap().number, g2.is_current()), (2, true));
    assert_eq!(g2.kernel.as_deref(), Some("6.6.1"));
    assert_eq!(g2.version.as_deref(), Some("26.05.lab"));
    assert_eq!(g1.date.as_second(), 100000);
    assert_eq!(g1.name, approx_name(g1.date));
    let log = host.log();
    assert_eq!(log.len(), 1);
    assert!(log[0].starts_with("sh -c p=$1"), "{log:?}");
    assert!(log[0].ends_with(&format!(" sh {SYSTEM}")), "the profile is $1: {log:?}");
}

#[tokio::test]
async fn carried_generations_come_from_the_carriers_profile_list() {
    let carrier = FakeHost::new("pxe.lab");
    let t = carried("pxe", "node1");
    let json = serde_json::json!([
        {"name": "node1", "path": t.profile, "current": "/nix/store/d2",
         "generations": [
            {"number": 1, "time": 1000, "date": "x", "current": false, "store_path": "/nix/store/d1",
             "machine": {"toplevel": "/nix/store/t1", "version": "26.05", "revision": "abc"}, "error": null},
            {"number": 2, "time": 2000, "date": "x", "current": true, "store_path": "/nix/store/d2",
             "machine": null, "error": "unreadable"}]},
        {"name": "other", "path": "/nix/var/nix/profiles/confctl-other", "current": null,
         "generations": [{"number": 7, "time": 1, "date": "x", "current": true,
             "store_path": "/nix/store/o", "machine": null, "error": null}]}
    ]);
    carrier.reply("carrier profile list", [Reply::ok(&json.to_string())]);
    let gens = list_remote(&FakeHosts::new(&[&carrier]), std::slice::from_ref(&t))
        .await
        .pop()
        .unwrap()
        .unwrap();
    assert_eq!(gens.len(), 2, "only this machine's profile");
    assert_eq!(gens[0].version.as_deref(), Some("26.05"));
    assert_eq!(gens[0].revision.as_deref(), Some("abc"));
    assert!(
        gens[1].is_current() && gens[1].host.as_ref().unwrap().carrier.as_deref() == Some("pxe")
    );
    assert_eq!(carrier.log(), [format!("carrier profile list -p {} --json", t.profile)]);
}

#[tokio::test]
async fn an_unreachable_host_fails_only_its_machines() {
    let up = FakeHost::new("node1.lab");
    up.reply("sh -c", [Reply::ok("\n")]);
    let down = FakeHost::new("node2.lab");
    down.unreachable();
    let results =
        list_remote(&FakeHosts::new(&[&up, &down]), &[standalone("node1"), standalone("node2")])
            .await;
    assert!(results[0].as_ref().unwrap().is_empty());
    let e = results[1].as_ref().unwrap_err().to_string();
    assert_eq!(e, "cannot connect to node2.lab: Connection refused");
}

#[test]
fn carried_deletions_are_one_command_per_carrier() {
    let a1 = carried_record("pxe", "a", 1, false);
    let a2 = carried_record("pxe", "a", 2, false);
    let b3 = carried_record("pxe", "b", 3, false);
    let n1 = record("node1", 4, 1, false);
    let d = deletions(&[&a1, &b3, &n1, &a2]);
    assert_eq!(
        d,
        [
            Deletion {
                host: "node1.lab".into(),
                port: 22,
                argv: ["nix-env", "-p", SYSTEM, "--delete-generations", "4"]
                    .map(String::from)
                    .into(),
            },
            Deletion {
                host: "pxe.lab".into(),
                port: 22,
                argv: [
                    "carrier",
                    "profile",
                    "delete-generations",
                    "-p",
                    "/nix/var/nix/profiles/confctl-a",
                    "-p",
                    "/nix/var/nix/profiles/confctl-b",
                    "1,2",
                    "3",
                ]
                .map(String::from)
                .into(),
            },
        ]
    );
}

#[tokio::test]
async fn removal_runs_the_deletions_and_never_touches_a_current_generation() {
    let carrier = FakeHost::new("pxe.lab");
    carrier.reply("carrier profile delete-generations", [Reply::ok("")]);
    let node = FakeHost::new("node1.lab");
    node.reply("nix-env", [Reply::fail("error: no such profile")]);
    let hosts = FakeHosts::new(&[&carrier, &node]);

    let current = carried_record("pxe", "a", 2, true);
    let old = carried_record("pxe", "a", 1, false);
    let e = remove_remote(&hosts, &[&old, &current]).await.unwrap_err().to_string();
    assert_eq!(e, "generation g2 of pxe#a is the current one: it is never removed");
    assert!(carrier.log().is_empty(), "nothing ran: {:?}", carrier.log());

    let n = record("node1", 1, 1, false);
    let results = remove_remote(&hosts, &[&old, &n]).await.unwrap();
    assert_eq!(
        carrier.log(),
        ["carrier profile delete-generations -p /nix/var/nix/profiles/confctl-a 1"]
    );
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, "node1.lab");
    assert!(
        failed[0].1.as_ref().unwrap_err().to_string().contains("error: no such profile"),
        "{results:?}"
    );
}

#[tokio::test]
async fn garbage_collection_reports_nix_summary_line() {
    let a = FakeHost::new("a.lab");
    a.reply(
        "nix-collect-garbage",
        [Reply::ok("finding garbage collector roots...\ndeleting '/nix/store/x'\n3 store paths deleted, 1.20 MiB freed\n")],
    );
    let b = FakeHost::new("b.lab");
    b.reply("nix-collect-garbage", [Reply::fail("error: cannot lock")]);
    let targets = [("a.lab".to_string(), 22), ("b.lab".to_string(), 22)];
    let out = collect_garbage(&FakeHosts::new(&[&a, &b]), &targets, 1).await;
    assert_eq!(out[0].0, "a.lab");
    assert_eq!(out[0].1.as_ref().unwrap(), "3 store paths deleted, 1.20 MiB freed");
    assert!(out[1].1.as_ref().unwrap_err().to_string().contains("cannot lock"));
    assert_eq!(a.log(), ["nix-collect-garbage"]);
}

#[test]
fn unification_joins_equal_store_paths() {
    let host = vec![record("m", 1, 3, false), record("m", 2, 1, true)];
    let mut build = record("m", 9, 2, true);
    build.store_path = "/nix/store/m-2".into();
    build.name = "2026-01-01--00-00-00".into();
    build.build = Some(BuildPart { name: build.name.clone(), dir: "/c/x".into(), current: true });
    build.host = None;
    let mut lone = build.clone();
    lone.store_path = "/nix/store/other".into();
    lone.name = "2026-01-02--00-00-00".into();
    let u = unify(host, vec![build, lone]);
    assert_eq!(u.len(), 3);
    assert_eq!(u[2].presence(), "build+host");
    assert_eq!(u[2].name, "2026-01-01--00-00-00");
    assert_eq!(u[2].current_str(), "build+host");
    assert_eq!(u[1].presence(), "build", "ordered by date: {u:?}");
    assert_eq!(u[0].presence(), "host");
}

#[test]
fn local_removal_takes_the_directory_and_its_roots() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = conf_dir(&tmp);
    let roots = tmp.path().join("roots");
    std::fs::create_dir_all(&roots).unwrap();
    for (name, day) in [("2026-01-01--00-00-00", "01"), ("2026-01-02--00-00-00", "02")] {
        let dir = build_gens::machine_dir(&conf, "a/b").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let json = serde_json::json!({"mode": "swpins", "date": format!("2026-01-{day}T00:00:00Z"),
            "toplevel": format!("/nix/store/{day}"), "swpins": {}});
        std::fs::write(dir.join("generation.json"), json.to_string()).unwrap();
        for suffix in ["toplevel", "auto_rollback"] {
            std::os::unix::fs::symlink(
                "/nix/store/x",
                roots.join(format!("a:b-generation-{name}-{suffix}")),
            )
            .unwrap();
        }
    }
    std::os::unix::fs::symlink(
        "2026-01-02--00-00-00",
        build_gens::machine_dir(&conf, "a/b").join("current"),
    )
    .unwrap();
    let gens = local(&conf, "a/b");
    assert_eq!(gens.iter().map(Record::is_current).collect::<Vec<_>>(), [false, true]);
    let e = remove_local(&conf, &roots, &gens[1]).unwrap_err().to_string();
    assert!(e.contains("is the current one"), "{e}");
    remove_local(&conf, &roots, &gens[0]).unwrap();
    let left: Vec<String> = local(&conf, "a/b").into_iter().map(|r| r.name).collect();
    assert_eq!(left, ["2026-01-02--00-00-00"]);
    let mut roots_left: Vec<String> = std::fs::read_dir(&roots)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    roots_left.sort();
    assert_eq!(
        roots_left,
        [
            "a:b-generation-2026-01-02--00-00-00-auto_rollback",
            "a:b-generation-2026-01-02--00-00-00-toplevel"
        ]
    );
    let entries = std::fs::read_dir(build_gens::machine_dir(&conf, "a/b")).unwrap().count();
    assert_eq!(entries, 2, "the kept generation and `current`, nothing hidden left");
}

/// node1 (standalone, host `node1`) and pxe#node1 (carried by `pxe`).
fn cluster() -> crate::cluster::Cluster {
    use crate::cluster::Spin;
    use crate::cluster::model::tests::machine;
    let mut carried = machine("node1", Spin::Nixos);
    carried.name = "pxe#node1".into();
    carried.carrier = Some("pxe".into());
    let mut pxe = machine("pxe", Spin::Nixos);
    pxe.meta_config.carrier.enable = true;
    crate::cluster::Cluster { machines: vec![machine("node1", Spin::Nixos), pxe, carried] }
}

/// A local build generation of `machine` holding `toplevel`.
/// An empty configuration directory in `tmp`.
fn conf_dir(tmp: &tempfile::TempDir) -> ConfDir {
    std::fs::create_dir_all(tmp.path().join("conf")).unwrap();
    ConfDir::resolve(&tmp.path().join("conf")).unwrap()
}

fn build_generation(conf: &ConfDir, machine: &str, day: u32, toplevel: &str) {
    let name = format!("2026-01-0{day}--00-00-00");
    let dir = build_gens::machine_dir(conf, machine).join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let json = serde_json::json!({"mode": "swpins", "date": format!("2026-01-0{day}T00:00:00Z"),
        "toplevel": toplevel, "swpins": {}});
    std::fs::write(dir.join("generation.json"), json.to_string()).unwrap();
}

#[tokio::test]
async fn gather_and_remove_old_generations_with_gc_where_it_applies() {
    let tmp = tempfile::tempdir().unwrap();
    let (conf, roots) = (conf_dir(&tmp), tmp.path().join("roots"));
    build_generation(&conf, "node1", 1, "/nix/store/lone");
    build_generation(&conf, "node1", 2, "/nix/store/n3");
    let node1 = FakeHost::new("node1");
    node1.reply(
        "sh -c",
        [Reply::ok(&format!(
            "/nix/store/n3\n{SYSTEM}-1-link;/nix/store/n1;100;;\n\
             {SYSTEM}-2-link;/nix/store/n2;200;;\n{SYSTEM}-3-link;/nix/store/n3;300;;\n"
        ))],
    );
    node1.reply("nix-env", [Reply::ok("")]);
    node1.reply("nix-collect-garbage", [Reply::ok("0 store paths deleted, 0.00 MiB freed")]);
    let pxe = carrier_with_node1();
    pxe.reply("carrier profile delete-generations", [Reply::ok("")]);
    pxe.reply("nix-collect-garbage", [Reply::ok("2 store paths deleted, 1.00 MiB freed")]);
    let hosts = FakeHosts::new(&[&node1, &pxe]);
    let cluster = cluster();
    let machines: Vec<&Machine> =
        ["node1", "pxe#node1"].iter().map(|n| cluster.get(n).unwrap()).collect();

    let gathered = gather(&cluster, &machines, &conf, &hosts, true, true).await;
    assert!(gathered.errors.is_empty(), "{:?}", gathered.errors);
    let (_, node1_gens) = &gathered.machines[0];
    let presence: Vec<&str> = node1_gens.iter().map(Record::presence).collect();
    assert_eq!(presence, ["host", "host", "build+host", "build"], "{node1_gens:?}");
    assert_eq!(node1_gens[2].current_str(), "build+host", "no `current` link: the newest build");

    let old: Selector = "old".parse().unwrap();
    let now = jiff::Timestamp::now();
    let mut picked: Vec<&Record> = Vec::new();
    for (_, g) in &gathered.machines {
        picked.extend(old.select(g, now).unwrap().into_iter().map(|i| &g[i]));
    }
    let lines = std::sync::Mutex::new(Vec::new());
    let on_line = |l: String| lines.lock().unwrap().push(l);
    let gc_on = |m: &Machine| m.name == "pxe";
    let removed = remove(
        &cluster,
        &conf,
        &roots,
        &hosts,
        &picked,
        Gc { on: &gc_on, max_concurrent: 5 },
        &on_line,
    )
    .await
    .unwrap();
    assert!(removed.success(), "{removed:?}");
    assert_eq!(node1.logged("nix-env"), [format!("nix-env -p {SYSTEM} --delete-generations 1 2")]);
    assert_eq!(
        pxe.logged("carrier profile delete"),
        ["carrier profile delete-generations -p /nix/var/nix/profiles/confctl-node1 1"]
    );
    assert!(node1.logged("nix-collect-garbage").is_empty(), "node1's GC is off");
    assert_eq!(removed.gc.len(), 1);
    assert_eq!(removed.gc[0].0, "pxe");
    assert_eq!(local(&conf, "node1").len(), 1, "the lone build generation is gone");
    let lines = lines.into_inner().unwrap();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines.contains(&"Removing build generation node1@2026-01-01--00-00-00".to_string()));
}

#[tokio::test]
async fn a_failed_deletion_gets_no_garbage_collection() {
    let node1 = FakeHost::new("node1");
    node1.reply("nix-env", [Reply::fail("error: cannot delete")]);
    let hosts = FakeHosts::new(&[&node1]);
    let cluster = cluster();
    let mut r = record("node1", 1, 1, false);
    r.host.as_mut().unwrap().host = "node1".into();
    let tmp = tempfile::tempdir().unwrap();
    let removed = remove(
        &cluster,
        &conf_dir(&tmp),
        tmp.path(),
        &hosts,
        &[&r],
        Gc { on: &|_| true, max_concurrent: 5 },
        &|_| {},
    )
    .await
    .unwrap();
    assert!(!removed.success());
    assert!(removed.errors[0].starts_with("node1: running `nix-env"), "{:?}", removed.errors);
    assert!(removed.gc.is_empty());
    assert!(node1.logged("nix-collect-garbage").is_empty());
}

#[tokio::test]
async fn one_remote_generation_is_found_by_number_unless_current_or_unknown() {
    let pxe = carrier_with_node1();
    let hosts = FakeHosts::new(&[&pxe]);
    let cluster = cluster();
    let m = cluster.get("pxe#node1").unwrap();

    let found = remote_generation(&cluster, m, &hosts, 1).await.unwrap();
    assert_eq!(found.store_path, "/nix/store/d1");
    assert_eq!(found.host.as_ref().unwrap().carrier.as_deref(), Some("pxe"));
    let e = remote_generation(&cluster, m, &hosts, 2).await.unwrap_err();
    assert_eq!(e.to_string(), "generation 2 of pxe#node1 is the current one: it is never removed");
    let e = remote_generation(&cluster, m, &hosts, 7).await.unwrap_err();
    assert_eq!(e.to_string(), "pxe#node1 has no generation 7 on pxe");
}

/// The carrier `pxe`, whose `carrier profile list` shows `confctl-node1` with generations
/// 1 and 2 (current).
fn carrier_with_node1() -> std::sync::Arc<FakeHost> {
    let pxe = FakeHost::new("pxe");
    let generation = |n: u64, current: bool| {
        serde_json::json!({"number": n, "time": n * 100, "date": "x", "current": current,
            "store_path": format!("/nix/store/d{n}"), "machine": null, "error": null})
    };
    let listing = serde_json::json!([{"name": "node1",
        "path": "/nix/var/nix/profiles/confctl-node1", "current": "/nix/store/d2",
        "generations": [generation(1, false), generation(2, true)]}]);
    pxe.reply("carrier profile list", [Reply::ok(&listing.to_string())]);
    pxe
}
