//! Symlinks replaced atomically, and the random names such replacements use. Shared by
//! the netboot publisher (tree roots), local build generations (`current`, GC roots) and
//! the deploy engine (confirmation files).

use std::path::Path;

/// 6 random hex digits.
pub(crate) fn random_suffix() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 3];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mix = t.subsec_nanos() ^ std::process::id().rotate_left(12);
        bytes.copy_from_slice(&mix.to_le_bytes()[..3]);
    }
    hex::encode(bytes)
}

/// Points the symlink `link` at `target` atomically (a temporary link renamed over it).
pub(crate) fn swap_link(link: &Path, target: &Path) -> std::io::Result<()> {
    let mut tmp = link.as_os_str().to_os_string();
    tmp.push(format!(".{}.link", random_suffix()));
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
