//! Every Nix file carrier ships parses with the real `nix-instantiate --parse` (the
//! NixOS modules need nixpkgs to evaluate, which CI does not have), and is embedded
//! in the binary (an installed carrier has no nix/ directory).

use std::path::{Path, PathBuf};
use std::process::Command;

fn nix_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            nix_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "nix") {
            out.push(path);
        }
    }
}

#[test]
fn shipped_nix_files_parse() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../nix");
    let mut files = Vec::new();
    nix_files(&root, &mut files);
    assert!(files.iter().any(|f| f.ends_with("modules/carrier.nix")), "{files:?}");
    for file in files {
        let out = Command::new("nix-instantiate").arg("--parse").arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_shipped_file_is_embedded() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../nix");
    let mut files = Vec::new();
    nix_files(&root, &mut files);
    for file in files {
        let rel = file.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        let embedded = carrier_core::nix::EVALUATOR_FILES.iter().find(|(path, _)| *path == rel);
        let content = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            embedded.map(|(_, c)| *c),
            Some(content.as_str()),
            "nix/{rel} is not embedded in core/src/nix.rs"
        );
    }
}
