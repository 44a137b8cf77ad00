//! Carrier expansion (spec 1.3): every `cluster.<name>` becomes a machine, and each
//! carrier is followed by one `<carrier>#<alias or machine>` per carried entry.

use std::collections::BTreeMap;

use super::{Cluster, InventoryError, Machine, MetaConfig};

/// The evaluated `cluster.<name>` values with the files that defined each.
pub type Definitions = BTreeMap<String, (MetaConfig, Vec<String>)>;

/// Expands carriers and validates the result. Upstream silently keeps the first of
/// two machines with the same name; carrier refuses (quirk decided, see docs).
pub fn expand(defs: &Definitions) -> Result<Cluster, InventoryError> {
    let mut machines: Vec<Machine> = Vec::with_capacity(defs.len());
    for (name, (meta, files)) in defs {
        validate(name, meta, files)?;
        machines.push(Machine {
            name: name.clone(),
            alias: None,
            cluster_name: name.clone(),
            carrier: None,
            meta_config: meta.clone(),
            extra_modules: vec![],
            files: files.clone(),
        });
        if !meta.carrier.enable {
            continue;
        }
        for entry in &meta.carrier.machines {
            let Some((source, source_files)) = defs.get(&entry.machine) else {
                return Err(InventoryError::UnknownCarriedMachine {
                    carrier: name.clone(),
                    machine: entry.machine.clone(),
                    files: files.clone(),
                });
            };
            let mut carried = source.clone();
            carried.labels.extend(entry.labels.clone());
            carried.tags.extend(entry.tags.iter().cloned());
            carried.build_attribute = entry.build_attribute.clone();
            let (bg, hg) = (&mut carried.build_generations, &mut carried.host_generations);
            let (ebg, ehg) = (&entry.build_generations, &entry.host_generations);
            bg.min = ebg.min.or(bg.min);
            bg.max = ebg.max.or(bg.max);
            bg.max_age = ebg.max_age.or(bg.max_age);
            hg.min = ehg.min.or(hg.min);
            hg.max = ehg.max.or(hg.max);
            hg.max_age = ehg.max_age.or(hg.max_age);
            machines.push(Machine {
                name: format!("{name}#{}", entry.alias.as_deref().unwrap_or(&entry.machine)),
                alias: entry.alias.clone(),
                cluster_name: entry.machine.clone(),
                carrier: Some(name.clone()),
                meta_config: carried,
                extra_modules: entry.extra_modules.clone(),
                files: source_files.clone(),
            });
        }
    }
    machines.sort_by(|a, b| a.name.cmp(&b.name));
    for pair in machines.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(InventoryError::DuplicateName {
                name: pair[0].name.clone(),
                first: origin(&pair[0]),
                second: origin(&pair[1]),
            });
        }
    }
    Ok(Cluster { machines })
}

fn origin(m: &Machine) -> String {
    match &m.carrier {
        Some(c) => format!("a carried entry of '{c}' for machine '{}'", m.cluster_name),
        None => format!("the machine defined in {}", m.files.join(", ")),
    }
}

/// Checks that Nix's type system cannot express.
fn validate(name: &str, meta: &MetaConfig, files: &[String]) -> Result<(), InventoryError> {
    let invalid = |message: String| InventoryError::Invalid {
        machine: name.to_string(),
        files: files.to_vec(),
        message,
    };
    if name.is_empty() {
        return Err(invalid("the machine name is empty".into()));
    }
    if let Some(entry) = meta.nix.nix_path.iter().find(|e| !e.contains('=')) {
        return Err(invalid(format!("nix.nixPath entry '{entry}' is not of the form name=path")));
    }
    if meta.build_attribute.is_empty() {
        return Err(invalid("buildAttribute is an empty list".into()));
    }
    for entry in &meta.carrier.machines {
        if entry.alias.as_deref() == Some("") {
            return Err(invalid(format!("carrier.machines entry for '{}' has an empty alias", entry.machine)));
        }
        if entry.build_attribute.is_empty() {
            return Err(invalid(format!(
                "carrier.machines entry for '{}' has an empty buildAttribute",
                entry.machine
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::model::tests::meta;
    use crate::cluster::{CarriedEntry, GenerationLimits, Spin};
    use serde_json::json;

    fn entry(machine: &str, alias: Option<&str>) -> CarriedEntry {
        CarriedEntry {
            machine: machine.into(),
            alias: alias.map(Into::into),
            labels: Default::default(),
            tags: vec![],
            extra_modules: vec![],
            build_attribute: vec!["system".into(), "build".into(), "dist".into()],
            build_generations: GenerationLimits::default(),
            host_generations: GenerationLimits::default(),
        }
    }

    fn defs(list: Vec<(&str, MetaConfig)>) -> Definitions {
        list.into_iter()
            .map(|(n, m)| (n.to_string(), (m, vec![format!("/c/cluster/{n}/module.nix")])))
            .collect()
    }

    #[test]
    fn expands_carried_entries_with_overrides() {
        let mut node = meta(Spin::Nixos);
        node.labels.insert("role".into(), json!("node"));
        node.labels.insert("dc".into(), json!("prg"));
        node.tags = vec!["a".into()];
        node.build_generations.max = Some(10);
        node.build_generations.min = Some(2);
        let mut pxe = meta(Spin::Nixos);
        pxe.carrier.enable = true;
        let mut e1 = entry("node", Some("prg/node"));
        e1.labels.insert("role".into(), json!("carried"));
        e1.tags = vec!["b".into()];
        e1.build_generations.max = Some(3);
        pxe.carrier.machines = vec![e1, entry("node", None)];
        let c = expand(&defs(vec![("pxe", pxe), ("node", node)])).unwrap();
        let names: Vec<_> = c.machines.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["node", "pxe", "pxe#node", "pxe#prg/node"]);

        let aliased = c.get("pxe#prg/node").unwrap();
        assert_eq!(aliased.carrier.as_deref(), Some("pxe"));
        assert_eq!(aliased.cluster_name, "node");
        assert_eq!(aliased.alias.as_deref(), Some("prg/node"));
        assert_eq!(aliased.profile(), "/nix/var/nix/profiles/confctl-prg:node");
        assert_eq!(aliased.meta_config.labels["role"], json!("carried"));
        assert_eq!(aliased.meta_config.labels["dc"], json!("prg"));
        assert_eq!(aliased.meta_config.tags, ["a", "b"]);
        assert_eq!(aliased.meta_config.build_generations.max, Some(3));
        assert_eq!(aliased.meta_config.build_generations.min, Some(2), "null keeps source");
        assert_eq!(aliased.meta_config.build_attribute, ["system", "build", "dist"]);
        assert!(!aliased.is_carrier());

        let plain = c.get("pxe#node").unwrap();
        assert_eq!(plain.alias, None);
        assert_eq!(plain.profile(), "/nix/var/nix/profiles/confctl-node");
        // the source machine itself is untouched
        assert_eq!(c.get("node").unwrap().meta_config.tags, ["a"]);
        assert_eq!(c.carried_by("pxe").count(), 2);
        assert_eq!(c.carriers().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["pxe"]);
    }

    #[test]
    fn unknown_carried_machine_is_refused() {
        let mut pxe = meta(Spin::Nixos);
        pxe.carrier.enable = true;
        pxe.carrier.machines = vec![entry("ghost", None)];
        let err = expand(&defs(vec![("pxe", pxe)])).unwrap_err().to_string();
        assert!(err.contains("'pxe'") && err.contains("'ghost'"), "{err}");
        assert!(err.contains("/c/cluster/pxe/module.nix"), "{err}");
    }

    #[test]
    fn duplicate_carried_names_are_refused() {
        let mut pxe = meta(Spin::Nixos);
        pxe.carrier.enable = true;
        pxe.carrier.machines = vec![entry("node", None), entry("node", None)];
        let err = expand(&defs(vec![("pxe", pxe), ("node", meta(Spin::Nixos))]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("'pxe#node'"), "{err}");
    }

    #[test]
    fn carriers_disabled_are_not_expanded() {
        let mut pxe = meta(Spin::Nixos);
        pxe.carrier.machines = vec![entry("node", None)];
        let c = expand(&defs(vec![("pxe", pxe), ("node", meta(Spin::Nixos))])).unwrap();
        assert_eq!(c.machines.len(), 2);
    }

    #[test]
    fn bad_nix_path_is_refused() {
        let mut m = meta(Spin::Nixos);
        m.nix.nix_path = vec!["nixpkgs".into()];
        let err = expand(&defs(vec![("n", m)])).unwrap_err().to_string();
        assert!(err.contains("nix.nixPath") && err.contains("'nixpkgs'"), "{err}");
    }
}
