//! The steps of `carrier generation ls|rm|rotate` over any [`Hosts`]: gathering every
//! selected machine's generations, and removing some (local parts, then one command
//! per profile or carrier) followed by garbage collection where it applies.

use crate::conf_dir::ConfDir;
use std::collections::BTreeSet;
use std::path::Path;

use super::{GenerationError, Record};
use crate::cluster::{Cluster, Machine};
use crate::remote::{HostError, Hosts};

/// Every selected machine's generations, oldest first, in the order given.
#[derive(Debug, Default)]
pub struct Gathered {
    pub machines: Vec<(String, Vec<Record>)>,
    /// Machines whose remote generations could not be read (their list is empty).
    pub errors: Vec<(String, GenerationError)>,
}

/// Reads the machines' local build generations (`local`), their remote ones
/// (`remote`: all hosts at once), or both joined ([`super::unify`]).
pub async fn gather<H: Hosts>(
    cluster: &Cluster,
    machines: &[&Machine],
    conf_dir: &ConfDir,
    hosts: &H,
    local: bool,
    remote: bool,
) -> Gathered {
    let mut out = Gathered::default();
    let mut remote_gens: Vec<Vec<Record>> = vec![Vec::new(); machines.len()];
    if remote {
        let mut targets = Vec::new();
        let mut at = Vec::new();
        for (i, m) in machines.iter().enumerate() {
            match super::remote_target(cluster, m) {
                Ok(t) => {
                    targets.push(t);
                    at.push(i);
                }
                Err(e) => out.errors.push((m.name.clone(), e)),
            }
        }
        for (i, result) in at.into_iter().zip(super::list_remote(hosts, &targets).await) {
            match result {
                Ok(gens) => remote_gens[i] = gens,
                Err(e) => out.errors.push((machines[i].name.clone(), e)),
            }
        }
    }
    for (m, host) in machines.iter().zip(remote_gens) {
        let build = if local { super::local(conf_dir, &m.name) } else { Vec::new() };
        out.machines.push((m.name.clone(), super::unify(host, build)));
    }
    out
}

/// Generation `number` of `m`'s remote profile (its system profile, or its carried
/// profile on its carrier), read from the host: what `carrier generation rm -r <machine>
/// <number>` removes. The current generation is refused, an unknown number named.
pub async fn remote_generation<H: Hosts>(
    cluster: &Cluster,
    m: &Machine,
    hosts: &H,
    number: u64,
) -> Result<Record, GenerationError> {
    let target = super::remote_target(cluster, m)?;
    let host = hosts.open(&target.host, target.port).await?;
    let gens = super::remote::list_on(host.as_ref(), &target).await?;
    let found = gens.into_iter().find(|r| r.host.as_ref().is_some_and(|h| h.number == number));
    let record = found.ok_or_else(|| GenerationError::NoGeneration {
        machine: m.name.clone(),
        number,
        host: target.host.clone(),
    })?;
    if record.is_current() {
        return Err(GenerationError::Current { machine: m.name.clone(), name: number.to_string() });
    }
    Ok(record)
}

/// Where garbage is collected after a removal.
pub struct Gc<'a> {
    /// Whether to collect on this host machine (a machine, or a carried machine's carrier).
    pub on: &'a (dyn Fn(&Machine) -> bool + Sync),
    /// Hosts collecting at the same time.
    pub max_concurrent: usize,
}

/// What a removal did.
#[derive(Debug, Default)]
pub struct Removed {
    /// `<machine or host>: <error>` for every part that failed.
    pub errors: Vec<String>,
    /// `nix-collect-garbage` per host: its summary line or error.
    pub gc: Vec<(String, Result<String, HostError>)>,
}

impl Removed {
    pub fn success(&self) -> bool {
        self.errors.is_empty() && self.gc.iter().all(|(_, r)| r.is_ok())
    }
}

/// Removes `records`: local parts (each announced to `on_line` as `Removing <presence>
/// generation <machine>@<name>`), then remote parts, one command per profile or carrier.
/// Then `nix-collect-garbage` on every host where a deletion succeeded whose machine
/// (or, for carried machines, carrier) `gc.on` accepts, at most `gc.max_concurrent` at a
/// time. A
/// current generation among `records` is refused before anything changes.
pub async fn remove<H: Hosts>(
    cluster: &Cluster,
    conf_dir: &ConfDir,
    roots_dir: &Path,
    hosts: &H,
    records: &[&Record],
    gc: Gc<'_>,
    on_line: &(dyn Fn(String) + Sync),
) -> Result<Removed, GenerationError> {
    if let Some(r) = records.iter().find(|r| r.is_current()) {
        return Err(GenerationError::Current { machine: r.machine.clone(), name: r.name.clone() });
    }
    let mut out = Removed::default();
    for r in records {
        on_line(format!("Removing {} generation {}@{}", r.presence(), r.machine, r.name));
        if let Err(e) = super::remove_local(conf_dir, roots_dir, r) {
            out.errors.push(format!("{}: {e}", r.machine));
        }
    }
    let remote: Vec<&Record> = records.iter().copied().filter(|r| r.host.is_some()).collect();
    let mut changed: BTreeSet<String> = BTreeSet::new();
    for (host, result) in super::remove_remote(hosts, &remote).await? {
        match result {
            Ok(()) => {
                changed.insert(host);
            }
            Err(e) => out.errors.push(format!("{host}: {e}")),
        }
    }
    let mut gc_targets: Vec<(String, u16)> = Vec::new();
    for r in &remote {
        let Some(h) = &r.host else { continue };
        let Some(m) = cluster.get(&r.machine) else { continue };
        let target = (h.host.clone(), h.port);
        if changed.contains(&h.host)
            && (gc.on)(super::host_machine(cluster, m)?)
            && !gc_targets.contains(&target)
        {
            gc_targets.push(target);
        }
    }
    if !gc_targets.is_empty() {
        out.gc = super::collect_garbage(hosts, &gc_targets, gc.max_concurrent).await;
    }
    Ok(out)
}
