//! core types -> the dashboard's view types.

use std::path::Path;

use carrier_core::carrier::netboot::{BootPreview, LastBuild, LastOutcome, PreviewFile};
use carrier_core::carrier::profiles::ProfileListing;
use carrier_core::cluster::{Cluster, Machine};

use super::InventoryService;
use crate::model::{
    BootPreviewView, CarriedGeneration, CarriedProfile, CarriedView, CarrierView, MachineDetail,
    MachineSummary, NetbootBuild, NetbootFault, flatten_options,
};

pub fn summary(m: &Machine) -> MachineSummary {
    MachineSummary {
        name: m.name.clone(),
        spin: m.meta_config.spin.to_string(),
        fqdn: m.fqdn().map(Into::into),
        target: m.target_host().map(Into::into),
        carrier: m.carrier.clone(),
        tags: m.meta_config.tags.clone(),
        managed: m.is_managed(),
        is_carrier: m.is_carrier(),
    }
}

pub fn carried(m: &Machine) -> CarriedView {
    CarriedView {
        name: m.name.clone(),
        carrier: m.carrier.clone().unwrap_or_default(),
        source: m.cluster_name.clone(),
        alias: m.alias.clone(),
        spin: m.meta_config.spin.to_string(),
        build_attribute: m.meta_config.build_attribute.join("."),
        profile: m.profile(),
    }
}

pub fn detail(cluster: &Cluster, m: &Machine, service: &InventoryService) -> MachineDetail {
    let options =
        serde_json::to_value(&m.meta_config).map(|v| flatten_options(&v)).unwrap_or_default();
    let carried_as = if m.is_carried() {
        vec![carried(m)]
    } else {
        cluster.carried_copies_of(&m.name).map(carried).collect()
    };
    let carries =
        if m.is_carrier() { cluster.carried_by(&m.name).map(carried).collect() } else { vec![] };
    MachineDetail {
        summary: summary(m),
        alias: m.alias.clone(),
        cluster_name: m.cluster_name.clone(),
        profile: m.profile(),
        runnable: m.is_runnable(),
        build_attribute: m.meta_config.build_attribute.join("."),
        files: m.files.iter().map(|f| service.conf_dir().display_relative(f)).collect(),
        options,
        carried_as,
        carries,
    }
}

pub fn carrier(cluster: &Cluster, m: &Machine) -> CarrierView {
    CarrierView {
        name: m.name.clone(),
        fqdn: m.fqdn().map(Into::into),
        carried: cluster.carried_by(&m.name).map(carried).collect(),
    }
}

/// A carried profile as a carrier listed it, newest generation first, with the cluster's
/// machine whose profile it is.
pub fn carried_profile(
    cluster: &Cluster,
    carrier: &str,
    listing: &ProfileListing,
) -> CarriedProfile {
    let machine = cluster
        .carried_by(carrier)
        .find(|m| Path::new(&m.profile()) == listing.path)
        .map(|m| m.name.clone());
    let generations = listing
        .generations
        .iter()
        .rev()
        .map(|g| {
            let json = g.machine.as_ref();
            let store = g.store_path.display().to_string();
            CarriedGeneration {
                number: g.number,
                date: g.date.clone(),
                store_path: store.clone(),
                version: json.and_then(|j| j.version.clone()),
                revision: json.and_then(|j| j.shortrev()),
                current: g.current,
                macs: json.map(|j| j.macs.clone()).unwrap_or_default(),
                kernel_params: json.map(|j| j.kernel_params.clone()).unwrap_or_default(),
                boot_files: vec![format!("{store}/bzImage"), format!("{store}/initrd")],
                error: g.error.clone(),
            }
        })
        .collect();
    CarriedProfile { profile: listing.name.clone(), machine, generations }
}

pub fn netboot_build(last: &LastBuild) -> NetbootBuild {
    let mut build = NetbootBuild {
        finished_at: last.finished_at.clone(),
        seconds: last.seconds,
        error: None,
        published: Vec::new(),
        rendered: 0,
        reused: 0,
        faults: Vec::new(),
        warnings: Vec::new(),
    };
    match &last.outcome {
        LastOutcome::Err(e) => build.error = Some(e.clone()),
        LastOutcome::Ok(report) => {
            build.published = report.machines.iter().map(|m| m.fqdn.clone()).collect();
            build.rendered = report.machines_rendered;
            build.reused = report.machines_reused;
            build.warnings = report.warnings.clone();
            build.faults = report
                .faults
                .iter()
                .map(|f| NetbootFault {
                    profile: f.profile.clone(),
                    generation: f.generation,
                    kind: serde_json::to_value(f.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    message: f.message.clone(),
                    left_out: f.left_out,
                })
                .collect();
        }
    }
    build
}

pub fn boot_preview(p: BootPreview) -> BootPreviewView {
    let file = |what: &str, f: PreviewFile| (what.to_string(), f.path, f.content);
    BootPreviewView {
        machine: p.machine.as_ref().map(|m| (m.name.clone(), m.fqdn.clone())),
        generation: p.machine.map(|m| {
            let g = m.generation;
            (g.number, g.store_path.display().to_string(), g.kernel_params)
        }),
        files: vec![
            file("PXELINUX (TFTP)", p.pxelinux),
            file("iPXE (TFTP)", p.ipxe_tftp),
            file("iPXE (HTTP)", p.ipxe_http),
        ],
        conflicts: p.conflicts.iter().map(|f| f.to_string()).collect(),
        unserved_claimants: p.unserved_claimants,
        mac: p.mac,
    }
}
