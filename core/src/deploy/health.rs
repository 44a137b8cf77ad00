//! Health checks after activation (spec 2.3 step 6): systemd properties (NixOS with
//! `healthChecks.systemd.enable`), `builderCommands` run here and `machineCommands` run on
//! the target. Each check retries every `cooldown` seconds until it passes or its
//! `timeout` has passed; all checks run concurrently (at most `max_jobs` at a time).
//! Deploys run them after activation, `carrier health-check` on what machines run now.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::cluster::{Machine, OutputMatch, Spin, attr_to_string};
use crate::events::{Event, EventSink, Phase};
use crate::remote::{Host, HostError, Hosts};

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
            description: if c.description.is_empty() {
                argv.join(" ")
            } else {
                c.description.clone()
            },
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

/// Why one attempt of a check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("property \"{0}\" not found")]
    MissingProperty(String),
    #[error("{key}={value}, expected {want}")]
    Property { key: String, value: String, want: String },
    #[error("exit status {status}, expected {want}")]
    ExitStatus { status: i32, want: i64 },
    #[error("{stream} is {text:?}, expected {want:?}")]
    NotExactly { stream: &'static str, text: String, want: String },
    #[error("{stream} does not include {missing:?}")]
    Missing { stream: &'static str, missing: String },
    #[error("{stream} includes {found:?}")]
    Excluded { stream: &'static str, found: String },
    #[error("the check has an empty command")]
    EmptyCommand,
    #[error(transparent)]
    Host(#[from] HostError),
}

/// A check that did not pass within its timeout: its description and last failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{description}: {error}")]
pub struct CheckFailure {
    pub description: String,
    pub error: CheckError,
}

/// The first way `output` fails the check, if any (spec order: exit status, stdout
/// match, include, exclude, then the same for stderr).
pub fn verify(check: &Check, status: i32, stdout: &str, stderr: &str) -> Result<(), CheckError> {
    if let CheckKind::Systemd { properties, .. } = &check.kind {
        let values: BTreeMap<&str, &str> =
            stdout.lines().filter_map(|l| l.split_once('=')).collect();
        for (k, want) in properties {
            match values.get(k.as_str()) {
                None => return Err(CheckError::MissingProperty(k.clone())),
                Some(v) if v != want => {
                    return Err(CheckError::Property {
                        key: k.clone(),
                        value: v.to_string(),
                        want: want.clone(),
                    });
                }
                _ => {}
            }
        }
        return Ok(());
    }
    if i64::from(status) != check.exit_status {
        return Err(CheckError::ExitStatus { status, want: check.exit_status });
    }
    for (stream, text, m) in [("stdout", stdout, &check.stdout), ("stderr", stderr, &check.stderr)]
    {
        if let Some(exact) = &m.exact
            && text != exact
        {
            return Err(CheckError::NotExactly {
                stream,
                text: text.to_string(),
                want: exact.clone(),
            });
        }
        if let Some(missing) = m.include.iter().find(|s| !text.contains(s.as_str())) {
            return Err(CheckError::Missing { stream, missing: missing.clone() });
        }
        if let Some(found) = m.exclude.iter().find(|s| text.contains(s.as_str())) {
            return Err(CheckError::Excluded { stream, found: found.clone() });
        }
    }
    Ok(())
}

/// One run of the check, killed when `limit` passes.
async fn attempt<H: Host>(
    check: &Check,
    target: &H,
    local: &H,
    limit: Duration,
) -> Result<(), CheckError> {
    let argv: Vec<String> = match &check.kind {
        CheckKind::Local(argv) | CheckKind::Remote(argv) => argv.clone(),
        CheckKind::Systemd { unit, .. } => {
            let mut a = vec!["systemctl".to_string(), "show".into()];
            a.extend(unit.clone());
            a
        }
    };
    if argv.is_empty() {
        return Err(CheckError::EmptyCommand);
    }
    let words: Vec<&str> = argv.iter().map(String::as_str).collect();
    let host = if matches!(check.kind, CheckKind::Local(_)) { local } else { target };
    let out = host.output_within(&words, limit).await?;
    let status = out.status.code().unwrap_or(-1);
    verify(
        check,
        status,
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
    )
}

/// Retries until the check passes or its timeout has passed.
async fn run_check<H: Host>(check: &Check, target: &H, local: &H) -> Result<(), CheckError> {
    let started = Instant::now();
    loop {
        let limit = check.timeout.saturating_sub(started.elapsed()).max(Duration::from_secs(1));
        match attempt(check, target, local, limit).await {
            Ok(()) => return Ok(()),
            Err(e) if started.elapsed() + check.cooldown > check.timeout => return Err(e),
            Err(_) => tokio::time::sleep(check.cooldown).await,
        }
    }
}

/// One machine's checks and the host they run on (builder commands run here).
#[derive(Debug, Clone, Copy)]
pub struct MachineChecks<'a> {
    pub machine: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub checks: &'a [Check],
}

impl<'a> MachineChecks<'a> {
    /// The checks of a standalone machine with a target: what `carrier health-check`
    /// runs without a deploy.
    pub fn of(m: &'a Machine, checks: &'a [Check]) -> Option<Self> {
        let host = m.target_host().filter(|_| m.is_runnable())?;
        Some(MachineChecks { machine: &m.name, host, port: m.target_port(), checks })
    }
}

/// Why `carrier health-check` runs no check on `m`, if it runs none.
pub fn not_checked(m: &Machine) -> Option<&'static str> {
    if m.is_carried() {
        Some("a carried machine has no health checks of its own (they run on standalone machines)")
    } else if !m.is_runnable() {
        Some("it has no ssh target (host.target is null)")
    } else if !m.is_managed() {
        Some("it is not managed: health checks run on managed machines only")
    } else if checks_of(m).is_empty() {
        Some("it has no health checks configured")
    } else {
        None
    }
}

/// The outcome of one check: `error` is its last failure, `None` when it passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub machine: String,
    pub description: String,
    pub error: Option<CheckError>,
}

/// Runs the checks of every machine, at most `max_jobs` at a time (their failures
/// also as log lines); returns every check's outcome in the order given.
pub async fn run_all(
    machines: &[MachineChecks<'_>],
    hosts: &impl Hosts,
    max_jobs: usize,
    sink: &dyn EventSink,
) -> Vec<CheckResult> {
    let semaphore = &Semaphore::new(max_jobs.max(1));
    let local = &hosts.local();
    let jobs = machines.iter().flat_map(|t| {
        t.checks.iter().map(move |check| async move {
            let _permit = semaphore.acquire().await.expect("semaphore open");
            let result = match hosts.open(t.host, t.port).await {
                Ok(host) => run_check(check, &*host, local).await,
                Err(e) => Err(e.into()),
            };
            CheckResult {
                machine: t.machine.to_string(),
                description: check.description.clone(),
                error: result.err(),
            }
        })
    });
    let results = futures::future::join_all(jobs).await;
    for r in &results {
        if let Some(error) = &r.error {
            sink.emit(Event::Log {
                phase: Phase::HealthCheck,
                machine: Some(r.machine.clone()),
                line: format!("{}: {error}", r.description),
            });
        }
    }
    results
}

/// The checks that failed, per machine.
pub fn failures(results: Vec<CheckResult>) -> BTreeMap<String, Vec<CheckFailure>> {
    let mut out: BTreeMap<String, Vec<CheckFailure>> = BTreeMap::new();
    for r in results {
        if let Some(error) = r.error {
            let failure = CheckFailure { description: r.description, error };
            out.entry(r.machine).or_default().push(failure);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: CheckKind) -> Check {
        Check {
            description: "c".into(),
            kind,
            exit_status: 0,
            stdout: OutputMatch {
                exact: None,
                include: vec!["ok".into()],
                exclude: vec!["bad".into()],
            },
            stderr: OutputMatch::default(),
            timeout: Duration::from_secs(1),
            cooldown: Duration::from_secs(1),
        }
    }

    #[test]
    fn first_failure_in_spec_order_wins() {
        let c = check(CheckKind::Local(vec!["x".into()]));
        let message = |status, stdout| verify(&c, status, stdout, "").map_err(|e| e.to_string());
        assert_eq!(message(0, "all ok"), Ok(()));
        assert_eq!(message(1, "bad"), Err("exit status 1, expected 0".into()));
        assert_eq!(message(0, "nope"), Err("stdout does not include \"ok\"".into()));
        assert_eq!(message(0, "ok but bad"), Err("stdout includes \"bad\"".into()));
    }

    /// `carrier health-check`'s path: checks run where they belong (machine commands on
    /// the target, builder commands here), every outcome comes back in order, and an
    /// unreachable host fails its checks with the connection error.
    #[tokio::test(start_paused = true)]
    async fn every_check_reports_its_outcome_without_a_deploy() {
        use crate::remote::fake::{FakeHost, FakeHosts, Reply};
        let (a, b) = (FakeHost::new("a.lab"), FakeHost::new("b.lab"));
        a.reply("check-a", [Reply::ok("ok")]);
        b.unreachable();
        let hosts = FakeHosts::new(&[&a, &b]);
        hosts.local().reply("check-here", [Reply::ok("ok but bad")]);
        let remote = |argv: &str| Check {
            description: argv.into(),
            ..check(CheckKind::Remote(vec![argv.into()]))
        };
        let a_checks = [
            remote("check-a"),
            Check {
                description: "here".into(),
                ..check(CheckKind::Local(vec!["check-here".into()]))
            },
        ];
        let b_checks = [remote("check-b")];
        let machines = [
            MachineChecks { machine: "a", host: "a.lab", port: 22, checks: &a_checks },
            MachineChecks { machine: "b", host: "b.lab", port: 22, checks: &b_checks },
        ];
        let sink = crate::events::Recorder::default();
        let results = run_all(&machines, &hosts, 1, &sink).await;
        let text: Vec<(&str, &str, Option<String>)> = results
            .iter()
            .map(|r| {
                (
                    r.machine.as_str(),
                    r.description.as_str(),
                    r.error.as_ref().map(|e| e.to_string()),
                )
            })
            .collect();
        assert_eq!(
            text,
            [
                ("a", "check-a", None),
                ("a", "here", Some("stdout includes \"bad\"".into())),
                ("b", "check-b", Some("cannot connect to b.lab: Connection refused".into())),
            ]
        );
        assert_eq!(a.logged("check"), ["check-a"]);
        assert_eq!(hosts.local().logged("check"), ["check-here", "check-here"], "retried once");
        let failed = failures(results);
        assert_eq!(failed.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(sink.events().len(), 2, "one log line per failure");
    }

    #[test]
    fn systemd_properties_compare_exactly() {
        let c = check(CheckKind::Systemd {
            unit: None,
            properties: vec![("SystemState".into(), "running".into())],
        });
        let message = |stdout| verify(&c, 0, stdout, "").map_err(|e| e.to_string());
        assert_eq!(message("A=b\nSystemState=running\n"), Ok(()));
        assert_eq!(
            message("SystemState=degraded"),
            Err("SystemState=degraded, expected running".into())
        );
        assert_eq!(message(""), Err("property \"SystemState\" not found".into()));
    }
}
