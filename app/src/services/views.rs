//! core types -> the dashboard's view types.

use carrier_core::cluster::{Cluster, Machine};

use super::InventoryService;
use crate::model::{CarriedView, CarrierView, MachineDetail, MachineSummary, flatten_options};

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
