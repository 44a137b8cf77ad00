//! Local build generations (spec 1.6): what `carrier build` leaves on the deploy host
//! and what `deploy --generation` picks from.
//!
//! ```text
//! <conf>/.confctl/generations/<safe name>/<YYYY-MM-DD--HH-MM-SS>/
//!     toplevel        -> /nix/store/…   (the built attribute; a dist for carried machines)
//!     auto_rollback   -> /nix/store/…-auto-rollback
//!     generation.json    {"mode","date","toplevel","auto_rollback","swpins"}
//!                        flake mode: {"mode","date","toplevel","auto_rollback","inputs","inputs_info"}
//!     <role>.input    -> /nix/store/…   (flake mode: the machine's inputs)
//! <conf>/.confctl/generations/<safe name>/current -> <gen name>
//! ```
//!
//! The layout is upstream's (its VM tests read `current/generation.json`), so a
//! configuration directory can move between confctl and carrier. carrier has no swpins
//! (nixPath entries are plain paths), so legacy generations have an empty `swpins` set,
//! which is what confctl writes for a legacy configuration without pins. A generation
//! is reused when its toplevel, mode and input paths are the build's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cluster::safe_name;
use crate::conf_dir::ConfDir;

use super::BuildError;

/// One local build generation of one machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Generation {
    /// The directory name, `YYYY-MM-DD--HH-MM-SS` (local time at the start of the build).
    pub name: String,
    /// The machine's name (`node1`, `pxe#node1`).
    pub machine: String,
    pub dir: PathBuf,
    /// The built attribute's store path (for carried machines: the dist).
    pub toplevel: PathBuf,
    pub auto_rollback: Option<PathBuf>,
    /// ISO 8601 with the local offset, as written in generation.json.
    pub date: String,
}

/// generation.json, upstream's keys.
#[derive(Debug, Serialize, Deserialize)]
struct GenerationJson {
    mode: String,
    date: String,
    toplevel: String,
    #[serde(default)]
    auto_rollback: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    swpins: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inputs: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inputs_info: Option<serde_json::Value>,
}

/// A flake-mode machine's inputs (`.#confctl.inputs.<key>`, `.#confctl.inputsInfo.<key>`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(super) struct FlakeInputs {
    /// Role → store path.
    pub inputs: BTreeMap<String, String>,
    /// Role → `{input, url, rev, shortRev, lastModified}`.
    pub inputs_info: serde_json::Value,
}

/// The generations directory of one machine (`/` in names becomes `:`, `#` stays).
pub fn machine_dir(conf_dir: &ConfDir, machine: &str) -> PathBuf {
    conf_dir.generations_dir().join(safe_name(machine))
}

/// Where the generations' GC roots live (spec 1.6):
/// `/nix/var/nix/gcroots/per-user/<login>/confctl-<8 hex of sha256(realpath conf)>`.
pub fn default_gc_roots_dir(conf_dir: &ConfDir) -> PathBuf {
    let login =
        std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "root".into());
    let digest = hex::encode(Sha256::digest(conf_dir.path().as_os_str().as_encoded_bytes()));
    PathBuf::from("/nix/var/nix/gcroots/per-user")
        .join(login)
        .join(format!("confctl-{}", &digest[..8]))
}

/// The generations of `machine`, oldest first (by date, then name). Directories that do
/// not load are skipped (upstream prints `Ignoring invalid generation <dir>`; a library
/// has no terminal, and one broken directory must not hide the others).
pub fn list(conf_dir: &ConfDir, machine: &str) -> Vec<Generation> {
    let dir = machine_dir(conf_dir, machine);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut gens: Vec<(jiff::Timestamp, Generation)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            if name.starts_with('.') {
                return None; // a generation being written
            }
            load(&dir, &name, machine)
        })
        .collect();
    gens.sort_by(|(ta, a), (tb, b)| ta.cmp(tb).then_with(|| a.name.cmp(&b.name)));
    gens.into_iter().map(|(_, g)| g).collect()
}

fn load(dir: &Path, name: &str, machine: &str) -> Option<(jiff::Timestamp, Generation)> {
    let gen_dir = dir.join(name);
    let json: GenerationJson =
        serde_json::from_slice(&std::fs::read(gen_dir.join("generation.json")).ok()?).ok()?;
    let ts: jiff::Timestamp = json.date.parse().ok()?;
    Some((
        ts,
        Generation {
            name: name.to_string(),
            machine: machine.to_string(),
            dir: gen_dir,
            toplevel: PathBuf::from(json.toplevel),
            auto_rollback: json.auto_rollback.map(PathBuf::from),
            date: json.date,
        },
    ))
}

/// The generation `selector` names (spec 4.1): `0` the newest, `k` the k-th oldest,
/// `-k` the (k+1)-th newest, `current` the `current` link (the newest when the link is
/// missing or dangling), anything else an exact directory name.
pub fn find(conf_dir: &ConfDir, machine: &str, selector: &str) -> Option<Generation> {
    let gens = list(conf_dir, machine);
    let numeric = selector.strip_prefix('-').unwrap_or(selector);
    if !numeric.is_empty() && numeric.bytes().all(|c| c.is_ascii_digit()) {
        let n: i64 = selector.parse().ok()?;
        return crate::generation::selector::offset(gens.len(), n).map(|i| gens[i].clone());
    }
    if selector == "current" {
        let target = std::fs::read_link(machine_dir(conf_dir, machine).join("current")).ok();
        let by_link = target
            .as_deref()
            .and_then(|t| t.file_name())
            .and_then(|t| gens.iter().find(|g| std::ffi::OsStr::new(&g.name) == t));
        return by_link.or(gens.last()).cloned();
    }
    gens.into_iter().find(|g| g.name == selector)
}

/// What one machine's build produced, to be recorded.
pub(super) struct Built<'a> {
    pub machine: &'a str,
    pub toplevel: &'a Path,
    pub auto_rollback: Option<&'a Path>,
    /// Flake mode: the machine's inputs.
    pub flake: Option<&'a FlakeInputs>,
}

impl Built<'_> {
    fn mode(&self) -> &'static str {
        if self.flake.is_some() { "flakes" } else { "swpins" }
    }

    /// Whether `generation` was built from the same sources (mode and input paths).
    fn same_pins(&self, generation: &Generation) -> bool {
        let Ok(bytes) = std::fs::read(generation.dir.join("generation.json")) else { return false };
        let Ok(json) = serde_json::from_slice::<GenerationJson>(&bytes) else { return false };
        json.mode == self.mode() && json.inputs.as_ref() == self.flake.map(|f| &f.inputs)
    }
}

/// Records a build: reuses the newest generation with the same toplevel (made
/// current, no new directory), or writes a new one. The new directory is assembled
/// under a hidden name and renamed into place, and its GC roots exist before it does,
/// so a reader never sees half a generation nor a generation whose paths may be
/// collected.
pub(super) fn record(
    conf_dir: &ConfDir,
    built: &Built<'_>,
    gen_name: &str,
    date: &str,
    roots_dir: &Path,
) -> Result<Generation, BuildError> {
    let dir = machine_dir(conf_dir, built.machine);
    if let Some(existing) = list(conf_dir, built.machine)
        .into_iter()
        .rev()
        .find(|g| g.toplevel == built.toplevel && built.same_pins(g))
    {
        // roots may have been removed by hand; recreating them is harmless
        make_roots(
            roots_dir,
            built.machine,
            &existing.name,
            &existing.toplevel,
            existing.auto_rollback.as_deref(),
        )?;
        make_input_roots(roots_dir, built, &existing.name)?;
        set_current(&dir, &existing.name)?;
        return Ok(existing);
    }
    create_dir_all(&dir)?;
    let final_dir = dir.join(gen_name);
    if final_dir.exists() {
        return Err(BuildError::Generation {
            dir: final_dir,
            message: "already exists with another toplevel".into(),
        });
    }
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{gen_name}.tmp-"))
        .tempdir_in(&dir)
        .map_err(|e| io(format!("creating a directory in {}", dir.display()), e))?;
    symlink(built.toplevel, &tmp.path().join("toplevel"))?;
    if let Some(ar) = built.auto_rollback {
        symlink(ar, &tmp.path().join("auto_rollback"))?;
    }
    for (role, path) in built.flake.map(|f| &f.inputs).into_iter().flatten() {
        symlink(Path::new(path), &tmp.path().join(format!("{role}.input")))?;
    }
    let json = GenerationJson {
        mode: built.mode().into(),
        date: date.to_string(),
        toplevel: built.toplevel.display().to_string(),
        auto_rollback: built.auto_rollback.map(|p| p.display().to_string()),
        swpins: built.flake.is_none().then(Default::default),
        inputs: built.flake.map(|f| f.inputs.clone()),
        inputs_info: built.flake.map(|f| f.inputs_info.clone()),
    };
    let json_path = tmp.path().join("generation.json");
    std::fs::write(
        &json_path,
        serde_json::to_vec_pretty(&json).expect("generation.json serializes"),
    )
    .map_err(|e| io(format!("writing {}", json_path.display()), e))?;
    make_roots(roots_dir, built.machine, gen_name, built.toplevel, built.auto_rollback)?;
    make_input_roots(roots_dir, built, gen_name)?;
    let tmp = tmp.keep();
    std::fs::rename(&tmp, &final_dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        io(format!("renaming {} to {}", tmp.display(), final_dir.display()), e)
    })?;
    set_current(&dir, gen_name)?;
    Ok(Generation {
        name: gen_name.to_string(),
        machine: built.machine.to_string(),
        dir: final_dir,
        toplevel: built.toplevel.to_path_buf(),
        auto_rollback: built.auto_rollback.map(Path::to_path_buf),
        date: date.to_string(),
    })
}

/// `<safe host>-generation-<gen>-toplevel` and `…-auto_rollback` in `roots_dir`.
fn make_roots(
    roots_dir: &Path,
    machine: &str,
    gen_name: &str,
    toplevel: &Path,
    auto_rollback: Option<&Path>,
) -> Result<(), BuildError> {
    create_dir_all(roots_dir)?;
    let base = format!("{}-generation-{gen_name}", safe_name(machine));
    replace_symlink(toplevel, &roots_dir.join(format!("{base}-toplevel")))?;
    if let Some(ar) = auto_rollback {
        replace_symlink(ar, &roots_dir.join(format!("{base}-auto_rollback")))?;
    }
    Ok(())
}

/// `<safe host>-generation-<gen>-input.<role>` for a flake-mode build's inputs.
fn make_input_roots(roots_dir: &Path, built: &Built<'_>, gen_name: &str) -> Result<(), BuildError> {
    let base = format!("{}-generation-{gen_name}", safe_name(built.machine));
    for (role, path) in built.flake.map(|f| &f.inputs).into_iter().flatten() {
        replace_symlink(Path::new(path), &roots_dir.join(format!("{base}-input.{role}")))?;
    }
    Ok(())
}

/// Removes every GC root of one generation (`<safe host>-generation-<gen>-*` in
/// `roots_dir`), so that its store paths may be collected. A missing directory has none.
pub fn remove_roots(roots_dir: &Path, machine: &str, gen_name: &str) -> std::io::Result<()> {
    let prefix = format!("{}-generation-{gen_name}-", safe_name(machine));
    let entries = match std::fs::read_dir(roots_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// `current` -> the generation's directory name (relative, as upstream).
fn set_current(dir: &Path, gen_name: &str) -> Result<(), BuildError> {
    replace_symlink(Path::new(gen_name), &dir.join("current"))
}

/// Points `link` at `target` atomically.
fn replace_symlink(target: &Path, link: &Path) -> Result<(), BuildError> {
    crate::links::swap_link(link, target)
        .map_err(|e| io(format!("replacing {}", link.display()), e))
}

fn symlink(target: &Path, link: &Path) -> Result<(), BuildError> {
    std::os::unix::fs::symlink(target, link)
        .map_err(|e| io(format!("linking {} to {}", link.display(), target.display()), e))
}

fn create_dir_all(dir: &Path) -> Result<(), BuildError> {
    std::fs::create_dir_all(dir).map_err(|e| io(format!("creating {}", dir.display()), e))
}

fn io(context: String, source: std::io::Error) -> BuildError {
    BuildError::Io { context, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_gen(conf: &ConfDir, machine: &str, name: &str, date: &str, toplevel: &str) {
        let dir = machine_dir(conf, machine).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let json = serde_json::json!({"mode": "swpins", "date": date, "toplevel": toplevel, "auto_rollback": null, "swpins": {}});
        std::fs::write(dir.join("generation.json"), json.to_string()).unwrap();
    }

    #[test]
    fn list_sorts_by_date_and_skips_invalid() {
        let tmp = tempfile::tempdir().unwrap();
        let c = &ConfDir::resolve(tmp.path()).unwrap();
        write_gen(c, "a/b", "2026-01-02--00-00-00", "2026-01-02T00:00:00+00:00", "/nix/store/2");
        write_gen(c, "a/b", "2026-01-01--00-00-00", "2026-01-01T00:00:00+00:00", "/nix/store/1");
        std::fs::create_dir_all(machine_dir(c, "a/b").join("broken")).unwrap();
        let gens = list(c, "a/b");
        assert!(machine_dir(c, "a/b").ends_with(".confctl/generations/a:b"));
        assert_eq!(
            gens.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
            ["2026-01-01--00-00-00", "2026-01-02--00-00-00"]
        );
        assert_eq!(gens[0].toplevel, Path::new("/nix/store/1"));
    }

    #[test]
    fn selectors() {
        let tmp = tempfile::tempdir().unwrap();
        let c = &ConfDir::resolve(tmp.path()).unwrap();
        for d in 1..=3 {
            write_gen(
                c,
                "m",
                &format!("2026-01-0{d}--00-00-00"),
                &format!("2026-01-0{d}T00:00:00Z"),
                &format!("/nix/store/{d}"),
            );
        }
        let name = |s: &str| find(c, "m", s).map(|g| g.name[9..10].to_string());
        assert_eq!(name("0").as_deref(), Some("3"));
        assert_eq!(name("1").as_deref(), Some("1"));
        assert_eq!(name("-1").as_deref(), Some("2"));
        assert_eq!(name("-3"), None);
        assert_eq!(name("4"), None);
        assert_eq!(name("current").as_deref(), Some("3"), "no link: the newest");
        set_current(&machine_dir(c, "m"), "2026-01-02--00-00-00").unwrap();
        assert_eq!(name("current").as_deref(), Some("2"));
        assert_eq!(name("2026-01-01--00-00-00").as_deref(), Some("1"));
        assert_eq!(name("nope"), None);
    }

    #[test]
    fn gc_roots_dir_hashes_the_conf_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let d = default_gc_roots_dir(&ConfDir::resolve(tmp.path()).unwrap());
        let real = std::fs::canonicalize(tmp.path()).unwrap();
        let hex = &hex::encode(Sha256::digest(real.as_os_str().as_encoded_bytes()))[..8];
        assert!(d.to_string_lossy().ends_with(&format!("confctl-{hex}")), "{}", d.display());
        assert!(d.starts_with("/nix/var/nix/gcroots/per-user"));
    }
}
