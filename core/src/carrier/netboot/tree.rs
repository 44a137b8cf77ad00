//! A tree's content as data, and the one writer that puts it on disk.
//!
//! Renderers describe what a directory holds as a [`DirSpec`] (files, files assembled
//! from ranges of another file, symlinks, subdirectories) without touching the file
//! system. [`DirSpec::create`] writes one into a new directory (a machine's object, a
//! shared directory); [`DirSpec::sync`] patches an existing directory to match one (the
//! spare tree), reading and rewriting only what differs, with [`DirRecord`]s so that
//! directories of many links need not be read link by link.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::NetbootError;
use crate::links::read_link_at;

/// The content of a directory: its entries by name, in the order they were added.
#[derive(Debug, Default)]
pub(super) struct DirSpec {
    entries: Vec<(String, Node)>,
}

#[derive(Debug)]
enum Node {
    File(Vec<u8>),
    Parts(FileParts),
    Link(PathBuf),
    Dir(DirSpec),
}

/// The content of a file made of bytes and of ranges of another open file, which the
/// kernel copies (`copy_file_range`) without passing them through this process.
#[derive(Debug, Default)]
pub(super) struct FileParts {
    pub(super) parts: Vec<Part>,
    len: u64,
}

#[derive(Debug)]
pub(super) enum Part {
    Bytes(Vec<u8>),
    /// `len` bytes of the file from `offset`.
    Range {
        file: Arc<File>,
        offset: u64,
        len: u64,
    },
}

impl FileParts {
    /// The length of the content so far.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    pub(super) fn push_bytes(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if let Some(Part::Bytes(last)) = self.parts.last_mut() {
            last.extend_from_slice(bytes);
        } else {
            self.parts.push(Part::Bytes(bytes.to_vec()));
        }
    }

    /// Appends `len` bytes of `file` from `offset`; a range that continues the previous
    /// one in the same file extends it.
    pub(super) fn push_range(&mut self, file: &Arc<File>, offset: u64, len: u64) {
        self.len += len;
        if let Some(Part::Range { file: f, offset: o, len: l }) = self.parts.last_mut()
            && Arc::ptr_eq(f, file)
            && *o + *l == offset
        {
            *l += len;
            return;
        }
        self.parts.push(Part::Range { file: file.clone(), offset, len });
    }

    /// Where the last part, if it is a range, ends in its file.
    pub(super) fn last_range_end(&self, file: &Arc<File>) -> Option<u64> {
        match self.parts.last() {
            Some(Part::Range { file: f, offset, len }) if Arc::ptr_eq(f, file) => {
                Some(offset + len)
            }
            _ => None,
        }
    }

    fn hash(&self, h: &mut Sha256) {
        for part in &self.parts {
            match part {
                Part::Bytes(b) => h.update(b),
                Part::Range { file, offset, len } => {
                    use std::os::unix::fs::MetadataExt;
                    let ino = file.metadata().map(|m| m.ino()).unwrap_or_default();
                    h.update(ino.to_le_bytes());
                    h.update(offset.to_le_bytes());
                    h.update(len.to_le_bytes());
                }
            }
        }
    }

    /// Writes the content to the (empty) file `out`.
    pub(super) fn write_to(&self, out: &mut File) -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::FileExt;
        let mut pos: u64 = 0;
        for part in &self.parts {
            match part {
                Part::Bytes(b) => {
                    out.write_all(b)?;
                    pos += b.len() as u64;
                }
                Part::Range { file, offset, len } => {
                    let (mut off_in, mut off_out) = (*offset as libc::loff_t, pos as libc::loff_t);
                    let end = pos + len;
                    while (off_out as u64) < end {
                        let left = (end - off_out as u64) as usize;
                        // SAFETY: both descriptors belong to open `File`s; the call only
                        // reads and updates the two offsets.
                        let n = unsafe {
                            libc::copy_file_range(
                                file.as_raw_fd(),
                                &mut off_in,
                                out.as_raw_fd(),
                                &mut off_out,
                                left,
                                0,
                            )
                        };
                        if n < 0 {
                            let e = std::io::Error::last_os_error();
                            // Not between these file systems: copy through this process.
                            if matches!(
                                e.raw_os_error(),
                                Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL)
                            ) {
                                let mut buf = vec![0; left];
                                file.read_exact_at(&mut buf, off_in as u64)?;
                                out.write_all_at(&buf, off_out as u64)?;
                                break;
                            }
                            return Err(e);
                        }
                        if n == 0 {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "the file to copy from is shorter than recorded",
                            ));
                        }
                    }
                    // Explicit offsets leave the file position alone.
                    pos = end;
                    out.seek(SeekFrom::Start(pos))?;
                }
            }
        }
        Ok(())
    }
}

impl DirSpec {
    pub(super) fn file(&mut self, name: impl Into<String>, content: impl Into<Vec<u8>>) {
        self.entries.push((name.into(), Node::File(content.into())));
    }

    pub(super) fn parts(&mut self, name: impl Into<String>, parts: FileParts) {
        self.entries.push((name.into(), Node::Parts(parts)));
    }

    pub(super) fn link(&mut self, name: impl Into<String>, target: impl Into<PathBuf>) {
        self.entries.push((name.into(), Node::Link(target.into())));
    }

    pub(super) fn dir(&mut self, name: impl Into<String>, spec: DirSpec) {
        self.entries.push((name.into(), Node::Dir(spec)));
    }

    /// Feeds the content into `h`: equal content, equal hash (a shared directory's key).
    pub(super) fn hash(&self, h: &mut Sha256) {
        for (name, node) in &self.entries {
            let (tag, bytes): (u8, &[u8]) = match node {
                Node::File(c) => (b'f', c),
                Node::Parts(_) => (b'p', b""),
                Node::Link(t) => (b'l', t.as_os_str().as_encoded_bytes()),
                Node::Dir(_) => (b'd', b""),
            };
            h.update([tag]);
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
            match node {
                Node::Dir(d) => {
                    d.hash(h);
                    h.update(b"end");
                }
                Node::Parts(p) => p.hash(h),
                _ => {}
            }
        }
    }

    /// Creates the directory `dir`, which must not exist, holding this content: what a
    /// new directory costs, without the listing and comparing of [`DirSpec::sync`].
    pub(super) fn create(&self, dir: &Path) -> Result<(), NetbootError> {
        let w = Writer;
        w.dir(dir)?;
        for (name, node) in &self.entries {
            let path = dir.join(name);
            match node {
                Node::File(content) => w.file(&path, content)?,
                Node::Parts(parts) => w.parts(&path, parts)?,
                Node::Link(target) => w.link(target, &path)?,
                Node::Dir(spec) => spec.create(&path)?,
            }
        }
        Ok(())
    }

    /// Makes the existing directory `dir` hold exactly this content, touching only what
    /// differs: a link with the wanted target, a file with the wanted bytes and a
    /// directory stay as they are; anything else in the way is removed and written anew,
    /// and entries the spec does not name are removed. Symlinks are never followed.
    /// Returns a [`DirRecord`] of every directory with many links, and trusts `known`
    /// records (of an earlier call on the same directory) whose directory was not
    /// modified since.
    pub(super) fn sync(
        &self,
        dir: &Path,
        known: &[DirRecord],
    ) -> Result<Vec<DirRecord>, NetbootError> {
        let mut records = Vec::new();
        self.sync_in(dir, "", known, &mut records)?;
        Ok(records)
    }

    fn sync_in(
        &self,
        dir: &Path,
        rel: &str,
        known: &[DirRecord],
        records: &mut Vec<DirRecord>,
    ) -> Result<(), NetbootError> {
        let links = self.entries.iter().filter(|(_, n)| matches!(n, Node::Link(_))).count();
        let recorded = links >= RECORD_MIN_LINKS;
        // The links this directory held when it was last recorded, if it has not been
        // modified since.
        let trusted = known
            .iter()
            .find(|r| recorded && r.path == rel)
            .filter(|r| Stamp::of_path(dir).is_ok_and(|s| s == r.stamp))
            .map(|r| r.links.as_slice());
        let mut hashes = Vec::with_capacity(if recorded { links } else { 0 });

        let listing =
            std::fs::read_dir(dir).map_err(io_err(format!("reading '{}'", dir.display())))?;
        let mut existing: HashMap<OsString, std::fs::FileType> = HashMap::new();
        for entry in listing {
            let entry = entry.map_err(io_err(format!("reading '{}'", dir.display())))?;
            let kind = entry
                .file_type()
                .map_err(io_err(format!("inspecting '{}'", entry.path().display())))?;
            existing.insert(entry.file_name(), kind);
        }
        // Links are read relative to the open directory: no walk of its path per link.
        let dir_file = File::open(dir).map_err(io_err(format!("opening '{}'", dir.display())))?;
        let w = Writer;
        let clear = |path: &Path| {
            remove_path(path).map_err(io_err(format!("removing '{}'", path.display())))
        };
        for (name, node) in &self.entries {
            let path = dir.join(name);
            let have = existing.remove(OsStr::new(name));
            match node {
                Node::Link(target) => {
                    let hash = recorded.then(|| link_hash(name, target));
                    hashes.extend(hash);
                    if have.is_some_and(|k| k.is_symlink())
                        && (trusted.zip(hash).is_some_and(|(t, h)| t.binary_search(&h).is_ok())
                            || read_link_at(&dir_file, OsStr::new(name))
                                .is_ok_and(|t| t == *target))
                    {
                        continue;
                    }
                    if have.is_some() {
                        clear(&path)?;
                    }
                    w.link(target, &path)?;
                }
                Node::File(content) => {
                    if have.is_some_and(|k| k.is_file()) {
                        if same_content(&path, content) {
                            continue;
                        }
                    } else if have.is_some() {
                        clear(&path)?;
                    }
                    w.file(&path, content)?;
                }
                Node::Parts(parts) => {
                    // Rewritten every time: comparing would read the whole file.
                    if have.is_some() {
                        clear(&path)?;
                    }
                    w.parts(&path, parts)?;
                }
                Node::Dir(spec) => {
                    if !have.is_some_and(|k| k.is_dir()) {
                        if have.is_some() {
                            clear(&path)?;
                        }
                        w.dir(&path)?;
                    }
                    let sub = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
                    spec.sync_in(&path, &sub, known, records)?;
                }
            }
        }
        for name in existing.into_keys() {
            clear(&dir.join(name))?;
        }
        if recorded {
            let stamp =
                Stamp::of_path(dir).map_err(io_err(format!("inspecting '{}'", dir.display())))?;
            hashes.sort_unstable();
            records.push(DirRecord { path: rel.to_string(), stamp, links: hashes });
        }
        Ok(())
    }
}

/// Which file system object a path names, and whether it changed: device, inode, size,
/// modification and change time. Writing a file, or adding, removing or replacing an
/// entry of a directory, changes the times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Stamp {
    dev: u64,
    ino: u64,
    pub size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    pub(super) fn of(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        }
    }

    /// The stamp of `path` itself (a symlink is not followed).
    pub(super) fn of_path(path: &Path) -> std::io::Result<Stamp> {
        std::fs::symlink_metadata(path).map(|m| Stamp::of(&m))
    }
}

/// Directories with at least this many links get a [`DirRecord`].
const RECORD_MIN_LINKS: usize = 64;

/// What a directory with many links (`boot/`, `pxeserver/machines/`, the HTTP root: one
/// per machine) held when a build finished writing it. The build that next writes into
/// that directory (two builds later: it is the spare then) trusts the record while the
/// directory's [`Stamp`] is what it was, since adding, removing or replacing an entry
/// changes it, and symlinks cannot be changed in place: it need not read each link to
/// find the few that changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct DirRecord {
    /// Relative to the tree.
    path: String,
    stamp: Stamp,
    /// [`link_hash`] of every link, sorted.
    links: Vec<u64>,
}

/// 64 bits of SHA-256 of a link's name and target.
fn link_hash(name: &str, target: &Path) -> u64 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0]);
    h.update(target.as_os_str().as_encoded_bytes());
    u64::from_le_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

/// Whether the regular file at `path` holds exactly `content`.
fn same_content(path: &Path, content: &[u8]) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() == content.len() as u64)
        && std::fs::read(path).is_ok_and(|have| have == content)
}

/// An I/O error with what was being done, naming the path.
pub(super) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetbootError {
    let context = context.into();
    move |source| NetbootError::Io { context, source }
}

/// Removes a file, a symlink or a whole directory tree (symlinks are not followed).
pub(super) fn remove_path(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
    }
}

/// File system writes with errors that name the path.
struct Writer;

impl Writer {
    fn dir(&self, p: &Path) -> Result<(), NetbootError> {
        std::fs::create_dir(p).map_err(io_err(format!("creating '{}'", p.display())))
    }

    fn file(&self, p: &Path, content: &[u8]) -> Result<(), NetbootError> {
        std::fs::write(p, content).map_err(io_err(format!("writing '{}'", p.display())))
    }

    fn link(&self, target: &Path, p: &Path) -> Result<(), NetbootError> {
        symlink(target, p).map_err(io_err(format!("creating the symlink '{}'", p.display())))
    }

    fn parts(&self, p: &Path, parts: &FileParts) -> Result<(), NetbootError> {
        File::create_new(p)
            .and_then(|mut f| parts.write_to(&mut f))
            .map_err(io_err(format!("writing '{}'", p.display())))
    }
}

/// A tree as the golden files of `core/tests/fixtures/netboot` show it: one entry per
/// listing line (`dir/`, `link -> target`, `file`), with the content of each file.
#[cfg(test)]
pub(super) type Golden = std::collections::BTreeMap<String, Option<String>>;

#[cfg(test)]
impl DirSpec {
    /// This content as it appears in a golden file at `prefix` (no trailing `/`).
    pub(super) fn golden(&self, prefix: &str) -> Golden {
        let mut out = Golden::new();
        self.golden_into(prefix, &mut out);
        out
    }

    fn golden_into(&self, prefix: &str, out: &mut Golden) {
        for (name, node) in &self.entries {
            let path = format!("{prefix}/{name}");
            match node {
                Node::File(c) => {
                    out.insert(path, Some(String::from_utf8(c.clone()).expect("text")));
                }
                Node::Parts(p) => {
                    let bytes = p.parts.iter().flat_map(|part| match part {
                        Part::Bytes(b) => b.clone(),
                        Part::Range { .. } => panic!("a range of another file has no content here"),
                    });
                    out.insert(path, Some(String::from_utf8(bytes.collect()).expect("text")));
                }
                Node::Link(t) => {
                    out.insert(format!("{path} -> {}", t.display()), None);
                }
                Node::Dir(d) => {
                    out.insert(format!("{path}/"), None);
                    d.golden_into(&path, out);
                }
            }
        }
    }
}

/// A golden file (see [`Golden`]) parsed.
#[cfg(test)]
pub(super) fn parse_golden(text: &str) -> Golden {
    let (listing, contents) = text.split_once("\n\n==== ").map_or((text, ""), |(l, c)| (l, c));
    let mut files = std::collections::HashMap::new();
    for block in format!("\n==== {contents}").split("\n==== ").skip(1) {
        let (path, content) = block.split_once(" ====\n").expect("a content block");
        files.insert(path.to_string(), content.strip_suffix('\n').unwrap_or(content).to_string());
    }
    listing.lines().map(|line| (line.to_string(), files.remove(line))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn many_links(n: usize, changed: Option<usize>) -> DirSpec {
        let mut dir = DirSpec::default();
        for i in 0..n {
            let target = if Some(i) == changed {
                format!("../objects/new-{i}")
            } else {
                format!("../objects/{i}")
            };
            dir.link(format!("m{i:03}"), target);
        }
        let mut root = DirSpec::default();
        root.file("small", "x");
        root.dir("boot", dir);
        root
    }

    fn target(dir: &Path, name: &str) -> PathBuf {
        std::fs::read_link(dir.join("boot").join(name)).unwrap()
    }

    #[test]
    fn records_are_trusted_only_while_the_directory_is_unchanged() {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        let records = many_links(100, None).sync(&tree, &[]).unwrap();
        assert_eq!(records.len(), 1, "only the directory with many links is recorded: {records:?}");
        assert_eq!((records[0].path.as_str(), records[0].links.len()), ("boot", 100));

        // With its record, a directory is patched without reading the links: a changed
        // link is replaced...
        let records = many_links(100, Some(7)).sync(&tree, &records).unwrap();
        assert_eq!(target(&tree, "m007"), PathBuf::from("../objects/new-7"));
        // ...and the others are not read. To show it: a forged record that claims the old
        // target of m007, with the directory's current stamp, is believed.
        let mut forged = records.clone();
        forged[0].links = many_links(100, None).links_of("boot");
        forged[0].links.sort_unstable();
        forged[0].stamp = Stamp::of_path(&tree.join("boot")).unwrap();
        many_links(100, None).sync(&tree, &forged).unwrap();
        assert_eq!(
            target(&tree, "m007"),
            PathBuf::from("../objects/new-7"),
            "the record was trusted"
        );

        // Any change in the directory (an entry added, removed or replaced) changes its
        // stamp, and the record is ignored: every link is read and fixed.
        std::fs::write(tree.join("boot/stray"), "").unwrap();
        let records = many_links(100, None).sync(&tree, &forged).unwrap();
        assert_eq!(target(&tree, "m007"), PathBuf::from("../objects/7"));
        assert!(!tree.join("boot/stray").exists());
        assert_eq!(records[0].stamp, Stamp::of_path(&tree.join("boot")).unwrap());
    }

    #[test]
    fn file_parts_copy_ranges_also_across_file_systems() {
        let t = tempfile::tempdir().unwrap();
        // /dev/shm is a tmpfs: the kernel may refuse to copy from there into this
        // directory's file system, and the copy goes through this process instead.
        let shm = Path::new("/dev/shm");
        let sources = [t.path().to_path_buf(), shm.to_path_buf()];
        for (i, dir) in sources.iter().enumerate().filter(|(_, d)| d.is_dir()) {
            let src = tempfile::NamedTempFile::new_in(dir).unwrap();
            std::fs::write(src.path(), b"0123456789abcdef").unwrap();
            let file = Arc::new(File::open(src.path()).unwrap());
            let mut parts = FileParts::default();
            parts.push_bytes(b"<");
            parts.push_range(&file, 2, 3);
            parts.push_range(&file, 5, 2);
            parts.push_bytes(b"|");
            parts.push_range(&file, 10, 6);
            parts.push_bytes(b">");
            assert_eq!(parts.parts.len(), 5, "the second range continues the first: {parts:?}");
            let out = t.path().join(format!("out-{i}"));
            parts.write_to(&mut File::create_new(&out).unwrap()).unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), b"<23456|abcdef>");
            assert_eq!(parts.len(), 14);
        }
    }

    impl DirSpec {
        /// The link hashes of the subdirectory `name`.
        fn links_of(&self, name: &str) -> Vec<u64> {
            let Some((_, Node::Dir(d))) = self.entries.iter().find(|(n, _)| n == name) else {
                panic!("no {name}")
            };
            d.entries
                .iter()
                .filter_map(|(n, node)| match node {
                    Node::Link(t) => Some(link_hash(n, t)),
                    _ => None,
                })
                .collect()
        }
    }
}
