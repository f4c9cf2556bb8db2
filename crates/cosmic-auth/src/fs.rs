//! Atomic, owner-only file writes.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// How [`write_atomic`] treats an existing file at the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Fail with [`Error::KeyFileExists`].
    Fail,
    /// Replace it atomically.
    Replace,
}

/// Writes `bytes` to a temporary file (mode 0600) beside `path`, syncs it, then links it
/// into place, so that readers see either no file or the whole file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], existing: Existing) -> Result<()> {
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path.file_name().map(|name| name.to_string_lossy()).unwrap_or_default();
    let suffix: [u8; 8] = crate::keys::random_bytes();
    let suffix: String = suffix.iter().map(|byte| format!("{byte:02x}")).collect();
    let temp_path: PathBuf = dir.join(format!(".{file_name}.{suffix}.tmp"));
    let result = write_temp(&temp_path, bytes).and_then(|()| match existing {
        Existing::Fail => fs::hard_link(&temp_path, path).map_err(|error| {
            if error.kind() == std::io::ErrorKind::AlreadyExists {
                Error::KeyFileExists { path: path.to_owned() }
            } else {
                Error::io(path, error)
            }
        }),
        Existing::Replace => fs::rename(&temp_path, path).map_err(|error| Error::io(path, error)),
    });
    // After a rename the temporary file is gone already; after a link it must go.
    let _ = fs::remove_file(&temp_path);
    result?;
    if let Ok(dir_handle) = File::open(dir) {
        // Best effort: makes the new directory entry durable on filesystems that need it.
        let _ = dir_handle.sync_all();
    }
    Ok(())
}

fn write_temp(temp_path: &Path, bytes: &[u8]) -> Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(temp_path).map_err(|error| Error::io(temp_path, error))?;
    file.write_all(bytes).map_err(|error| Error::io(temp_path, error))?;
    file.sync_all().map_err(|error| Error::io(temp_path, error))
}
