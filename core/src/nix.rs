//! Nix CLI adapter: runs `nix-instantiate` with argv vectors and turns Nix's stderr
//! into a readable message. carrier's own Nix code (`nix/` in the repository) is
//! embedded in the binary and written to the cache directory on first use (and checked
//! against the embedded bytes before each use), so an installed `carrier` needs nothing
//! but Nix itself.

use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::private_dir::{self, PrivateDirError};

/// carrier's evaluator, as `(path relative to nix/, content)`.
pub const EVALUATOR_FILES: &[(&str, &str)] = &[
    ("eval-cluster.nix", include_str!("../../nix/eval-cluster.nix")),
    ("eval-settings.nix", include_str!("../../nix/eval-settings.nix")),
    ("lib/modules.nix", include_str!("../../nix/lib/modules.nix")),
    ("lib/module-system.nix", include_str!("../../nix/lib/module-system.nix")),
    ("lib/helpers.nix", include_str!("../../nix/lib/helpers.nix")),
    ("lib/definitions.nix", include_str!("../../nix/lib/definitions.nix")),
    ("lib/types.nix", include_str!("../../nix/lib/types.nix")),
    ("lib/options.nix", include_str!("../../nix/lib/options.nix")),
    ("lib/evaluation.nix", include_str!("../../nix/lib/evaluation.nix")),
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
    (
        "modules/confctl/kexec-netboot.nix",
        include_str!("../../nix/modules/confctl/kexec-netboot.nix"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum NixError {
    #[error("'{program}' was not found in PATH")]
    NotInstalled { program: String },
    #[error("{message}")]
    Failed { message: String },
    #[error("the cache directory cannot be used: {0}")]
    CacheDir(#[from] PrivateDirError),
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
///
/// The cache directory must be the caller's and private ([`private_dir::check`]). An
/// existing copy is used only when it holds exactly the embedded files, byte for byte,
/// as regular files in real directories; anything else (a file edited or replaced by a
/// link, an extra file) makes the whole copy be replaced by a fresh one, so only
/// carrier's own evaluator is ever evaluated (`auto-rollback.sh` runs as root on every
/// target).
pub fn materialize_evaluator(cache_dir: &Path) -> Result<PathBuf, NixError> {
    private_dir::ensure(cache_dir)?;
    let dir = cache_dir.join(format!("evaluator-{}", &evaluator_digest()[..16]));
    let io = |context: String| move |source| NixError::Io { context, source };
    match std::fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("reading {}", dir.display()))(e)),
        Ok(_) if evaluator_is_intact(&dir) => return Ok(dir),
        Ok(meta) => {
            // Moved aside first: a rename is atomic, a removal is not.
            let aside =
                cache_dir.join(format!(".evaluator-replaced-{}", crate::links::random_suffix()));
            std::fs::rename(&dir, &aside).map_err(io(format!("moving {} aside", dir.display())))?;
            let removed = if meta.is_dir() {
                std::fs::remove_dir_all(&aside)
            } else {
                std::fs::remove_file(&aside)
            };
            removed.map_err(io(format!("removing {}", aside.display())))?;
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix(".evaluator-")
        .tempdir_in(cache_dir)
        .map_err(io(format!("creating a directory in {}", cache_dir.display())))?
        .keep();
    for (rel, content) in EVALUATOR_FILES {
        let path = tmp.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        std::fs::write(&path, content).map_err(io(format!("writing {}", path.display())))?;
    }
    // Another process may have won the race: its copy is used only if it is intact too.
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        if !evaluator_is_intact(&dir) {
            return Err(NixError::Io {
                context: format!("materialising the evaluator in {}", dir.display()),
                source: std::io::Error::other(
                    "another copy appeared there and differs from carrier's",
                ),
            });
        }
    }
    Ok(dir)
}

/// True when `dir` holds exactly the embedded evaluator: the same entries (no more, no
/// links), each file with the embedded bytes.
fn evaluator_is_intact(dir: &Path) -> bool {
    let mut expected: Vec<PathBuf> = Vec::new();
    for (rel, _) in EVALUATOR_FILES {
        let mut p = Path::new(rel);
        expected.push(p.to_path_buf());
        while let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
            expected.push(parent.to_path_buf());
            p = parent;
        }
    }
    expected.sort();
    expected.dedup();
    // A link in place of the directory is not a copy carrier wrote (and `dir/` would follow it).
    if !std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        return false;
    }
    let mut found = Vec::new();
    if list_entries(dir, Path::new(""), &mut found).is_err() {
        return false;
    }
    found.sort();
    found == expected
        && EVALUATOR_FILES.iter().all(|(rel, content)| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(dir.join(rel))
                .and_then(|mut f| {
                    let mut bytes = Vec::with_capacity(content.len() + 1);
                    std::io::Read::read_to_end(
                        &mut std::io::Read::take(&mut f, content.len() as u64 + 1),
                        &mut bytes,
                    )?;
                    Ok(bytes == content.as_bytes())
                })
                .unwrap_or(false)
        })
}

/// Every entry below `dir` (relative paths); an error for anything but plain files and
/// directories (entries' types are not followed through links).
fn list_entries(dir: &Path, rel: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir.join(rel))? {
        let entry = entry?;
        let path = rel.join(entry.file_name());
        let kind = entry.file_type()?;
        found.push(path.clone());
        if kind.is_dir() {
            list_entries(dir, &path, found)?;
        } else if !kind.is_file() {
            return Err(ErrorKind::InvalidData.into());
        }
    }
    Ok(())
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
    let lines: Vec<&str> =
        out.lines().filter(|l| !l.contains("--show-trace")).map(str::trim_end).collect();
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
        let argv =
            eval_json_argv(Path::new("/e/eval.nix"), &[("confDir", "/c; rm -rf /"), ("x", "a b")]);
        assert_eq!(
            argv,
            [
                "nix-instantiate",
                "--eval",
                "--strict",
                "--json",
                "/e/eval.nix",
                "--argstr",
                "confDir",
                "/c; rm -rf /",
                "--argstr",
                "x",
                "a b"
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

    #[test]
    fn a_tampered_evaluator_copy_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = materialize_evaluator(tmp.path()).unwrap();
        let check = |dir: &Path| {
            for (rel, content) in EVALUATOR_FILES {
                assert!(std::fs::symlink_metadata(dir.join(rel)).unwrap().is_file(), "{rel}");
                assert_eq!(&std::fs::read_to_string(dir.join(rel)).unwrap(), content, "{rel}");
            }
        };
        let embedded = |rel: &str| EVALUATOR_FILES.iter().find(|(r, _)| *r == rel).unwrap().1;
        // One byte more, one file missing, one extra file, one file a link to an identical copy.
        let longer = |d: &Path| {
            std::fs::write(
                d.join("build-machines.nix"),
                format!("{}\n", embedded("build-machines.nix")),
            )
            .unwrap()
        };
        let missing = |d: &Path| std::fs::remove_file(d.join("auto-rollback.sh")).unwrap();
        let extra = |d: &Path| std::fs::write(d.join("lib/extra.nix"), "{}").unwrap();
        let linked = |d: &Path| {
            let copy = d.parent().unwrap().join("copy.nix");
            std::fs::write(&copy, embedded("lib/modules.nix")).unwrap();
            std::fs::remove_file(d.join("lib/modules.nix")).unwrap();
            std::os::unix::fs::symlink(&copy, d.join("lib/modules.nix")).unwrap();
        };
        let tampers: [&dyn Fn(&Path); 4] = [&longer, &missing, &extra, &linked];
        for tamper in tampers {
            tamper(&dir);
            assert!(!evaluator_is_intact(&dir));
            assert_eq!(materialize_evaluator(tmp.path()).unwrap(), dir);
            check(&dir);
            assert!(evaluator_is_intact(&dir));
        }
        // The whole directory replaced by a link to a look-alike.
        let other = tempfile::tempdir().unwrap();
        let planted = materialize_evaluator(other.path()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(&planted, &dir).unwrap();
        assert_eq!(materialize_evaluator(tmp.path()).unwrap(), dir);
        assert!(std::fs::symlink_metadata(&dir).unwrap().is_dir());
        check(&dir);
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.') || n.ends_with(".nix"))
            .collect();
        assert_eq!(leftovers, ["copy.nix"], "nothing else left behind");
    }
}
