//! `cosmic-node identity`: the author identities in the data dir's keystore.
//!
//! The passphrase comes from `COSMIC_PASSPHRASE` when it is set (for scripts), otherwise
//! from a prompt on the terminal that does not echo.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use cosmic_auth::Keystore;
use zeroize::Zeroizing;

use cosmic_node::Identity;

use crate::output;

/// Name of the keystore folder inside the data dir.
const KEYSTORE_DIR: &str = "keystore";

/// The environment variable a script sets to give the passphrase.
const PASSPHRASE_ENV: &str = "COSMIC_PASSPHRASE";

#[derive(Debug, Subcommand)]
pub(crate) enum IdentityCommand {
    /// Create a new author identity, its secret encrypted under a passphrase
    Create {
        /// Local name of the identity (letters, digits, '-', '_', '.')
        alias: String,
    },
    /// List the author identities with their author ids
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Write an identity, still encrypted, to a file
    Export {
        /// The identity to export
        alias: String,
        /// Where to write it (created with mode 0600; must not exist)
        file: PathBuf,
    },
    /// Add an identity written by `identity export`
    Import {
        /// Local name to give it
        alias: String,
        /// The exported file
        file: PathBuf,
    },
}

/// Unlocks the keystore identities `aliases` of `data_dir` for a run of the node, each
/// with the passphrase of `COSMIC_PASSPHRASE` or, without it, one asked on the terminal.
/// A missing identity, a wrong passphrase or a damaged file stops it with that reason.
pub(crate) fn unlock(data_dir: &Path, aliases: &[String]) -> anyhow::Result<Vec<Identity>> {
    if aliases.is_empty() {
        return Ok(Vec::new());
    }
    let keystore = Keystore::open(data_dir.join(KEYSTORE_DIR)).context("opening the keystore")?;
    let mut identities: Vec<Identity> = Vec::with_capacity(aliases.len());
    for alias in aliases {
        if identities.iter().any(|identity| identity.alias == *alias) {
            bail!("identity {alias:?} is named twice");
        }
        let passphrase = match passphrase_from_env()? {
            Some(passphrase) => passphrase,
            None => prompt(&format!("passphrase for {alias}: "))?,
        };
        let key = keystore
            .unlock(alias, &passphrase)
            .with_context(|| format!("unlocking identity {alias:?}"))?;
        identities.push(Identity { alias: alias.clone(), key });
    }
    Ok(identities)
}

pub(crate) fn run(data_dir: &Path, command: IdentityCommand) -> anyhow::Result<()> {
    let keystore = Keystore::open(data_dir.join(KEYSTORE_DIR)).context("opening the keystore")?;
    match command {
        IdentityCommand::Create { alias } => {
            let passphrase = new_passphrase()?;
            let key = keystore
                .create(&alias, &passphrase)
                .with_context(|| format!("creating identity {alias:?}"))?;
            output::line(&format!("created {alias} {}", key.public()));
        }
        IdentityCommand::List { json } => {
            let listing = keystore.list().context("listing identities")?;
            for damaged in &listing.damaged {
                output::warning(&format!("skipped a damaged identity file: {damaged}"));
            }
            let identities = listing.identities;
            if json {
                let rows: Vec<_> = identities
                    .iter()
                    .map(|info| serde_json::json!({"alias": info.alias, "author": info.public.to_string()}))
                    .collect();
                output::line(&serde_json::to_string_pretty(&rows).context("encoding JSON")?);
            } else {
                for info in identities {
                    output::line(&format!("{} {}", info.alias, info.public));
                }
            }
        }
        IdentityCommand::Export { alias, file } => {
            let bytes = keystore.export(&alias).with_context(|| format!("exporting {alias:?}"))?;
            write_private_new(&file, &bytes)?;
            output::line(&format!("exported {alias} to {}", file.display()));
        }
        IdentityCommand::Import { alias, file } => {
            let bytes = fs_err::read(&file)?;
            let public = keystore
                .import(&alias, &bytes)
                .with_context(|| format!("importing {} as {alias:?}", file.display()))?;
            output::line(&format!("imported {alias} {public}"));
        }
    }
    Ok(())
}

/// A passphrase for a new secret: from the environment, or asked twice on the terminal.
fn new_passphrase() -> anyhow::Result<Zeroizing<String>> {
    if let Some(passphrase) = passphrase_from_env()? {
        return Ok(passphrase);
    }
    let first = prompt("new passphrase: ")?;
    let second = prompt("repeat passphrase: ")?;
    if *first != *second {
        bail!("the two passphrases differ");
    }
    Ok(first)
}

fn passphrase_from_env() -> anyhow::Result<Option<Zeroizing<String>>> {
    match std::env::var(PASSPHRASE_ENV) {
        Ok(value) if value.is_empty() => bail!("{PASSPHRASE_ENV} is set but empty"),
        Ok(value) => Ok(Some(Zeroizing::new(value))),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => bail!("{PASSPHRASE_ENV} is not valid UTF-8"),
    }
}

fn prompt(text: &str) -> anyhow::Result<Zeroizing<String>> {
    let passphrase = rpassword::prompt_password(text).with_context(|| {
        format!("cannot read a passphrase from the terminal; set {PASSPHRASE_ENV} instead")
    })?;
    let passphrase = Zeroizing::new(passphrase);
    if passphrase.is_empty() {
        bail!("the passphrase is empty");
    }
    Ok(passphrase)
}

fn write_private_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}
