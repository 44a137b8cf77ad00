//! Publishing trees atomically, the build lock and the coalescing of concurrent builds.
//!
//! **Atomic publication** (spec 3.3). Each root (`tftpRoot`, `httpRoot`) is a symlink to a
//! sibling directory `<root>.<suffix>` (6 hex digits, shared by both trees). Next to the
//! served tree stays the *spare*: the tree served before the previous build. A build
//! patches the spare into the new tree (only entries that differ are rewritten, see
//! [`DirSpec::sync`]), or writes a new directory when there is no spare, then swaps each
//! root by creating a temporary symlink and `rename`-ing it over the root (atomic). The
//! tree served until then is not touched and becomes the next spare. So the served tree
//! is never modified, a rebuild costs what changed instead of a whole tree, and the
//! previous tree stays complete until the next build. If writing fails, the directories
//! being written are removed and the served trees stay. If the second swap fails, the
//! first is swapped back. A root that is a real directory is refused before anything is
//! written (upstream fails with EINVAL halfway). Other directories `<root>.<6 hex>` and
//! temporary links (left by a crash) are removed at the start of the next build.
//!
//! **Lock and coalescing.** The whole build holds an exclusive `flock` on `lockFile`.
//! A caller that finds the lock taken does not queue a build of its own: it creates the
//! marker `<lockFile>.pending` and waits for the lock. The builder removes the marker
//! when it starts a build and, once a build is done, builds again if the marker came
//! back. So however many callers arrive while a build runs, exactly one more build runs,
//! and it starts after all of them asked. A waiter that gets the lock and finds no
//! marker was served by that build: it returns the outcome the builder stored in
//! `<lockFile>.last` without building. If it finds the marker (it arrived after the
//! builder's last check), it builds itself.
//!
//! **The last build.** Every build's outcome goes to `<lockFile>.last` with when it ended
//! and how long it took ([`LastBuild`], JSON): `carrier netboot last-build` reads it, and
//! with it the dashboard's carrier page.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use std::collections::HashMap;

use super::tree::{DirRecord, DirSpec, io_err, remove_path};
use super::{BuildReport, NetbootError};
use crate::links::{random_suffix, swap_link};

/// What a coalesced build request came to.
#[derive(Debug)]
pub enum RequestOutcome {
    /// This call ran the build (`report.builds` times: more than once when requests
    /// arrived meanwhile).
    Built(BuildReport),
    /// Another call's build started after this request and covered it.
    Covered(BuildReport),
    /// Another build was running; a rebuild is requested and this call did not wait.
    Queued,
}

/// The last build of a carrier's trees (`<lockFile>.last`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastBuild {
    /// When it ended, RFC 3339 in UTC.
    pub finished_at: String,
    /// How long it took, in seconds.
    pub seconds: f64,
    /// What it published, or why it failed.
    pub outcome: LastOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LastOutcome {
    Ok(BuildReport),
    Err(String),
}

impl LastBuild {
    fn new(started: std::time::Instant, outcome: LastOutcome) -> LastBuild {
        LastBuild {
            finished_at: jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap_or_default()
                .to_string(),
            seconds: started.elapsed().as_secs_f64(),
            outcome,
        }
    }
}

/// The last build recorded next to `lock_file`; `None` when none was since the file was
/// created (`/run` is emptied at boot).
pub fn last_build(lock_file: &Path) -> Result<Option<LastBuild>, NetbootError> {
    let path = with_suffix(lock_file, ".last");
    match path.try_exists() {
        Ok(false) => Ok(None),
        _ => read_last(&path).map(Some),
    }
}

/// `<path><suffix>`.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Runs `build` under the lock at `lock_file`, coalescing concurrent requests (see the
/// module documentation). With `wait` false, a call that finds a build running returns
/// [`RequestOutcome::Queued`] at once.
pub(super) fn coalesced<F>(
    lock_file: &Path,
    wait: bool,
    mut build: F,
) -> Result<RequestOutcome, NetbootError>
where
    F: FnMut() -> Result<BuildReport, NetbootError>,
{
    if let Some(dir) = lock_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating '{}'", dir.display())))?;
    }
    let lock_err = |source| NetbootError::Lock { path: lock_file.to_path_buf(), source };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_file)
        .map_err(lock_err)?;
    let pending = with_suffix(lock_file, ".pending");
    let last = with_suffix(lock_file, ".last");
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            File::create(&pending).map_err(io_err(format!("creating '{}'", pending.display())))?;
            if !wait {
                return Ok(RequestOutcome::Queued);
            }
            file.lock().map_err(lock_err)?;
            if !pending.exists() {
                return match read_last(&last)?.outcome {
                    LastOutcome::Ok(mut report) => {
                        report.builds = 0;
                        Ok(RequestOutcome::Covered(report))
                    }
                    LastOutcome::Err(message) => Err(NetbootError::Coalesced { message }),
                };
            }
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(lock_err(e)),
    }
    // We hold the lock until `file` is dropped.
    let mut builds = 0;
    loop {
        // Callers waiting now are served by this build: they will read its outcome.
        let serves_waiters = match std::fs::remove_file(&pending) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(io_err(format!("removing '{}'", pending.display()))(e)),
        };
        builds += 1;
        let started = std::time::Instant::now();
        match build() {
            Ok(mut report) => {
                report.builds = builds;
                let record = LastBuild::new(started, LastOutcome::Ok(report.clone()));
                // waiters need the outcome; for anyone else it is only a record
                match write_last(&last, &record) {
                    Err(e) if serves_waiters => return Err(e),
                    Err(e) => report.warnings.push(format!("the build is not recorded: {e}")),
                    Ok(()) => {}
                }
                if !pending.exists() {
                    drop(file);
                    return Ok(RequestOutcome::Built(report));
                }
            }
            Err(e) => {
                write_last(&last, &LastBuild::new(started, LastOutcome::Err(e.to_string())))?;
                return Err(e);
            }
        }
    }
}

fn read_last(path: &Path) -> Result<LastBuild, NetbootError> {
    let bytes = std::fs::read(path)
        .map_err(io_err(format!("reading the last build's outcome '{}'", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| NetbootError::Io {
        context: format!("reading the last build's outcome '{}'", path.display()),
        source: std::io::Error::new(ErrorKind::InvalidData, e),
    })
}

fn write_last(path: &Path, outcome: &LastBuild) -> Result<(), NetbootError> {
    let tmp = with_suffix(path, ".tmp");
    let bytes = serde_json::to_vec(outcome).expect("the outcome serializes");
    std::fs::write(&tmp, bytes).map_err(io_err(format!("writing '{}'", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_err(format!("renaming '{}'", tmp.display())))
}

/// A root symlink and the directory it points to now.
#[derive(Debug)]
struct Root {
    path: PathBuf,
    parent: PathBuf,
    name: String,
    /// The link's target as written, and the directory it names (when it is one of ours).
    previous: Option<PathBuf>,
}

fn is_tree_name(root_name: &str, entry: &str) -> bool {
    entry
        .strip_prefix(root_name)
        .and_then(|r| r.strip_prefix('.'))
        .is_some_and(|r| r.len() == 6 && r.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Root {
    fn inspect(path: &Path) -> Result<Root, NetbootError> {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| NetbootError::Io {
                context: format!("'{}' has no usable file name", path.display()),
                source: std::io::Error::from(ErrorKind::InvalidInput),
            })?
            .to_string();
        let previous = match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(format!("inspecting '{}'", path.display()))(e)),
            Ok(m) if m.file_type().is_symlink() => Some(
                std::fs::read_link(path)
                    .map_err(io_err(format!("reading '{}'", path.display())))?,
            ),
            Ok(_) => return Err(NetbootError::RootNotSymlink { path: path.to_path_buf() }),
        };
        Ok(Root { path: path.to_path_buf(), parent, name, previous })
    }

    /// The previous tree directory when it is one this builder made (`<name>.<6 hex>` in
    /// the same directory); a root pointing elsewhere is left alone.
    fn previous_tree(&self) -> Option<PathBuf> {
        let prev = self.previous.as_ref()?;
        let file = prev.file_name()?.to_str()?;
        let same_dir = match prev.parent() {
            None => true,
            Some(p) if p.as_os_str().is_empty() => true,
            Some(p) => p == self.parent,
        };
        (same_dir && is_tree_name(&self.name, file)).then(|| self.parent.join(file))
    }

    /// The root's tree directory for `suffix`, when it exists and is not the one served.
    fn spare(&self, suffix: &str) -> Option<PathBuf> {
        let dir = self.parent.join(format!("{}.{suffix}", self.name));
        let is_dir = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir());
        (is_dir && Some(&dir) != self.previous_tree().as_ref()).then_some(dir)
    }

    /// Suffixes of the root's tree directories that are not served, sorted.
    fn unserved_suffixes(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.parent) else { return Vec::new() };
        let mut out: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|file| is_tree_name(&self.name, file))
            .map(|file| file[self.name.len() + 1..].to_string())
            .filter(|suffix| self.spare(suffix).is_some())
            .collect();
        out.sort();
        out
    }

    /// Removes `<name>.<6 hex>` directories the root does not point to, except the
    /// spare, and temporary links: leftovers of a build that crashed.
    fn remove_orphans(&self, spare: Option<&str>, warnings: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(&self.parent) else { return };
        let current = self.previous_tree();
        let spare = spare.map(|s| self.parent.join(format!("{}.{s}", self.name)));
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            let path = entry.path();
            let orphan_tree = is_tree_name(&self.name, file)
                && Some(&path) != current.as_ref()
                && Some(&path) != spare.as_ref();
            let orphan_link =
                file.strip_suffix(".link").is_some_and(|t| is_tree_name(&self.name, t));
            if (orphan_tree || orphan_link)
                && let Err(e) = remove_path(&path)
            {
                warnings.push(format!("could not remove the leftover '{}': {e}", path.display()));
            }
        }
    }
}

/// Publishes each tree's content at its root, atomically: [`Staged::write`], then
/// [`Staged::install`].
pub(super) fn publish(
    trees: &[(&Path, &DirSpec)],
    known: &HashMap<String, Vec<DirRecord>>,
    warnings: &mut Vec<String>,
) -> Result<Published, NetbootError> {
    Staged::write(trees, known, warnings)?.install(known)
}

/// Trees written and not yet served.
pub(super) struct Staged {
    roots: Vec<Root>,
    suffix: String,
    dirs: Vec<PathBuf>,
    records: Vec<Vec<DirRecord>>,
}

/// What [`publish`] did.
#[derive(Debug)]
pub(super) struct Published {
    /// The tree directories now served, in the order of the roots.
    pub dirs: Vec<PathBuf>,
    /// The [`DirRecord`]s of the trees just written and of the trees served until now
    /// (the next build's spares), by tree directory path: for the next build.
    pub records: HashMap<String, Vec<DirRecord>>,
}

impl Staged {
    /// Writes each tree's content into the root's spare directory (the tree served
    /// before the previous build), patched to the new content, or into a new directory
    /// when there is no spare. The trees served now are not touched. `warnings` gets the
    /// problems that did not stop publishing (a leftover that could not be removed). If
    /// writing fails, the directories being written are removed.
    /// `known` holds the [`DirRecord`]s of earlier builds by tree directory path.
    pub(super) fn write(
        trees: &[(&Path, &DirSpec)],
        known: &HashMap<String, Vec<DirRecord>>,
        warnings: &mut Vec<String>,
    ) -> Result<Staged, NetbootError> {
        let roots: Vec<Root> =
            trees.iter().map(|(r, _)| Root::inspect(r)).collect::<Result<_, _>>()?;
        for root in &roots {
            std::fs::create_dir_all(&root.parent)
                .map_err(io_err(format!("creating '{}'", root.parent.display())))?;
        }
        // The spare: one suffix not served by any root, with a directory for every root.
        let spare = roots.first().and_then(|first| {
            first
                .unserved_suffixes()
                .into_iter()
                .find(|s| roots.iter().all(|r| r.spare(s).is_some()))
        });
        for root in &roots {
            root.remove_orphans(spare.as_deref(), warnings);
        }
        let (suffix, dirs) = match spare {
            Some(suffix) => {
                let dirs =
                    roots.iter().map(|r| r.parent.join(format!("{}.{suffix}", r.name))).collect();
                (suffix, dirs)
            }
            None => new_dirs(&roots)?,
        };
        let mut staged = Staged { roots, suffix, dirs, records: Vec::new() };
        // The trees are independent: write them side by side.
        let written: Result<Vec<Vec<DirRecord>>, NetbootError> = std::thread::scope(|s| {
            let handles: Vec<_> = trees
                .iter()
                .zip(&staged.dirs)
                .map(|((_, spec), dir)| {
                    let known = known.get(&record_key(dir)).map(Vec::as_slice).unwrap_or_default();
                    s.spawn(move || spec.sync(dir, known))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("writing a tree does not panic")).collect()
        });
        match written {
            Ok(records) => {
                staged.records = records;
                Ok(staged)
            }
            Err(e) => {
                staged.discard();
                Err(e)
            }
        }
    }

    /// Swaps every root symlink to its new tree (each swap is atomic); if a swap fails,
    /// the earlier ones are undone and the new trees removed. The trees served until
    /// now are kept: they are the next build's spares, and their records in `known`
    /// are passed on.
    pub(super) fn install(
        self,
        known: &HashMap<String, Vec<DirRecord>>,
    ) -> Result<Published, NetbootError> {
        for (i, root) in self.roots.iter().enumerate() {
            let target = PathBuf::from(format!("{}.{}", root.name, self.suffix));
            if let Err(e) = swap_link(&root.path, &target) {
                for earlier in self.roots[..i].iter().rev() {
                    let _ = match &earlier.previous {
                        Some(prev) => swap_link(&earlier.path, prev),
                        None => std::fs::remove_file(&earlier.path),
                    };
                }
                self.discard();
                return Err(io_err(format!(
                    "installing the new tree as '{}'",
                    root.path.display()
                ))(e));
            }
        }
        let mut records: HashMap<String, Vec<DirRecord>> =
            self.dirs.iter().map(|d| record_key(d)).zip(self.records).collect();
        for spare in self.roots.iter().filter_map(Root::previous_tree).map(|d| record_key(&d)) {
            if let Some(r) = known.get(&spare) {
                records.insert(spare, r.clone());
            }
        }
        Ok(Published { dirs: self.dirs, records })
    }

    fn discard(&self) {
        for d in &self.dirs {
            let _ = remove_path(d);
        }
    }
}

/// How [`DirRecord`]s name a tree directory: by its path.
fn record_key(dir: &Path) -> String {
    dir.to_string_lossy().into_owned()
}

/// New empty `<root>.<suffix>` directories, one random suffix for all roots, free in
/// every parent directory.
fn new_dirs(roots: &[Root]) -> Result<(String, Vec<PathBuf>), NetbootError> {
    'pick: loop {
        let suffix = random_suffix();
        let dirs: Vec<PathBuf> =
            roots.iter().map(|r| r.parent.join(format!("{}.{suffix}", r.name))).collect();
        let mut made: Vec<PathBuf> = Vec::new();
        for d in &dirs {
            match std::fs::create_dir(d) {
                Ok(()) => made.push(d.clone()),
                Err(e) => {
                    for m in &made {
                        let _ = std::fs::remove_dir(m);
                    }
                    if e.kind() == ErrorKind::AlreadyExists {
                        continue 'pick;
                    }
                    return Err(io_err(format!("creating '{}'", d.display()))(e));
                }
            }
        }
        return Ok((suffix, dirs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Barrier};

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn marker(text: &str) -> DirSpec {
        let mut spec = DirSpec::default();
        spec.file("marker", text);
        spec
    }

    fn publish_marker(roots: &[&Path], text: &str) -> Result<Vec<PathBuf>, NetbootError> {
        let spec = marker(text);
        let trees: Vec<(&Path, &DirSpec)> = roots.iter().map(|r| (*r, &spec)).collect();
        publish(&trees, &HashMap::new(), &mut Vec::new()).map(|p| p.dirs)
    }

    fn ino(p: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(p).unwrap().ino()
    }

    #[test]
    fn publishes_and_patches_the_spare() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("tftp"), t.path().join("http"));
        let first = publish_marker(&[&a, &b], "1").unwrap();
        assert_eq!(std::fs::read_to_string(a.join("marker")).unwrap(), "1");
        assert_eq!(std::fs::read_link(&a).unwrap(), PathBuf::from(first[0].file_name().unwrap()));
        let second = publish_marker(&[&a, &b], "2").unwrap();
        assert_ne!(first, second);
        assert_eq!(std::fs::read_to_string(b.join("marker")).unwrap(), "2");
        assert_eq!(
            std::fs::read_to_string(first[1].join("marker")).unwrap(),
            "1",
            "the previous tree is kept whole"
        );
        assert_eq!(listing(t.path()).len(), 6, "two roots, two served trees, two spares");

        // The third build patches the first tree: the unchanged file stays, the new one
        // is written.
        let mut spec = marker("3");
        spec.link("kept", "target");
        let third =
            publish(&[(&a, &spec), (&b, &spec)], &HashMap::new(), &mut Vec::new()).unwrap().dirs;
        assert_eq!(third, first, "the spare is reused");
        let kept = ino(&a.join("kept"));
        assert_eq!(std::fs::read_to_string(a.join("marker")).unwrap(), "3");
        let fourth =
            publish(&[(&a, &spec), (&b, &spec)], &HashMap::new(), &mut Vec::new()).unwrap().dirs;
        assert_eq!(fourth, second);
        let fifth =
            publish(&[(&a, &spec), (&b, &spec)], &HashMap::new(), &mut Vec::new()).unwrap().dirs;
        assert_eq!(fifth, first);
        assert_eq!(ino(&a.join("kept")), kept, "an entry with the wanted target is not rewritten");
        assert_eq!(listing(t.path()).len(), 6);
    }

    #[test]
    fn the_spare_is_made_exactly_like_the_spec() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("tftp");
        let s = publish_marker(&[&a], "1").unwrap().remove(0);
        publish_marker(&[&a], "2").unwrap();
        // Damage the spare every way a crash or a hand could.
        std::fs::write(s.join("marker"), "half-writ").unwrap();
        std::fs::create_dir_all(s.join("link/inner")).unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("f"), "keep me").unwrap();
        std::os::unix::fs::symlink(&outside, s.join("dir")).unwrap();
        std::fs::write(s.join("stray"), "x").unwrap();
        std::fs::create_dir_all(s.join("stray-dir/deep")).unwrap();

        let mut sub = DirSpec::default();
        sub.file("f", "inner");
        let mut spec = marker("3");
        spec.link("link", "somewhere");
        spec.dir("dir", sub);
        let dirs = publish(&[(&a, &spec)], &HashMap::new(), &mut Vec::new()).unwrap().dirs;
        assert_eq!(dirs[0], s, "the spare is patched");
        assert_eq!(listing(&s), ["dir", "link", "marker"]);
        assert_eq!(std::fs::read_to_string(s.join("marker")).unwrap(), "3");
        assert_eq!(std::fs::read_link(s.join("link")).unwrap(), PathBuf::from("somewhere"));
        assert!(std::fs::symlink_metadata(s.join("dir")).unwrap().is_dir());
        assert_eq!(std::fs::read_to_string(s.join("dir/f")).unwrap(), "inner");
        assert_eq!(
            std::fs::read_to_string(outside.join("f")).unwrap(),
            "keep me",
            "a link in the way is not followed"
        );
    }

    #[test]
    fn failed_write_keeps_old_trees_and_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("tftp"), t.path().join("http"));
        publish_marker(&[&a, &b], "old").unwrap();
        publish_marker(&[&a, &b], "old").unwrap();
        let served: Vec<PathBuf> =
            [&a, &b].iter().map(|r| std::fs::canonicalize(r).unwrap()).collect();
        // A file whose parent directory does not exist cannot be written.
        let mut spec = marker("new");
        spec.file("missing/file", "x");
        let err =
            publish(&[(&a, &spec), (&b, &spec)], &HashMap::new(), &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().starts_with("writing '") && err.to_string().contains("missing/file"),
            "{err}"
        );
        let mut expected: Vec<String> = ["tftp", "http"].iter().map(|s| s.to_string()).collect();
        expected
            .extend(served.iter().map(|d| d.file_name().unwrap().to_string_lossy().into_owned()));
        expected.sort();
        assert_eq!(listing(t.path()), expected, "the spares being written are removed");
        assert_eq!(std::fs::read_to_string(a.join("marker")).unwrap(), "old");
        assert_eq!(std::fs::read_to_string(b.join("marker")).unwrap(), "old");
    }

    #[test]
    fn failed_second_swap_restores_the_first() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("tftp");
        let b = t.path().join("sub/http");
        publish_marker(&[&a, &b], "old").unwrap();
        let before_a = std::fs::read_link(&a).unwrap();
        let spec = marker("new");
        let staged =
            Staged::write(&[(&a, &spec), (&b, &spec)], &HashMap::new(), &mut Vec::new()).unwrap();
        // Break the second swap: the root's parent becomes a file.
        let sub = t.path().join("sub");
        std::fs::rename(&sub, t.path().join("sub-moved")).unwrap();
        std::fs::write(&sub, "not a directory").unwrap();
        let err = staged.install(&HashMap::new()).unwrap_err();
        assert!(err.to_string().starts_with("installing the new tree as"), "{err}");
        assert_eq!(std::fs::read_link(&a).unwrap(), before_a, "first swap undone");
        assert_eq!(std::fs::read_to_string(a.join("marker")).unwrap(), "old");
        let names = listing(t.path());
        assert_eq!(names.len(), 4, "tftp, its old tree, sub, sub-moved: {names:?}");
    }

    #[test]
    fn refuses_a_real_directory_and_cleans_orphans() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("tftp");
        std::fs::create_dir(&a).unwrap();
        let err = publish_marker(&[&a], "x").unwrap_err();
        assert!(matches!(err, NetbootError::RootNotSymlink { .. }), "{err}");
        assert_eq!(listing(t.path()), ["tftp"]);
        std::fs::remove_dir(&a).unwrap();
        for leftover in ["tftp.abc123", "tftp.abc124", "tftp.keepme"] {
            std::fs::create_dir(t.path().join(leftover)).unwrap();
        }
        std::os::unix::fs::symlink("x", t.path().join("tftp.abcdef.link")).unwrap();
        let new = publish_marker(&[&a], "x").unwrap();
        assert_eq!(
            new,
            [t.path().join("tftp.abc123")],
            "one leftover is patched into the new tree"
        );
        assert_eq!(
            listing(t.path()),
            ["tftp", "tftp.abc123", "tftp.keepme"],
            "the other leftovers are removed"
        );
        assert_eq!(std::fs::read_to_string(a.join("marker")).unwrap(), "x");
    }

    fn report() -> BuildReport {
        BuildReport::default()
    }

    #[test]
    fn coalesces_waiting_callers_into_one_build() {
        let t = tempfile::tempdir().unwrap();
        let lock = t.path().join("run/build.lock");
        std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
        // Simulate a running build: hold the lock from this thread.
        let holder =
            OpenOptions::new().create(true).truncate(false).write(true).open(&lock).unwrap();
        holder.lock().unwrap();
        let runs = Arc::new(AtomicU32::new(0));
        let n = 6;
        let barrier = Arc::new(Barrier::new(n + 1));
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (lock, runs, barrier) = (lock.clone(), runs.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    coalesced(&lock, true, || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        Ok(report())
                    })
                    .unwrap()
                })
            })
            .collect();
        barrier.wait();
        // Every caller has marked a rebuild before the "running build" ends.
        let pending = with_suffix(&lock, ".pending");
        while !pending.exists() {
            std::thread::yield_now();
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(holder);
        let outcomes: Vec<RequestOutcome> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(runs.load(Ordering::SeqCst), 1, "one build for all waiting callers");
        let built = outcomes.iter().filter(|o| matches!(o, RequestOutcome::Built(_))).count();
        let covered = outcomes
            .iter()
            .filter(|o| matches!(o, RequestOutcome::Covered(r) if r.builds == 0))
            .count();
        assert_eq!((built, covered), (1, n - 1));
    }

    #[test]
    fn a_request_during_a_build_causes_exactly_one_more() {
        let t = tempfile::tempdir().unwrap();
        let lock = t.path().join("build.lock");
        let runs = Arc::new(AtomicU32::new(0));
        let started = Arc::new(Barrier::new(2));
        let release = Arc::new(Barrier::new(2));
        let builder = {
            let (lock, runs, started, release) =
                (lock.clone(), runs.clone(), started.clone(), release.clone());
            std::thread::spawn(move || {
                coalesced(&lock, true, || {
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        started.wait();
                        release.wait();
                    }
                    Ok(report())
                })
                .unwrap()
            })
        };
        started.wait();
        // Three requests while the first build runs; they don't wait.
        for _ in 0..3 {
            let o = coalesced(&lock, false, || panic!("must not build while another build runs"))
                .unwrap();
            assert!(matches!(o, RequestOutcome::Queued));
        }
        release.wait();
        match builder.join().unwrap() {
            RequestOutcome::Built(r) => {
                assert_eq!(r.builds, 2, "the running builder built once more")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(!with_suffix(&lock, ".pending").exists());
    }

    #[test]
    fn a_failed_build_is_reported_to_covered_callers() {
        let t = tempfile::tempdir().unwrap();
        let lock = t.path().join("build.lock");
        let holder =
            OpenOptions::new().create(true).truncate(false).write(true).open(&lock).unwrap();
        holder.lock().unwrap();
        let waiter = {
            let lock = lock.clone();
            std::thread::spawn(move || coalesced(&lock, true, || Ok(report())))
        };
        while !with_suffix(&lock, ".pending").exists() {
            std::thread::yield_now();
        }
        // The "running" builder builds again for the waiter, and that build fails.
        std::fs::remove_file(with_suffix(&lock, ".pending")).unwrap();
        let failed =
            LastBuild::new(std::time::Instant::now(), LastOutcome::Err("disk full".into()));
        write_last(&with_suffix(&lock, ".last"), &failed).unwrap();
        drop(holder);
        let err = waiter.join().unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            "the netboot build that covered this request failed: disk full"
        );
    }

    #[test]
    fn every_build_is_recorded_as_the_last() {
        let t = tempfile::tempdir().unwrap();
        let lock = t.path().join("build.lock");
        assert_eq!(last_build(&lock).unwrap(), None, "nothing built yet");
        coalesced(&lock, true, || Ok(BuildReport { machines_rendered: 3, ..report() })).unwrap();
        let last = last_build(&lock).unwrap().expect("recorded");
        assert!(last.finished_at.parse::<jiff::Timestamp>().is_ok(), "{}", last.finished_at);
        assert!(last.seconds >= 0.0);
        match last.outcome {
            LastOutcome::Ok(r) => assert_eq!((r.machines_rendered, r.builds), (3, 1)),
            other => panic!("{other:?}"),
        }
        let err = coalesced(&lock, true, || Err(NetbootError::Coalesced { message: "x".into() }));
        assert!(err.is_err());
        let last = last_build(&lock).unwrap().expect("recorded");
        assert!(matches!(last.outcome, LastOutcome::Err(ref m) if m.contains('x')), "{last:?}");
        std::fs::write(with_suffix(&lock, ".last"), "{").unwrap();
        let err = last_build(&lock).unwrap_err();
        assert!(err.to_string().contains("build.lock.last"), "{err}");
    }
}
