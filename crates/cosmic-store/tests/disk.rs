//! Disk trouble on a real database file: a full disk fails writes with a clear error, keeps
//! every acknowledged write and serves reads, and the store writes again once space returns;
//! a damaged file is an error naming its path and a way out, never a panic.
//!
//! The full disk is a real 8 MiB tmpfs when this machine lets the test mount one (as root
//! outside a locked-down container); otherwise the same scenario runs on a real file whose
//! writes fail with `ENOSPC` injected under redb, and the test says so on stderr (set
//! `COSMIC_TEST_NO_TMPFS` to run that variant anyway).

#![allow(clippy::unwrap_used, reason = "a test fails loudly, helpers included")]

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cosmic_auth::{AuthorKey, PublicKey, SpaceKey, SpaceMode};
use cosmic_store::{Error, Options, Store, Value};

/// Set to run the injected-error variant even where a tmpfs could be mounted.
const NO_TMPFS_ENV: &str = "COSMIC_TEST_NO_TMPFS";

/// A tmpfs mounted for the test, unmounted when dropped.
struct TmpfsMount {
    dir: PathBuf,
}

impl TmpfsMount {
    /// Mounts an 8 MiB tmpfs on `dir`, or says why it cannot.
    fn mount(dir: &Path) -> Result<TmpfsMount, String> {
        if std::env::var_os(NO_TMPFS_ENV).is_some() {
            return Err(format!("{NO_TMPFS_ENV} is set"));
        }
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("cannot run mount: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(TmpfsMount { dir: dir.to_owned() })
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        // Lazy, so a file still open somewhere cannot keep the mount around.
        let status = Command::new("umount").arg("-l").arg(&self.dir).status();
        if !matches!(status, Ok(status) if status.success()) {
            eprintln!("warning: could not unmount {}: {status:?}", self.dir.display());
        }
    }
}

/// A disk that can be filled up and freed again.
enum Disk {
    /// A real small filesystem, filled with a filler file.
    Tmpfs { _mount: TmpfsMount, filler: PathBuf },
    /// A real file that cannot grow past `limit` bytes (`u64::MAX`: free), as a full disk
    /// still lets a file rewrite the blocks it holds.
    Injected { path: PathBuf, limit: Arc<AtomicU64> },
}

impl Disk {
    fn fill(&self) {
        match self {
            Disk::Tmpfs { filler, .. } => {
                let mut file = OpenOptions::new().create(true).append(true).open(filler).unwrap();
                let chunk = vec![0xa5_u8; 4096];
                // Bounded: the filesystem holds 8 MiB.
                for _ in 0..4096 {
                    if file.write_all(&chunk).and_then(|()| file.sync_data()).is_err() {
                        return;
                    }
                }
                panic!("the 8 MiB tmpfs never filled up");
            }
            Disk::Injected { path, limit } => {
                limit.store(std::fs::metadata(path).unwrap().len(), Ordering::SeqCst);
            }
        }
    }

    fn free(&self) {
        match self {
            Disk::Tmpfs { filler, .. } => std::fs::remove_file(filler).unwrap(),
            Disk::Injected { limit, .. } => limit.store(u64::MAX, Ordering::SeqCst),
        }
    }
}

/// redb's file storage with `ENOSPC` injected into writes and resizes that would take the
/// file past `limit` bytes.
#[derive(Debug)]
struct FullableFile {
    file: redb::backends::FileBackend,
    limit: Arc<AtomicU64>,
}

impl FullableFile {
    fn check(&self, end: u64) -> std::io::Result<()> {
        if end > self.limit.load(Ordering::SeqCst) {
            // ENOSPC, as the kernel reports it.
            return Err(std::io::Error::from_raw_os_error(28));
        }
        Ok(())
    }
}

impl redb::StorageBackend for FullableFile {
    fn len(&self) -> std::io::Result<u64> {
        self.file.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.file.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.check(len)?;
        self.file.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.check(offset.saturating_add(data.len() as u64))?;
        self.file.write(offset, data)
    }
    fn close(&self) -> std::io::Result<()> {
        self.file.close()
    }
}

/// Opens a store on a full-able disk: a tmpfs if one can be mounted, else injected errors.
fn full_able_store(dir: &Path) -> (Store, Disk, PathBuf) {
    let mount_dir = dir.join("mnt");
    std::fs::create_dir(&mount_dir).unwrap();
    match TmpfsMount::mount(&mount_dir) {
        Ok(mount) => {
            eprintln!("full disk: a real 8 MiB tmpfs at {}", mount_dir.display());
            let path = mount_dir.join("store.redb");
            let store = Store::open(&path, Options::default()).unwrap();
            let disk = Disk::Tmpfs { _mount: mount, filler: mount_dir.join("filler") };
            (store, disk, path)
        }
        Err(why) => {
            eprintln!(
                "full disk: no tmpfs here ({why}); falling back to ENOSPC injected into the \
                 writes of a real file"
            );
            let path = dir.join("store.redb");
            let limit = Arc::new(AtomicU64::new(u64::MAX));
            let store = {
                let (path, limit) = (path.clone(), limit.clone());
                Store::open_with_backend_factory(path.clone(), Options::default(), move || {
                    let file = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&path)?;
                    let file = redb::backends::FileBackend::new(file)
                        .map_err(|error| std::io::Error::other(error.to_string()))?;
                    Ok(FullableFile { file, limit: limit.clone() })
                })
                .unwrap()
            };
            (store, Disk::Injected { path: path.clone(), limit }, path)
        }
    }
}

fn write_doc(
    store: &Store,
    author: &AuthorKey,
    space: &PublicKey,
    doc: &str,
) -> cosmic_store::Result<()> {
    // Big enough values that a few hundred of them fill what is left of the disk.
    let fields = vec![("body".to_owned(), Value::Bytes(doc.repeat(200).into_bytes()))];
    store.write(author, space, doc, fields).map(drop)
}

fn error_chain(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn assert_disk_full(error: &Error, path: &Path) {
    assert!(error.is_disk_full(), "{error:?}");
    let text = error_chain(error);
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("No space left on device"), "{text}");
}

#[test]
fn a_full_disk_fails_writes_keeps_reads_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (store, disk, path) = full_able_store(dir.path());
    let space = store.create_space(&SpaceKey::from_secret_bytes(&[1; 32]), SpaceMode::Open);
    let space = space.unwrap().space;
    let author = AuthorKey::from_secret_bytes(&[2; 32]);
    let mut acked = Vec::new();
    for i in 0..20 {
        let doc = format!("before-{i:04}");
        write_doc(&store, &author, &space, &doc).unwrap();
        acked.push(doc);
    }

    disk.fill();
    // Writes may still land in space the file already holds; soon one fails.
    let mut first_failure = None;
    for i in 0..5000 {
        let doc = format!("full-{i:04}");
        match write_doc(&store, &author, &space, &doc) {
            Ok(()) => acked.push(doc),
            Err(error) => {
                first_failure = Some((doc, error));
                break;
            }
        }
    }
    let (refused, error) = first_failure.expect("a write fails on the full disk");
    assert_disk_full(&error, &path);
    eprintln!("refused write: {}", error_chain(&error));

    // Still full: reads answer, every acknowledged write is there, the refused one is not,
    // and writes keep failing with the same clear error (not a stale "previous I/O" one).
    for doc in &acked {
        assert!(store.get_doc(&space, doc).unwrap().is_some(), "acknowledged {doc} is lost");
    }
    assert_eq!(store.get_doc(&space, &refused).unwrap(), None);
    let error = write_doc(&store, &author, &space, "still-full").unwrap_err();
    assert_disk_full(&error, &path);
    for doc in &acked {
        assert!(store.get_doc(&space, doc).unwrap().is_some(), "acknowledged {doc} is lost");
    }

    // Space returns: the same handle writes again, and nothing is missing.
    disk.free();
    write_doc(&store, &author, &space, "after-free").unwrap();
    acked.push("after-free".to_owned());
    write_doc(&store, &author, &space, &refused).unwrap();
    acked.push(refused);
    let seqs: Vec<u64> =
        store.changes_since(&space, 0, 100_000).unwrap().iter().map(|change| change.seq).collect();
    let mut unique = seqs.clone();
    unique.dedup();
    assert_eq!(seqs, unique, "sequence numbers are never issued twice");
    assert_eq!(seqs.len(), acked.len());
    let fingerprint = store.fingerprint(&space, None, None).unwrap();
    drop(store);

    // And all of it is durable: the file reopens cleanly with every write.
    let store = Store::open(&path, Options::default()).unwrap();
    for doc in &acked {
        assert!(store.get_doc(&space, doc).unwrap().is_some(), "acknowledged {doc} is lost");
    }
    assert_eq!(store.fingerprint(&space, None, None).unwrap(), fingerprint);
}
