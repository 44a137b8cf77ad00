//! Health checks after activation (spec 2.3 step 6): systemd properties (NixOS with
//! `healthChecks.systemd.enable`), `builderCommands` run here and `machineCommands` run on
//! the target. Each check retries every `cooldown` seconds until it passes or its
//! `timeout` has passed; all checks run concurrently (at most 5 at a time).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::remote::{Connections, Remote};
use super::{MachineState, Target};
use crate::cluster::{Machine, OutputMatch, Spin, attr_to_string};
use crate::events::{Event, EventSink, Outcome, Phase};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// Runs on the deploy host.
    Local(Vec<String>),
    /// Runs on the target.
    Remote(Vec<String>),
    /// `systemctl show [unit]` must contain every `Key=Value`.
    Systemd { unit: Option<String>, properties: Vec<(String, String)> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub description: String,
    pub kind: CheckKind,
    pub exit_status: i64,
    pub stdout: OutputMatch,
    pub stderr: OutputMatch,
    pub timeout: Duration,
    pub cooldown: Duration,
}

/// The checks of a machine, placeholders `{attr.path}` replaced (spec 1.1).
pub fn checks_of(m: &Machine) -> Vec<Check> {
    if m.is_carried() || !m.is_runnable() {
        return Vec::new();
    }
    let hc = &m.meta_config.health_checks;
    let secs = |s: i64| Duration::from_secs(s.max(0) as u64);
    let mut out = Vec::new();
    if m.meta_config.spin == Spin::Nixos && hc.systemd.enable {
        let group = |unit: Option<&String>, props: &[crate::cluster::PropertyCheck]| Check {
            description: match unit {
                Some(u) => format!("systemd unit {u}"),
                None => "systemd system state".into(),
            },
            kind: CheckKind::Systemd {
                unit: unit.cloned(),
                properties: props.iter().map(|p| (p.property.clone(), p.value.clone())).collect(),
            },
            exit_status: 0,
            stdout: OutputMatch::default(),
            stderr: OutputMatch::default(),
            timeout: secs(props.iter().map(|p| p.timeout).min().unwrap_or(60)),
            cooldown: secs(props.iter().map(|p| p.cooldown).min().unwrap_or(3)),
        };
        if !hc.systemd.system_properties.is_empty() {
            out.push(group(None, &hc.systemd.system_properties));
        }
        for (unit, props) in &hc.systemd.unit_properties {
            if !props.is_empty() {
                out.push(group(Some(unit), props));
            }
        }
    }
    let command = |c: &crate::cluster::CheckCommand, remote: bool| {
        let argv: Vec<String> = c.command.iter().map(|w| substitute(m, w)).collect();
        Check {
            description: if c.description.is_empty() { argv.join(" ") } else { c.description.clone() },
            kind: if remote { CheckKind::Remote(argv) } else { CheckKind::Local(argv) },
            exit_status: c.exit_status,
            stdout: c.standard_output.clone(),
            stderr: c.standard_error.clone(),
            timeout: secs(c.timeout),
            cooldown: secs(c.cooldown),
        }
    };
    out.extend(hc.builder_commands.iter().map(|c| command(c, false)));
    out.extend(hc.machine_commands.iter().map(|c| command(c, true)));
    out
}

/// Replaces every `{attr.path}` with the machine's value (as `carrier ls -o` prints it).
fn substitute(m: &Machine, word: &str) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else { break };
        out.push_str(&rest[..start]);
        let key = &rest[start + 1..start + len];
        out.push_str(&attr_to_string(m.attr(key).as_ref()));
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

/// The first way `output` fails the check, if any (spec order: exit status, stdout
/// match, include, exclude, then the same for stderr).
pub fn verify(check: &Check, status: i32, stdout: &str, stderr: &str) -> Result<(), String> {
    if let CheckKind::Systemd { properties, .. } = &check.kind {
        let values: BTreeMap<&str, &str> = stdout.lines().filter_map(|l| l.split_once('=')).collect();
        for (k, want) in properties {
            match values.get(k.as_str()) {
                None => return Err(format!("property \"{k}\" not found")),
                Some(v) if v != want => return Err(format!("{k}={v}, expected {want}")),
                _ => {}
            }
        }
        return Ok(());
    }
    if i64::from(status) != check.exit_status {
        return Err(format!("exit status {status}, expected {}", check.exit_status));
    }
    for (name, text, m) in [("stdout", stdout, &check.stdout), ("stderr", stderr, &check.stderr)] {
        if let Some(exact) = &m.exact
            && text != exact {
                return Err(format!("{name} is {text:?}, expected {exact:?}"));
            }
        if let Some(missing) = m.include.iter().find(|s| !text.contains(s.as_str())) {
            return Err(format!("{name} does not include {missing:?}"));
        }
        if let Some(found) = m.exclude.iter().find(|s| text.contains(s.as_str())) {
            return Err(format!("{name} includes {found:?}"));
        }
    }
    Ok(())
}

/// One run of the check, killed when `limit` passes.
async fn attempt(check: &Check, remote: &Remote, limit: Duration) -> Result<(), String> {
    let argv: Vec<String> = match &check.kind {
        CheckKind::Local(argv) | CheckKind::Remote(argv) => argv.clone(),
        CheckKind::Systemd { unit, .. } => {
            let mut a = vec!["systemctl".to_string(), "show".into()];
            a.extend(unit.clone());
            a
        }
    };
    if argv.is_empty() {
        return Err("the check has an empty command".into());
    }
    let words: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = match &check.kind {
        CheckKind::Local(_) => Remote::local(limit).output_within(&words, limit).await,
        _ => remote.output_within(&words, limit).await,
    }
    .map_err(|e| e.to_string())?;
    let status = out.status.code().unwrap_or(-1);
    verify(check, status, &String::from_utf8_lossy(&out.stdout), &String::from_utf8_lossy(&out.stderr))
}

/// Retries until the check passes or its timeout has passed.
async fn run_check(check: &Check, remote: &Remote) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let limit = check.timeout.saturating_sub(started.elapsed()).max(Duration::from_secs(1));
        match attempt(check, remote, limit).await {
            Ok(()) => return Ok(()),
            Err(e) if started.elapsed() + check.cooldown > check.timeout => return Err(e),
            Err(_) => tokio::time::sleep(check.cooldown).await,
        }
    }
}

/// Runs the checks of every target; a machine with a failed check becomes `Failed`.
pub async fn run_all(
    targets: &[&Target],
    connections: &Connections,
    sink: &dyn EventSink,
    states: &mut BTreeMap<String, MachineState>,
) {
    let total: usize = targets.iter().map(|t| t.checks.len()).sum();
    if total == 0 {
        return;
    }
    sink.emit(Event::PhaseStarted { phase: Phase::HealthCheck, machines: targets.len() });
    let semaphore = &Semaphore::new(5);
    let jobs = targets.iter().flat_map(|t| {
        t.checks.iter().map(move |check| {
            async move {
                let _permit = semaphore.acquire().await.expect("semaphore open");
                let result = match connections.get(&t.host, t.port).await {
                    Ok(remote) => run_check(check, &remote).await,
                    Err(e) => Err(e.to_string()),
                };
                (t.machine.clone(), check.description.clone(), result)
            }
        })
    });
    let results = futures::future::join_all(jobs).await;
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (machine, description, result) in results {
        if let Err(e) = result {
            sink.emit(Event::Log { phase: Phase::HealthCheck, machine: Some(machine.clone()), line: format!("{description}: {e}") });
            failures.entry(machine).or_default().push(format!("{description}: {e}"));
        }
    }
    for t in targets {
        let outcome = match failures.get(&t.machine) {
            None => Outcome::Ok,
            Some(f) => {
                let error = format!("health checks failed: {}", f.join("; "));
                states.insert(t.machine.clone(), MachineState::Failed { phase: Phase::HealthCheck, error: error.clone(), changed: true });
                Outcome::Failed { error }
            }
        };
        sink.emit(Event::MachineFinished { phase: Phase::HealthCheck, machine: t.machine.clone(), outcome });
    }
    sink.emit(Event::PhaseFinished { phase: Phase::HealthCheck });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: CheckKind) -> Check {
        Check {
            description: "c".into(),
            kind,
            exit_status: 0,
            stdout: OutputMatch { exact: None, include: vec!["ok".into()], exclude: vec!["bad".into()] },
            stderr: OutputMatch::default(),
            timeout: Duration::from_secs(1),
            cooldown: Duration::from_secs(1),
        }
    }

    #[test]
    fn first_failure_in_spec_order_wins() {
        let c = check(CheckKind::Local(vec!["x".into()]));
        assert_eq!(verify(&c, 0, "all ok", ""), Ok(()));
        assert_eq!(verify(&c, 1, "bad", ""), Err("exit status 1, expected 0".into()));
        assert_eq!(verify(&c, 0, "nope", ""), Err("stdout does not include \"ok\"".into()));
        assert_eq!(verify(&c, 0, "ok but bad", ""), Err("stdout includes \"bad\"".into()));
    }

    #[test]
    fn systemd_properties_compare_exactly() {
        let c = check(CheckKind::Systemd { unit: None, properties: vec![("SystemState".into(), "running".into())] });
        assert_eq!(verify(&c, 0, "A=b\nSystemState=running\n", ""), Ok(()));
        assert_eq!(verify(&c, 0, "SystemState=degraded", ""), Err("SystemState=degraded, expected running".into()));
        assert_eq!(verify(&c, 0, "", ""), Err("property \"SystemState\" not found".into()));
    }
}
