//! The configuration of a CosmicSyncCore node: the schema ([`Config`] and one struct per
//! section), its documented defaults, and its layered loading with figment.
//!
//! This crate is the only reader of config files and `COSMIC_*` environment variables.
//! [`load`] merges, lowest first: the built-in defaults, `cosmic.toml` in the data dir, an
//! explicit `--config` file, `COSMIC_*` variables (`COSMIC_NET__LISTEN`: levels joined by
//! `__`) and the caller's [`Overrides`] (CLI flags). It validates the result and creates
//! the data dir. Every error is one line that names the key, the bad value, where it came
//! from and what was expected. [`Loaded::explain`] tells where each value came from and
//! [`commented_defaults`] renders the commented `cosmic.toml` that `init` writes.
//!
//! It deliberately does not install logging, open stores or parse CLI arguments, and it
//! checks peer ids for syntax only: `cosmic-net` owns libp2p and decodes them.
//! Level 1: it depends on no workspace crate.
//!
//! ```
//! use cosmic_config::{LoadOptions, Overrides};
//!
//! let data_dir = tempfile::tempdir()?;
//! let options = LoadOptions {
//!     overrides: Overrides::default()
//!         .set("node.data_dir", data_dir.path(), "--data-dir")?
//!         .set("log.format", "json", "--log-format")?,
//!     ignore_env: true,
//!     ..LoadOptions::default()
//! };
//! let loaded = cosmic_config::load(&options)?;
//! assert_eq!(loaded.config.log.format, cosmic_config::LogFormat::Json);
//! assert_eq!(loaded.config.api.addr.to_string(), "127.0.0.1:7878");
//! for explained in loaded.explain() {
//!     println!("{} = {}  # {}", explained.key, explained.value, explained.origin);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod load;
mod schema;
mod serde_impls;
mod template;
mod validate;

#[cfg(test)]
mod tests;

pub use crate::{
    error::{Error, Origin, Result},
    load::{ENV_PREFIX, ENV_SEPARATOR, Explained, Layer, LoadOptions, Loaded, Overrides, load},
    schema::{
        ApiConfig, BlobPolicy, BlobsConfig, Config, Durability, ENTRY_OVERHEAD, LogConfig,
        LogFormat, NetConfig, NodeConfig, StoreConfig, SyncConfig, default_data_dir,
    },
    template::commented_defaults,
};

/// The name of the config file in the data dir.
pub const FILE_NAME: &str = "cosmic.toml";
