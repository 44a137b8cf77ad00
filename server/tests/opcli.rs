//! The operator's commands around deploys against real lab hosts (sshd in mount
//! namespaces, real ssh): `carrier test-connection`. Needs root, sshd and ssh-keygen
//! (scripts/setup); traffic stays on 127.0.0.1.

mod support;

use support::cli::{ok, text};

fn lab_up() -> support::lab::Lab {
    support::lab::Lab::up_from("core/tests/fixtures/lab")
}

#[test]
fn test_connection_names_the_unreachable_host_and_fails() {
    let lab = lab_up();
    let out = ok(&lab.carrier(&["test-connection"]));
    for machine in ["node1", "node2", "pxe"] {
        assert!(out.contains(&format!("{machine}: reachable (up ")), "{out}");
    }
    assert!(out.contains("Result: 3 successful, 0 failed"), "{out}");

    // node2's host goes away: its sshd, started by this test's `lab up`, by its PID
    lab.stop("node2.lab");
    let o = lab.carrier(&["test-connection"]);
    assert!(!o.status.success());
    let out = text(&o);
    assert!(out.contains("node1: reachable (up "), "{out}");
    assert!(out.contains("node2: unreachable: cannot connect to node2.lab"), "{out}");
    assert!(out.contains("Result: 2 successful, 1 failed\nFailed machines:\n  node2\n"), "{out}");

    // carried machines are reached through their carrier only
    let o = lab.carrier(&["test-connection", "pxe#*"]);
    assert!(!o.status.success());
    let err = text(&o);
    assert!(
        err.contains("skipping pxe#node1: a carried machine is reached only through its carrier"),
        "{err}"
    );
    assert!(err.contains("no runnable machines selected"), "{err}");
}
