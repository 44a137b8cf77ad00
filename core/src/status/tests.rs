//! The states of `read_on` against scripted hosts (`remote::fake`), on a paused clock.
//! server/tests/status.rs proves the same paths against real lab hosts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::carrier::profiles::{GenerationListing, ProfileListing};
use crate::remote::fake::{FakeHost, FakeHosts, Reply};

const CURRENT: &str = "/run/current-system";
const BOOTED: &str = "/run/booted-system";
const SYSTEM: &str = read::SYSTEM_PROFILE;
const BUILT_B: i64 = 1_700_086_400;

fn store(name: &str) -> String {
    format!("/nix/store/{name}")
}

/// `machine` on its own host, built twice (`a`, then `b`): `b` is desired.
fn standalone(machine: &str) -> StatusTarget {
    StatusTarget {
        machine: machine.into(),
        host: format!("{machine}.lab"),
        port: 22,
        kind: Kind::Standalone,
        desired: Some(Desired {
            generation: "gen-b".into(),
            toplevel: store(&format!("{machine}-b")).into(),
            built: Some(BUILT_B),
        }),
        built: vec![
            ("gen-a".into(), store(&format!("{machine}-a")).into()),
            ("gen-b".into(), store(&format!("{machine}-b")).into()),
        ],
        checkin: None,
    }
}

fn carried(carrier: &str, alias: &str) -> StatusTarget {
    let machine = format!("{carrier}#{alias}");
    StatusTarget {
        machine: machine.clone(),
        host: format!("{carrier}.lab"),
        kind: Kind::Carried {
            carrier: carrier.into(),
            profile: format!("/nix/var/nix/profiles/confctl-{alias}"),
        },
        desired: Some(Desired {
            generation: "gen-b".into(),
            toplevel: store(&format!("{alias}-dist-b")).into(),
            built: Some(BUILT_B),
        }),
        built: vec![
            ("gen-a".into(), store(&format!("{alias}-dist-a")).into()),
            ("gen-b".into(), store(&format!("{alias}-dist-b")).into()),
        ],
        ..standalone(carrier)
    }
}

/// A host whose links say it runs, boots and will boot `<machine>-<on>`.
fn host_on(machine: &str, on: &str) -> Arc<FakeHost> {
    let host = FakeHost::new(&format!("{machine}.lab"));
    for link in [CURRENT, BOOTED, SYSTEM] {
        host.link(link, &store(&format!("{machine}-{on}")));
    }
    host.file("/proc/uptime", "4500.25 8000.00\n");
    host
}

/// A carried profile whose current generation `number` holds `store_path`.
fn profile(alias: &str, generations: &[(u64, &str, i64)], current: u64) -> ProfileListing {
    ProfileListing {
        name: alias.into(),
        path: format!("/nix/var/nix/profiles/confctl-{alias}").into(),
        current: generations
            .iter()
            .find(|g| g.0 == current)
            .map(|g| PathBuf::from(store(g.1))),
        generations: generations
            .iter()
            .map(|&(number, path, time)| GenerationListing {
                number,
                time,
                date: String::new(),
                current: number == current,
                store_path: store(path).into(),
                machine: Some(
                    crate::carrier::profiles::MachineJson::from_value(
                        std::path::Path::new("machine.json"),
                        serde_json::json!({"toplevel": store(path), "inputs-info": {"nixpkgs": {"rev": path}}}),
                    )
                    .unwrap(),
                ),
                error: None,
            })
            .collect(),
    }
}

fn listing_reply(host: &FakeHost, profiles: &[ProfileListing]) {
    let json = serde_json::to_string(profiles).unwrap();
    host.reply("carrier profile list", [Reply::ok(&json)]);
}

async fn status(targets: &[StatusTarget], hosts: &[&Arc<FakeHost>]) -> StatusReport {
    let run = read_on(targets, FakeHosts::new(hosts));
    tokio::time::timeout(Duration::from_secs(3600), run).await.expect("the read ended")
}

fn by_name<'a>(report: &'a StatusReport, machine: &str) -> &'a MachineStatus {
    report.machines.iter().find(|m| m.machine == machine).expect("machine in the report")
}

#[tokio::test(start_paused = true)]
async fn a_host_on_the_desired_generation_is_up_to_date() {
    let host = host_on("n1", "b");
    let report = status(&[standalone("n1")], &[&host]).await;
    let m = by_name(&report, "n1");
    assert_eq!((m.state, m.detail.as_deref()), (State::UpToDate, None));
    assert_eq!(m.drift_since, None);
    let system = m.system.as_ref().unwrap();
    assert_eq!(system.uptime, Some(4500.25));
    assert_eq!(system.current, Some(store("n1-b").into()));
    assert_eq!(host.logged("sh -c").len(), 1, "one command reads the host: {:?}", host.log());
    assert_eq!(host.log().len(), 1, "{:?}", host.log());
}

#[tokio::test(start_paused = true)]
async fn a_host_on_an_older_build_is_outdated_since_the_desired_build() {
    let host = host_on("n1", "a");
    let report = status(&[standalone("n1")], &[&host]).await;
    let m = by_name(&report, "n1");
    assert_eq!(m.state, State::Outdated);
    assert_eq!(m.detail.as_deref(), Some("running generation gen-a"));
    assert_eq!(m.drift_since, Some(BUILT_B), "the profile's time is unknown here");
}

#[tokio::test(start_paused = true)]
async fn boot_next_or_booted_other_is_reboot_pending() {
    // deployed with `boot`: the profile is the desired generation, the running one is not
    let host = host_on("n1", "a");
    host.link(SYSTEM, &store("n1-b"));
    let m = status(&[standalone("n1")], &[&host]).await.machines.remove(0);
    assert_eq!(m.state, State::RebootPending);
    assert_eq!(
        m.detail.as_deref(),
        Some("the desired generation boots next; running generation gen-a")
    );

    // switched to the desired generation, booted the previous one
    let host = host_on("n1", "b");
    host.link(BOOTED, &store("n1-a"));
    let m = status(&[standalone("n1")], &[&host]).await.machines.remove(0);
    assert_eq!(m.state, State::RebootPending);
    assert_eq!(
        m.detail.as_deref(),
        Some("running the desired generation, booted generation gen-a")
    );

    // the drift began when the profile was set, after the build
    let host = host_on("n1", "a");
    let answer = format!(
        "current {}\nprofile {}\nprofile-time {}\n",
        store("n1-a"),
        store("n1-b"),
        BUILT_B + 600
    );
    host.reply("sh -c", [Reply::ok(&answer)]);
    let m = status(&[standalone("n1")], &[&host]).await.machines.remove(0);
    assert_eq!((m.state, m.drift_since), (State::RebootPending, Some(BUILT_B + 600)));

    // no /run/booted-system (the host cannot say): not a reason for a reboot
    let host = host_on("n1", "b");
    host.reply("sh -c", [Reply::ok(&format!("current {0}\nprofile {0}\n", store("n1-b")))]);
    let m = status(&[standalone("n1")], &[&host]).await.machines.remove(0);
    assert_eq!(m.state, State::UpToDate);
}

#[tokio::test(start_paused = true)]
async fn activated_with_test_is_outdated_because_the_next_boot_is_not_desired() {
    let host = host_on("n1", "a");
    host.link(CURRENT, &store("n1-b"));
    let m = status(&[standalone("n1")], &[&host]).await.machines.remove(0);
    assert_eq!(m.state, State::Outdated);
    assert_eq!(
        m.detail.as_deref(),
        Some(
            "running the desired generation, but the system profile (what boots next) is generation gen-a"
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_system_carrier_never_built_is_foreign() {
    let host = host_on("n1", "a");
    host.link(CURRENT, "/nix/store/hand-made");
    host.link(SYSTEM, "/nix/store/hand-made");
    let m = status(&[standalone("n1")], &[&host]).await.machines.remove(0);
    assert_eq!(m.state, State::Foreign);
    assert_eq!(
        m.detail.as_deref(),
        Some("running /nix/store/hand-made, which carrier did not build")
    );
}

/// A host that never activated anything: outdated when there is something to deploy,
/// unknown (saying both) when not.
#[tokio::test(start_paused = true)]
async fn a_host_without_a_system_is_outdated_or_unknown() {
    let host = FakeHost::new("n1.lab");
    let m = status(&[standalone("n1")], &[&host]).await.machines.remove(0);
    assert_eq!(m.state, State::Outdated);
    assert_eq!(m.detail.as_deref(), Some("nothing activated (/run/current-system does not exist)"));
    assert_eq!(m.drift_since, Some(BUILT_B));

    let mut t = standalone("n1");
    t.desired = None;
    t.built.clear();
    let m = status(&[t], &[&host]).await.machines.remove(0);
    assert_eq!(m.state, State::Unknown);
    assert_eq!(
        m.detail.as_deref(),
        Some(
            "no local build generation (run carrier build); nothing activated (/run/current-system does not exist)"
        )
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_without_a_build_or_a_readable_answer() {
    let host = host_on("n1", "a");
    let mut t = standalone("n1");
    t.desired = None;
    t.built.clear();
    let m = status(&[t], &[&host]).await.machines.remove(0);
    assert_eq!(m.state, State::Unknown);
    assert_eq!(
        m.detail.as_deref(),
        Some("no local build generation (run carrier build); running /nix/store/n1-a")
    );

    let host = host_on("n1", "a");
    host.reply("sh -c", [Reply::fail("sh: readlink: not found")]);
    let m = status(&[standalone("n1")], &[&host]).await.machines.remove(0);
    assert_eq!(m.state, State::Unknown);
    assert_eq!(
        m.detail.as_deref(),
        Some("reading the system state on n1.lab: exit status 1: sh: readlink: not found")
    );
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_host_says_why_and_the_others_are_read() {
    let down = host_on("n1", "b");
    down.unreachable();
    let up = host_on("n2", "b");
    let report = status(&[standalone("n1"), standalone("n2")], &[&down, &up]).await;
    let m = by_name(&report, "n1");
    assert_eq!(m.state, State::Unreachable);
    assert_eq!(m.detail.as_deref(), Some("cannot connect to n1.lab: Connection refused"));
    assert_eq!(by_name(&report, "n2").state, State::UpToDate);
}

/// Hosts are read at the same time: two hosts that never answer cost one deadline.
#[tokio::test(start_paused = true)]
async fn hosts_are_read_in_parallel() {
    let (a, b) = (host_on("n1", "b"), host_on("n2", "b"));
    for h in [&a, &b] {
        h.reply("sh -c", [Reply::Hang]);
    }
    let started = tokio::time::Instant::now();
    let report = status(&[standalone("n1"), standalone("n2")], &[&a, &b]).await;
    assert!(report.machines.iter().all(|m| m.state == State::Unreachable), "{report:?}");
    assert_eq!(
        by_name(&report, "n1").detail.as_deref(),
        Some("`sh -c <status read>` did not finish within 900 s and was killed (on n1.lab)")
    );
    assert_eq!(started.elapsed(), Duration::from_secs(900), "one deadline, not two");
}

#[tokio::test(start_paused = true)]
async fn carried_machines_are_read_through_one_listing_on_their_carrier() {
    let carrier = host_on("pxe", "b");
    listing_reply(
        &carrier,
        &[
            profile("x", &[(1, "x-dist-a", 10), (2, "x-dist-b", 20)], 2),
            profile("y", &[(1, "y-dist-a", BUILT_B + 50)], 1),
            profile("z", &[(1, "other", 30)], 1),
        ],
    );
    let targets = [
        standalone("pxe"),
        carried("pxe", "x"),
        carried("pxe", "y"),
        carried("pxe", "z"),
        carried("pxe", "w"),
    ];
    let report = status(&targets, &[&carrier]).await;
    assert_eq!(report.connections, 1, "one connection to the carrier");
    assert_eq!(carrier.logged("carrier profile list").len(), 1, "{:?}", carrier.log());
    assert_eq!(carrier.logged("sh -c").len(), 1, "{:?}", carrier.log());
    assert_eq!(
        report.machines.iter().map(|m| m.machine.as_str()).collect::<Vec<_>>(),
        ["pxe", "pxe#x", "pxe#y", "pxe#z", "pxe#w"],
        "the order of the targets"
    );

    assert_eq!(by_name(&report, "pxe").state, State::UpToDate);
    let x = by_name(&report, "pxe#x");
    assert_eq!((x.state, x.drift_since), (State::Staged, None));
    let read = x.carried.as_ref().unwrap();
    assert_eq!(read.staged.as_ref().unwrap().number, 2);
    assert_eq!(read.generations, 2);
    assert_eq!(read.booted, None, "booted is unknown without a check-in");
    assert_eq!(x.inputs_info, Some(serde_json::json!({"nixpkgs": {"rev": "x-dist-b"}})));

    let y = by_name(&report, "pxe#y");
    assert_eq!(y.state, State::Outdated);
    assert_eq!(y.detail.as_deref(), Some("staged generation 1 is generation gen-a"));
    assert_eq!(y.drift_since, Some(BUILT_B + 50), "staged after the desired build");

    let z = by_name(&report, "pxe#z");
    assert_eq!(z.state, State::Foreign);
    let w = by_name(&report, "pxe#w");
    assert_eq!(w.state, State::NotStaged);
    assert_eq!(
        w.detail.as_deref(),
        Some("pxe has no generation of /nix/var/nix/profiles/confctl-w")
    );
    assert_eq!(w.drift_since, Some(BUILT_B));

    // what the carrier holds, for its page: the whole listing, the netboot build not
    // scripted here, so not read (and said so)
    assert_eq!(report.carriers.len(), 1);
    let read = &report.carriers[0];
    assert_eq!(read.carrier, "pxe");
    assert_eq!(read.profiles.len(), 3);
    assert_eq!((read.error.as_ref(), read.netboot.as_ref()), (None, None));
    assert!(read.netboot_error.as_ref().is_some_and(|e| e.contains("netboot last-build")));
}

#[tokio::test(start_paused = true)]
async fn a_carriers_last_netboot_build_is_read_with_its_profiles() {
    let carrier = host_on("pxe", "b");
    listing_reply(&carrier, &[profile("x", &[(1, "x-dist-a", 10)], 1)]);
    let last = serde_json::json!({"finished_at": "2026-12-03T10:00:00Z", "seconds": 0.25,
        "outcome": {"err": "the syslinux file 'pxelinux.0' is missing"}});
    carrier.reply("carrier netboot last-build", [Reply::ok(&last.to_string())]);
    let report = status(&[carried("pxe", "x")], &[&carrier]).await;
    let read = &report.carriers[0];
    let netboot = read.netboot.as_ref().expect("read");
    assert_eq!((netboot.finished_at.as_str(), netboot.seconds), ("2026-12-03T10:00:00Z", 0.25));
    assert!(matches!(&netboot.outcome,
        crate::carrier::netboot::LastOutcome::Err(e) if e.contains("pxelinux.0")));
    assert_eq!(read.netboot_error, None);

    let standalone_only = status(&[standalone("pxe")], &[&carrier]).await;
    assert!(standalone_only.carriers.is_empty(), "no carried machine read, no carrier read");

    let carrier = host_on("pxe", "b");
    carrier.unreachable();
    let report = status(&[carried("pxe", "x")], &[&carrier]).await;
    let read = &report.carriers[0];
    assert!(read.profiles.is_empty() && read.error.is_some(), "{read:?}");
}

/// What the latest check-in of a carried machine says, against its staged generation 2.
#[tokio::test(start_paused = true)]
async fn checkins_tell_whether_the_staged_generation_was_booted() {
    let carrier = host_on("pxe", "b");
    let x = |alias| {
        profile(
            alias,
            &[(1, &format!("{alias}-dist-a"), 10), (2, &format!("{alias}-dist-b"), 20)],
            2,
        )
    };
    listing_reply(&carrier, &[x("x"), x("y"), x("z"), x("u"), x("v"), x("w")]);
    let checkin_at = |generation, time| {
        Some(Booted { generation, store_path: None, time, mac: "52:54:00:00:00:01".into() })
    };
    // after generation 2 was staged (at 20)
    let checkin = |generation| checkin_at(generation, 30);
    let with =
        |alias, booted: Option<Booted>| StatusTarget { checkin: booted, ..carried("pxe", alias) };
    let targets = [
        with("x", checkin(2)),
        with("y", checkin(1)),
        with("z", checkin(3)),
        with("u", None),
        // booted generation 1 before generation 2 was staged: not rebooted since
        with("w", checkin_at(1, 15)),
        // staged is not the desired one: that state stays, the check-in is still shown
        StatusTarget {
            desired: Some(Desired {
                generation: "gen-a".into(),
                toplevel: store("v-dist-a").into(),
                built: Some(BUILT_B),
            }),
            ..with("v", checkin(2))
        },
    ];
    let report = status(&targets, &[&carrier]).await;
    let got = |m: &str| {
        let m = by_name(&report, m);
        (m.state, m.detail.clone())
    };
    assert_eq!(got("pxe#x"), (State::Staged, Some("staged and booted".into())));
    let booted = by_name(&report, "pxe#x").carried.as_ref().unwrap().booted.clone().unwrap();
    assert_eq!(booted.store_path, Some(store("x-dist-b").into()), "the generation's store path");
    assert_eq!((booted.generation, booted.time), (2, 30));
    assert_eq!(
        got("pxe#y"),
        (
            State::BootedOlder,
            Some("booted generation 1, older than the staged generation 2".into())
        )
    );
    assert_eq!(by_name(&report, "pxe#y").drift_since, Some(BUILT_B), "since the desired build");
    assert_eq!(
        got("pxe#z"),
        (State::StagedNotBooted, Some("booted generation 3, not the staged generation 2".into()))
    );
    assert_eq!(
        by_name(&report, "pxe#z").carried.as_ref().unwrap().booted.as_ref().unwrap().store_path,
        None,
        "generation 3 is gone"
    );
    assert_eq!(
        got("pxe#w"),
        (
            State::StagedNotBooted,
            Some("booted generation 1 before the staged generation 2 was set".into())
        )
    );
    assert_eq!(got("pxe#u"), (State::Staged, None), "no check-in: booted unknown");
    assert_eq!(by_name(&report, "pxe#u").carried.as_ref().unwrap().booted, None);
    assert_eq!(got("pxe#v").0, State::Outdated);
    assert!(by_name(&report, "pxe#v").carried.as_ref().unwrap().booted.is_some());
}

#[tokio::test(start_paused = true)]
async fn carried_machines_of_an_unreachable_or_failing_carrier() {
    let carrier = host_on("pxe", "b");
    carrier.unreachable();
    let report = status(&[carried("pxe", "x")], &[&carrier]).await;
    assert_eq!(report.machines[0].state, State::Unreachable);

    let carrier = host_on("pxe", "b");
    carrier.reply("carrier profile list", [Reply::fail("carrier: command not found")]);
    let report = status(&[carried("pxe", "x")], &[&carrier]).await;
    let m = &report.machines[0];
    assert_eq!(m.state, State::Unknown);
    assert_eq!(
        m.detail.as_deref(),
        Some("`carrier profile list --json` on pxe.lab: exit status 1: carrier: command not found")
    );
    assert_eq!(carrier.logged("sh -c").len(), 0, "the carrier itself was not selected");
}
