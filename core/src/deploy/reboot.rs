//! `deploy --reboot` (spec 2.3 step 5): reboot a standalone host after its `boot`
//! activation and wait until it is back, told by its uptime going down.

use std::time::Duration;

use crate::remote::{Host, HostError, Hosts};

/// How long `--wait-online` waits for a rebooted host (upstream's default: 600 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOnline {
    /// Until the host is back, however long it takes.
    Wait,
    /// Only send `reboot`.
    NoWait,
    /// At most this long; longer is a failure of the machine.
    Within(Duration),
}

impl Default for WaitOnline {
    fn default() -> Self {
        WaitOnline::Within(Duration::from_secs(600))
    }
}

/// As `--wait-online` takes it.
impl std::fmt::Display for WaitOnline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitOnline::Wait => f.write_str("wait"),
            WaitOnline::NoWait => f.write_str("nowait"),
            WaitOnline::Within(limit) => write!(f, "{}", limit.as_secs()),
        }
    }
}

impl std::str::FromStr for WaitOnline {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "wait" => Ok(WaitOnline::Wait),
            "nowait" => Ok(WaitOnline::NoWait),
            _ => {
                s.parse::<u64>().map(|n| WaitOnline::Within(Duration::from_secs(n))).map_err(|_| {
                    format!("invalid --wait-online '{s}': expected wait, nowait or seconds")
                })
            }
        }
    }
}

/// Why a reboot failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RebootError {
    #[error("reading the uptime before the reboot: {0}")]
    Uptime(HostError),
    #[error("running `reboot` on {host}: {source}")]
    Reboot { host: String, source: HostError },
    #[error("{host} was not back online within {secs} s after `reboot`")]
    TimedOut { host: String, secs: u64 },
}

/// How often the rebooting host is asked for its uptime (spec: every 0.3 s).
const POLL_EVERY: Duration = Duration::from_millis(300);
/// The deadline of one poll: a host that is down does not answer at all.
const POLL_LIMIT: Duration = Duration::from_secs(5);

/// Reboots `host` (opened from `hosts` as `name`:`port`) and, unless `wait` is
/// [`WaitOnline::NoWait`], waits until its uptime is lower than before, asking each time
/// over a new connection (the reboot ended the old one); returns how long that took.
pub async fn reboot<H: Hosts>(
    hosts: &H,
    (name, port): (&str, u16),
    host: &H::Host,
    wait: WaitOnline,
) -> Result<Duration, RebootError> {
    let before = host.uptime(host.command_timeout()).await.map_err(RebootError::Uptime)?;
    let started = tokio::time::Instant::now();
    // the connection may drop before `reboot` answers: only a host that says no failed
    match host.output_within(&["reboot"], POLL_LIMIT).await {
        Ok(out) if !out.status.success() => {
            return Err(RebootError::Reboot {
                host: host.name().to_string(),
                source: HostError::Run {
                    host: host.name().to_string(),
                    command: "reboot".into(),
                    message: crate::remote::failure_message(&out),
                },
            });
        }
        _ => {}
    }
    let limit = match wait {
        WaitOnline::NoWait => return Ok(started.elapsed()),
        WaitOnline::Wait => None,
        WaitOnline::Within(limit) => Some(limit),
    };
    loop {
        let now = match hosts.reconnect(name, port).await {
            Ok(host) => host.uptime(POLL_LIMIT).await.ok(),
            Err(_) => None,
        };
        if now.is_some_and(|now| now < before) {
            return Ok(started.elapsed());
        }
        if limit.is_some_and(|l| started.elapsed() >= l) {
            let secs = limit.map(|l| l.as_secs()).unwrap_or_default();
            return Err(RebootError::TimedOut { host: host.name().to_string(), secs });
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
