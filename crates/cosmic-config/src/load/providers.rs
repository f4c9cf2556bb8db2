//! The layers' providers: the defaults, the config file, `COSMIC_*` environment
//! variables and command-line flags, each one fixed dictionary with its metadata.

use super::*;

/// A provider of one fixed dictionary with fixed metadata: every layer is one of these.
#[derive(Debug, Clone)]
pub(super) struct DictProvider {
    metadata: Metadata,
    dict: Dict,
}

impl DictProvider {
    pub(super) fn new(metadata: Metadata, dict: Dict) -> Self {
        Self { metadata, dict }
    }

    pub(super) fn file(path: &Path, dict: Dict) -> Self {
        Self::new(Metadata::from("file", Source::File(path.to_owned())), dict)
    }
}

impl Provider for DictProvider {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> std::result::Result<Map<Profile, Dict>, figment::Error> {
        let mut map = Map::new();
        map.insert(Profile::Default, self.dict.clone());
        Ok(map)
    }
}

pub(super) fn defaults_dict() -> Result<Dict> {
    let invalid =
        |message: String| Error::Invalid { key: String::new(), origin: Origin::Default, message };
    Value::serialize(Config::default())
        .map_err(|error| invalid(error.to_string()))?
        .into_dict()
        .ok_or_else(|| invalid("the defaults are not a table".to_owned()))
}

pub(super) fn flag_provider(entry: &Override) -> DictProvider {
    let path: Vec<&str> = entry.key.split('.').collect();
    DictProvider::new(
        Metadata::named(format!("{FLAG_PREFIX}{}", entry.flag)),
        nest(&path, entry.value.clone()),
    )
}

/// Reads the `COSMIC_*__*` environment variables into one layer, or `None` if there are
/// none. A text key (a string or a path) takes the value verbatim, so `COSMIC_NODE__DATA_DIR=1`
/// is the directory `1`; any other value is parsed as figment parses env values: `[a, b]`
/// is a list, `true` a bool, `5` a number, anything else a string.
pub(super) fn env_provider() -> Result<Option<DictProvider>> {
    let mut dict = Dict::new();
    let mut names = BTreeMap::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
        if !rest.contains(ENV_SEPARATOR) {
            continue;
        }
        let value =
            value.into_string().map_err(|_| Error::NotUnicodeEnv { name: name.to_owned() })?;
        let path: Vec<String> = rest.split(ENV_SEPARATOR).map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            return Err(Error::UnknownKey {
                key: path.join("."),
                origin: Origin::Env(name.to_owned()),
                expected: "a key such as COSMIC_NET__LISTEN, with levels separated by one `__`"
                    .to_owned(),
            });
        }
        let value = if is_text_key(&path) {
            Value::from(value)
        } else {
            Value::from_str(&value).unwrap_or_else(|_| Value::from(value.clone()))
        };
        let path_refs: Vec<&str> = path.iter().map(String::as_str).collect();
        insert(&mut dict, &path_refs, value);
        names.insert(path.join("."), name.to_owned());
    }
    if names.is_empty() {
        return Ok(None);
    }
    let names = Arc::new(names);
    let metadata = Metadata::named(ENV_NAME)
        .interpolater(move |_: &Profile, path: &[&str]| env_name(&names, path));
    Ok(Some(DictProvider::new(metadata, dict)))
}

/// Whether `path` (`[section, field]`) names a text field of the schema.
pub(super) fn is_text_key(path: &[String]) -> bool {
    let [section, field] = path else { return false };
    crate::schema::Config::SECTIONS
        .iter()
        .any(|doc| doc.name == section && doc.fields.iter().any(|f| f.name == field && f.is_text()))
}

/// The variable that set `path`: itself, or the variable below it (`COSMIC_FOO__BAR` for
/// the unknown key `foo`), or the one above it.
pub(super) fn env_name(names: &BTreeMap<String, String>, path: &[&str]) -> String {
    let key = path.join(".");
    if let Some(name) = names.get(&key) {
        return name.clone();
    }
    let below = format!("{key}.");
    if let Some((_, name)) = names.iter().find(|(known, _)| known.starts_with(&below)) {
        return name.clone();
    }
    if let Some((_, name)) = names.iter().find(|(known, _)| key.starts_with(&format!("{known}."))) {
        return name.clone();
    }
    format!("{ENV_PREFIX}{}", path.join(ENV_SEPARATOR).to_ascii_uppercase())
}

pub(super) fn nest(path: &[&str], value: Value) -> Dict {
    let mut dict = Dict::new();
    insert(&mut dict, path, value);
    dict
}

pub(super) fn insert(dict: &mut Dict, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let entry = dict.entry((*first).to_owned()).or_insert_with(|| Value::from(Dict::new()));
            if entry.as_dict().is_none() {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

pub(super) fn dict_has(dict: &Dict, path: &[&str]) -> bool {
    match path {
        [] => true,
        [first, rest @ ..] => match dict.get(*first) {
            Some(Value::Dict(_, inner)) => dict_has(inner, rest),
            Some(_) => rest.is_empty(),
            None => false,
        },
    }
}

/// Reads and parses a TOML file; `Ok(None)` if it does not exist.
pub(super) fn read_toml(path: &Path) -> Result<Option<Dict>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        // A data dir that is not a directory yet has no file; `create_data_dir` reports it.
        Err(error)
            if matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) =>
        {
            return Ok(None);
        }
        Err(source) => return Err(Error::ReadFile { path: path.to_owned(), source }),
    };
    toml::from_str::<Dict>(&text).map(Some).map_err(|error| Error::InvalidToml {
        path: path.to_owned(),
        message: toml_message(&text, &error),
    })
}

/// The parser's message on one line, with the line and column it points at.
pub(super) fn toml_message(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().split_whitespace().collect::<Vec<_>>().join(" ");
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |last| last.chars().count()) + 1;
            format!("{message} at line {line} column {column}")
        }
        None => message,
    }
}
