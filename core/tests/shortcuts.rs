//! The module system's shortcuts give the results of its general path: every fixture
//! cluster, example configuration and a generated cluster evaluated by
//! `nix/eval-cluster.nix` with the shortcuts on and off (`--arg shortcuts false`, see
//! nix/lib/module-system.nix), and the results compared: the same JSON, or the same
//! error message.

use std::path::{Path, PathBuf};
use std::process::Command;

use carrier_core::cluster::discover_module_files;
use carrier_core::nix;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The evaluation of `conf` (JSON on success, the cleaned message on failure).
fn evaluate(conf: &Path, shortcuts: bool) -> Result<String, String> {
    let modules = discover_module_files(&conf.join("cluster")).map_err(|e| e.to_string())?;
    let modules_json = serde_json::to_string(&modules).unwrap();
    let conf_str = conf.display().to_string();
    let mut argv = nix::eval_json_argv(
        &repo().join("nix/eval-cluster.nix"),
        &[("confDir", conf_str.as_str()), ("moduleFilesJson", modules_json.as_str())],
    );
    argv.extend(["--arg".into(), "shortcuts".into(), shortcuts.to_string()]);
    match nix::run(&argv) {
        Ok(out) => Ok(String::from_utf8(out).unwrap()),
        Err(e) => Err(e.to_string()),
    }
}

/// The configuration directories (with a `cluster/`) directly below `dir`.
fn conf_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("cluster").is_dir())
        .collect();
    found.sort();
    out.extend(found);
}

#[test]
fn shortcuts_give_the_results_of_the_general_path() {
    let mut dirs = Vec::new();
    conf_dirs(&repo().join("core/tests/fixtures"), &mut dirs);
    conf_dirs(&repo().join("examples"), &mut dirs);
    // Many machines and carriers, as the benchmark has them (smaller).
    let generated = tempfile::tempdir().unwrap();
    let status = Command::new(repo().join("scripts/gen-bench-cluster"))
        .arg(generated.path())
        .args(["-n", "40", "-c", "4", "-k", "6"])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "gen-bench-cluster: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    dirs.push(generated.path().to_path_buf());

    let mut evaluated = Vec::new();
    for dir in &dirs {
        let fast = evaluate(dir, true);
        let general = evaluate(dir, false);
        assert_eq!(fast, general, "{}: shortcuts on (left) and off (right) differ", dir.display());
        if fast.is_ok() {
            evaluated.push(
                dir.strip_prefix(repo()).unwrap_or(Path::new("<generated>")).display().to_string(),
            );
        }
    }
    // The comparison covers real clusters, not only errors.
    for dir in [
        "core/tests/fixtures/helpers",
        "core/tests/fixtures/module-list",
        "examples/cluster",
        "examples/lab",
        "<generated>",
    ] {
        assert!(evaluated.iter().any(|d| d == dir), "{dir} did not evaluate: {evaluated:?}");
    }
    // And the bad inputs: the same messages both ways.
    for dir in ["conflict", "missing-spin", "unknown-option", "wrong-type"] {
        let err = evaluate(&repo().join("core/tests/fixtures").join(dir), false).unwrap_err();
        assert!(err.starts_with("the option 'cluster.node1"), "{dir}: {err}");
    }
}
