//! The orchestration rules of `run_on` against scripted hosts (`remote::fake`), on a
//! paused clock: each test takes milliseconds. server/tests/deploy.rs proves the same
//! paths against real lab hosts.

use std::sync::Arc;
use std::time::Duration;

use super::health::{Check, CheckKind};
use super::*;
use crate::cluster::OutputMatch;
use crate::events::Recorder;
use crate::remote::fake::{FakeHost, FakeHosts, Reply};

const CURRENT: &str = "/run/current-system";
const SYSTEM: &str = crate::profile_name::SYSTEM_PROFILE;

fn standalone(machine: &str) -> Target {
    Target {
        machine: machine.into(),
        host: format!("{machine}.lab"),
        port: 22,
        kind: Kind::Standalone,
        artifact: Artifact {
            machine: machine.into(),
            generation: "g2".into(),
            toplevel: format!("/nix/store/{machine}-b").into(),
            auto_rollback: None,
        },
        auto_rollback_enabled: false,
        auto_rollback_timeout: 60,
        checks: Vec::new(),
    }
}

fn carried(carrier: &str, alias: &str) -> Target {
    Target {
        machine: format!("{carrier}#{alias}"),
        host: format!("{carrier}.lab"),
        kind: Kind::Carried { carrier: carrier.into(), profile: profile(alias) },
        artifact: Artifact {
            machine: format!("{carrier}#{alias}"),
            generation: "g2".into(),
            toplevel: format!("/nix/store/{alias}-dist").into(),
            auto_rollback: None,
        },
        ..standalone(carrier)
    }
}

fn profile(alias: &str) -> String {
    format!("/nix/var/nix/profiles/confctl-{alias}")
}

/// A host running (and booting) `/nix/store/<machine>-a`.
fn host_on_a(machine: &str) -> Arc<FakeHost> {
    let host = FakeHost::new(&format!("{machine}.lab"));
    host.link(CURRENT, &format!("/nix/store/{machine}-a"));
    host.link(SYSTEM, &format!("/nix/store/{machine}-a"));
    host
}

fn stc(toplevel: &str, action: &str) -> String {
    format!("{toplevel}/bin/switch-to-configuration {action}")
}

async fn deploy(
    targets: &[Target],
    opts: &DeployOptions,
    hosts: &[&Arc<FakeHost>],
) -> (DeployReport, Vec<Event>) {
    let sink = Recorder::default();
    let run = run_on(targets, opts, FakeHosts::new(hosts), &sink);
    assert_send(&run);
    let report =
        tokio::time::timeout(Duration::from_secs(24 * 3600), run).await.expect("the run ended");
    (report, sink.events())
}

/// Deploys may become tasks of the server's runtime.
fn assert_send<T: Send>(_: &T) {}

fn state<'r>(report: &'r DeployReport, machine: &str) -> &'r MachineState {
    &report
        .machines
        .iter()
        .find(|m| m.machine == machine)
        .unwrap_or_else(|| panic!("no {machine}"))
        .state
}

/// `(phase, error, changed)` of a failed machine.
fn failure(report: &DeployReport, machine: &str) -> (Phase, String, bool) {
    match state(report, machine) {
        MachineState::Failed { phase, error, changed } => (*phase, error.to_string(), *changed),
        other => panic!("{machine} did not fail: {other:?}"),
    }
}

fn not_attempted(report: &DeployReport, machine: &str) -> String {
    match state(report, machine) {
        MachineState::NotAttempted { reason } => reason.clone(),
        other => panic!("{machine} was attempted: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_plain_switch_is_rolled_back_to_the_previous_system() {
    let node1 = host_on_a("node1");
    // the new system is active when its activation fails
    node1.reply(&stc("/nix/store/node1-b", "switch"), [Reply::fail_after_effect("boom")]);
    let (report, _) = deploy(&[standalone("node1")], &DeployOptions::default(), &[&node1]).await;

    let (phase, error, changed) = failure(&report, "node1");
    assert_eq!(phase, Phase::Activate);
    assert_eq!(
        error,
        "running `/nix/store/node1-b/bin/switch-to-configuration switch` on node1.lab: exit status 1: boom \
         (rolled back to the previous system)"
    );
    assert!(!changed, "{report:?}");
    assert_eq!(node1.link_of(CURRENT).as_deref(), Some("/nix/store/node1-a"));
    assert_eq!(node1.logged("/nix/store/node1-a/"), [stc("/nix/store/node1-a", "switch")]);
    assert_eq!(
        node1.link_of(SYSTEM).as_deref(),
        Some("/nix/store/node1-a"),
        "the profile is not touched"
    );
    assert_eq!(node1.logged("nix-env"), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn a_failed_system_profile_after_a_switch_is_not_undone_and_reports_changed() {
    let node1 = host_on_a("node1");
    node1.reply("nix-env", [Reply::fail("read-only")]);
    let (report, _) = deploy(&[standalone("node1")], &DeployOptions::default(), &[&node1]).await;
    let (phase, error, changed) = failure(&report, "node1");
    assert_eq!(phase, Phase::Activate);
    assert!(
        error.starts_with(
            "setting the system profile: running `nix-env -p /nix/var/nix/profiles/system"
        ),
        "{error}"
    );
    assert!(changed);
    assert_eq!(node1.link_of(CURRENT).as_deref(), Some("/nix/store/node1-b"));
}

#[tokio::test(start_paused = true)]
async fn an_auto_rollback_activation_is_confirmed_under_the_activation_lock() {
    let node1 = host_on_a("node1");
    let mut t = standalone("node1");
    t.artifact.auto_rollback = Some("/nix/store/x-auto-rollback.sh".into());
    t.auto_rollback_enabled = true;
    let (report, _) = deploy(&[t], &DeployOptions::default(), &[&node1]).await;
    assert!(matches!(state(&report, "node1"), MachineState::Deployed), "{report:?}");
    let script = node1.logged("flock -n -o");
    assert_eq!(script.len(), 1, "{:?}", node1.log());
    let tail =
        " sh /nix/store/x-auto-rollback.sh -t 60 /nix/store/node1-b switch /run/carrier-confirm-";
    assert!(script[0].contains(tail), "{}", script[0]);
    assert_eq!(node1.link_of(CURRENT).as_deref(), Some("/nix/store/node1-b"));
    assert_eq!(node1.link_of(SYSTEM).as_deref(), Some("/nix/store/node1-b"));
}

#[tokio::test(start_paused = true)]
async fn a_carried_profile_set_is_one_argv_vector() {
    let pxe = FakeHost::new("pxe.lab");
    let targets = [carried("pxe", "node1"), carried("pxe", "os/1")];
    let (report, _) = deploy(&targets, &DeployOptions::default(), &[&pxe]).await;
    assert!(report.success(), "{report:?}");
    assert_eq!(
        pxe.logged("carrier "),
        [
            "carrier profile set -p /nix/var/nix/profiles/confctl-node1 -p /nix/var/nix/profiles/confctl-os/1 \
          /nix/store/node1-dist /nix/store/os/1-dist"
        ]
    );
    assert_eq!(pxe.link_of(&profile("node1")).as_deref(), Some("/nix/store/node1-dist"));
}

#[tokio::test(start_paused = true)]
async fn one_profile_set_per_carrier_after_the_standalone_machines() {
    let (pxe, pxe2) = (host_on_a("pxe"), FakeHost::new("pxe2.lab"));
    let targets =
        [carried("pxe", "a"), carried("pxe2", "c"), standalone("pxe"), carried("pxe", "b")];
    let (report, _) = deploy(&targets, &DeployOptions::default(), &[&pxe, &pxe2]).await;
    assert!(report.success(), "{report:?}");
    let sets = pxe.logged("carrier profile set");
    assert_eq!(sets.len(), 1, "{sets:?}");
    assert!(
        sets[0].starts_with(&format!(
            "carrier profile set -p {} -p {} ",
            profile("a"),
            profile("b")
        )),
        "{sets:?}"
    );
    assert_eq!(pxe2.logged("carrier profile set").len(), 1);
    // the carrier itself first: its new `carrier` sets the profiles
    let log = pxe.log();
    let switched =
        log.iter().position(|l| *l == stc("/nix/store/pxe-b", "switch")).expect("pxe switched");
    let set = log.iter().position(|l| l.starts_with("carrier profile set")).unwrap();
    assert!(switched < set, "{log:?}");
    // one lock for the carrier's set, naming both machines
    assert!(
        log.iter().any(|l| l.starts_with("lock ") && l.ends_with(": pxe#a g2, pxe#b g2")),
        "{log:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_machine_running_its_generation_is_skipped_unless_it_may_switch_back() {
    let current = host_on_a("current");
    current.link(CURRENT, "/nix/store/current-b");
    current.link(SYSTEM, "/nix/store/current-b");
    // runs b, but boots a: switch must set the profile
    let booting_a = host_on_a("boot");
    booting_a.link(CURRENT, "/nix/store/boot-b");
    // runs b under an unconfirmed activation that may switch back
    let in_flight = host_on_a("flight");
    in_flight.link(CURRENT, "/nix/store/flight-b");
    in_flight.link(SYSTEM, "/nix/store/flight-b");
    in_flight.activation_in_flight();
    let targets = [standalone("current"), standalone("boot"), standalone("flight")];
    let (report, events) =
        deploy(&targets, &DeployOptions::default(), &[&current, &booting_a, &in_flight]).await;

    assert!(matches!(state(&report, "current"), MachineState::Current), "{report:?}");
    let skipped = Event::MachineFinished {
        phase: Phase::Status,
        machine: "current".into(),
        outcome: Outcome::Skipped { reason: "already using target generation g2".into() },
    };
    assert!(events.contains(&skipped), "{events:?}");
    assert!(
        current.log().iter().all(|l| l.starts_with("realpath") || l.starts_with("flock -n -E")),
        "{:?}",
        current.log()
    );
    for (machine, host) in [("boot", &booting_a), ("flight", &in_flight)] {
        assert!(matches!(state(&report, machine), MachineState::Deployed), "{machine}: {report:?}");
        assert_eq!(
            host.logged(&stc(&format!("/nix/store/{machine}-b"), "switch")).len(),
            1,
            "{machine}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_carried_profile_whose_hooks_are_pending_is_set_again() {
    let pxe = FakeHost::new("pxe.lab");
    pxe.link(&profile("node1"), "/nix/store/node1-dist");
    pxe.link(&profile("node2"), "/nix/store/node2-dist");
    let record = "/nix/var/nix/profiles/.carrier-on-change-pending/confctl-node1";
    pxe.file(record, "2026-12-01T10:00:00Z: netboot build failed");
    let targets = [carried("pxe", "node1"), carried("pxe", "node2")];
    let (report, events) = deploy(&targets, &DeployOptions::default(), &[&pxe]).await;

    assert!(matches!(state(&report, "pxe#node1"), MachineState::Deployed), "{report:?}");
    assert!(matches!(state(&report, "pxe#node2"), MachineState::Current), "{report:?}");
    let line = "the profile is set, but the carrier's on-change hooks have not succeeded since \
                (2026-12-01T10:00:00Z: netboot build failed): setting it again";
    let notice = Event::Notice {
        phase: Phase::Status,
        machine: Some("pxe#node1".into()),
        line: line.into(),
    };
    assert!(events.contains(&notice), "{events:?}");
    assert_eq!(
        pxe.logged("carrier profile set"),
        [format!("carrier profile set -p {} /nix/store/node1-dist", profile("node1"))]
    );
    assert!(!pxe.has_file(record), "the hooks ran");
}

#[tokio::test(start_paused = true)]
async fn nothing_is_activated_after_a_copy_failure_or_an_unreachable_host() {
    let (node1, node2, node3) = (host_on_a("node1"), host_on_a("node2"), host_on_a("node3"));
    node2.reply("copy ", [Reply::fail("no space left on device")]);
    node3.unreachable();
    let pxe = FakeHost::new("pxe.lab");
    let targets =
        [standalone("node1"), standalone("node2"), standalone("node3"), carried("pxe", "x")];
    let (report, _) =
        deploy(&targets, &DeployOptions::default(), &[&node1, &node2, &node3, &pxe]).await;

    assert_eq!(
        failure(&report, "node2"),
        (
            Phase::Copy,
            "copy to node2.lab failed: exit status 1: no space left on device".into(),
            false
        )
    );
    assert_eq!(
        failure(&report, "node3"),
        (Phase::Status, "cannot connect to node3.lab: Connection refused".into(), false)
    );
    for m in ["node1", "pxe#x"] {
        assert_eq!(
            not_attempted(&report, m),
            "copied, not activated: another host failed before activation"
        );
    }
    assert_eq!(node1.logged("copy ").len(), 1, "node1 was copied");
    for host in [&node1, &node2, &pxe] {
        let log = host.log();
        assert!(
            !log.iter().any(|l| l.starts_with("lock")
                || l.contains("switch-to-configuration")
                || l.starts_with("carrier")),
            "{log:?}"
        );
    }
    assert_eq!(node1.link_of(CURRENT).as_deref(), Some("/nix/store/node1-a"));
}

#[tokio::test(start_paused = true)]
async fn after_a_failed_activation_nothing_else_is_attempted() {
    let (node1, node2, pxe) = (host_on_a("node1"), host_on_a("node2"), FakeHost::new("pxe.lab"));
    node1.reply(&stc("/nix/store/node1-b", "switch"), [Reply::fail("boom")]);
    let targets = [standalone("node1"), standalone("node2"), carried("pxe", "x")];
    let (report, _) = deploy(&targets, &DeployOptions::default(), &[&node1, &node2, &pxe]).await;
    assert_eq!(failure(&report, "node1").0, Phase::Activate);
    for m in ["node2", "pxe#x"] {
        assert_eq!(not_attempted(&report, m), "the run stopped after a failure");
    }
    assert_eq!(node2.logged("lock"), Vec::<String>::new());
    assert_eq!(node2.logged("/nix/store/node2-b"), Vec::<String>::new());
    assert_eq!(pxe.logged("carrier"), Vec::<String>::new());

    // one by one: the machines after the failed one are not even asked
    let (node1, node2) = (host_on_a("node1"), host_on_a("node2"));
    node1.reply(&stc("/nix/store/node1-b", "switch"), [Reply::fail("boom")]);
    let opts = DeployOptions { one_by_one: true, ..DeployOptions::default() };
    let (report, _) =
        deploy(&[standalone("node1"), standalone("node2")], &opts, &[&node1, &node2]).await;
    assert_eq!(not_attempted(&report, "node2"), "the run stopped after a failure");
    assert_eq!(node2.log(), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn activation_runs_under_the_hosts_deploy_lock() {
    let node1 = host_on_a("node1");
    let (report, _) = deploy(&[standalone("node1")], &DeployOptions::default(), &[&node1]).await;
    assert!(report.success(), "{report:?}");
    let log = node1.log();
    let at = |prefix: &str| {
        log.iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix}: {log:?}"))
    };
    let lock = &log[at("lock ")];
    assert!(
        lock.starts_with("lock carrier deploy (pid ") && lock.ends_with(": node1 g2"),
        "{lock}"
    );
    assert!(at("lock ") < at(&stc("/nix/store/node1-b", "switch")));
    assert!(at("nix-env -p /nix/var/nix/profiles/system --set /nix/store/node1-b") < at("unlock"));
}

#[tokio::test(start_paused = true)]
async fn a_host_locked_by_another_deploy_fails_naming_the_holder() {
    let (node1, pxe) = (host_on_a("node1"), FakeHost::new("pxe.lab"));
    let other = "carrier deploy (pid 7) on elsewhere since 2026-12-01T10:00:00Z: node1 g1";
    node1.hold_lock(other);
    pxe.hold_lock(other);
    let opts = DeployOptions {
        timeouts: Timeouts { lock: Duration::from_secs(30), ..Timeouts::default() },
        ..DeployOptions::default()
    };
    let (report, events) = deploy(&[standalone("node1")], &opts, &[&node1]).await;
    let (phase, error, changed) = failure(&report, "node1");
    assert_eq!((phase, changed), (Phase::Activate, false));
    assert_eq!(
        error,
        format!("timed out after 30 s waiting for the deploy lock on node1.lab, held by: {other}")
    );
    let line = format!("waiting for the deploy lock on node1.lab, held by: {other}");
    assert!(
        events.contains(&Event::Notice {
            phase: Phase::Activate,
            machine: Some("node1".into()),
            line
        }),
        "{events:?}"
    );
    assert_eq!(node1.logged("/nix/store/node1-b"), Vec::<String>::new(), "nothing activated");

    let (report, _) = deploy(&[carried("pxe", "a"), carried("pxe", "b")], &opts, &[&pxe]).await;
    for m in ["pxe#a", "pxe#b"] {
        assert_eq!(failure(&report, m).0, Phase::CarriedProfile);
    }
    assert_eq!(pxe.logged("carrier"), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn a_failed_hook_after_the_profiles_changed_reports_changed() {
    let pxe = FakeHost::new("pxe.lab");
    pxe.reply("carrier profile set", [Reply::fail_after_effect("on-change hook failed")]);
    let (report, _) = deploy(&[carried("pxe", "a")], &DeployOptions::default(), &[&pxe]).await;
    let (phase, error, changed) = failure(&report, "pxe#a");
    assert_eq!((phase, changed), (Phase::CarriedProfile, true));
    assert!(
        error.starts_with("setting carried profiles on pxe: running `carrier profile set -p"),
        "{error}"
    );
    assert!(error.ends_with("exit status 1: on-change hook failed"), "{error}");
    assert_eq!(pxe.logged("unlock").len(), 1, "the lock is released");

    // refused before any change
    let pxe = FakeHost::new("pxe.lab");
    pxe.reply("carrier profile set", [Reply::fail("invalid profile")]);
    let (report, _) = deploy(&[carried("pxe", "a")], &DeployOptions::default(), &[&pxe]).await;
    assert!(!failure(&report, "pxe#a").2);
}

fn with_check(mut t: Target, argv: &[&str], timeout: u64, cooldown: u64) -> Target {
    t.checks.push(Check {
        description: "marker".into(),
        kind: CheckKind::Remote(argv.iter().map(|s| s.to_string()).collect()),
        exit_status: 0,
        stdout: OutputMatch::default(),
        stderr: OutputMatch::default(),
        timeout: Duration::from_secs(timeout),
        cooldown: Duration::from_secs(cooldown),
    });
    t
}

#[tokio::test(start_paused = true)]
async fn a_health_check_is_retried_every_cooldown_until_it_passes() {
    let node1 = host_on_a("node1");
    node1.reply("check-marker", [Reply::fail("not yet"), Reply::fail("not yet"), Reply::ok("")]);
    let started = tokio::time::Instant::now();
    let (report, _) = deploy(
        &[with_check(standalone("node1"), &["check-marker"], 10, 2)],
        &DeployOptions::default(),
        &[&node1],
    )
    .await;
    assert!(matches!(state(&report, "node1"), MachineState::Deployed), "{report:?}");
    assert_eq!(node1.logged("check-marker").len(), 3);
    assert_eq!(started.elapsed().as_secs(), 4, "two cooldowns");
}

#[tokio::test(start_paused = true)]
async fn a_health_check_that_keeps_failing_fails_the_machine_at_its_timeout() {
    let node1 = host_on_a("node1");
    node1.reply("check-marker", [Reply::fail("no")]);
    let started = tokio::time::Instant::now();
    let (report, _) = deploy(
        &[with_check(standalone("node1"), &["check-marker"], 5, 2)],
        &DeployOptions::default(),
        &[&node1],
    )
    .await;
    let (phase, error, changed) = failure(&report, "node1");
    assert_eq!((phase, changed), (Phase::HealthCheck, true), "it runs the new system");
    assert_eq!(error, "health checks failed: marker: exit status 1, expected 0");
    // attempts at 0, 2 and 4 s; another after 6 s would be past the timeout
    assert_eq!(node1.logged("check-marker").len(), 3);
    assert_eq!(started.elapsed().as_secs(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_hung_health_check_is_killed_at_its_timeout() {
    let node1 = host_on_a("node1");
    node1.reply("check-marker", [Reply::Hang]);
    let started = tokio::time::Instant::now();
    let (report, _) = deploy(
        &[with_check(standalone("node1"), &["check-marker"], 5, 2)],
        &DeployOptions::default(),
        &[&node1],
    )
    .await;
    let (_, error, _) = failure(&report, "node1");
    assert_eq!(
        error,
        "health checks failed: marker: `check-marker` did not finish within 5 s and was killed (on node1.lab)"
    );
    assert_eq!(started.elapsed().as_secs(), 5);
    assert_eq!(node1.logged("check-marker").len(), 1);
}

fn reboot_opts(wait_online: WaitOnline) -> DeployOptions {
    DeployOptions { action: Action::Boot, reboot: true, wait_online, ..DeployOptions::default() }
}

/// A host whose uptime is 500 s until it reboots, then down for two polls, then 2 s.
fn rebooting_host(machine: &str) -> Arc<FakeHost> {
    let host = host_on_a(machine);
    host.reply(
        "cat /proc/uptime",
        [Reply::ok("500.00 900.00"), Reply::Hang, Reply::fail("down"), Reply::ok("2.00 3.00")],
    );
    host
}

#[tokio::test(start_paused = true)]
async fn reboots_come_after_every_activation_one_host_at_a_time() {
    let (node1, node2) = (rebooting_host("node1"), rebooting_host("node2"));
    let targets = [standalone("node1"), standalone("node2")];
    let (report, events) =
        deploy(&targets, &reboot_opts(WaitOnline::default()), &[&node1, &node2]).await;
    assert!(report.success(), "{report:?}");
    for host in [&node1, &node2] {
        let log = host.log();
        let boot = log.iter().position(|l| l.ends_with("switch-to-configuration boot"));
        let reboot = log.iter().position(|l| l == "reboot");
        assert!(boot < reboot && boot.is_some(), "{log:?}");
        // the uptime before, then polls until it is lower: 4 reads, each polled one over
        // a new connection (the reboot ends the old one)
        assert_eq!(host.logged("cat /proc/uptime").len(), 4, "{log:?}");
        assert_eq!(host.logged("reconnect").len(), 3, "{log:?}");
    }
    // node2 is activated before node1 reboots, and node1 is back before node2 reboots
    let order: Vec<(Phase, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::MachineFinished { phase, machine, .. }
                if matches!(phase, Phase::Activate | Phase::Reboot) =>
            {
                Some((*phase, machine.clone()))
            }
            _ => None,
        })
        .collect();
    let expected = [
        (Phase::Activate, "node1"),
        (Phase::Activate, "node2"),
        (Phase::Reboot, "node1"),
        (Phase::Reboot, "node2"),
    ]
    .map(|(p, m)| (p, m.to_string()));
    assert_eq!(order, expected);
}

#[tokio::test(start_paused = true)]
async fn nowait_only_sends_reboot() {
    let node1 = rebooting_host("node1");
    let (report, _) =
        deploy(&[standalone("node1")], &reboot_opts(WaitOnline::NoWait), &[&node1]).await;
    assert!(report.success(), "{report:?}");
    assert_eq!(node1.logged("reboot"), ["reboot"]);
    assert_eq!(node1.logged("cat /proc/uptime").len(), 1, "{:?}", node1.log());
}

#[tokio::test(start_paused = true)]
async fn wait_polls_until_the_host_is_back_however_long() {
    let node1 = host_on_a("node1");
    let mut replies = vec![Reply::ok("500.00 1")];
    replies.extend(std::iter::repeat_n(Reply::Hang, 300)); // 300 polls of 5 s: 25 min
    replies.push(Reply::ok("1.00 1"));
    node1.reply("cat /proc/uptime", replies);
    let (report, _) =
        deploy(&[standalone("node1")], &reboot_opts(WaitOnline::Wait), &[&node1]).await;
    assert!(report.success(), "{report:?}");
    assert_eq!(node1.logged("cat /proc/uptime").len(), 302);
}

#[tokio::test(start_paused = true)]
async fn a_host_not_back_in_time_fails_and_stops_the_reboots() {
    let (node1, node2) = (host_on_a("node1"), rebooting_host("node2"));
    // the uptime never goes down
    node1.reply("cat /proc/uptime", [Reply::ok("500.00 1"), Reply::ok("501.00 1")]);
    let opts = reboot_opts(WaitOnline::Within(Duration::from_secs(30)));
    let (report, _) =
        deploy(&[standalone("node1"), standalone("node2")], &opts, &[&node1, &node2]).await;
    let (phase, error, changed) = failure(&report, "node1");
    assert_eq!(phase, Phase::Reboot);
    assert_eq!(error, "node1.lab was not back online within 30 s after `reboot`");
    assert!(changed);
    assert_eq!(not_attempted(&report, "node2"), STOPPED);
    assert!(node2.logged("reboot").is_empty(), "{:?}", node2.log());
}

#[tokio::test(start_paused = true)]
async fn carried_machines_and_localhost_are_not_rebooted() {
    let pxe = FakeHost::new("pxe.lab");
    let local = FakeHost::new("localhost");
    let mut here = standalone("here");
    here.host = "localhost".into();
    local.link(CURRENT, "/nix/store/here-a");
    let (report, events) = deploy(
        &[carried("pxe", "node1"), here],
        &reboot_opts(WaitOnline::default()),
        &[&pxe, &local],
    )
    .await;
    assert!(report.success(), "{report:?}");
    assert!(pxe.logged("reboot").is_empty() && local.logged("reboot").is_empty());
    let skipped: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::MachineFinished {
                phase: Phase::Reboot,
                outcome: Outcome::Skipped { reason },
                ..
            } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        skipped,
        [
            "Skipping reboot of carried machine pxe#node1: it needs a netboot reboot",
            "Skipping reboot of here as it is localhost",
        ]
    );
}

#[test]
fn wait_online_parses_upstreams_values() {
    assert_eq!("wait".parse(), Ok(WaitOnline::Wait));
    assert_eq!("nowait".parse(), Ok(WaitOnline::NoWait));
    assert_eq!("42".parse(), Ok(WaitOnline::Within(Duration::from_secs(42))));
    assert_eq!(
        "soon".parse::<WaitOnline>(),
        Err("invalid --wait-online 'soon': expected wait, nowait or seconds".to_string())
    );
}

#[tokio::test(start_paused = true)]
async fn keep_going_goes_on_one_by_one_after_failed_health_checks_only() {
    let targets = [with_check(standalone("node1"), &["check-marker"], 2, 1), standalone("node2")];
    for keep_going in [false, true] {
        let (node1, node2) = (host_on_a("node1"), host_on_a("node2"));
        node1.reply("check-marker", [Reply::fail("no")]);
        let opts = DeployOptions { one_by_one: true, keep_going, ..DeployOptions::default() };
        let (report, events) = deploy(&targets, &opts, &[&node1, &node2]).await;
        assert_eq!(failure(&report, "node1").0, Phase::HealthCheck);
        let going_on = events.iter().any(|e| {
            matches!(e, Event::Notice { line, .. } if line == "Health checks have failed, going on")
        });
        assert_eq!(going_on, keep_going);
        if keep_going {
            assert!(matches!(state(&report, "node2"), MachineState::Deployed), "{report:?}");
        } else {
            assert_eq!(not_attempted(&report, "node2"), STOPPED);
        }
    }
    // any other failure still stops the run
    let (node1, node2) = (host_on_a("node1"), host_on_a("node2"));
    node1.reply(&stc("/nix/store/node1-b", "switch"), [Reply::fail("boom")]);
    let opts = DeployOptions { one_by_one: true, keep_going: true, ..DeployOptions::default() };
    let (report, _) = deploy(&targets, &opts, &[&node1, &node2]).await;
    assert_eq!(not_attempted(&report, "node2"), STOPPED);
}

/// Answers an interactive deploy's questions from a script and records them.
struct Operator {
    declines: Vec<(Phase, &'static str)>,
    asked: std::sync::Mutex<Vec<(Phase, String)>>,
}

impl EventSink for Operator {
    fn emit(&self, _: Event) {}

    fn confirm(&self, phase: Phase, machine: &str) -> bool {
        self.asked.lock().unwrap().push((phase, machine.to_string()));
        !self.declines.contains(&(phase, machine))
    }
}

#[tokio::test(start_paused = true)]
async fn interactive_asks_before_each_step_and_a_declined_machine_goes_no_further() {
    let (a, b, c) = (host_on_a("a"), host_on_a("b"), host_on_a("c"));
    let pxe = FakeHost::new("pxe.lab");
    let operator = Operator {
        declines: vec![(Phase::Copy, "b"), (Phase::Activate, "c")],
        asked: Default::default(),
    };
    let opts = DeployOptions { interactive: true, ..DeployOptions::default() };
    let targets = [standalone("a"), standalone("b"), standalone("c"), carried("pxe", "n1")];
    let hosts = FakeHosts::new(&[&a, &b, &c, &pxe]);
    let report = run_on(&targets, &opts, hosts, &operator).await;

    assert!(matches!(state(&report, "a"), MachineState::Deployed));
    assert!(matches!(state(&report, "b"), MachineState::Declined { phase: Phase::Copy }));
    assert!(matches!(state(&report, "c"), MachineState::Declined { phase: Phase::Activate }));
    assert!(matches!(state(&report, "pxe#n1"), MachineState::Deployed));
    assert!(report.success(), "declining is the operator's choice, not a failure");
    assert_eq!(b.logged("copy"), Vec::<String>::new(), "b is not copied to");
    assert_eq!(c.logged("copy").len(), 1, "c is copied");
    assert_eq!(c.link_of(CURRENT).as_deref(), Some("/nix/store/c-a"), "c is not activated");
    assert_eq!(
        *operator.asked.lock().unwrap(),
        [
            (Phase::Copy, "a".to_string()),
            (Phase::Copy, "b".into()),
            (Phase::Copy, "c".into()),
            (Phase::Copy, "pxe#n1".into()),
            (Phase::Activate, "a".into()),
            (Phase::Activate, "c".into()),
            (Phase::CarriedProfile, "pxe#n1".into()),
        ]
    );

    // a sink that cannot ask deploys nothing interactively
    let a = host_on_a("a");
    let (report, _) = deploy(&[standalone("a")], &opts, &[&a]).await;
    assert!(matches!(state(&report, "a"), MachineState::Declined { phase: Phase::Copy }));
    assert_eq!(a.logged("copy"), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn interactive_reboots_only_what_the_operator_confirms() {
    let (a, b) = (rebooting_host("a"), rebooting_host("b"));
    let operator = Operator { declines: vec![(Phase::Reboot, "b")], asked: Default::default() };
    let opts = DeployOptions { interactive: true, ..reboot_opts(WaitOnline::default()) };
    let report =
        run_on(&[standalone("a"), standalone("b")], &opts, FakeHosts::new(&[&a, &b]), &operator)
            .await;
    assert!(report.success(), "{report:?}");
    assert_eq!(a.logged("reboot"), ["reboot"]);
    assert_eq!(b.logged("reboot"), Vec::<String>::new(), "declined");
    assert!(operator.asked.lock().unwrap().contains(&(Phase::Reboot, "b".to_string())));
}

/// A sink whose run is cancelled once `after` machines have finished a step.
struct CancelAfter {
    after: usize,
    finished: std::sync::atomic::AtomicUsize,
}

impl EventSink for CancelAfter {
    fn emit(&self, event: Event) {
        if matches!(event, Event::MachineFinished { .. }) {
            self.finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn cancelled(&self) -> bool {
        self.finished.load(std::sync::atomic::Ordering::SeqCst) >= self.after
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_run_finishes_the_step_under_way_and_attempts_nothing_after() {
    // one by one: a is deployed (copy, activate), then the run is cancelled
    let (a, b) = (host_on_a("a"), host_on_a("b"));
    let sink = CancelAfter { after: 2, finished: Default::default() };
    let opts = DeployOptions { one_by_one: true, health_checks: false, ..DeployOptions::default() };
    let report =
        run_on(&[standalone("a"), standalone("b")], &opts, FakeHosts::new(&[&a, &b]), &sink).await;
    assert!(matches!(state(&report, "a"), MachineState::Deployed), "{report:?}");
    assert_eq!(not_attempted(&report, "b"), "the run was cancelled");
    assert_eq!(b.logged("copy"), Vec::<String>::new(), "b is not copied to");
    assert!(!report.success());

    // in bulk, cancelled after the copies: copied, nothing activated
    let (a, b) = (host_on_a("a"), host_on_a("b"));
    let sink = CancelAfter { after: 2, finished: Default::default() };
    let report = run_on(
        &[standalone("a"), standalone("b")],
        &DeployOptions::default(),
        FakeHosts::new(&[&a, &b]),
        &sink,
    )
    .await;
    for (m, host) in [("a", &a), ("b", &b)] {
        assert_eq!(not_attempted(&report, m), "copied, not activated: the run was cancelled");
        assert_eq!(host.logged("copy").len(), 1, "{m} was copied");
        assert_eq!(host.link_of(CURRENT), Some(format!("/nix/store/{m}-a")), "{m} not activated");
    }
}
