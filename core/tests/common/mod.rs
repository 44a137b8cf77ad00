//! Fixture helpers shared by integration tests: real store paths built by real Nix with
//! the static busybox of `scripts/setup` as builder (no nixpkgs), real profiles made by
//! `nix-env -p <dir>/confctl-<alias> --set <path>`, and a readable, deterministic dump
//! of a directory tree for golden files.
//!
//! Typical use:
//! ```ignore
//! let mut b = Batch::new();
//! b.add("linux-6.1.0", &[("bzImage", Entry::text("kernel"))]);
//! b.add("dist-a", &[("bzImage", Entry::link("{{linux-6.1.0}}/bzImage")),
//!                   ("machine.json", Entry::text(r#"{"toplevel": "{{linux-6.1.0}}"}"#))]);
//! let paths = b.build();                     // name -> /nix/store/…-dist-a
//! set_profile(&profiles, "os/node2", &paths["dist-a"]);
//! ```
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (`core/..`).
pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Environment for Nix commands: `scripts/env`'s NIX_CONF_DIR when the caller has none.
fn nix_command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    if std::env::var_os("NIX_CONF_DIR").is_none() {
        cmd.env("NIX_CONF_DIR", repo_root().join(".local/nix"));
    }
    cmd
}

/// The static busybox directory (`bin/busybox`, `bin/sh`) made by `scripts/setup`.
pub(crate) fn busybox_dir() -> PathBuf {
    let root = std::env::var_os("CARRIER_ROOT").map(PathBuf::from).unwrap_or_else(repo_root);
    let dir = root.join(".local/busybox");
    assert!(dir.join("bin/busybox").is_file(), "{} is missing: run scripts/setup", dir.display());
    // A symlinked .local (a worktree sharing another checkout's) would be imported by
    // builtins.path as the symlink itself, which the build sandbox cannot follow.
    dir.canonicalize().expect("busybox directory resolves")
}

/// One entry of a store path being built.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// A file with this content.
    Text(String),
    /// A symlink to this target.
    Link(String),
}

impl Entry {
    pub(crate) fn text(s: impl Into<String>) -> Entry {
        Entry::Text(s.into())
    }
    pub(crate) fn link(s: impl Into<String>) -> Entry {
        Entry::Link(s.into())
    }
}

/// Store paths built together by one `nix-build`. In contents and link targets,
/// `{{name}}` stands for the store path of the entry `name` of the same batch (a real
/// Nix string reference, so the dependency is in the closure).
#[derive(Debug, Default)]
pub(crate) struct Batch {
    items: Vec<(String, Vec<(String, Entry)>)>,
}

impl Batch {
    pub(crate) fn new() -> Batch {
        Batch::default()
    }

    /// Adds the store path `name` (also its attribute name) with `files` (paths may
    /// contain `/`; directories are created).
    pub(crate) fn add(&mut self, name: &str, files: &[(&str, Entry)]) -> &mut Batch {
        assert!(!self.items.iter().any(|(n, _)| n == name), "{name} added twice");
        self.items.push((
            name.to_string(),
            files.iter().map(|(p, e)| (p.to_string(), e.clone())).collect(),
        ));
        self
    }

    /// Builds everything; returns name → store path.
    pub(crate) fn build(&self) -> BTreeMap<String, PathBuf> {
        if self.items.is_empty() {
            return BTreeMap::new();
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fixture.nix");
        std::fs::write(&file, self.nix_source()).unwrap();
        let mut cmd = nix_command("nix-build");
        cmd.arg(&file).arg("--no-out-link");
        for (name, _) in &self.items {
            cmd.arg("-A").arg(nix_attr(name));
        }
        let out = cmd.output().expect("nix-build runs");
        assert!(
            out.status.success(),
            "nix-build failed:\n{}\n--- fixture.nix:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.nix_source()
        );
        let paths: Vec<PathBuf> =
            String::from_utf8(out.stdout).unwrap().lines().map(PathBuf::from).collect();
        assert_eq!(paths.len(), self.items.len(), "one output per attribute");
        self.items.iter().map(|(n, _)| n.clone()).zip(paths).collect()
    }

    fn nix_source(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "let\n  bb = builtins.path {{ path = {}; name = \"busybox-static\"; }};\n",
            nix_string(&busybox_dir().display().to_string())
        ));
        s.push_str(
            r#"  script = ''
    mkdir "$out"
    i=0
    while [ "$i" -lt "$count" ]; do
      eval "name=\$n$i; kind=\$k$i"
      case "$name" in */*) mkdir -p "$out/''${name%/*}";; esac
      if [ "$kind" = link ]; then
        eval "ln -s \"\$t$i\" \"\$out/\$name\""
      else
        eval "cp \"\$t''${i}Path\" \"\$out/\$name\""
      fi
      i=$((i + 1))
    done
  '';
  mk = name: attrs: derivation ({
    inherit name;
    system = builtins.currentSystem;
    builder = "${bb}/bin/busybox";
    args = [ "sh" "-euc" script ];
  } // attrs);
in rec {
"#,
        );
        for (name, files) in &self.items {
            s.push_str(&format!("  {} = mk {} {{\n", nix_attr(name), nix_string(name)));
            s.push_str(&format!("    count = \"{}\";\n", files.len()));
            let mut pass = Vec::new();
            for (i, (path, entry)) in files.iter().enumerate() {
                s.push_str(&format!("    n{i} = {};\n", nix_string(path)));
                let (kind, value) = match entry {
                    Entry::Text(t) => {
                        pass.push(format!("\"t{i}\""));
                        ("file", t)
                    }
                    Entry::Link(t) => ("link", t),
                };
                s.push_str(&format!(
                    "    k{i} = \"{kind}\";\n    t{i} = {};\n",
                    self.interpolate(value)
                ));
            }
            s.push_str(&format!("    passAsFile = [ {} ];\n  }};\n", pass.join(" ")));
        }
        s.push_str("}\n");
        s
    }

    /// A Nix string literal of `text` with `{{name}}` turned into references.
    fn interpolate(&self, text: &str) -> String {
        let mut out = String::from("\"");
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            let Some(len) = rest[start..].find("}}") else { break };
            let name = &rest[start + 2..start + len];
            assert!(
                self.items.iter().any(|(n, _)| n == name),
                "{{{{{name}}}}} is not in the batch"
            );
            out.push_str(&escape(&rest[..start]));
            out.push_str(&format!("${{{}}}", nix_attr(name)));
            rest = &rest[start + len + 2..];
        }
        out.push_str(&escape(rest));
        out.push('"');
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace("${", "\\${").replace('\n', "\\n")
}

fn nix_string(s: &str) -> String {
    format!("\"{}\"", escape(s))
}

/// Attribute names are the store names with characters Nix identifiers lack replaced.
fn nix_attr(name: &str) -> String {
    let mut a: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if a.starts_with(|c: char| c.is_ascii_digit()) {
        a.insert(0, '_');
    }
    format!("x_{a}")
}

/// Builds one store path `name` holding text files.
pub(crate) fn build_dist(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let mut b = Batch::new();
    let entries: Vec<(&str, Entry)> = files.iter().map(|(p, c)| (*p, Entry::text(*c))).collect();
    b.add(name, &entries);
    b.build().remove(name).unwrap()
}

/// The profile name of a carried alias: `/` becomes `:`.
pub(crate) fn profile_name(alias: &str) -> String {
    alias.replace('/', ":")
}

/// `<dir>/confctl-<alias with / → :>`.
pub(crate) fn profile_path(dir: &Path, alias: &str) -> PathBuf {
    dir.join(format!("confctl-{}", profile_name(alias)))
}

/// `nix-env -p <dir>/confctl-<alias> --set <path>`, as `carrier-env` does. Returns the
/// generation now current.
pub(crate) fn set_profile(dir: &Path, alias: &str, path: &Path) -> u64 {
    std::fs::create_dir_all(dir).unwrap();
    let profile = profile_path(dir, alias);
    nix_env(&profile, &["--set", &path.display().to_string()]);
    current_generation(dir, alias).expect("nix-env made a generation")
}

/// `nix-env -p <profile> --switch-generation <n>`.
pub(crate) fn switch_generation(dir: &Path, alias: &str, number: u64) {
    nix_env(&profile_path(dir, alias), &["--switch-generation", &number.to_string()]);
}

fn nix_env(profile: &Path, args: &[&str]) {
    let out =
        nix_command("nix-env").arg("-p").arg(profile).args(args).output().expect("nix-env runs");
    assert!(
        out.status.success(),
        "nix-env {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The generation number the profile link names.
pub(crate) fn current_generation(dir: &Path, alias: &str) -> Option<u64> {
    let target = std::fs::read_link(profile_path(dir, alias)).ok()?;
    let name = target.file_name()?.to_str()?.to_string();
    let rest =
        name.strip_prefix(&format!("confctl-{}-", profile_name(alias)))?.strip_suffix("-link")?;
    rest.parse().ok()
}

/// `<dir>/confctl-<alias>-<n>-link`.
pub(crate) fn generation_link(dir: &Path, alias: &str, number: u64) -> PathBuf {
    dir.join(format!("confctl-{}-{number}-link", profile_name(alias)))
}

/// Sets the mtime of a symlink itself (the generation's creation time), epoch seconds.
pub(crate) fn set_link_time(link: &Path, epoch: i64) {
    let out = Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg(format!("@{epoch}"))
        .arg(link)
        .output()
        .unwrap();
    assert!(out.status.success(), "touch -h failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Replaces the 32-character hash of every `/nix/store/<hash>-<name>` with `HASH`.
pub(crate) fn mask_store_hashes(text: &str) -> String {
    const PREFIX: &str = "/nix/store/";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(PREFIX) {
        out.push_str(&rest[..i + PREFIX.len()]);
        rest = &rest[i + PREFIX.len()..];
        let hash_len = rest.bytes().take_while(|b| b.is_ascii_alphanumeric()).count();
        if hash_len == 32 {
            out.push_str("HASH");
            rest = &rest[32..];
        }
    }
    out.push_str(rest);
    out
}

/// A deterministic text dump of the tree at `root` as a client sees it: every path
/// (sorted), directories with a trailing `/`, symlinks as `-> target`, then the content
/// of every regular file. A symlink whose target passes `follow` (given the link's
/// target) is shown as the directory it points to. `replace` pairs are applied to the
/// whole dump after store hashes are masked.
pub(crate) fn dump_tree(
    root: &Path,
    follow: &dyn Fn(&Path) -> bool,
    replace: &[(&str, &str)],
) -> String {
    let mut listing = String::new();
    let mut contents = String::new();
    walk(root, Path::new(""), follow, &mut listing, &mut contents);
    let mut out = listing;
    out.push_str(&contents);
    let mut out = mask_store_hashes(&out);
    for (from, to) in replace {
        out = out.replace(from, to);
    }
    out
}

fn walk(
    dir: &Path,
    rel: &Path,
    follow: &dyn Fn(&Path) -> bool,
    listing: &mut String,
    contents: &mut String,
) {
    let mut names: Vec<_> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel = rel.join(&name);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            if follow(&target) {
                listing.push_str(&format!("{}/\n", rel.display()));
                walk(&path, &rel, follow, listing, contents);
            } else {
                listing.push_str(&format!("{} -> {}\n", rel.display(), target.display()));
            }
        } else if meta.is_dir() {
            listing.push_str(&format!("{}/\n", rel.display()));
            walk(&path, &rel, follow, listing, contents);
        } else {
            listing.push_str(&format!("{}\n", rel.display()));
            let text = std::fs::read(&path).unwrap();
            contents.push_str(&format!(
                "\n==== {} ====\n{}\n",
                rel.display(),
                String::from_utf8_lossy(&text)
            ));
        }
    }
}

/// Compares `actual` with the golden file `core/tests/fixtures/<rel>`; with
/// `CARRIER_BLESS=1` in the environment, (re)writes the golden file instead.
pub(crate) fn assert_golden(rel: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel);
    if std::env::var_os("CARRIER_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e} (run with CARRIER_BLESS=1 to create it)", path.display())
    });
    if expected != actual {
        let diff_at = expected.lines().zip(actual.lines()).position(|(a, b)| a != b);
        let line = diff_at.unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output at line {}:\n  expected: {:?}\n  actual:   {:?}\n(CARRIER_BLESS=1 rewrites it)",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

/// Writes a configuration's flake-mode files (`flake/*.nix.in` with absolute paths,
/// `flake/confctl.nix` as `configs/confctl.nix` when present) and makes it a git
/// checkout with `.confctl/` ignored (the flake's source is then its tracked files).
/// `lab_lib` is the absolute path of a copy of examples/lab/lib.
pub(crate) fn make_flake(conf: &Path, lab_lib: &Path) {
    for name in ["lab", "flake"] {
        let template = std::fs::read_to_string(conf.join("flake").join(format!("{name}.nix.in")))
            .unwrap()
            .replace("@LAB_LIB@", &lab_lib.display().to_string())
            .replace("@CARRIER_NIX@", &repo_root().join("nix").display().to_string());
        std::fs::write(conf.join(format!("{name}.nix")), template).unwrap();
    }
    if conf.join("flake/confctl.nix").exists() {
        std::fs::create_dir_all(conf.join("configs")).unwrap();
        std::fs::copy(conf.join("flake/confctl.nix"), conf.join("configs/confctl.nix")).unwrap();
    }
    std::fs::write(conf.join(".gitignore"), ".confctl/\n").unwrap();
    for git in [&["init", "-q"][..], &["add", "-A"]] {
        let out = Command::new("git").args(git).current_dir(conf).output().unwrap();
        assert!(out.status.success(), "git {git:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
