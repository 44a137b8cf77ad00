//! A carrier's page (docs/web.md, "Carrier contents"): what the cluster says it carries,
//! what it holds by the status refresher's latest reading (every carried profile with
//! its generations, its netboot trees' last build and what that left out), the
//! check-ins of the machines that netbooted from it, and the boot preview of one MAC,
//! the only part asked of the carrier when the page is requested.

use std::time::Duration;

use carrier_core::auth::Action;
use carrier_core::carrier::netboot::parse_mac;
use carrier_core::cluster::{Cluster, Machine};
use carrier_core::remote::SshSettings;

use super::access::{Caller, internal};
use super::{AppState, views};
use crate::error::AppError;
use crate::model::{BootPreviewView, CarrierDetail, CheckinRow};

/// How long the boot preview may take: connecting, then the command.
const PREVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// The carrier `name` of `cluster`, or not found.
fn find<'c>(cluster: &'c Cluster, name: &str) -> Result<&'c Machine, AppError> {
    cluster
        .get(name)
        .filter(|m| m.is_carrier())
        .ok_or_else(|| AppError::NotFound(format!("carrier '{name}'")))
}

/// The carrier's page for `caller`.
pub async fn detail(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<CarrierDetail, AppError> {
    let loaded = state.inventory.load().await?;
    let carrier = find(&loaded.cluster, name)?;
    let (read_at, read, board_error) = state.status.carrier(name);
    let checkins = state.access.store.latest_checkins().await.map_err(internal)?;
    let checkins = checkins
        .into_iter()
        .filter(|c| c.carrier == name)
        .map(|c| CheckinRow {
            machine: c.machine,
            generation: c.generation,
            mac: c.mac,
            received_at: c.received_at,
        })
        .collect();
    let may_change = caller.check(Action::Deploy, &[carrier], &loaded.cluster).is_ok();
    let view = views::carrier(&loaded.cluster, carrier);
    let (profiles, netboot, read_error, netboot_error) = match read {
        Some(read) => (
            read.profiles
                .iter()
                .map(|p| views::carried_profile(&loaded.cluster, name, p))
                .collect(),
            read.netboot.as_ref().map(views::netboot_build),
            read.error.or(board_error),
            read.netboot_error,
        ),
        None => {
            let why = board_error.or_else(|| {
                read_at.as_ref().map(|_| format!("the last reading did not reach {name}"))
            });
            (Vec::new(), None, why, None)
        }
    };
    Ok(CarrierDetail {
        carrier: view,
        read_at,
        read_error,
        profiles,
        netboot,
        netboot_error,
        checkins,
        may_change,
    })
}

/// What a client with `mac` gets from the carrier's published trees, asked of the carrier
/// over SSH now. Readers may look: it changes nothing.
pub async fn boot_preview(
    state: &AppState,
    name: &str,
    mac: &str,
) -> Result<BootPreviewView, AppError> {
    let mac = parse_mac(mac.trim()).map_err(|e| AppError::BadInput(format!("mac: {e}")))?;
    let loaded = state.inventory.load().await?;
    let carrier = find(&loaded.cluster, name)?;
    let host = carrier.target_host().ok_or_else(|| {
        AppError::BadInput(format!("carrier '{name}' has no host to ask (no target host)"))
    })?;
    let ssh = SshSettings {
        config_file: state.ssh_config.clone(),
        connect_timeout: Some(PREVIEW_TIMEOUT),
    };
    let preview =
        carrier_core::status::boot_preview(host, carrier.target_port(), &mac, ssh, PREVIEW_TIMEOUT)
            .await
            .map_err(|e| AppError::Unavailable(format!("the boot preview of {name}: {e}")))?;
    Ok(views::boot_preview(preview))
}
