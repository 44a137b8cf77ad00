//! Activation (spec 2.3 and 2.4): the skip-if-current rule, `switch-to-configuration`
//! on standalone machines (plain, or with the auto-rollback confirmation protocol), the
//! system profile, and `carrier profile set` on carriers.

use std::time::{Duration, Instant};

use super::plan::{Action, Kind, Target};
use super::remote::{Remote, RemoteError};

pub const SYSTEM_PROFILE: &str = "/nix/var/nix/profiles/system";

/// Spec 2.0 step 6: is the target already using the artifact? Unknown states never skip.
pub async fn is_current(remote: &Remote, t: &Target, action: Action) -> bool {
    let want = t.artifact.toplevel.display().to_string();
    match &t.kind {
        Kind::Carried { profile, .. } => remote.realpath(profile).await.as_deref() == Some(want.as_str()),
        Kind::Standalone => {
            let current = remote.realpath("/run/current-system").await;
            if current.as_deref() != Some(want.as_str()) {
                return false;
            }
            !action.sets_profile() || remote.realpath(SYSTEM_PROFILE).await.as_deref() == Some(want.as_str())
        }
    }
}

/// What activation did on a standalone machine that failed.
#[derive(Debug)]
pub struct ActivationFailure {
    pub message: String,
    /// The previous system was activated again (or the target did it by itself).
    pub rolled_back: bool,
}

/// Activates a standalone target: optional dry-activate, the action (with auto-rollback
/// when enabled for switch/test), then the system profile for boot/switch. A failed
/// switch or test is undone by activating the previous system again.
pub async fn standalone(
    remote: &Remote,
    t: &Target,
    action: Action,
    dry_activate_first: bool,
    auto_rollback: bool,
) -> Result<(), ActivationFailure> {
    let toplevel = t.artifact.toplevel.display().to_string();
    let stc = format!("{toplevel}/bin/switch-to-configuration");
    let fail = |e: RemoteError, rolled_back| ActivationFailure { message: e.to_string(), rolled_back };
    if dry_activate_first {
        remote.run(&[&stc, "dry-activate"]).await.map_err(|e| fail(e, false))?;
    }
    let previous = remote.realpath("/run/current-system").await;
    let with_rollback = auto_rollback && matches!(action, Action::Switch | Action::Test);
    match (&t.artifact.auto_rollback, with_rollback) {
        (Some(script), true) => {
            activate_with_rollback(remote, &script.display().to_string(), &toplevel, action, t.auto_rollback_timeout)
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
                return Err(fail(e, rolled_back));
            }
        }
    }
    if action.sets_profile() {
        remote
            .run(&["nix-env", "-p", SYSTEM_PROFILE, "--set", &toplevel])
            .await
            .map_err(|e| ActivationFailure { message: format!("setting the system profile: {e}"), rolled_back: false })?;
    }
    Ok(())
}

/// Spec 2.3 step 3: the target runs the auto-rollback script in the background; we wait
/// for `switched` in the check file and confirm. Without a confirmation the target
/// switches back by itself after `timeout` seconds.
async fn activate_with_rollback(
    remote: &Remote,
    script: &str,
    toplevel: &str,
    action: Action,
    timeout: u64,
) -> Result<(), ActivationFailure> {
    let check_file = format!("/run/carrier-confirm-{}", crate::links::random_suffix());
    let timeout_s = timeout.to_string();
    let argv = ["sh", script, "-t", &timeout_s, toplevel, action.as_str(), &check_file];
    let background = remote.output(&argv);
    let confirm = async {
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let state = remote.output(&["cat", &check_file]).await.ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
            match state.as_deref() {
                Some("switched") => break,
                // the activation failed and the target switches back by itself
                Some("failed") => return false,
                Some("switching") => continue,
                _ if started.elapsed() > Duration::from_secs(timeout + 10) => return false,
                _ => continue,
            }
        }
        for _ in 0..10 {
            let ok = remote.output(&["sh", "-c", "echo confirmed > \"$1\"", "sh", &check_file]).await.is_ok_and(|o| o.status.success());
            if ok {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        false
    };
    let (result, _) = tokio::join!(background, confirm);
    match result {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(ActivationFailure {
            message: format!("the machine switched back to its previous system: {}", super::remote::failure_message(&out)),
            rolled_back: true,
        }),
        Err(e) => Err(ActivationFailure {
            message: format!(
                "lost the connection while activating ({e}); unless it was confirmed the machine \
                 switches back by itself within {timeout} s"
            ),
            rolled_back: false,
        }),
    }
}

/// Sets several carried profiles on one carrier with one `carrier profile set`, so its
/// on-change hooks (the netboot rebuild) run once for all of them.
pub async fn carried(remote: &Remote, targets: &[&Target]) -> Result<(), RemoteError> {
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
