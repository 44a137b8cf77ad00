//! From what a host said to one [`State`] per machine (pure: no host, no clock).

use std::path::Path;

use super::read::{ReadError, SystemRead};
use super::{Booted, CarriedRead, MachineStatus, StagedGeneration, State, StatusTarget};
use crate::carrier::profiles::ProfileListing;

fn status(t: &StatusTarget, state: State, detail: Option<String>) -> MachineStatus {
    MachineStatus {
        machine: t.machine.clone(),
        host: t.host.clone(),
        state,
        detail,
        desired: t.desired.clone(),
        drift_since: None,
        system: None,
        carried: None,
        inputs_info: None,
        swpins_info: None,
    }
}

/// A machine whose host gave no answer.
pub(super) fn failed(t: &StatusTarget, e: &ReadError) -> MachineStatus {
    let state = match e {
        ReadError::Host(_) => State::Unreachable,
        ReadError::Answer(_) => State::Unknown,
    };
    status(t, state, Some(e.to_string()))
}

/// The name of the local build generation whose toplevel is `path`, if carrier built it.
fn built_as<'a>(t: &'a StatusTarget, path: &Path) -> Option<&'a str> {
    t.built.iter().rev().find(|(_, top)| top == path).map(|(name, _)| name.as_str())
}

/// How `path` is shown: the build generation's name when there is one.
fn show(t: &StatusTarget, path: &Path) -> String {
    match built_as(t, path) {
        Some(name) => format!("generation {name}"),
        None => path.display().to_string(),
    }
}

fn no_desired(t: &StatusTarget) -> String {
    if t.built.is_empty() {
        "no local build generation (run carrier build)".to_string()
    } else {
        "no such local build generation".to_string()
    }
}

/// A standalone machine: the desired generation against the running system, the
/// system profile (what boots next) and the booted system.
pub(super) fn standalone(t: &StatusTarget, read: &SystemRead) -> MachineStatus {
    let (state, detail) = classify_standalone(t, read);
    let built = t.desired.as_ref().and_then(|d| d.built);
    let drift_since = match state {
        State::UpToDate | State::Unknown | State::Unreachable => None,
        // the later of the two (None is less than any time): when the difference began
        _ => built.max(read.profile_time),
    };
    MachineStatus {
        drift_since,
        system: Some(read.clone()),
        inputs_info: read.inputs_info.clone(),
        swpins_info: read.swpins_info.clone(),
        ..status(t, state, detail)
    }
}

fn classify_standalone(t: &StatusTarget, read: &SystemRead) -> (State, Option<String>) {
    let Some(current) = read.current.as_deref() else {
        let none = format!("nothing activated ({} does not exist)", super::read::CURRENT_SYSTEM);
        return match t.desired {
            Some(_) => (State::Outdated, Some(none)),
            None => (State::Unknown, Some(format!("{}; {none}", no_desired(t)))),
        };
    };
    let Some(desired) = t.desired.as_ref() else {
        return (State::Unknown, Some(format!("{}; running {}", no_desired(t), current.display())));
    };
    let want = desired.toplevel.as_path();
    let profile = read.profile.as_deref();
    let profile_shown = profile.map_or("nothing".to_string(), |p| show(t, p));
    match (current == want, profile == Some(want)) {
        (true, true) => match read.booted.as_deref() {
            Some(booted) if booted != want => (
                State::RebootPending,
                Some(format!("running the desired generation, booted {}", show(t, booted))),
            ),
            _ => (State::UpToDate, None),
        },
        (false, true) => (
            State::RebootPending,
            Some(format!("the desired generation boots next; running {}", show(t, current))),
        ),
        (true, false) => (
            State::Outdated,
            Some(format!(
                "running the desired generation, but the system profile (what boots next) is {profile_shown}"
            )),
        ),
        (false, false) if built_as(t, current).is_none() => (
            State::Foreign,
            Some(format!("running {}, which carrier did not build", current.display())),
        ),
        (false, false) => (State::Outdated, Some(format!("running {}", show(t, current)))),
    }
}

/// A carried machine: the desired generation against its carrier's profile.
pub(super) fn carried(
    t: &StatusTarget,
    carrier: &str,
    profile: &str,
    listing: &[ProfileListing],
) -> MachineStatus {
    let name = Path::new(profile)
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("confctl-"))
        .unwrap_or(profile);
    let found = listing.iter().find(|p| p.name == name);
    let booted = t.checkin.clone().map(|b| Booted {
        store_path: found
            .and_then(|p| p.generations.iter().find(|g| g.number == b.generation))
            .map(|g| g.store_path.clone()),
        ..b
    });
    let staged =
        found.and_then(|p| p.generations.iter().find(|g| g.current)).map(|g| StagedGeneration {
            number: g.number,
            store_path: g.store_path.clone(),
            time: g.time,
            machine_json: g.machine.clone(),
        });
    let read = CarriedRead {
        carrier: carrier.to_string(),
        profile: profile.to_string(),
        generations: found.map_or(0, |p| p.generations.len()),
        staged,
        booted,
    };
    let desired = t.desired.as_ref();
    let (state, detail) = match (&read.staged, desired) {
        (None, _) => (
            State::NotStaged,
            Some(match found {
                None => format!("{carrier} has no generation of {profile}"),
                Some(_) => format!("{profile} on {carrier} points to none of its generations"),
            }),
        ),
        (Some(s), None) => {
            (State::Unknown, Some(format!("{}; staged generation {}", no_desired(t), s.number)))
        }
        (Some(s), Some(d)) if s.store_path == d.toplevel => match &read.booted {
            None => (State::Staged, None),
            Some(b) if b.generation == s.number => {
                (State::Staged, Some("staged and booted".to_string()))
            }
            // the machine has not booted since the staged generation was set: it waits for
            // a reboot, it did not pick another generation
            Some(b) if b.time < s.time => (
                State::StagedNotBooted,
                Some(format!(
                    "booted generation {} before the staged generation {} was set",
                    b.generation, s.number
                )),
            ),
            Some(b) if b.generation < s.number => (
                State::BootedOlder,
                Some(format!(
                    "booted generation {}, older than the staged generation {}",
                    b.generation, s.number
                )),
            ),
            Some(b) => (
                State::StagedNotBooted,
                Some(format!(
                    "booted generation {}, not the staged generation {}",
                    b.generation, s.number
                )),
            ),
        },
        (Some(s), Some(_)) if built_as(t, &s.store_path).is_none() => (
            State::Foreign,
            Some(format!(
                "staged generation {} ({}) was not built by carrier",
                s.number,
                s.store_path.display()
            )),
        ),
        (Some(s), Some(_)) => (
            State::Outdated,
            Some(format!("staged generation {} is {}", s.number, show(t, &s.store_path))),
        ),
    };
    let drift_since = match state {
        State::Outdated
        | State::Foreign
        | State::NotStaged
        | State::BootedOlder
        | State::StagedNotBooted => {
            desired.and_then(|d| d.built).max(read.staged.as_ref().map(|s| s.time))
        }
        _ => None,
    };
    let info = read.staged.as_ref().and_then(|s| s.machine_json.as_ref());
    MachineStatus {
        drift_since,
        inputs_info: info.and_then(|m| m.inputs_info.clone()),
        swpins_info: info.and_then(|m| m.swpins_info.clone()),
        carried: Some(read),
        ..status(t, state, detail)
    }
}
