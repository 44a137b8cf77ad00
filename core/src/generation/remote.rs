//! Generations on hosts, through [`Hosts`]: the system profile's generations read by a
//! fixed script that takes the profile as its argument (spec 4.2), a carrier's carried
//! profiles through `carrier profile list --json`, deletions with `nix-env
//! --delete-generations` or one `carrier profile delete-generations` per carrier (one
//! netboot rebuild), and `nix-collect-garbage`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;

use super::{GenerationError, HostPart, Record, approx_name};
use crate::carrier::profiles::ProfileListing;
use crate::remote::{Host, HostError, Hosts};

/// Where one machine's remote generations live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTarget {
    pub machine: String,
    /// The SSH destination holding the profile (the machine's, or its carrier's).
    pub host: String,
    pub port: u16,
    /// `/nix/var/nix/profiles/system` or `/nix/var/nix/profiles/confctl-<alias>`.
    pub profile: String,
    /// The carrier of a carried machine.
    pub carrier: Option<String>,
}

/// Prints the profile's real path (an empty line when it has none), then for every
/// `<profile>-<N>-link`: `link;target;mtime;kernel;version`. The profile is `$1`, never
/// part of the script.
const LIST_SCRIPT: &str = r#"p=$1
printf '%s\n' "$(realpath -e -- "$p" 2>/dev/null)"
for g in "$p"-*-link; do
  [ -L "$g" ] || continue
  k=
  for f in kernel bzImage; do
    if [ -L "$g/$f" ]; then k=$(readlink "$g/$f"); break; fi
  done
  v=$(head -c 200 "$g/nixos-version" 2>/dev/null | tr -d ';\n')
  printf '%s;%s;%s;%s;%s\n' "$g" "$(readlink "$g")" "$(stat -c %Y "$g")" "$k" "$v"
done"#;

/// The argv listing `profile`'s generations.
pub fn list_argv(profile: &str) -> [&str; 5] {
    ["sh", "-c", LIST_SCRIPT, "sh", profile]
}

/// Parses [`LIST_SCRIPT`]'s output into records, ascending by number. Lines whose link
/// is not `<profile>-<N>-link` (the glob also matches `confctl-a-b-3-link` for profile
/// `confctl-a`) are dropped.
pub fn parse_list(t: &RemoteTarget, text: &str) -> Result<Vec<Record>, GenerationError> {
    let bad = |message: String| GenerationError::Output {
        host: t.host.clone(),
        command: format!("generation listing of {}", t.profile),
        message,
    };
    let mut lines = text.lines();
    let current = lines.next().unwrap_or("").trim();
    let prefix = format!("{}-", t.profile);
    let mut out = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.splitn(5, ';').collect();
        let [link, target, mtime, kernel, version] = fields[..] else {
            return Err(bad(format!("line '{line}' has not 5 fields")));
        };
        let number = link
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix("-link"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok());
        let Some(number) = number else { continue };
        let secs: i64 = mtime.parse().map_err(|_| bad(format!("'{mtime}' is not a time")))?;
        let date = jiff::Timestamp::from_second(secs).map_err(|e| bad(e.to_string()))?;
        out.push(Record {
            machine: t.machine.clone(),
            name: approx_name(date),
            date,
            store_path: target.to_string(),
            build: None,
            host: Some(host_part(t, number, !current.is_empty() && target == current)),
            kernel: kernel_version(kernel),
            version: Some(version.to_string()).filter(|v| !v.is_empty()),
            revision: None,
        });
    }
    out.sort_by_key(|r| r.host.as_ref().map(|h| h.number));
    Ok(out)
}

fn host_part(t: &RemoteTarget, number: u64, current: bool) -> HostPart {
    HostPart {
        number,
        current,
        host: t.host.clone(),
        port: t.port,
        profile: t.profile.clone(),
        carrier: t.carrier.clone(),
    }
}

/// `/nix/store/<hash>-linux-<version>/bzImage` → `<version>`.
pub fn kernel_version(path: &str) -> Option<String> {
    let name = path.strip_prefix("/nix/store/")?.split('/').next()?;
    let (_, rest) = name.split_once('-')?;
    let version = rest.strip_prefix("linux-")?;
    (!version.is_empty()).then(|| version.to_string())
}

/// Records from `carrier profile list --json` on a carrier, for one carried machine.
pub fn parse_carried(t: &RemoteTarget, json: &str) -> Result<Vec<Record>, GenerationError> {
    let listing: Vec<ProfileListing> =
        serde_json::from_str(json).map_err(|e| GenerationError::Output {
            host: t.host.clone(),
            command: format!("carrier profile list -p {} --json", t.profile),
            message: e.to_string(),
        })?;
    let mut out = Vec::new();
    for p in listing.into_iter().filter(|p| p.path.as_os_str() == t.profile.as_str()) {
        for g in p.generations {
            let date = jiff::Timestamp::from_second(g.time).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            let machine = g.machine.as_ref();
            out.push(Record {
                machine: t.machine.clone(),
                name: approx_name(date),
                date,
                store_path: g.store_path.display().to_string(),
                build: None,
                host: Some(host_part(t, g.number, g.current)),
                kernel: None,
                version: machine.and_then(|m| m.version.clone()),
                revision: machine.and_then(|m| m.revision.clone()),
            });
        }
    }
    out.sort_by_key(|r| r.host.as_ref().map(|h| h.number));
    Ok(out)
}

/// Lists the remote generations of `target` on its host.
pub async fn list_on(host: &impl Host, t: &RemoteTarget) -> Result<Vec<Record>, GenerationError> {
    if t.carrier.is_some() {
        let out = host.run(&["carrier", "profile", "list", "-p", &t.profile, "--json"]).await?;
        parse_carried(t, &out)
    } else {
        let out = host.run(&list_argv(&t.profile)).await?;
        parse_list(t, &out)
    }
}

/// Lists the remote generations of every target, all hosts at once (one connection
/// each); the results in the targets' order.
pub async fn list_remote<H: Hosts>(
    hosts: &H,
    targets: &[RemoteTarget],
) -> Vec<Result<Vec<Record>, GenerationError>> {
    futures::future::join_all(targets.iter().map(|t| async move {
        let host = hosts.open(&t.host, t.port).await?;
        list_on(host.as_ref(), t).await
    }))
    .await
}

/// One change on one host: `nix-env --delete-generations` on a system profile, or one
/// `carrier profile delete-generations` for every carried profile of a carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub host: String,
    pub port: u16,
    pub argv: Vec<String>,
}

/// Groups the host parts of `records` into one deletion per profile (standalone) or
/// per carrier (carried), in a stable order.
pub fn deletions(records: &[&Record]) -> Vec<Deletion> {
    // (host, port, carried) → profile → numbers
    let mut groups: BTreeMap<(String, u16, bool), BTreeMap<String, Vec<u64>>> = BTreeMap::new();
    for h in records.iter().filter_map(|r| r.host.as_ref()) {
        let key = (h.host.clone(), h.port, h.carrier.is_some());
        groups.entry(key).or_default().entry(h.profile.clone()).or_default().push(h.number);
    }
    let mut out = Vec::new();
    for ((host, port, carried), profiles) in groups {
        let numbers = |n: &[u64]| n.iter().map(u64::to_string).collect::<Vec<_>>();
        if carried {
            let mut argv: Vec<String> =
                ["carrier", "profile", "delete-generations"].map(String::from).into();
            for p in profiles.keys() {
                argv.extend(["-p".to_string(), p.clone()]);
            }
            argv.extend(profiles.values().map(|n| numbers(n).join(",")));
            out.push(Deletion { host, port, argv });
        } else {
            for (profile, n) in profiles {
                let mut argv: Vec<String> =
                    ["nix-env", "-p", &profile, "--delete-generations"].map(String::from).into();
                argv.extend(numbers(&n));
                out.push(Deletion { host: host.clone(), port, argv });
            }
        }
    }
    out
}

/// Deletes the host parts of `records` (never a current one: refused before anything
/// runs), one command per profile or carrier, hosts in parallel. The result names each
/// host with its outcome.
pub async fn remove_remote<H: Hosts>(
    hosts: &H,
    records: &[&Record],
) -> Result<Vec<(String, Result<(), GenerationError>)>, GenerationError> {
    if let Some(r) = records.iter().find(|r| r.host.as_ref().is_some_and(|h| h.current)) {
        return Err(GenerationError::Current { machine: r.machine.clone(), name: r.name.clone() });
    }
    let runs = deletions(records).into_iter().map(|d| async move {
        let result = async {
            let host = hosts.open(&d.host, d.port).await?;
            let argv: Vec<&str> = d.argv.iter().map(String::as_str).collect();
            host.run(&argv).await.map(|_| ()).map_err(GenerationError::from)
        }
        .await;
        (d.host, result)
    });
    Ok(futures::future::join_all(runs).await)
}

/// The end of `nix-collect-garbage`'s output: `N store paths deleted, X MiB freed`.
pub fn gc_summary(output: &str) -> String {
    output
        .lines()
        .rev()
        .find(|l| l.contains("store paths deleted"))
        .map_or_else(|| "done".to_string(), |l| l.trim().to_string())
}

/// Runs `nix-collect-garbage` on each `(host, port)`, at most `max_concurrent` at a
/// time; each host's summary line or error.
pub async fn collect_garbage<H: Hosts>(
    hosts: &H,
    targets: &[(String, u16)],
    max_concurrent: usize,
) -> Vec<(String, Result<String, HostError>)> {
    // owned names: a closure over borrowed ones makes the future not `Send`
    futures::stream::iter(targets.iter().cloned().map(|(name, port)| async move {
        let result = async {
            let host: Arc<H::Host> = hosts.open(&name, port).await?;
            let out = host.output(&["nix-collect-garbage"]).await?;
            if out.status.success() {
                let text = String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr);
                Ok(gc_summary(&text))
            } else {
                Err(HostError::Run {
                    host: name.clone(),
                    command: "nix-collect-garbage".into(),
                    message: crate::remote::failure_message(&out),
                })
            }
        }
        .await;
        (name, result)
    }))
    .buffered(max_concurrent.max(1))
    .collect()
    .await
}
