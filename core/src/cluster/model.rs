//! Typed model of a cluster: `cluster.<name>` option values (upstream option names and
//! defaults, spec 1.1/1.2) and the expanded machine records with their derived fields
//! (spec 1.4).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::profile_name::{ProfileName, SYSTEM_PROFILE};

/// The machine's spin: selects the system evaluator and the netboot menu layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Spin {
    Openvz,
    Nixos,
    Vpsadminos,
    Other,
}

impl Spin {
    /// The spin of an option value or a `machine.json` (`nixos`, …); None for any other.
    pub fn parse(s: &str) -> Option<Spin> {
        [Spin::Openvz, Spin::Nixos, Spin::Vpsadminos, Spin::Other]
            .into_iter()
            .find(|spin| spin.as_str() == s)
    }

    /// The spin's name for people (netboot menus).
    pub fn label(self) -> &'static str {
        match self {
            Spin::Openvz => "OpenVZ",
            Spin::Nixos => "NixOS",
            Spin::Vpsadminos => "vpsAdminOS",
            Spin::Other => "other",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Spin::Openvz => "openvz",
            Spin::Nixos => "nixos",
            Spin::Vpsadminos => "vpsadminos",
            Spin::Other => "other",
        }
    }
}

impl fmt::Display for Spin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The values of one `cluster.<name>` entry after module merging and defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaConfig {
    pub managed: Option<bool>,
    pub spin: Spin,
    #[serde(default)]
    pub swpins: Swpins,
    #[serde(default)]
    pub inputs: Inputs,
    #[serde(default)]
    pub addresses: Addresses,
    #[serde(default)]
    pub netboot: Netboot,
    pub build_attribute: Vec<String>,
    #[serde(default)]
    pub carrier: CarrierConfig,
    pub host: Option<Host>,
    #[serde(default)]
    pub labels: BTreeMap<String, Value>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub nix: NixSettings,
    #[serde(default)]
    pub build_generations: GenerationLimits,
    #[serde(default)]
    pub host_generations: HostGenerationLimits,
    #[serde(default)]
    pub auto_rollback: AutoRollback,
    #[serde(default)]
    pub health_checks: HealthChecks,
    /// Options declared by the user's own `modules/cluster` extensions.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Swpins {
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default)]
    pub pins: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default)]
    pub overrides: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub address: String,
    pub prefix: i64,
    pub string: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Addresses {
    pub primary: Option<Address>,
    #[serde(default)]
    pub v4: Vec<Address>,
    #[serde(default)]
    pub v6: Vec<Address>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Netboot {
    #[serde(default)]
    pub enable: bool,
    #[serde(default)]
    pub macs: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CarrierConfig {
    #[serde(default)]
    pub enable: bool,
    #[serde(default)]
    pub machines: Vec<CarriedEntry>,
}

/// One entry of `cluster.<carrier>.carrier.machines` (spec 1.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CarriedEntry {
    pub machine: String,
    /// Defaults to null (upstream declares no default; quirk 8.3.1 decided).
    #[serde(default)]
    pub alias: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, Value>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub extra_modules: Vec<String>,
    pub build_attribute: Vec<String>,
    #[serde(default)]
    pub build_generations: GenerationLimits,
    #[serde(default)]
    pub host_generations: GenerationLimits,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    pub name: Option<String>,
    pub location: Option<String>,
    pub domain: Option<String>,
    pub full_domain: Option<String>,
    pub fqdn: Option<String>,
    pub target: Option<String>,
    pub port: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NixSettings {
    #[serde(default)]
    pub nix_path: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationLimits {
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub max_age: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostGenerationLimits {
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub max_age: Option<i64>,
    pub collect_garbage: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoRollback {
    pub enable: bool,
    pub timeout: i64,
}

impl Default for AutoRollback {
    fn default() -> Self {
        AutoRollback { enable: true, timeout: 60 }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthChecks {
    #[serde(default)]
    pub systemd: SystemdChecks,
    #[serde(default)]
    pub builder_commands: Vec<CheckCommand>,
    #[serde(default)]
    pub machine_commands: Vec<CheckCommand>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemdChecks {
    #[serde(default)]
    pub enable: bool,
    #[serde(default)]
    pub system_properties: Vec<PropertyCheck>,
    #[serde(default)]
    pub unit_properties: BTreeMap<String, Vec<PropertyCheck>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropertyCheck {
    pub property: String,
    pub value: String,
    pub timeout: i64,
    pub cooldown: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckCommand {
    #[serde(default)]
    pub description: String,
    pub command: Vec<String>,
    pub exit_status: i64,
    pub standard_output: OutputMatch,
    pub standard_error: OutputMatch,
    pub timeout: i64,
    pub cooldown: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputMatch {
    #[serde(rename = "match")]
    pub exact: Option<String>,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// One machine of the expanded cluster: a `cluster.<name>` entry, or a carried
/// `<carrier>#<alias or machine>` (spec 1.3/1.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub name: String,
    pub alias: Option<String>,
    /// The source `cluster.<name>` this machine is evaluated from.
    pub cluster_name: String,
    /// The carrier's name for carried machines.
    pub carrier: Option<String>,
    pub meta_config: MetaConfig,
    pub extra_modules: Vec<String>,
    /// The module files that define the source `cluster.<name>` (for messages).
    pub files: Vec<String>,
}

/// `/` is not allowed in file names: upstream's "safe" names replace it with `:`.
pub fn safe_name(name: &str) -> String {
    name.replace('/', ":")
}

impl Machine {
    pub fn safe_name(&self) -> String {
        safe_name(&self.name)
    }

    pub fn is_carried(&self) -> bool {
        self.carrier.is_some()
    }

    /// A carried copy never counts as a carrier itself, even when its source is one
    /// (upstream would let it look like one; carried entries are not expanded again).
    pub fn is_carrier(&self) -> bool {
        !self.is_carried() && self.meta_config.carrier.enable
    }

    /// The alias used in the carried profile name: the alias, else the source name.
    pub fn carried_alias(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.cluster_name)
    }

    /// Carried machines: their [`ProfileName`] on the carrier; everything else: the
    /// system profile.
    pub fn profile(&self) -> String {
        if self.is_carried() {
            ProfileName::for_alias(self.carried_alias()).path()
        } else {
            SYSTEM_PROFILE.to_string()
        }
    }

    /// The SSH target. A machine without `host` targets its own name (quirk 8.3.2
    /// decided); an explicit `host.target = null` means "not deployable".
    pub fn target_host(&self) -> Option<&str> {
        match &self.meta_config.host {
            None => Some(&self.name),
            Some(h) => h.target.as_deref(),
        }
    }

    pub fn target_port(&self) -> u16 {
        self.meta_config.host.as_ref().map_or(22, |h| h.port)
    }

    pub fn fqdn(&self) -> Option<&str> {
        self.meta_config.host.as_ref().and_then(|h| h.fqdn.as_deref())
    }

    pub fn is_localhost(&self) -> bool {
        self.target_host() == Some("localhost")
    }

    /// Carried machines are never runnable; neither is a machine without a target.
    pub fn is_runnable(&self) -> bool {
        !self.is_carried() && self.target_host().is_some()
    }

    /// `managed = null` applies to true for the nixos and vpsadminos spins.
    pub fn is_managed(&self) -> bool {
        self.meta_config
            .managed
            .unwrap_or(matches!(self.meta_config.spin, Spin::Nixos | Spin::Vpsadminos))
    }

    /// Flake-mode machine key: `m_<sanitized name>_<first 8 hex of sha256(name)>`.
    pub fn key(&self) -> String {
        let mut sanitized: String = self
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
            .collect();
        if sanitized.starts_with(|c: char| c.is_ascii_digit()) {
            sanitized.insert(0, '_');
        }
        let digest = hex::encode(Sha256::digest(self.name.as_bytes()));
        format!("m_{sanitized}_{}", &digest[..8])
    }

    /// Number of health checks, the special `checks` attribute.
    pub fn check_count(&self) -> usize {
        let hc = &self.meta_config.health_checks;
        let systemd = if self.meta_config.spin == Spin::Nixos && hc.systemd.enable {
            usize::from(!hc.systemd.system_properties.is_empty()) + hc.systemd.unit_properties.len()
        } else {
            0
        };
        if !self.is_runnable() {
            return hc.builder_commands.len();
        }
        systemd + hc.builder_commands.len() + hc.machine_commands.len()
    }

    /// The attribute lookup behind `ls -o`, `--attr` and `{…}` placeholders:
    /// `name`, `key`/`machineKey`/`flakeKey` and `checks` are special, a few derived
    /// fields are offered too, everything else is a dotted path through metaConfig.
    pub fn attr(&self, key: &str) -> Option<Value> {
        match key {
            "name" => return Some(Value::String(self.name.clone())),
            "key" | "machineKey" | "flakeKey" => return Some(Value::String(self.key())),
            "checks" => return Some(Value::from(self.check_count())),
            "alias" => return Some(self.alias.clone().map_or(Value::Null, Value::String)),
            "carrier" => return Some(self.carrier.clone().map_or(Value::Null, Value::String)),
            "clusterName" => return Some(Value::String(self.cluster_name.clone())),
            "profile" => return Some(Value::String(self.profile())),
            "managed" if self.meta_config.managed.is_none() => {
                return Some(Value::Bool(self.is_managed()));
            }
            _ => {}
        }
        let meta = serde_json::to_value(&self.meta_config).ok()?;
        let mut cur = &meta;
        for part in key.split('.') {
            cur = cur.as_object()?.get(part)?;
        }
        Some(cur.clone())
    }
}

/// How an attribute value reads in a table cell or an `--attr` comparison.
pub fn attr_to_string(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => {
            items.iter().map(|v| attr_to_string(Some(v))).collect::<Vec<_>>().join(",")
        }
        Some(other) => other.to_string(),
    }
}

/// The evaluated and expanded cluster: machines sorted by name (byte order), as
/// upstream's machine list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub machines: Vec<Machine>,
}

impl Cluster {
    pub fn get(&self, name: &str) -> Option<&Machine> {
        self.machines
            .binary_search_by(|m| m.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.machines[i])
    }

    pub fn carriers(&self) -> impl Iterator<Item = &Machine> {
        self.machines.iter().filter(|m| m.is_carrier())
    }

    /// The carried machines of `carrier`, in list order.
    pub fn carried_by<'a>(&'a self, carrier: &'a str) -> impl Iterator<Item = &'a Machine> + 'a {
        self.machines.iter().filter(move |m| m.carrier.as_deref() == Some(carrier))
    }

    /// The carried copies of a source machine: every `<carrier>#<alias>` built from it.
    pub fn carried_copies_of<'a>(
        &'a self,
        source: &'a str,
    ) -> impl Iterator<Item = &'a Machine> + 'a {
        self.machines.iter().filter(move |m| m.is_carried() && m.cluster_name == source)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn meta(spin: Spin) -> MetaConfig {
        MetaConfig {
            managed: None,
            spin,
            swpins: Swpins::default(),
            inputs: Inputs::default(),
            addresses: Addresses::default(),
            netboot: Netboot::default(),
            build_attribute: vec!["system".into(), "build".into(), "toplevel".into()],
            carrier: CarrierConfig::default(),
            host: None,
            labels: BTreeMap::new(),
            tags: vec![],
            nix: NixSettings::default(),
            build_generations: GenerationLimits::default(),
            host_generations: HostGenerationLimits::default(),
            auto_rollback: AutoRollback::default(),
            health_checks: HealthChecks::default(),
            extra: BTreeMap::new(),
        }
    }

    pub(crate) fn machine(name: &str, spin: Spin) -> Machine {
        Machine {
            name: name.into(),
            alias: None,
            cluster_name: name.into(),
            carrier: None,
            meta_config: meta(spin),
            extra_modules: vec![],
            files: vec![format!("/conf/cluster/{name}/module.nix")],
        }
    }

    #[test]
    fn spin_parses_the_serialised_names_only() {
        for spin in [Spin::Openvz, Spin::Nixos, Spin::Vpsadminos, Spin::Other] {
            let json = serde_json::to_string(&spin).unwrap();
            assert_eq!(json, format!("\"{}\"", spin.as_str()));
            assert_eq!(Spin::parse(spin.as_str()), Some(spin));
        }
        assert_eq!(Spin::parse("NixOS"), None);
        assert_eq!(Spin::parse(""), None);
        assert_eq!(Spin::Vpsadminos.label(), "vpsAdminOS");
    }

    #[test]
    fn managed_defaults_by_spin() {
        assert!(machine("a", Spin::Nixos).is_managed());
        assert!(machine("a", Spin::Vpsadminos).is_managed());
        assert!(!machine("a", Spin::Other).is_managed());
        assert!(!machine("a", Spin::Openvz).is_managed());
        let mut m = machine("a", Spin::Other);
        m.meta_config.managed = Some(true);
        assert!(m.is_managed());
    }

    #[test]
    fn target_rules() {
        let mut m = machine("node1", Spin::Nixos);
        assert_eq!(m.target_host(), Some("node1"), "null host targets the name");
        m.meta_config.host = Some(Host {
            name: Some("node1".into()),
            location: None,
            domain: None,
            full_domain: None,
            fqdn: Some("node1".into()),
            target: None,
            port: 2222,
        });
        assert_eq!(m.target_host(), None);
        assert!(!m.is_runnable());
        assert_eq!(m.target_port(), 2222);
    }

    #[test]
    fn carried_profile_uses_safe_alias() {
        let mut m = machine("pxe#a/b", Spin::Nixos);
        m.carrier = Some("pxe".into());
        m.alias = Some("a/b".into());
        m.cluster_name = "node".into();
        assert_eq!(m.profile(), "/nix/var/nix/profiles/confctl-a:b");
        assert!(!m.is_runnable());
        m.alias = None;
        assert_eq!(m.profile(), "/nix/var/nix/profiles/confctl-node");
    }

    #[test]
    fn key_matches_upstream_shape() {
        let m = machine("pxe-server#node1", Spin::Nixos);
        let key = m.key();
        assert!(key.starts_with("m_pxe_server_node1_"), "{key}");
        assert_eq!(key.len(), "m_pxe_server_node1_".len() + 8);
        assert!(machine("1x", Spin::Nixos).key().starts_with("m__1x_"));
    }

    #[test]
    fn attr_lookup() {
        let mut m = machine("node1", Spin::Nixos);
        m.meta_config.labels.insert("role".into(), Value::String("web".into()));
        assert_eq!(attr_to_string(m.attr("labels.role").as_ref()), "web");
        assert_eq!(attr_to_string(m.attr("spin").as_ref()), "nixos");
        assert_eq!(attr_to_string(m.attr("managed").as_ref()), "true");
        assert_eq!(m.attr("labels.missing"), None);
        assert_eq!(attr_to_string(m.attr("name").as_ref()), "node1");
        assert_eq!(attr_to_string(m.attr("autoRollback.timeout").as_ref()), "60");
    }
}
