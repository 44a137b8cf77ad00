//! Exclusive file locks with a deadline, whose file names the holder: a second
//! `carrier deploy` of one configuration directory, or a second profile change on a
//! carrier, waits saying for whom, and gives up when the deadline passes.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("locking {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {secs} s waiting for {}, held by: {holder}", path.display())]
    Timeout { path: PathBuf, secs: u64, holder: String },
}

/// Takes the exclusive lock on `path` (created if needed, never through a symlink),
/// waiting at most `wait`; `on_wait` hears once whom it waits for. `who` is written
/// into the file for the next one. The lock is held until the file is dropped.
pub fn acquire(
    path: &Path,
    who: &str,
    wait: Duration,
    on_wait: &dyn Fn(String),
) -> Result<File, LockError> {
    let err = |source| LockError::Io { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(err)?;
    let started = Instant::now();
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                if !told {
                    on_wait(format!(
                        "waiting for {}, held by: {}",
                        path.display(),
                        holder(&mut file)
                    ));
                    told = true;
                }
                if started.elapsed() >= wait {
                    return Err(LockError::Timeout {
                        path: path.to_path_buf(),
                        secs: wait.as_secs(),
                        holder: holder(&mut file),
                    });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(TryLockError::Error(e)) => return Err(err(e)),
        }
    }
    file.set_len(0).map_err(err)?;
    file.rewind().map_err(err)?;
    file.write_all(format!("{who}\n").as_bytes()).map_err(err)?;
    Ok(file)
}

/// The first line of the lock file: who holds it (or held it last).
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|_| file.take(4096).read_to_string(&mut text));
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() { "(unknown)".into() } else { line.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_waits_names_the_holder_and_times_out() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.lock");
        let held = acquire(&path, "first (pid 1)", Duration::ZERO, &|_| panic!("free")).unwrap();
        let heard = std::sync::Mutex::new(Vec::new());
        let e = acquire(&path, "second", Duration::from_millis(300), &|l| {
            heard.lock().unwrap().push(l)
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("timed out after 0 s waiting for {}, held by: first (pid 1)", path.display())
        );
        assert_eq!(
            *heard.lock().unwrap(),
            [format!("waiting for {}, held by: first (pid 1)", path.display())]
        );
        drop(held);
        let _again = acquire(&path, "second", Duration::ZERO, &|_| panic!("free")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second\n");
    }
}
