//! The local replication state that survives restarts: which spaces are joined, and each
//! one's blob fetch policy. One small JSON file, replaced atomically.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use cosmic_auth::PublicKey;
use serde::{Deserialize, Serialize};

use crate::{BlobPolicy, Error, Result};

/// The file name in the state directory.
pub const STATE_FILE: &str = "sync-state.json";
const STATE_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct File {
    version: u32,
    spaces: BTreeMap<String, SpaceState>,
}

/// What is kept per joined space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SpaceState {
    pub(crate) blob_policy: BlobPolicy,
}

/// Reads the state file (missing: nothing joined).
pub(crate) fn load(dir: &Path) -> Result<BTreeMap<PublicKey, SpaceState>> {
    let path = dir.join(STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(error) => return Err(state_error(&path, error)),
    };
    let file: File = serde_json::from_slice(&bytes).map_err(|error| state_error(&path, error))?;
    if file.version != STATE_VERSION {
        let reason =
            format!("version {} is not supported (expected {STATE_VERSION})", file.version);
        return Err(Error::State { path, reason });
    }
    let mut out = BTreeMap::new();
    for (space, state) in file.spaces {
        let id: PublicKey = space
            .parse()
            .map_err(|error| state_error(&path, format!("bad space id {space:?}: {error}")))?;
        out.insert(id, state);
    }
    Ok(out)
}

/// Writes the state file atomically: a temporary file, fsync, rename, fsync of the dir.
pub(crate) fn save(dir: &Path, spaces: &BTreeMap<PublicKey, SpaceState>) -> Result<()> {
    let path = dir.join(STATE_FILE);
    let file = File {
        version: STATE_VERSION,
        spaces: spaces.iter().map(|(space, state)| (space.to_string(), *state)).collect(),
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(|error| state_error(&path, error))?;
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        // Owner-only, with a name of its own (`tempfile`), then renamed into place.
        let mut out = tempfile::NamedTempFile::new_in(dir)?;
        out.write_all(&bytes)?;
        out.as_file().sync_all()?;
        out.persist(&path).map_err(|error| error.error)?;
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    };
    write().map_err(|error| state_error(&path, error))
}

fn state_error(path: &Path, error: impl std::fmt::Display) -> Error {
    Error::State { path: path.to_owned(), reason: error.to_string() }
}
