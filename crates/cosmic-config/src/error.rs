//! The crate's error type and [`Origin`], the place a value came from.

use std::{fmt, io, path::PathBuf};

/// Where a configuration value came from: the layer that set it.
///
/// `Display` gives the form that `config show` prints: `default`, `file /etc/cosmic.toml`,
/// `env COSMIC_NET__LISTEN` or `flag --listen`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A TOML file: the data dir's `cosmic.toml` or the `--config` file.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
    /// A caller override, by the flag that set it (see [`crate::Overrides`]).
    Flag(String),
}

impl Origin {
    /// The phrase an error message uses after "from": `env var COSMIC_X`, `flag --x`.
    fn phrase(&self) -> String {
        match self {
            Origin::Default => "the defaults".to_owned(),
            Origin::File(path) => format!("file {}", path.display()),
            Origin::Env(name) => format!("env var {name}"),
            Origin::Flag(flag) => format!("flag {flag}"),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => formatter.write_str("default"),
            Origin::File(path) => write!(formatter, "file {}", path.display()),
            Origin::Env(name) => write!(formatter, "env {name}"),
            Origin::Flag(flag) => write!(formatter, "flag {flag}"),
        }
    }
}

/// Why the configuration could not be loaded.
///
/// Each message is one line that names the key, the bad value, where it came from and what
/// was expected; a cause, if any, is in [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value does not parse as its key's type.
    #[error("invalid value {value} for `{key}` from {}: expected {expected}", origin.phrase())]
    InvalidValue {
        /// The dotted key, with list indices: `net.listen[0]`.
        key: String,
        /// The bad value as written: strings quoted.
        value: String,
        /// Where the value came from.
        origin: Origin,
        /// What the key accepts.
        expected: String,
    },
    /// A number or duration is outside the range its key allows.
    #[error("value {value} for `{key}` from {} is out of range: expected {expected}", origin.phrase())]
    OutOfRange {
        /// The dotted key.
        key: String,
        /// The value as written.
        value: String,
        /// Where the value came from.
        origin: Origin,
        /// The allowed range.
        expected: String,
    },
    /// A key that the schema does not have.
    #[error("unknown key `{key}` in {}: expected {expected}", origin.phrase())]
    UnknownKey {
        /// The dotted key as written.
        key: String,
        /// Where the key came from.
        origin: Origin,
        /// The keys allowed at that place.
        expected: String,
    },
    /// The data dir's own `cosmic.toml` sets `node.data_dir`.
    #[error(
        "`node.data_dir` cannot be set in file {}, which is inside the data dir: \
         expected it in a --config file, COSMIC_NODE__DATA_DIR or a flag",
        path.display()
    )]
    DataDirInDataDirFile {
        /// The data dir's `cosmic.toml`.
        path: PathBuf,
    },
    /// The data dir does not exist and cannot be created.
    #[error("cannot create data dir {path:?} (`node.data_dir` from {})", origin.phrase())]
    CreateDataDir {
        /// The data dir.
        path: PathBuf,
        /// Where `node.data_dir` came from.
        origin: Origin,
        /// Why it could not be created.
        #[source]
        source: io::Error,
    },
    /// The `--config` file does not exist.
    #[error("config file {path:?} does not exist")]
    MissingFile {
        /// The file.
        path: PathBuf,
    },
    /// A config file exists but cannot be read.
    #[error("cannot read config file {path:?}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: io::Error,
    },
    /// A config file is not valid TOML.
    #[error("config file {path:?} is not valid TOML: {message}")]
    InvalidToml {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// An environment variable that should hold configuration is not UTF-8.
    #[error("env var {name} is not valid UTF-8: expected a UTF-8 value")]
    NotUnicodeEnv {
        /// The variable's name (lossily decoded).
        name: String,
    },
    /// [`crate::Overrides::set`] got a key or value it cannot use.
    #[error("invalid override for `{key}` from flag {flag}: {message}")]
    InvalidOverride {
        /// The key passed to `set`.
        key: String,
        /// The flag passed to `set`.
        flag: String,
        /// What is wrong.
        message: String,
    },
    /// Any other problem with a value, with its key and origin.
    #[error("invalid `{key}` from {}: {message}", origin.phrase())]
    Invalid {
        /// The dotted key.
        key: String,
        /// Where the value came from.
        origin: Origin,
        /// What is wrong.
        message: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
