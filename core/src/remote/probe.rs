//! `carrier test-connection` (spec 5): whether each host answers `cat /proc/uptime`
//! within a deadline, all hosts at once.

use std::time::Duration;

use super::{Destination, Host, HostError, Hosts};

/// Each machine with its host's uptime in seconds, or why it could not be read.
pub async fn probe_all<H: Hosts>(
    probes: &[Destination],
    hosts: &H,
    limit: Duration,
) -> Vec<(String, Result<f64, HostError>)> {
    let runs = probes.iter().map(|p| async move {
        let result = match hosts.open(&p.host, p.port).await {
            Ok(host) => host.uptime(limit).await,
            Err(e) => Err(e),
        };
        (p.machine.clone(), result)
    });
    futures::future::join_all(runs).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::fake::{FakeHost, FakeHosts, Reply};

    #[tokio::test(start_paused = true)]
    async fn each_host_is_reachable_or_says_why_not() {
        let (up, down, hung) =
            (FakeHost::new("up.lab"), FakeHost::new("down.lab"), FakeHost::new("hung.lab"));
        up.file("/proc/uptime", "12.50 20.00\n");
        down.unreachable();
        hung.reply("cat /proc/uptime", [Reply::Hang]);
        let probes: Vec<Destination> = ["up", "down", "hung"]
            .map(|m| Destination { machine: m.into(), host: format!("{m}.lab"), port: 22 })
            .to_vec();
        let hosts = FakeHosts::new(&[&up, &down, &hung]);
        let results = probe_all(&probes, &hosts, Duration::from_secs(3)).await;
        let text: Vec<(String, Result<f64, String>)> =
            results.into_iter().map(|(m, r)| (m, r.map_err(|e| e.to_string()))).collect();
        assert_eq!(
            text,
            [
                ("up".to_string(), Ok(12.5)),
                ("down".to_string(), Err("cannot connect to down.lab: Connection refused".into())),
                (
                    "hung".to_string(),
                    Err(
                        "`cat /proc/uptime` did not finish within 3 s and was killed (on hung.lab)"
                            .into()
                    )
                ),
            ]
        );
    }
}
