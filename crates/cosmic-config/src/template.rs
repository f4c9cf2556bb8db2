//! The commented `cosmic.toml` that `cosmic-node init` writes, generated from the schema's
//! doc comments and `Config::default()` so that it cannot drift from the code.

use crate::{
    Config,
    error::{Error, Origin, Result},
};

/// The header of the generated file.
const HEADER: &str = "\
# CosmicSyncCore node configuration.
#
# Every key is commented out and shows its default: uncomment a line to change it.
# Precedence, lowest first: built-in defaults < this file < --config FILE
# < COSMIC_* environment variables (COSMIC_NET__LISTEN, COSMIC_LOG__FORMAT) < flags.
# Durations are strings such as \"30s\", \"5m\" or \"1h\"; sizes are integers in bytes.
# `cosmic-node config show` prints the effective value of every key and where it came from.
";

/// The text of a commented `cosmic.toml` with every key at its default.
///
/// `node.data_dir` is described but has no key line: this file lives in the data dir and
/// cannot move it.
pub fn commented_defaults() -> String {
    let defaults = to_table(&Config::default()).unwrap_or_default();
    let mut out = String::from(HEADER);
    for section in &Config::SECTIONS {
        out.push('\n');
        for line in section.doc {
            push_comment(&mut out, line);
        }
        out.push_str(&format!("[{}]\n", section.name));
        for field in section.fields {
            out.push('\n');
            let is_data_dir = section.name == "node" && field.name == "data_dir";
            if is_data_dir {
                out.push_str("# `data_dir` is not read from this file.\n");
            }
            for line in field.doc {
                if !line.trim_start().starts_with("Default:") {
                    push_comment(&mut out, line);
                }
            }
            let value = defaults.get(section.name).and_then(|table| table.get(field.name));
            if let (false, Some(value)) = (is_data_dir, value) {
                out.push_str(&format!("# {} = {value}", field.name));
                if let Some(note) = default_note(field.doc) {
                    out.push_str(&format!("  # {note}"));
                }
                out.push('\n');
            }
        }
    }
    out
}

/// The words after the value on a field's `Default:` line, such as `1 MiB` from
/// ``Default: `1048576` (1 MiB).``, shown beside the key line.
fn default_note(doc: &[&'static str]) -> Option<&'static str> {
    let line = doc.iter().find_map(|line| line.trim_start().strip_prefix("Default:"))?;
    let (_, after_value) = line.trim_start().strip_prefix('`')?.split_once('`')?;
    let note = after_value.trim().trim_end_matches('.').trim();
    let note = note.strip_prefix('(').and_then(|n| n.strip_suffix(')')).unwrap_or(note);
    (!note.is_empty()).then_some(note)
}

fn push_comment(out: &mut String, line: &str) {
    let line = line.strip_prefix(' ').unwrap_or(line);
    if line.is_empty() {
        out.push_str("#\n");
    } else {
        out.push_str(&format!("# {line}\n"));
    }
}

/// The configuration as a TOML table, for the template and for `explain`.
pub(crate) fn to_table(config: &Config) -> Result<toml::Table> {
    toml::Table::try_from(config).map_err(|error| Error::Invalid {
        key: String::new(),
        origin: Origin::Default,
        message: format!("cannot write the configuration as TOML: {error}"),
    })
}
