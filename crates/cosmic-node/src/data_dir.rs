//! The data dir of a node: what is in it, who may use it, and how it is made.
//!
//! ```text
//! <data dir>/
//!   lock          held (flock) by the one process using the dir; holds its pid
//!   node.key      the node's ed25519 secret (mode 0600): its PeerId and iroh endpoint id
//!   cosmic.toml   configuration, every default written out commented
//!   api.token     bearer token for the HTTP API (mode 0600)
//!   author.key    the node's own author secret (mode 0600): it signs writes made through
//!                 the HTTP API and the `Node` handles
//!   api.url       the URL the running node's API is served on (written when it is ready)
//!   store.redb    the document store (cosmic-store)
//!   blobs/        the blob store (cosmic-blobs)
//!   peers.json    peers known to the network layer
//!   sync-state.json  the spaces this node replicates (cosmic-sync)
//!   spaces/       one `<space id>.key` secret (mode 0600) per space this node created
//! ```
//!
//! The node author is a plain key file rather than a keystore identity because a node
//! must write unattended, with nobody to type a passphrase; it is as private as
//! `node.key`. Keystore identities (`cosmic-node identity`) stay for people.
//!
//! Files are created by writing a temporary file, syncing it and renaming it into place,
//! so a crash never leaves a half-written key or token behind.
//!
//! The dir is private: it and its folders are 0700, every file in it 0600 (Unix).
//! [`DataDir::make_private`] fixes and reports anything looser.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use cosmic_auth::{AuthorKey, NodeKey, SpaceId, SpaceKey};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Name of the lock file inside the data dir.
pub const LOCK_FILE: &str = "lock";
/// Name of the node key file inside the data dir.
pub const NODE_KEY_FILE: &str = "node.key";
/// Name of the API token file inside the data dir.
pub const API_TOKEN_FILE: &str = "api.token";
/// Name of the node author key file inside the data dir.
pub const AUTHOR_KEY_FILE: &str = "author.key";
/// Name of the file a running node writes its API URL to.
pub const API_URL_FILE: &str = "api.url";
/// Name of the store database inside the data dir.
pub const STORE_FILE: &str = "store.redb";
/// Name of the blob store folder inside the data dir.
pub const BLOBS_DIR: &str = "blobs";
/// Name of the folder of space secrets inside the data dir.
pub const SPACES_DIR: &str = "spaces";

/// First line of an author or space key file.
const SECRET_FILE_HEADER: &str = "cosmic-secret-key v1";

/// Bytes of randomness in a new API token (encoded as unpadded base64url).
const API_TOKEN_BYTES: usize = 32;

/// A data dir locked for this process: while it lives, no other cosmic-node can use it.
///
/// The lock is an advisory `flock` on [`LOCK_FILE`], released by the OS when the process
/// ends in any way, so a killed node never leaves a stale lock.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

/// A file or folder of the data dir that others could use, and was made private.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeFix {
    /// The file or folder.
    pub path: PathBuf,
    /// Its permission bits before (e.g. `0o644`).
    pub was: u32,
    /// Its permission bits now (e.g. `0o600`).
    pub now: u32,
}

/// What [`DataDir::init`] created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitReport {
    /// Files that did not exist and were created, by name.
    pub created: Vec<&'static str>,
}

impl DataDir {
    /// Creates the dir if needed (mode 0700) and takes its lock, failing at once with
    /// [`Error::DataDirInUse`] when another process holds it. Call
    /// [`DataDir::make_private`] next to tighten what was there before.
    pub fn lock(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        create_private_dir(&path).map_err(|source| Error::Io {
            action: "create data dir",
            path: path.clone(),
            source,
        })?;
        let lock_path = path.join(LOCK_FILE);
        let io_error = |action, source| Error::Io { action, path: lock_path.clone(), source };
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file =
            options.open(&lock_path).map_err(|source| io_error("open lock file", source))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let pid =
                    file.read_to_string(&mut holder).ok().and_then(|_| holder.trim().parse().ok());
                return Err(Error::DataDirInUse { path, pid });
            }
            Err(TryLockError::Error(source)) => return Err(io_error("lock", source)),
        }
        file.set_len(0).map_err(|source| io_error("write", source))?;
        file.seek(SeekFrom::Start(0)).map_err(|source| io_error("write", source))?;
        writeln!(file, "{}", std::process::id()).map_err(|source| io_error("write", source))?;
        Ok(Self { path, _lock: file })
    }

    /// The data dir.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes every permission of group and others away from the data dir and everything
    /// in it (folders become at most 0700, files at most 0600; symbolic links are not
    /// followed), and returns what had to change. A node calls it at start, before it
    /// reads a secret, and again once its stores are open, for the files they made.
    pub fn make_private(&self) -> Result<Vec<ModeFix>> {
        let mut fixes = Vec::new();
        make_private(&self.path, &mut fixes)?;
        Ok(fixes)
    }

    /// Whether the dir holds a node key (what `cosmic-node init` creates first).
    pub fn is_initialized(&self) -> bool {
        self.path.join(NODE_KEY_FILE).exists()
    }

    /// Creates whatever is missing: a new node key, the commented configuration file and
    /// an API token. Existing files are left as they are.
    pub fn init(&self) -> Result<InitReport> {
        let mut report = InitReport::default();
        let key_path = self.path.join(NODE_KEY_FILE);
        if !key_path.exists() {
            NodeKey::create_file(&key_path).map_err(Error::NodeKey)?;
            report.created.push(NODE_KEY_FILE);
        }
        let config_path = self.path.join(cosmic_config::FILE_NAME);
        if !config_path.exists() {
            write_new(&config_path, cosmic_config::commented_defaults().as_bytes(), 0o600)?;
            report.created.push(cosmic_config::FILE_NAME);
        }
        let token_path = self.path.join(API_TOKEN_FILE);
        if !token_path.exists() {
            let token = new_api_token();
            write_new(&token_path, format!("{token}\n").as_bytes(), 0o600)?;
            report.created.push(API_TOKEN_FILE);
        }
        let author_path = self.path.join(AUTHOR_KEY_FILE);
        if !author_path.exists() {
            let key = AuthorKey::generate();
            write_new(&author_path, &encode_secret(&key.secret_bytes()), 0o600)?;
            report.created.push(AUTHOR_KEY_FILE);
        }
        Ok(report)
    }

    /// Loads the node author key, which signs the writes this node makes on its own.
    pub fn author_key(&self) -> Result<AuthorKey> {
        let secret = read_secret(&self.path.join(AUTHOR_KEY_FILE))?;
        Ok(AuthorKey::from_secret_bytes(&secret))
    }

    /// Keeps the secret of a space this node created, so it can grant rights later.
    pub fn save_space_key(&self, key: &SpaceKey) -> Result<()> {
        let dir = self.path.join(SPACES_DIR);
        create_private_dir(&dir).map_err(|source| Error::Io {
            action: "create",
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(format!("{}.key", key.id()));
        write_new(&path, &encode_secret(&key.secret_bytes()), 0o600)
    }

    /// The secret of a space this node created, if it holds it.
    pub fn space_key(&self, space: &SpaceId) -> Result<Option<SpaceKey>> {
        let path = self.path.join(SPACES_DIR).join(format!("{space}.key"));
        if !path.exists() {
            return Ok(None);
        }
        let secret = read_secret(&path)?;
        let key = SpaceKey::from_secret_bytes(&secret);
        if key.id() != *space {
            return Err(Error::Corrupt {
                path,
                reason: format!("holds the key of space {}", key.id()),
            });
        }
        Ok(Some(key))
    }

    /// Records the URL the API is served on, for the CLI client; replaced atomically.
    pub fn write_api_url(&self, url: &str) -> Result<()> {
        write_new(&self.path.join(API_URL_FILE), format!("{url}\n").as_bytes(), 0o600)
    }

    /// Removes the API URL file (the API is no longer served).
    pub fn remove_api_url(&self) {
        let _ = std::fs::remove_file(self.path.join(API_URL_FILE));
    }

    /// Loads the node key.
    pub fn node_key(&self) -> Result<NodeKey> {
        NodeKey::load_file(self.path.join(NODE_KEY_FILE)).map_err(Error::NodeKey)
    }

    /// Reads the API token.
    pub fn api_token(&self) -> Result<String> {
        read_api_token(&self.path)
    }
}

fn encode_secret(secret: &[u8; 32]) -> Zeroizing<Vec<u8>> {
    let text = Zeroizing::new(data_encoding::BASE64URL_NOPAD.encode(secret));
    Zeroizing::new(format!("{SECRET_FILE_HEADER}\n{}\n", text.as_str()).into_bytes())
}

fn read_secret(path: &Path) -> Result<Zeroizing<[u8; 32]>> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| Error::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?);
    let corrupt =
        |reason: &str| Error::Corrupt { path: path.to_path_buf(), reason: reason.to_owned() };
    let mut lines = text.lines();
    if lines.next() != Some(SECRET_FILE_HEADER) {
        return Err(corrupt("missing the `cosmic-secret-key v1` header"));
    }
    let encoded = lines.next().unwrap_or_default().trim();
    let bytes = Zeroizing::new(
        data_encoding::BASE64URL_NOPAD
            .decode(encoded.as_bytes())
            .map_err(|_| corrupt("the secret is not base64url"))?,
    );
    let mut secret = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(corrupt("the secret is not 32 bytes"));
    }
    secret.copy_from_slice(&bytes);
    Ok(secret)
}

/// Reads the API token of the data dir at `path` (no lock needed: clients read it too).
pub fn read_api_token(path: &Path) -> Result<String> {
    let token_path = path.join(API_TOKEN_FILE);
    let text = std::fs::read_to_string(&token_path).map_err(|source| Error::Io {
        action: "read",
        path: token_path.clone(),
        source,
    })?;
    let token = text.trim();
    let valid = token.len() >= 32
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(Error::Corrupt {
            path: token_path,
            reason: "expected one line of at least 32 base64url characters".to_owned(),
        });
    }
    Ok(token.to_owned())
}

fn new_api_token() -> String {
    let bytes: [u8; API_TOKEN_BYTES] = rand::random();
    data_encoding::BASE64URL_NOPAD.encode(&bytes)
}

/// Creates `path` and its missing parents with mode 0700 (whatever the umask says).
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Strips group and other permissions from `path` and, for a folder, from everything in
/// it; records each change in `fixes`.
#[cfg(unix)]
fn make_private(path: &Path, fixes: &mut Vec<ModeFix>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let io_error = |action, source| Error::Io { action, path: path.to_path_buf(), source };
    let metadata = std::fs::symlink_metadata(path).map_err(|source| io_error("inspect", source))?;
    if metadata.file_type().is_symlink() {
        return Ok(());
    }
    let was = metadata.permissions().mode() & 0o7777;
    if was & 0o077 != 0 {
        let now = was & !0o077;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(now))
            .map_err(|source| io_error("make private", source))?;
        fixes.push(ModeFix { path: path.to_path_buf(), was, now });
    }
    if metadata.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|source| io_error("list", source))? {
            let entry = entry.map_err(|source| io_error("list", source))?;
            match make_private(&entry.path(), fixes) {
                // A file removed meanwhile (a temporary file renamed away) is no longer ours.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn make_private(_path: &Path, _fixes: &mut Vec<ModeFix>) -> Result<()> {
    Ok(())
}

/// Writes `bytes` to a new file at `path` with `mode`, atomically: a temporary file is
/// written and synced, then renamed into place, and the directory is synced.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let io_error = |action, source| Error::Io { action, path: path.to_path_buf(), source };
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = builder.tempfile_in(dir).map_err(|source| io_error("create", source))?;
    file.write_all(bytes).map_err(|source| io_error("write", source))?;
    file.as_file().sync_all().map_err(|source| io_error("sync", source))?;
    file.persist(path).map_err(|error| io_error("rename into place", error.error))?;
    if let Some(dir) = path.parent() {
        // Make the rename itself durable; not every platform can open a directory.
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_creates_each_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = DataDir::lock(dir.path().join("node")).unwrap();
        assert!(!data_dir.is_initialized());
        let report = data_dir.init().unwrap();
        assert_eq!(
            report.created,
            [NODE_KEY_FILE, cosmic_config::FILE_NAME, API_TOKEN_FILE, AUTHOR_KEY_FILE]
        );
        assert!(data_dir.is_initialized());
        let key = data_dir.node_key().unwrap();
        let token = data_dir.api_token().unwrap();
        let author = data_dir.author_key().unwrap().public();
        // A second init leaves everything as it was.
        assert_eq!(data_dir.init().unwrap(), InitReport::default());
        assert_eq!(data_dir.node_key().unwrap().peer_id(), key.peer_id());
        assert_eq!(data_dir.api_token().unwrap(), token);
        assert_eq!(data_dir.author_key().unwrap().public(), author);
    }

    #[test]
    fn space_keys_round_trip_and_a_swapped_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = DataDir::lock(dir.path()).unwrap();
        let key = SpaceKey::generate();
        assert!(data_dir.space_key(&key.id()).unwrap().is_none());
        data_dir.save_space_key(&key).unwrap();
        assert_eq!(data_dir.space_key(&key.id()).unwrap().unwrap().id(), key.id());
        let other = SpaceKey::generate();
        std::fs::copy(
            dir.path().join(SPACES_DIR).join(format!("{}.key", key.id())),
            dir.path().join(SPACES_DIR).join(format!("{}.key", other.id())),
        )
        .unwrap();
        assert!(matches!(data_dir.space_key(&other.id()), Err(Error::Corrupt { .. })));
    }

    #[cfg(unix)]
    #[test]
    fn secrets_are_private_to_the_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data_dir = DataDir::lock(dir.path()).unwrap();
        data_dir.init().unwrap();
        for name in
            [NODE_KEY_FILE, API_TOKEN_FILE, AUTHOR_KEY_FILE, cosmic_config::FILE_NAME, LOCK_FILE]
        {
            let mode = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn make_private_takes_away_what_others_could_use_and_says_so() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        let set = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("node");
        // A new data dir is private whatever the umask (tests run with the usual 022).
        let data_dir = DataDir::lock(&root).unwrap();
        data_dir.init().unwrap();
        assert_eq!(mode(&root), 0o700);
        assert_eq!(data_dir.make_private().unwrap(), Vec::new(), "a new data dir is private");

        // Loosen what an older version or a careless copy could have left.
        let nested = root.join("blobs").join("data");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(nested.join("outboard"), b"x").unwrap();
        std::fs::write(root.join(STORE_FILE), b"x").unwrap();
        set(&root.join("blobs"), 0o755);
        set(&nested, 0o755);
        set(&nested.join("outboard"), 0o666);
        set(&root.join(STORE_FILE), 0o644);
        set(&root.join(cosmic_config::FILE_NAME), 0o640);
        set(&root, 0o755);
        // A link to a file outside the dir is not followed (nor changed).
        let outside = temp.path().join("outside");
        std::fs::write(&outside, b"x").unwrap();
        set(&outside, 0o644);
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();

        let mut fixes = data_dir.make_private().unwrap();
        fixes.sort_by(|a, b| a.path.cmp(&b.path));
        let expected = [
            (root.clone(), 0o755, 0o700),
            (root.join("blobs"), 0o755, 0o700),
            (root.join("blobs").join("data"), 0o755, 0o700),
            (root.join("blobs").join("data").join("outboard"), 0o666, 0o600),
            (root.join(cosmic_config::FILE_NAME), 0o640, 0o600),
            (root.join(STORE_FILE), 0o644, 0o600),
        ];
        let mut expected: Vec<ModeFix> =
            expected.into_iter().map(|(path, was, now)| ModeFix { path, was, now }).collect();
        expected.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(fixes, expected);
        for fix in &expected {
            assert_eq!(mode(&fix.path), fix.now, "{}", fix.path.display());
        }
        assert_eq!(mode(&outside), 0o644, "the link's target is not ours");
        assert_eq!(data_dir.make_private().unwrap(), Vec::new(), "nothing left to fix");
    }

    #[test]
    fn second_lock_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::lock(dir.path()).unwrap();
        match DataDir::lock(dir.path()) {
            Err(Error::DataDirInUse { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected DataDirInUse, got {other:?}"),
        }
        drop(first);
        DataDir::lock(dir.path()).unwrap();
    }

    #[test]
    fn corrupt_token_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(API_TOKEN_FILE), "short\n").unwrap();
        let error = read_api_token(dir.path()).unwrap_err();
        assert!(matches!(error, Error::Corrupt { .. }));
        assert!(error.to_string().contains(API_TOKEN_FILE), "{error}");
    }
}
