//! Publishing trees atomically, the build lock and the coalescing of concurrent builds.
//!
//! **Atomic publication** (spec 3.3). Each root (`tftpRoot`, `httpRoot`) is a symlink to a
//! sibling directory `<root>.<random>` (6 hex digits, shared by both trees). A build
//! writes new `<root>.<random>` directories, then swaps each root by creating a temporary
//! symlink and `rename`-ing it over the root (atomic), then removes the previous
//! directories. If writing fails, the new directories are removed and the old trees keep
//! serving. If the second swap fails, the first is swapped back. A root that is a real
//! directory is refused before anything is written (upstream fails with EINVAL halfway).
//! Directories `<root>.<6 hex>` that no root points to (left by a crash) are removed at
//! the start of the next build.
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

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{BuildReport, NetbootError};
use crate::links::{random_suffix, swap_link};

/// What a coalesced build request came to.
#[derive(Debug)]
pub enum Outcome {
    /// This call ran the build (`report.builds` times: more than once when requests
    /// arrived meanwhile).
    Built(BuildReport),
    /// Another call's build started after this request and covered it.
    Covered(BuildReport),
    /// Another build was running; a rebuild is requested and this call did not wait.
    Queued,
}

#[derive(Serialize, Deserialize)]
enum LastOutcome {
    Ok(BuildReport),
    Err(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetbootError {
    let context = context.into();
    move |source| NetbootError::Io { context, source }
}

/// `<path><suffix>`.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Runs `build` under the lock at `lock_file`, coalescing concurrent requests (see the
/// module documentation). With `wait` false, a call that finds a build running returns
/// [`Outcome::Queued`] at once.
pub fn coalesced<F>(lock_file: &Path, wait: bool, mut build: F) -> Result<Outcome, NetbootError>
where
    F: FnMut() -> Result<BuildReport, NetbootError>,
{
    if let Some(dir) = lock_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating '{}'", dir.display())))?;
    }
    let lock_err = |source| NetbootError::Lock { path: lock_file.to_path_buf(), source };
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(lock_file).map_err(lock_err)?;
    let pending = with_suffix(lock_file, ".pending");
    let last = with_suffix(lock_file, ".last");
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            File::create(&pending).map_err(io_err(format!("creating '{}'", pending.display())))?;
            if !wait {
                return Ok(Outcome::Queued);
            }
            file.lock().map_err(lock_err)?;
            if !pending.exists() {
                return match read_last(&last)? {
                    LastOutcome::Ok(mut report) => {
                        report.builds = 0;
                        Ok(Outcome::Covered(report))
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
        match build() {
            Ok(mut report) => {
                report.builds = builds;
                if serves_waiters {
                    write_last(&last, &LastOutcome::Ok(report.clone()))?;
                }
                if !pending.exists() {
                    drop(file);
                    return Ok(Outcome::Built(report));
                }
            }
            Err(e) => {
                write_last(&last, &LastOutcome::Err(e.to_string()))?;
                return Err(e);
            }
        }
    }
}

fn read_last(path: &Path) -> Result<LastOutcome, NetbootError> {
    let bytes =
        std::fs::read(path).map_err(io_err(format!("reading the last build's outcome '{}'", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| NetbootError::Io {
        context: format!("reading the last build's outcome '{}'", path.display()),
        source: std::io::Error::new(ErrorKind::InvalidData, e),
    })
}

fn write_last(path: &Path, outcome: &LastOutcome) -> Result<(), NetbootError> {
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
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
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
            Ok(m) if m.file_type().is_symlink() => {
                Some(std::fs::read_link(path).map_err(io_err(format!("reading '{}'", path.display())))?)
            }
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

    /// Removes `<name>.<6 hex>` directories (and temporary links) the root does not
    /// point to: leftovers of a build that crashed.
    fn remove_orphans(&self, warnings: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(&self.parent) else { return };
        let current = self.previous_tree();
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            let path = entry.path();
            let orphan_tree = is_tree_name(&self.name, file) && Some(&path) != current.as_ref();
            let orphan_link = file.strip_suffix(".link").is_some_and(|t| is_tree_name(&self.name, t));
            if (orphan_tree || orphan_link)
                && let Err(e) = remove_path(&path)
            {
                warnings.push(format!("could not remove the leftover '{}': {e}", path.display()));
            }
        }
    }
}

/// Removes a file, a symlink or a whole directory tree (symlinks are not followed).
pub(crate) fn remove_path(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
    }
}

/// Builds new trees for `roots` with `write` (given the new directories, in the order
/// of `roots`) and publishes them atomically. Returns the new directories; `warnings`
/// gets the problems that did not stop publishing (a previous tree that could not be
/// removed).
pub fn publish<F>(roots: &[&Path], warnings: &mut Vec<String>, write: F) -> Result<Vec<PathBuf>, NetbootError>
where
    F: FnOnce(&[PathBuf]) -> Result<(), NetbootError>,
{
    let roots: Vec<Root> = roots.iter().map(|r| Root::inspect(r)).collect::<Result<_, _>>()?;
    for root in &roots {
        std::fs::create_dir_all(&root.parent).map_err(io_err(format!("creating '{}'", root.parent.display())))?;
        root.remove_orphans(warnings);
    }
    // One random suffix for all trees, free in every parent directory.
    let (suffix, dirs) = 'pick: loop {
        let suffix = random_suffix();
        let dirs: Vec<PathBuf> = roots.iter().map(|r| r.parent.join(format!("{}.{suffix}", r.name))).collect();
        let mut made: Vec<PathBuf> = Vec::new();
        for d in &dirs {
            match std::fs::create_dir(d) {
                Ok(()) => made.push(d.clone()),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    for m in &made {
                        let _ = std::fs::remove_dir(m);
                    }
                    continue 'pick;
                }
                Err(e) => {
                    for m in &made {
                        let _ = std::fs::remove_dir(m);
                    }
                    return Err(io_err(format!("creating '{}'", d.display()))(e));
                }
            }
        }
        break (suffix, dirs);
    };
    let discard = |dirs: &[PathBuf]| {
        for d in dirs {
            let _ = remove_path(d);
        }
    };
    if let Err(e) = write(&dirs) {
        discard(&dirs);
        return Err(e);
    }
    // Install: swap each root symlink; undo the earlier swaps if a later one fails.
    for (i, root) in roots.iter().enumerate() {
        let target = PathBuf::from(format!("{}.{suffix}", root.name));
        if let Err(e) = swap_link(&root.path, &target) {
            for earlier in roots[..i].iter().rev() {
                let _ = match &earlier.previous {
                    Some(prev) => swap_link(&earlier.path, prev),
                    None => std::fs::remove_file(&earlier.path),
                };
            }
            discard(&dirs);
            return Err(io_err(format!("installing the new tree as '{}'", root.path.display()))(e));
        }
    }
    // The previous trees go only now that nothing points to them (in parallel: they are
    // independent and large).
    let previous: Vec<PathBuf> = roots.iter().filter_map(Root::previous_tree).collect();
    let removals: Vec<std::io::Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = previous.iter().map(|p| s.spawn(move || remove_path(p))).collect();
        handles.into_iter().map(|h| h.join().expect("removing a tree does not panic")).collect()
    });
    for (prev, result) in previous.iter().zip(removals) {
        if let Err(e) = result {
            warnings.push(format!("could not remove the previous tree '{}': {e}", prev.display()));
        }
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Barrier};

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    fn write_marker(dirs: &[PathBuf], text: &str) -> Result<(), NetbootError> {
        for d in dirs {
            std::fs::write(d.join("marker"), text).unwrap();
        }
        Ok(())
    }

    #[test]
    fn publishes_and_replaces() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("tftp"), t.path().join("http"));
        let mut w = Vec::new();
        let first = publish(&[&a, &b], &mut w, |d| write_marker(d, "1")).unwrap();
        assert_eq!(std::fs::read_to_string(a.join("marker")).unwrap(), "1");
        assert_eq!(std::fs::read_link(&a).unwrap(), PathBuf::from(first[0].file_name().unwrap()));
        let second = publish(&[&a, &b], &mut w, |d| write_marker(d, "2")).unwrap();
        assert_eq!(std::fs::read_to_string(b.join("marker")).unwrap(), "2");
        assert!(!first[0].exists() && !first[1].exists(), "previous trees removed");
        let names = listing(t.path());
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(second.iter().all(|d| d.exists()));
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn failed_write_keeps_old_trees_and_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("tftp"), t.path().join("http"));
        let mut w = Vec::new();
        publish(&[&a, &b], &mut w, |d| write_marker(d, "old")).unwrap();
        let before = listing(t.path());
        let err = publish(&[&a, &b], &mut w, |d| {
            write_marker(d, "new")?;
            Err(NetbootError::Io { context: "injected".into(), source: std::io::Error::other("boom") })
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "injected: boom");
        assert_eq!(listing(t.path()), before, "no partial directories left");
        assert_eq!(std::fs::read_to_string(a.join("marker")).unwrap(), "old");
        assert_eq!(std::fs::read_to_string(b.join("marker")).unwrap(), "old");
    }

    #[test]
    fn failed_second_swap_restores_the_first() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("tftp");
        let b = t.path().join("sub/http");
        let mut w = Vec::new();
        publish(&[&a, &b], &mut w, |d| write_marker(d, "old")).unwrap();
        let before_a = std::fs::read_link(&a).unwrap();
        // The second root's directory loses write permission only for non-root users,
        // so break the swap by making the root's parent a file after the trees are written.
        let err = publish(&[&a, &b], &mut w, |d| {
            write_marker(d, "new")?;
            let sub = t.path().join("sub");
            std::fs::rename(&sub, t.path().join("sub-moved")).unwrap();
            std::fs::write(&sub, "not a directory").unwrap();
            Ok(())
        })
        .unwrap_err();
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
        let mut w = Vec::new();
        let err = publish(&[&a], &mut w, |d| write_marker(d, "x")).unwrap_err();
        assert!(matches!(err, NetbootError::RootNotSymlink { .. }), "{err}");
        assert_eq!(listing(t.path()), ["tftp"]);
        std::fs::remove_dir(&a).unwrap();
        std::fs::create_dir(t.path().join("tftp.abc123")).unwrap();
        std::fs::create_dir(t.path().join("tftp.keepme")).unwrap();
        std::os::unix::fs::symlink("x", t.path().join("tftp.abcdef.link")).unwrap();
        let new = publish(&[&a], &mut w, |d| write_marker(d, "x")).unwrap();
        let mut expected =
            vec!["tftp".to_string(), "tftp.keepme".into(), new[0].file_name().unwrap().to_string_lossy().into()];
        expected.sort();
        assert_eq!(listing(t.path()), expected);
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
        let holder = OpenOptions::new().create(true).truncate(false).write(true).open(&lock).unwrap();
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
        let outcomes: Vec<Outcome> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(runs.load(Ordering::SeqCst), 1, "one build for all waiting callers");
        let built = outcomes.iter().filter(|o| matches!(o, Outcome::Built(_))).count();
        let covered = outcomes.iter().filter(|o| matches!(o, Outcome::Covered(r) if r.builds == 0)).count();
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
            let (lock, runs, started, release) = (lock.clone(), runs.clone(), started.clone(), release.clone());
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
            let o = coalesced(&lock, false, || panic!("must not build while another build runs")).unwrap();
            assert!(matches!(o, Outcome::Queued));
        }
        release.wait();
        match builder.join().unwrap() {
            Outcome::Built(r) => assert_eq!(r.builds, 2, "the running builder built once more"),
            other => panic!("{other:?}"),
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(!with_suffix(&lock, ".pending").exists());
    }

    #[test]
    fn a_failed_build_is_reported_to_covered_callers() {
        let t = tempfile::tempdir().unwrap();
        let lock = t.path().join("build.lock");
        let holder = OpenOptions::new().create(true).truncate(false).write(true).open(&lock).unwrap();
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
        write_last(&with_suffix(&lock, ".last"), &LastOutcome::Err("disk full".into())).unwrap();
        drop(holder);
        let err = waiter.join().unwrap().unwrap_err();
        assert_eq!(err.to_string(), "the netboot build that covered this request failed: disk full");
    }
}
