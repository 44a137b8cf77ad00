//! Activation (spec 2.3 and 2.4): the skip-if-current rule, `switch-to-configuration`
//! on standalone machines (plain, or with the auto-rollback confirmation protocol), the
//! system profile, and `carrier profile set` on carriers.

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

use super::plan::{Action, Kind, Target};
use crate::profile_name::SYSTEM_PROFILE;
use crate::remote::{Host, HostError, failure_message, holding_activation_lock};

/// Where a target stands before the deploy (spec 2.0 step 6).
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    Current,
    NotCurrent,
    /// A carried profile is set to the artifact, but the carrier's on-change hooks (the
    /// netboot build) have not succeeded since it changed: the record's text.
    HooksPending(String),
}

/// Spec 2.0 step 6: is the target already using the artifact? Unknown states never
/// skip, nor does a carried profile whose on-change hooks failed after it changed, nor
/// a host with an activation in flight.
pub async fn status(remote: &impl Host, t: &Target, action: Action) -> Status {
    let want = t.artifact.toplevel.display().to_string();
    let current = |yes: bool| if yes { Status::Current } else { Status::NotCurrent };
    match &t.kind {
        Kind::Carried { profile, .. } => {
            if remote.realpath(profile).await.as_deref() != Some(want.as_str()) {
                return Status::NotCurrent;
            }
            let marker = crate::carrier::profile_change::pending_record(Path::new(profile));
            match remote.output(&["cat", &marker.display().to_string()]).await {
                // no record: the hooks have run since the last change
                Ok(out) if !out.status.success() => Status::Current,
                Ok(out) => {
                    Status::HooksPending(String::from_utf8_lossy(&out.stdout).trim().to_string())
                }
                Err(_) => Status::NotCurrent,
            }
        }
        Kind::Standalone => {
            if remote.realpath("/run/current-system").await.as_deref() != Some(want.as_str()) {
                return Status::NotCurrent;
            }
            if action.sets_profile()
                && remote.realpath(SYSTEM_PROFILE).await.as_deref() != Some(want.as_str())
            {
                return Status::NotCurrent;
            }
            // an activation still in flight (unconfirmed) may switch back: decide under the lock
            current(!remote.activation_in_flight().await)
        }
    }
}

/// Why an activation failed, and what it left behind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActivationError {
    #[error(transparent)]
    Command(HostError),
    /// A plain switch or test failed; the previous system was activated again.
    #[error("{0} (rolled back to the previous system)")]
    RolledBack(HostError),
    #[error("setting the system profile: {0}")]
    SystemProfile(HostError),
    #[error("the activation lock on {host} is taken: {message}")]
    ActivationLockTaken { host: String, message: String },
    /// The auto-rollback script reported a failure: the target activated its previous
    /// system by itself.
    #[error(
        "the machine switched back to its previous system: {message} (rolled back to the previous system)"
    )]
    SwitchedBack { message: String },
    /// The check file did not reach `switched` in time: `state` is its last content.
    #[error(
        "the activation hung: {} after {secs} s; left running on {host}: `{command}` (it switches back by itself \
         when the activation ends, since carrier did not confirm)",
        if state.is_empty() { "no state".to_string() } else { format!("still '{state}'") }
    )]
    Hung { state: String, secs: u64, host: String, command: String },
    #[error("lost the connection after confirming the activation ({0})")]
    LostAfterConfirming(HostError),
    #[error(
        "lost the connection while activating ({source}); unless it was confirmed the machine switches back by itself within {timeout} s"
    )]
    LostWhileActivating { source: HostError, timeout: u64 },
}

impl ActivationError {
    /// Nobody confirmed an auto-rollback activation: the target switches back by itself.
    pub fn switches_back(&self) -> bool {
        matches!(self, ActivationError::Hung { .. } | ActivationError::LostWhileActivating { .. })
    }
}

/// Activates a standalone target: optional dry-activate, the action (with auto-rollback
/// when enabled for switch/test), then the system profile for boot/switch. A failed
/// switch or test is undone by activating the previous system again. `who` names this
/// deploy as the holder of the activation lock an auto-rollback activation keeps.
pub async fn standalone(
    remote: &impl Host,
    t: &Target,
    action: Action,
    dry_activate_first: bool,
    auto_rollback: bool,
    who: &str,
) -> Result<(), ActivationError> {
    let toplevel = t.artifact.toplevel.display().to_string();
    let stc = format!("{toplevel}/bin/switch-to-configuration");
    if dry_activate_first {
        remote.run(&[&stc, "dry-activate"]).await.map_err(ActivationError::Command)?;
    }
    let previous = remote.realpath("/run/current-system").await;
    let with_rollback = auto_rollback && matches!(action, Action::Switch | Action::Test);
    match (&t.artifact.auto_rollback, with_rollback) {
        (Some(script), true) => {
            let timeout = t.auto_rollback_timeout;
            let who = format!(
                "activation of {toplevel} ({}, switches back unless confirmed within {timeout} s) by {who}",
                action.as_str()
            );
            activate_with_rollback(
                remote,
                &script.display().to_string(),
                &toplevel,
                action,
                timeout,
                &who,
            )
            .await?
        }
        _ => {
            if let Err(e) = remote.run(&[&stc, action.as_str()]).await {
                let rolled_back = match (&previous, action) {
                    (Some(prev), Action::Switch | Action::Test) if *prev != toplevel => {
                        let prev_stc = format!("{prev}/bin/switch-to-configuration");
                        remote.run(&[&prev_stc, action.as_str()]).await.is_ok()
                    }
                    _ => false,
                };
                return Err(if rolled_back {
                    ActivationError::RolledBack(e)
                } else {
                    ActivationError::Command(e)
                });
            }
        }
    }
    if action.sets_profile() {
        remote
            .run(&["nix-env", "-p", SYSTEM_PROFILE, "--set", &toplevel])
            .await
            .map_err(ActivationError::SystemProfile)?;
    }
    Ok(())
}

/// How the deployer's side of the confirmation protocol ended.
enum Confirmation {
    Confirmed,
    /// The target reported a failed activation and switches back by itself.
    Failed,
    /// No confirmation could be written: the target switches back by itself.
    NotConfirmed,
    /// The check file did not reach `switched` in time; its last content.
    Hung {
        state: String,
        secs: u64,
    },
}

/// Spec 2.3 step 3: the target runs the auto-rollback script in the background (holding
/// the host's activation lock while it runs); we wait for `switched` in the check file
/// and confirm. Without a confirmation the target switches back by itself after
/// `timeout` seconds. The wait for `switched` is bounded by the command deadline (the
/// spec's loop waits forever while the file says `switching`).
async fn activate_with_rollback(
    remote: &impl Host,
    script: &str,
    toplevel: &str,
    action: Action,
    timeout: u64,
    who: &str,
) -> Result<(), ActivationError> {
    let check_file = format!("/run/carrier-confirm-{}", crate::links::random_suffix());
    let timeout_s = timeout.to_string();
    let script_argv = ["sh", script, "-t", &timeout_s, toplevel, action.as_str(), &check_file];
    let argv = holding_activation_lock(who, &script_argv);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let background = remote.output_unbounded(&argv);
    let switching_limit = remote.command_timeout();
    let confirm = async {
        let started = Instant::now();
        let mut last = String::new();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let state = remote
                .output(&["cat", &check_file])
                .await
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
            match state.as_deref() {
                Some("switched") => break,
                Some("failed") => return Confirmation::Failed,
                // no state yet (the script has not started) or `switching`
                _ if started.elapsed() > switching_limit => {
                    return Confirmation::Hung { state: last, secs: switching_limit.as_secs() };
                }
                Some(s) => last = s.to_string(),
                None => {}
            }
        }
        for _ in 0..10 {
            let ok = remote
                .output(&["sh", "-c", "echo confirmed > \"$1\"", "sh", &check_file])
                .await
                .is_ok_and(|o| o.status.success());
            if ok {
                return Confirmation::Confirmed;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Confirmation::NotConfirmed
    };
    tokio::pin!(background, confirm);
    let (result, confirmation) = tokio::select! {
        // the script ended first: failed early, or the connection is gone
        result = &mut background => (result, None),
        c = &mut confirm => match c {
            Confirmation::Hung { state, secs } => {
                return Err(ActivationError::Hung { state, secs, host: remote.name().to_string(), command: script_argv.join(" ") });
            }
            // the script exits within a poll after a confirmation, or switches back within `timeout`
            c => {
                let limit = Duration::from_secs(timeout + 30);
                let result = tokio::time::timeout(limit, background).await.unwrap_or_else(|_| {
                    Err(HostError::NoAnswer { host: remote.name().into(), command: script_argv.join(" "), secs: limit.as_secs() })
                });
                (result, Some(c))
            }
        },
    };
    let confirmed = matches!(confirmation, Some(Confirmation::Confirmed));
    match result {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) if out.status.code() == Some(75) => Err(ActivationError::ActivationLockTaken {
            host: remote.name().to_string(),
            message: failure_message(&out),
        }),
        Ok(out) => Err(ActivationError::SwitchedBack { message: failure_message(&out) }),
        Err(e) if confirmed => Err(ActivationError::LostAfterConfirming(e)),
        Err(source) => Err(ActivationError::LostWhileActivating { source, timeout }),
    }
}

/// Sets several carried profiles on one carrier with one `carrier profile set`, so its
/// on-change hooks (the netboot rebuild) run once for all of them.
pub async fn carried(remote: &impl Host, targets: &[&Target]) -> Result<(), HostError> {
    let mut argv: Vec<String> = vec!["carrier".into(), "profile".into(), "set".into()];
    for t in targets {
        if let Kind::Carried { profile, .. } = &t.kind {
            argv.extend(["-p".to_string(), profile.clone()]);
        }
    }
    argv.extend(targets.iter().map(|t| t.artifact.toplevel.display().to_string()));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    remote.run(&argv).await.map(|_| ())
}
