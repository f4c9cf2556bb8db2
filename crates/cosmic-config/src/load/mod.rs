//! Layered loading: defaults < data dir `cosmic.toml` < `--config` file < `COSMIC_*` env
//! vars < caller overrides, then validation and creation of the data dir.

use std::{
    collections::BTreeMap,
    fmt, io,
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
};

use figment::{
    Figment, Metadata, Profile, Provider, Source,
    error::{Actual, Kind},
    value::{Dict, Map, Value},
};
use serde::Serialize;

use crate::{
    Config, FILE_NAME,
    error::{Error, Origin, Result},
    validate,
};

mod providers;

use providers::*;

/// The prefix of environment variables that hold configuration.
pub const ENV_PREFIX: &str = "COSMIC_";

/// The separator between the levels of a key in an environment variable name.
pub const ENV_SEPARATOR: &str = "__";

/// Caller overrides (usually CLI flags), the top layer, each with the flag that set it so
/// that errors and [`Loaded::explain`] can name it.
///
/// ```
/// let overrides = cosmic_config::Overrides::default()
///     .set("net.mdns", false, "--no-mdns")?
///     .set("api.addr", "127.0.0.1:0", "--api-addr")?;
/// assert!(!overrides.is_empty());
/// # Ok::<(), cosmic_config::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    entries: Vec<Override>,
}

#[derive(Debug, Clone)]
struct Override {
    key: String,
    flag: String,
    value: Value,
}

impl Overrides {
    /// Sets the dotted `key` (`net.listen`) to `value`, as flag `flag` asked.
    ///
    /// `value` is serialized as it would be written in TOML: a `Multiaddr`, `SocketAddr` or
    /// `PathBuf` becomes a string; pass a duration as a string such as `"30s"`. A later
    /// `set` of the same key wins. An unknown key is reported by [`load`], naming the flag.
    pub fn set<T: Serialize>(mut self, key: &str, value: T, flag: &str) -> Result<Self> {
        if key.split('.').any(str::is_empty) {
            return Err(Error::InvalidOverride {
                key: key.to_owned(),
                flag: flag.to_owned(),
                message: "expected a dotted key such as net.listen".to_owned(),
            });
        }
        let value = Value::serialize(value).map_err(|error| Error::InvalidOverride {
            key: key.to_owned(),
            flag: flag.to_owned(),
            message: error.to_string(),
        })?;
        self.entries.push(Override { key: key.to_owned(), flag: flag.to_owned(), value });
        Ok(self)
    }

    /// Whether no override was set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What [`load`] reads besides the built-in defaults.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// An explicit config file (`--config`); it must exist.
    pub config_file: Option<PathBuf>,
    /// Caller overrides, the top layer.
    pub overrides: Overrides,
    /// Do not read `COSMIC_*` environment variables (for embedding and tests).
    pub ignore_env: bool,
}

/// A layer that contributed to a [`Loaded`] configuration, for logging at start.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Layer {
    /// The built-in defaults.
    Defaults,
    /// A TOML file: the data dir's `cosmic.toml` or the `--config` file.
    File(PathBuf),
    /// `COSMIC_*__*` environment variables.
    Env,
    /// Caller overrides.
    Flags,
}

impl fmt::Display for Layer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::Defaults => formatter.write_str("defaults"),
            Layer::File(path) => write!(formatter, "file {}", path.display()),
            Layer::Env => formatter.write_str("env"),
            Layer::Flags => formatter.write_str("flags"),
        }
    }
}

/// One leaf key of the effective configuration, its value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    /// The dotted key: `net.listen`.
    pub key: String,
    /// The value as TOML: `["/ip4/0.0.0.0/tcp/4747"]`, `"5m"`, `true`.
    pub value: String,
    /// Where it came from, as [`Origin`] displays it: `default`, `file /etc/cosmic.toml`,
    /// `env COSMIC_NET__LISTEN` or `flag --listen`.
    pub origin: String,
}

/// A loaded, validated configuration and how it was put together.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The effective configuration.
    pub config: Config,
    layers: Vec<Layer>,
    leaves: Vec<Leaf>,
}

/// One leaf key with its typed origin; [`Explained`] is its printable form.
#[derive(Debug, Clone)]
struct Leaf {
    key: String,
    value: String,
    origin: Origin,
}

impl Loaded {
    /// The layers that contributed, lowest first, for logging at start:
    /// `["defaults", "file /data/cosmic.toml", "env", "flags"]`.
    pub fn sources(&self) -> Vec<String> {
        self.layers.iter().map(Layer::to_string).collect()
    }

    /// The layers that contributed, lowest first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Every leaf key of the effective configuration, in file order, with its value and
    /// origin (what `cosmic-node config show` prints).
    pub fn explain(&self) -> Vec<Explained> {
        self.leaves
            .iter()
            .map(|leaf| Explained {
                key: leaf.key.clone(),
                value: leaf.value.clone(),
                origin: leaf.origin.to_string(),
            })
            .collect()
    }

    /// Where the value of the dotted leaf `key` (`net.listen`) came from, if the key exists.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.leaves.iter().find(|leaf| leaf.key == key).map(|leaf| &leaf.origin)
    }
}

/// Loads the configuration: defaults < `<data dir>/cosmic.toml` < `options.config_file` <
/// `COSMIC_*` env vars < `options.overrides`, validates it and creates the data dir.
///
/// The data dir is resolved first from every layer but its own file, which then joins in
/// its place; that file may not set `node.data_dir`. Environment variables are read only
/// if their name starts with `COSMIC_` and contains `__`: `COSMIC_NET__LISTEN` sets
/// `net.listen`, `COSMIC_PASSPHRASE` is left alone. A list may be given as `[a, b]` or,
/// for one element, as a bare value.
pub fn load(options: &LoadOptions) -> Result<Loaded> {
    let defaults = DictProvider::new(Metadata::named(DEFAULT_NAME), defaults_dict()?);
    let config_file = match &options.config_file {
        Some(path) => {
            let dict = read_toml(path)?.ok_or_else(|| Error::MissingFile { path: path.clone() })?;
            Some(DictProvider::file(path, dict))
        }
        None => None,
    };
    let env = if options.ignore_env { None } else { env_provider()? };
    let flags: Vec<DictProvider> = options.overrides.entries.iter().map(flag_provider).collect();

    let upper_layers = |mut figment: Figment| {
        if let Some(file) = &config_file {
            figment = figment.merge(file.clone());
        }
        if let Some(env) = &env {
            figment = figment.merge(env.clone());
        }
        for flag in &flags {
            figment = figment.merge(flag.clone());
        }
        figment
    };

    // First pass: the data dir, from every layer but the file inside it.
    let first_pass = upper_layers(Figment::from(defaults.clone()));
    let data_dir: PathBuf = first_pass
        .extract_inner("node.data_dir")
        .map_err(|error| Resolver { figment: &first_pass }.convert(error))?;
    if data_dir.as_os_str().is_empty() {
        // Checked before use: an empty path would read `cosmic.toml` in the working directory.
        return Err(Error::InvalidValue {
            key: "node.data_dir".to_owned(),
            value: "\"\"".to_owned(),
            origin: Resolver { figment: &first_pass }.origin("node.data_dir"),
            expected: "a directory path".to_owned(),
        });
    }

    // Second pass: everything, with the data dir's file in its place.
    let data_dir_file_path = data_dir.join(FILE_NAME);
    let data_dir_file = if is_same_file(options.config_file.as_deref(), &data_dir_file_path) {
        None
    } else {
        read_toml(&data_dir_file_path)?
    };
    let mut figment = Figment::from(defaults);
    let mut layers = vec![Layer::Defaults];
    if let Some(dict) = data_dir_file {
        if dict_has(&dict, &["node", "data_dir"]) {
            return Err(Error::DataDirInDataDirFile { path: data_dir_file_path });
        }
        figment = figment.merge(DictProvider::file(&data_dir_file_path, dict));
        layers.push(Layer::File(data_dir_file_path));
    }
    let figment = upper_layers(figment);
    layers.extend(options.config_file.iter().map(|path| Layer::File(path.clone())));
    layers.extend(env.iter().map(|_| Layer::Env));
    layers.extend(flags.first().map(|_| Layer::Flags));

    let resolver = Resolver { figment: &figment };
    let config: Config = figment.extract().map_err(|error| resolver.convert(error))?;
    validate::validate(&config, &resolver)?;
    create_data_dir(&config.node.data_dir, &resolver)?;
    let leaves = leaves(&config, &resolver)?;
    Ok(Loaded { config, layers, leaves })
}

const DEFAULT_NAME: &str = "default";
const ENV_NAME: &str = "env";
const FLAG_PREFIX: &str = "flag ";

/// Looks up the origin of keys in a merged figment and turns figment errors into ours.
#[derive(Debug)]
pub(crate) struct Resolver<'a> {
    figment: &'a Figment,
}

impl Resolver<'_> {
    /// The origin of the dotted `key` (list indices allowed: `net.listen[0]`).
    pub(crate) fn origin(&self, key: &str) -> Origin {
        let path: Vec<&str> =
            key.split('.').map(|part| part.split('[').next().unwrap_or(part)).collect();
        self.find_origin(&path).unwrap_or(Origin::Default)
    }

    /// The origin of the deepest key on `path` that has metadata: the value itself or, for
    /// a list element, the list. List indices in `path` are skipped.
    fn find_origin(&self, path: &[&str]) -> Option<Origin> {
        let path: Vec<&str> =
            path.iter().copied().filter(|part| part.parse::<usize>().is_err()).collect();
        (1..=path.len()).rev().find_map(|len| {
            let metadata = self.figment.find_metadata(&path[..len].join("."))?;
            Some(origin_from_metadata(metadata, &path))
        })
    }

    pub(crate) fn convert(&self, error: figment::Error) -> Error {
        let Some(error) = error.into_iter().next() else {
            return Error::Invalid {
                key: String::new(),
                origin: Origin::Default,
                message: "unknown error".to_owned(),
            };
        };
        let mut path = error.path.clone();
        if let Kind::UnknownField(field, _) = &error.kind
            && path.last() != Some(field)
        {
            path.push(field.clone());
        }
        let path_refs: Vec<&str> = path.iter().map(String::as_str).collect();
        let key = render_key(&path_refs);
        let origin = self
            .find_origin(&path_refs)
            .or_else(|| Some(origin_from_metadata(error.metadata.as_ref()?, &path_refs)))
            .unwrap_or(Origin::Default);
        match error.kind {
            Kind::UnknownField(_, expected) => {
                Error::UnknownKey { key, origin, expected: one_of(expected) }
            }
            Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
                Error::InvalidValue {
                    key,
                    value: render_actual(&actual),
                    origin,
                    expected: humanize_expected(&expected),
                }
            }
            Kind::UnknownVariant(variant, expected) => Error::InvalidValue {
                key,
                value: format!("{variant:?}"),
                origin,
                expected: one_of(expected),
            },
            kind => Error::Invalid { key, origin, message: kind.to_string() },
        }
    }
}

fn origin_from_metadata(metadata: &Metadata, path: &[&str]) -> Origin {
    if let Some(Source::File(file)) = &metadata.source {
        return Origin::File(file.clone());
    }
    if metadata.name == ENV_NAME {
        return Origin::Env(metadata.interpolate(&Profile::Default, path));
    }
    match metadata.name.strip_prefix(FLAG_PREFIX) {
        Some(flag) => Origin::Flag(flag.to_owned()),
        None => Origin::Default,
    }
}

/// `["net", "listen", "0"]` becomes `net.listen[0]`.
fn render_key(path: &[&str]) -> String {
    let mut key = String::new();
    for part in path {
        if part.parse::<usize>().is_ok() {
            key.push_str(&format!("[{part}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(part);
        }
    }
    key
}

fn render_actual(actual: &Actual) -> String {
    match actual {
        Actual::Str(text) => format!("{text:?}"),
        Actual::Bool(value) => value.to_string(),
        Actual::Unsigned(value) => value.to_string(),
        Actual::Signed(value) => value.to_string(),
        Actual::Float(value) => value.to_string(),
        Actual::Char(value) => format!("{value:?}"),
        Actual::Seq => "(a list)".to_owned(),
        Actual::Map => "(a table)".to_owned(),
        other => format!("({other})"),
    }
}

/// Serde names primitive types by their Rust names; say what they mean instead.
fn humanize_expected(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".to_owned(),
        "struct NetConfig" | "struct NodeConfig" | "struct StoreConfig" | "struct BlobsConfig"
        | "struct SyncConfig" | "struct ApiConfig" | "struct LogConfig" | "struct Config" => {
            "a table".to_owned()
        }
        other => other.to_owned(),
    }
}

fn one_of(expected: &[&str]) -> String {
    match expected {
        [] => "no keys here".to_owned(),
        [one] => format!("`{one}`"),
        many => format!("one of {}", many.join(", ")),
    }
}

fn is_same_file(config_file: Option<&Path>, data_dir_file: &Path) -> bool {
    let Some(config_file) = config_file else { return false };
    match (config_file.canonicalize(), data_dir_file.canonicalize()) {
        (Ok(left), Ok(right)) => left == right,
        _ => false,
    }
}

/// Creates the data dir private (0700 on Unix, whatever the umask).
fn create_data_dir(data_dir: &Path, resolver: &Resolver<'_>) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(data_dir).map_err(|source| Error::CreateDataDir {
        path: data_dir.to_owned(),
        origin: resolver.origin("node.data_dir"),
        source,
    })
}

fn leaves(config: &Config, resolver: &Resolver<'_>) -> Result<Vec<Leaf>> {
    let table = crate::template::to_table(config)?;
    let mut leaves = Vec::new();
    for section in &Config::SECTIONS {
        for field in section.fields {
            let Some(value) = table.get(section.name).and_then(|s| s.get(field.name)) else {
                continue;
            };
            let key = format!("{}.{}", section.name, field.name);
            let origin = resolver.origin(&key);
            leaves.push(Leaf { key, value: value.to_string(), origin });
        }
    }
    Ok(leaves)
}
