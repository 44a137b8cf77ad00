//! Carrier expansion (spec 1.3): every `cluster.<name>` becomes a machine, and each
//! carrier is followed by one `<carrier>#<alias or machine>` per carried entry.

use std::collections::BTreeMap;

use super::{Cluster, InventoryError, Machine, MetaConfig};

/// The evaluated `cluster.<name>` values with the files that defined each.
pub(super) type Definitions = BTreeMap<String, (MetaConfig, Vec<String>)>;

/// Expands carriers and validates the result. Upstream silently keeps the first of
/// two machines with the same name; carrier refuses (quirk decided, see docs).
pub fn expand(defs: &Definitions) -> Result<Cluster, InventoryError> {
    let mut machines: Vec<Machine> = Vec::with_capacity(defs.len());
    for (name, (meta, files)) in defs {
        validate(name, meta, files)?;
        let machine = Machine {
            name: name.clone(),
            alias: None,
            cluster_name: name.clone(),
            carrier: None,
            meta_config: meta.clone(),
            extra_modules: vec![],
            files: files.clone(),
        };
        validate_target(&machine)?;
        machines.push(machine);
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
    // `a/b` and `a:b` would share `.confctl/generations/a:b`.
    let mut safe_names: BTreeMap<String, &Machine> = BTreeMap::new();
    for m in &machines {
        if let Some(other) = safe_names.insert(m.safe_name(), m) {
            return Err(InventoryError::Invalid {
                machine: shown(&m.name),
                files: m.files.clone(),
                message: format!(
                    "its file name '{}' ('/' becomes ':') is also machine '{}''s; rename one of them",
                    shown(&m.safe_name()),
                    shown(&other.name)
                ),
            });
        }
    }
    Ok(Cluster { machines })
}

/// A name as error messages show it: control characters escaped, so a name cannot
/// rewrite the terminal or fake further lines.
fn shown(name: &str) -> String {
    name.escape_debug().to_string()
}

/// Why `name` cannot be a machine name or a carried alias, if it cannot. Names become
/// file names (`/` replaced by `:`: `.confctl/generations/<name>`, the carried profile
/// `confctl-<alias>`, netboot directories) and paths below `cluster/`
/// (`cluster/<name>/config.nix`), so each `/`-separated part must be an ordinary file
/// name: not empty, not `.` or `..`; and no control characters anywhere.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.chars().any(char::is_control) {
        Some("it contains a control character")
    } else if name.split('/').any(str::is_empty) {
        Some("it has an empty '/'-separated part (a leading, trailing or doubled '/')")
    } else if name.split('/').any(|part| part == "." || part == "..") {
        Some("a '/'-separated part of it is '.' or '..'")
    } else {
        None
    }
}

/// The ssh target of a standalone machine becomes an argument of ssh and ends up in
/// ssh_config lines: it must not look like an option or contain whitespace or control
/// characters.
fn validate_target(m: &Machine) -> Result<(), InventoryError> {
    let Some(target) = m.target_host() else { return Ok(()) };
    let problem = if target.is_empty() {
        "it is empty"
    } else if target.starts_with('-') {
        "it starts with '-', so ssh would read it as an option"
    } else if target.chars().any(char::is_whitespace) {
        "it contains whitespace"
    } else if target.chars().any(char::is_control) {
        "it contains a control character"
    } else {
        return Ok(());
    };
    let what = match m.meta_config.host {
        Some(_) => format!("host.target '{}'", shown(target)),
        None => {
            format!("its ssh target '{}' (the machine name, as host is not set)", shown(target))
        }
    };
    Err(InventoryError::Invalid {
        machine: shown(&m.name),
        files: m.files.clone(),
        message: format!("{what} cannot be used: {problem}"),
    })
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
        machine: shown(name),
        files: files.to_vec(),
        message,
    };
    if let Some(problem) = name_problem(name) {
        return Err(invalid(format!("the machine name cannot be used: {problem}")));
    }
    if let Some(entry) = meta.nix.nix_path.iter().find(|e| !e.contains('=')) {
        return Err(invalid(format!("nix.nixPath entry '{entry}' is not of the form name=path")));
    }
    if meta.build_attribute.is_empty() {
        return Err(invalid("buildAttribute is an empty list".into()));
    }
    for entry in &meta.carrier.machines {
        if let Some(problem) = entry.alias.as_deref().and_then(name_problem) {
            return Err(invalid(format!(
                "carrier.machines entry for '{}' has alias '{}', which cannot be used: {problem}",
                shown(&entry.machine),
                shown(entry.alias.as_deref().unwrap_or_default())
            )));
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
        let err =
            expand(&defs(vec![("pxe", pxe), ("node", meta(Spin::Nixos))])).unwrap_err().to_string();
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

    #[test]
    fn names_must_stay_file_names() {
        for ok in ["node1", "prg/node1", "a/b/c", "pxe#x", "n.1", "...", "a..b", "-x"] {
            assert_eq!(name_problem(ok), None, "{ok:?}");
        }
        for bad in
            ["", ".", "..", "a/..", "../a", "a/./b", "/a", "a/", "a//b", "a\nb", "a\u{1b}[2Jb"]
        {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
        let err = expand(&defs(vec![("a/../b", meta(Spin::Nixos))])).unwrap_err().to_string();
        assert!(err.starts_with("machine 'a/../b' (defined in /c/cluster/a/../b/module.nix): the machine name cannot be used"), "{err}");
        let err = expand(&defs(vec![("a\nb", meta(Spin::Nixos))])).unwrap_err().to_string();
        assert!(err.starts_with("machine 'a\\nb' "), "{err}");

        let mut pxe = meta(Spin::Nixos);
        pxe.carrier.enable = true;
        pxe.carrier.machines = vec![entry("node", Some("prg/.."))];
        let err =
            expand(&defs(vec![("pxe", pxe), ("node", meta(Spin::Nixos))])).unwrap_err().to_string();
        assert!(err.contains("machine 'pxe'") && err.contains("alias 'prg/..'"), "{err}");
    }

    #[test]
    fn names_sharing_a_file_name_are_refused() {
        let err = expand(&defs(vec![("a/b", meta(Spin::Nixos)), ("a:b", meta(Spin::Nixos))]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("'a:b'") && err.contains("machine 'a/b'"), "{err}");
    }

    #[test]
    fn targets_must_not_look_like_options() {
        use crate::cluster::Host;
        let with_target = |t: Option<&str>| {
            let mut m = meta(Spin::Nixos);
            m.host = Some(Host {
                name: None,
                location: None,
                domain: None,
                full_domain: None,
                fqdn: None,
                target: t.map(String::from),
                port: 22,
            });
            m
        };
        for ok in [Some("node1.example.org"), Some("root@node1"), Some("localhost"), None] {
            expand(&defs(vec![("n", with_target(ok))])).unwrap();
        }
        for (bad, why) in [
            ("-oProxyCommand=x", "starts with '-'"),
            ("a b", "whitespace"),
            ("a\u{7f}b", "control character"),
            ("", "empty"),
        ] {
            let err = expand(&defs(vec![("n", with_target(Some(bad)))])).unwrap_err().to_string();
            assert!(
                err.starts_with("machine 'n'") && err.contains("host.target") && err.contains(why),
                "{bad:?}: {err}"
            );
        }
        // A carried copy inherits the source's host and is never a target itself.
        let mut pxe = meta(Spin::Nixos);
        pxe.carrier.enable = true;
        pxe.carrier.machines = vec![entry("node", Some("a b"))];
        let err = expand(&defs(vec![("pxe", pxe), ("node", with_target(None))]));
        assert!(err.is_ok(), "{err:?}");
    }
}
