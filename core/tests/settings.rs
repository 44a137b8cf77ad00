//! confctl's settings (`configs/confctl.nix`) evaluated by real `nix-instantiate`.

use carrier_core::generation::{Limits, Settings};

fn load(confctl_nix: Option<&str>) -> Result<Settings, String> {
    let conf = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    if let Some(text) = confctl_nix {
        std::fs::create_dir(conf.path().join("configs")).unwrap();
        std::fs::write(conf.path().join("configs/confctl.nix"), text).unwrap();
    }
    Settings::load(&carrier_core::conf_dir::ConfDir::resolve(conf.path()).unwrap(), cache.path())
        .map_err(|e| format!("{e:#}: {:?}", std::error::Error::source(&e).map(ToString::to_string)))
}

#[test]
fn upstream_defaults_without_a_settings_file() {
    assert_eq!(load(None).unwrap(), Settings::default());
}

#[test]
fn the_settings_file_overrides_the_defaults() {
    let s = load(Some(
        "{ confctl.buildGenerations.min = 2; confctl.hostGenerations = { max = 7; maxAge = 60; collectGarbage = false; }; }",
    ))
    .unwrap();
    assert_eq!(s.build_generations, Limits { min: 2, ..Limits::default() });
    assert_eq!(s.host_generations, Limits { min: 5, max: 7, max_age: 60 });
    assert!(!s.collect_garbage);
}

#[test]
fn a_wrong_type_names_the_option_and_the_file() {
    let e = load(Some(r#"{ confctl.hostGenerations.max = "many"; }"#)).unwrap_err();
    assert!(e.contains("hostGenerations.max") && e.contains("configs/confctl.nix"), "{e}");
}

fn load_all(confctl_nix: Option<&str>) -> carrier_core::settings::ConfctlSettings {
    let conf = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    if let Some(text) = confctl_nix {
        std::fs::create_dir(conf.path().join("configs")).unwrap();
        std::fs::write(conf.path().join("configs/confctl.nix"), text).unwrap();
    }
    let conf_dir = carrier_core::conf_dir::ConfDir::resolve(conf.path()).unwrap();
    carrier_core::settings::ConfctlSettings::load(&conf_dir, cache.path()).unwrap()
}

#[test]
fn list_columns_and_nix_max_jobs_have_upstreams_defaults_and_can_be_set() {
    let defaults = load_all(None);
    assert_eq!(defaults, carrier_core::settings::ConfctlSettings::default());
    assert_eq!(defaults.list_columns, ["name", "spin", "host.fqdn"]);
    assert_eq!(defaults.nix_max_jobs, None);

    let set = load_all(Some(
        r#"{ confctl.list.columns = [ "name" "host.target" ]; confctl.nix.maxJobs = 3; }"#,
    ));
    assert_eq!(set.list_columns, ["name", "host.target"]);
    assert_eq!(set.nix_max_jobs.as_deref(), Some("3"));
    assert_eq!(set.generations, Settings::default(), "the rest keeps its defaults");
    let auto = load_all(Some(r#"{ confctl.nix.maxJobs = "auto"; }"#));
    assert_eq!(auto.nix_max_jobs.as_deref(), Some("auto"));
}
