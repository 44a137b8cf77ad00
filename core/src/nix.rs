//! Nix CLI adapter: runs `nix-instantiate` with argv vectors and turns Nix's stderr
//! into a readable message. carrier's own Nix code (`nix/` in the repository) is
//! embedded in the binary and written to the cache directory on first use, so an
//! installed `carrier` needs nothing but Nix itself.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// carrier's evaluator, as `(path relative to nix/, content)`.
pub const EVALUATOR_FILES: &[(&str, &str)] = &[
    ("eval-cluster.nix", include_str!("../../nix/eval-cluster.nix")),
    ("lib/modules.nix", include_str!("../../nix/lib/modules.nix")),
    ("cluster/options.nix", include_str!("../../nix/cluster/options.nix")),
    ("build-machines.nix", include_str!("../../nix/build-machines.nix")),
    ("auto-rollback.sh", include_str!("../../nix/auto-rollback.sh")),
    ("conf-lib.nix", include_str!("../../nix/conf-lib.nix")),
    ("systems.nix", include_str!("../../nix/systems.nix")),
    ("mk-confctl-outputs.nix", include_str!("../../nix/mk-confctl-outputs.nix")),
    ("flake.nix", include_str!("../../nix/flake.nix")),
    ("modules/module-list.nix", include_str!("../../nix/modules/module-list.nix")),
    ("modules/carrier.nix", include_str!("../../nix/modules/carrier.nix")),
    ("modules/confctl/settings.nix", include_str!("../../nix/modules/confctl/settings.nix")),
    ("modules/confctl/info.nix", include_str!("../../nix/modules/confctl/info.nix")),
    ("modules/confctl/host.nix", include_str!("../../nix/modules/confctl/host.nix")),
    ("modules/confctl/kexec-netboot.nix", include_str!("../../nix/modules/confctl/kexec-netboot.nix")),
];

#[derive(Debug, thiserror::Error)]
pub enum NixError {
    #[error("'{program}' was not found in PATH")]
    NotInstalled { program: String },
    #[error("{message}")]
    Failed { message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// A digest of the embedded evaluator: part of every inventory cache key.
pub fn evaluator_digest() -> String {
    let mut h = Sha256::new();
    for (path, content) in EVALUATOR_FILES {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(content.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// Writes the embedded evaluator below `cache_dir` (once per evaluator version) and
/// returns the directory holding `eval-cluster.nix`.
pub fn materialize_evaluator(cache_dir: &Path) -> Result<PathBuf, NixError> {
    let dir = cache_dir.join(format!("evaluator-{}", &evaluator_digest()[..16]));
    if dir.join("eval-cluster.nix").is_file() {
        return Ok(dir);
    }
    let io = |context: String| move |source| NixError::Io { context, source };
    std::fs::create_dir_all(cache_dir).map_err(io(format!("creating {}", cache_dir.display())))?;
    let tmp = tempfile::Builder::new()
        .prefix(".evaluator-")
        .tempdir_in(cache_dir)
        .map_err(io(format!("creating a directory in {}", cache_dir.display())))?
        .keep();
    for (rel, content) in EVALUATOR_FILES {
        let path = tmp.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
        }
        std::fs::write(&path, content).map_err(io(format!("writing {}", path.display())))?;
    }
    // Another process may have won the race; either copy is identical.
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(dir)
}

/// The argv of a strict JSON evaluation of `file` with string arguments.
pub fn eval_json_argv(file: &Path, argstrs: &[(&str, &str)]) -> Vec<String> {
    let mut argv = vec![
        "nix-instantiate".to_string(),
        "--eval".into(),
        "--strict".into(),
        "--json".into(),
        file.display().to_string(),
    ];
    for (name, value) in argstrs {
        argv.extend(["--argstr".to_string(), name.to_string(), value.to_string()]);
    }
    argv
}

/// Runs an argv built by this module and returns stdout, or Nix's cleaned error.
pub fn run(argv: &[String]) -> Result<Vec<u8>, NixError> {
    let (program, args) = argv.split_first().expect("argv has a program");
    let output = Command::new(program).args(args).output().map_err(|e| match e.kind() {
        ErrorKind::NotFound => NixError::NotInstalled { program: program.clone() },
        _ => NixError::Io { context: format!("running {program}"), source: e },
    })?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(NixError::Failed { message: clean_stderr(&String::from_utf8_lossy(&output.stderr)) })
    }
}

/// Drops ANSI colours and the `--show-trace` hint; keeps Nix's message and location.
pub fn clean_stderr(stderr: &str) -> String {
    let mut out = String::with_capacity(stderr.len());
    let mut chars = stderr.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| !l.contains("--show-trace"))
        .map(str::trim_end)
        .collect();
    let text = lines.join("\n");
    let text = text.trim();
    let text = text.strip_prefix("error: ").unwrap_or(text);
    text.strip_prefix("carrier: ").unwrap_or(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_argv_is_a_vector_not_a_shell_string() {
        let argv = eval_json_argv(Path::new("/e/eval.nix"), &[("confDir", "/c; rm -rf /"), ("x", "a b")]);
        assert_eq!(
            argv,
            [
                "nix-instantiate", "--eval", "--strict", "--json", "/e/eval.nix", "--argstr", "confDir",
                "/c; rm -rf /", "--argstr", "x", "a b"
            ]
        );
    }

    #[test]
    fn stderr_is_cleaned() {
        let raw = "\u{1b}[31;1merror:\u{1b}[0m carrier: the option 'cluster.a.foo' does not exist\n(use '--show-trace' to show detailed location information)\n";
        assert_eq!(clean_stderr(raw), "the option 'cluster.a.foo' does not exist");
        let syntax = "error: syntax error, unexpected '}'\n\n       at /c/cluster/a/module.nix:3:1:\n\n            2|   x = 1\n";
        let cleaned = clean_stderr(syntax);
        assert!(cleaned.starts_with("syntax error"));
        assert!(cleaned.contains("/c/cluster/a/module.nix:3:1"));
    }

    #[test]
    fn evaluator_is_materialized_once() {
        let tmp = tempfile::tempdir().unwrap();
        let a = materialize_evaluator(tmp.path()).unwrap();
        let b = materialize_evaluator(tmp.path()).unwrap();
        assert_eq!(a, b);
        for (rel, content) in EVALUATOR_FILES {
            assert_eq!(&std::fs::read_to_string(a.join(rel)).unwrap(), content);
        }
    }
}
