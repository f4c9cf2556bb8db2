//! Tidy checks: the rules of the workspace that the compiler does not enforce.
//!
//! - Layering: a crate depends only on crates of a lower level (docs/ARCHITECTURE.md).
//! - Docs: every source file under a crate's `src/` opens with a `//!` comment, and
//!   `docs/ARCHITECTURE.md` names every crate of the workspace and no file that is gone.
//! - Dependencies: every member takes each dependency from `[workspace.dependencies]`
//!   (`workspace = true`), so each version is stated once.
//! - Lock floors: versions of dependencies with known advisories are at or above the fix.
//! - Length (`tidy/lengths.rs`): no source file over 600 lines and no function over 80,
//!   but those listed, and the lists only shrink.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use self::lengths::{
    LONG_FILES, LONG_FUNCTIONS, MAX_FILE_LINES, MAX_FN_LINES, check_lengths, function_lengths,
};

mod lengths;

/// The level of every layered crate (docs/ARCHITECTURE.md). A crate may depend only on crates of a
/// strictly lower level; `cosmic-tests` and `xtask` stand outside the layers.
pub(crate) const LEVELS: &[(&str, u8)] = &[
    ("cosmic-events", 1),
    ("cosmic-config", 1),
    ("cosmic-auth", 2),
    ("cosmic-net", 3),
    ("cosmic-store", 3),
    ("cosmic-blobs", 3),
    ("cosmic-sync", 4),
    ("cosmic-node", 5),
];

/// Members that are not layers: tests may use every crate; xtask uses none.
const OUTSIDE_LAYERS: &[&str] = &["cosmic-tests", "xtask"];

/// Minimum versions forced by security advisories of 2026:
/// remote memory growth in gossipsub and a remote panic in yamux.
pub(crate) const LOCK_FLOORS: &[(&str, &str)] =
    &[("libp2p-gossipsub", "0.49.5"), ("yamux", "0.13.10"), ("redb", "4.3.0")];

/// How many packages Cargo.lock may hold in more than one version (libp2p, iroh and the
/// RustCrypto crates move at different paces, and Windows-only packages count too). The
/// number only falls: a change that brings a new duplicate fails tidy, and one that
/// removes some must lower it.
pub(crate) const MAX_DUPLICATED_PACKAGES: usize = 56;

/// Runs every tidy check; returns one message per problem found.
pub(crate) fn check_all(root: &Path, metadata: &str, lock: &str) -> anyhow::Result<Vec<String>> {
    let metadata: Value = serde_json::from_str(metadata).context("parsing cargo metadata")?;
    let members = workspace_members(&metadata)?;
    let mut problems = check_layering(&members);
    problems.extend(check_docs(root, &members)?);
    problems.extend(check_workspace_deps(&members)?);
    problems.extend(check_lock_floors(lock));
    problems.extend(check_duplicates(lock, MAX_DUPLICATED_PACKAGES));
    let mut lengths = Vec::new();
    let mut function_lines = Vec::new();
    for folder in ["crates", "xtask/src"] {
        let mut files = Vec::new();
        collect_rs_files(&root.join(folder), &mut files)?;
        for file in files {
            let relative = file.strip_prefix(root).unwrap_or(&file);
            let name: Vec<String> = relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned())
                .collect();
            // Tests (unit-test modules, integration tests, benches; the `tests/` package
            // is not scanned) may be long.
            if name.iter().any(|part| part == "tests" || part == "benches" || part == "tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let name = name.join("/");
            match function_lengths(&text) {
                Ok(functions) => functions.into_iter().for_each(|(function, lines)| {
                    function_lines.push((format!("{name}: fn {function}"), lines));
                }),
                Err(error) => problems.push(format!("{name}: cannot parse it: {error}")),
            }
            lengths.push((name, text.lines().count()));
        }
    }
    problems.extend(check_lengths(&lengths, LONG_FILES, MAX_FILE_LINES, "LONG_FILES"));
    problems.extend(check_lengths(&function_lines, LONG_FUNCTIONS, MAX_FN_LINES, "LONG_FUNCTIONS"));
    Ok(problems)
}

/// What tidy needs to know of one workspace member.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) manifest_path: String,
    /// Workspace crates it depends on (any kind: normal, dev, build).
    pub(crate) path_deps: Vec<String>,
}

fn workspace_members(metadata: &Value) -> anyhow::Result<Vec<Member>> {
    let packages = metadata["packages"].as_array().context("cargo metadata has no packages")?;
    let mut members = Vec::new();
    for package in packages {
        let name = package["name"].as_str().context("package without a name")?.to_owned();
        let manifest_path =
            package["manifest_path"].as_str().context("package without manifest")?.to_owned();
        let mut path_deps: Vec<String> = package["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|dep| dep.get("path").is_some_and(|path| !path.is_null()))
            .filter_map(|dep| dep["name"].as_str().map(str::to_owned))
            .collect();
        path_deps.sort();
        path_deps.dedup();
        members.push(Member { name, manifest_path, path_deps });
    }
    members.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(members)
}

fn level_of(name: &str) -> Option<u8> {
    LEVELS.iter().find(|(crate_name, _)| *crate_name == name).map(|(_, level)| *level)
}

/// Every dependency edge between workspace crates must point to a lower level.
pub(crate) fn check_layering(members: &[Member]) -> Vec<String> {
    let mut problems = Vec::new();
    for member in members {
        if OUTSIDE_LAYERS.contains(&member.name.as_str()) {
            if member.name == "xtask" && !member.path_deps.is_empty() {
                problems.push(format!(
                    "xtask -> {}: xtask must not depend on workspace crates",
                    member.path_deps.join(", ")
                ));
            }
            continue;
        }
        let Some(level) = level_of(&member.name) else {
            problems.push(format!(
                "{}: not in the level table; add it to LEVELS in xtask/src/tidy.rs and to \
                 docs/ARCHITECTURE.md",
                member.name
            ));
            continue;
        };
        for dep in &member.path_deps {
            let Some(dep_level) = level_of(dep) else {
                problems.push(format!(
                    "{} (L{level}) -> {dep}: {dep} is not a layered crate",
                    member.name
                ));
                continue;
            };
            let why = if dep_level == level {
                "same level"
            } else if dep_level > level {
                "higher level"
            } else {
                continue;
            };
            problems.push(format!("{} (L{level}) -> {dep} (L{dep_level}): {why}", member.name));
        }
    }
    problems
}

fn check_docs(root: &Path, members: &[Member]) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for member in members {
        let crate_dir =
            Path::new(&member.manifest_path).parent().context("manifest without dir")?;
        let src = crate_dir.join("src");
        let mut files = Vec::new();
        collect_rs_files(&src, &mut files)?;
        for file in files {
            // Unit-test modules sit beside the code they test; their parent documents them.
            if file.file_name().is_some_and(|name| name == "tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let first = text.lines().find(|line| !line.trim().is_empty()).unwrap_or("");
            if !first.starts_with("//!") {
                let shown = file.strip_prefix(root).unwrap_or(&file);
                problems.push(format!("{}: must open with a `//!` doc comment", shown.display()));
            }
        }
    }
    let architecture = root.join("docs/ARCHITECTURE.md");
    match std::fs::read_to_string(&architecture) {
        Ok(text) => {
            for member in members {
                if !text.contains(&format!("`{}`", member.name)) {
                    problems.push(format!(
                        "docs/ARCHITECTURE.md: does not name `{}` in its code map",
                        member.name
                    ));
                }
            }
            let mut files = Vec::new();
            collect_repo_files(root, root, &mut files)?;
            problems.extend(missing_paths("docs/ARCHITECTURE.md", &text, &files));
        }
        Err(error) => problems.push(format!("docs/ARCHITECTURE.md: cannot read it: {error}")),
    }
    Ok(problems)
}

/// Top-level folders of the repository: a backticked path that starts with one of them
/// names a file or folder of the repository.
const REPO_FOLDERS: &[&str] =
    &["crates/", "docs/", "xtask/", "tests/", "fuzz/", "clients/", "examples/", ".ci/"];

/// The files and folders a document names in backticks that the repository does not hold.
/// Checked: names of source and document files (`.rs`, `.md`, `.mjs`) and paths under the
/// repository's own folders; a short name such as `feed.rs` or `replicator/feed.rs` passes
/// when some file's path ends with it, a folder's name when some file's path holds it.
/// `files` are repository paths, `/`-separated.
pub(crate) fn missing_paths(document: &str, text: &str, files: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (index, span) in text.split('`').enumerate() {
        // Odd pieces lie between backticks.
        if index % 2 == 0 || !seen.insert(span) {
            continue;
        }
        let path_like = !span.is_empty()
            && span.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"_./-".contains(&byte));
        let checked = [".rs", ".md", ".mjs"].iter().any(|ext| span.ends_with(ext))
            || REPO_FOLDERS.iter().any(|folder| span.starts_with(folder));
        if !path_like || !checked {
            continue;
        }
        // A file, or a folder (with or without its final `/`) that holds a file.
        let folder = format!("{}/", span.trim_end_matches('/'));
        let found = files.iter().any(|file| {
            file == span
                || file.ends_with(&format!("/{span}"))
                || file.starts_with(&folder)
                || file.contains(&format!("/{folder}"))
        });
        if !found {
            problems
                .push(format!("{document}: names `{span}`, which the repository does not hold"));
        }
    }
    problems
}

/// Every file under `dir` as a path relative to `root`, `/`-separated; build output,
/// installed packages and version control are left out.
fn collect_repo_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default();
        if path.is_dir() {
            if !["target", "node_modules", ".git"].iter().any(|skip| name == *skip) {
                collect_repo_files(root, &path, out)?;
            }
        } else if let Ok(relative) = path.strip_prefix(root) {
            let parts: Vec<String> = relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into())
                .collect();
            out.push(parts.join("/"));
        }
    }
    Ok(())
}

fn collect_rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            collect_rs_files(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
    out.sort();
    Ok(())
}

fn check_workspace_deps(members: &[Member]) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for member in members {
        let text = std::fs::read_to_string(&member.manifest_path)
            .with_context(|| format!("reading {}", member.manifest_path))?;
        for dep in deps_not_from_workspace(&text) {
            problems.push(format!(
                "{}: dependency `{dep}` must come from [workspace.dependencies] \
                 (`{dep}.workspace = true`)",
                member.name
            ));
        }
    }
    Ok(problems)
}

/// Names of dependencies in a member manifest that do not say `workspace = true`.
pub(crate) fn deps_not_from_workspace(manifest: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            let header = line.trim_matches(|c| c == '[' || c == ']');
            in_deps = header == "dependencies"
                || header == "dev-dependencies"
                || header == "build-dependencies"
                || (header.starts_with("target.") && header.ends_with("dependencies"));
            continue;
        }
        if !in_deps || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let key = key.trim();
        if key.ends_with(".workspace") {
            continue;
        }
        if key.contains('.') {
            // `name.features = [...]` and friends refine an entry stated elsewhere.
            continue;
        }
        let value: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        if !value.contains("workspace=true") {
            found.push(key.to_owned());
        }
    }
    found
}

/// The versions Cargo.lock holds of each package.
fn locked_versions(lock: &str) -> BTreeMap<&str, Vec<&str>> {
    let mut locked: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut name = None;
    for line in lock.lines() {
        if line == "[[package]]" {
            name = None;
        } else if let Some(value) = line.strip_prefix("name = ") {
            name = Some(value.trim_matches('"'));
        } else if let (Some(package), Some(value)) = (name, line.strip_prefix("version = ")) {
            let versions = locked.entry(package).or_default();
            let version = value.trim_matches('"');
            if !versions.contains(&version) {
                versions.push(version);
            }
        }
    }
    locked
}

/// The packages locked in more than one version number no more than `most`, and no fewer
/// either (then `most`, [`MAX_DUPLICATED_PACKAGES`], must come down).
pub(crate) fn check_duplicates(lock: &str, most: usize) -> Vec<String> {
    let duplicated: Vec<&str> = locked_versions(lock)
        .into_iter()
        .filter(|(_, versions)| versions.len() > 1)
        .map(|(package, _)| package)
        .collect();
    let count = duplicated.len();
    match count.cmp(&most) {
        std::cmp::Ordering::Greater => vec![format!(
            "Cargo.lock: {count} packages in more than one version, more than the {most} \
             MAX_DUPLICATED_PACKAGES allows (`cargo tree -d` shows who wants which): {}",
            duplicated.join(", ")
        )],
        std::cmp::Ordering::Less => vec![format!(
            "Cargo.lock: {count} packages in more than one version, fewer than {most}: lower \
             MAX_DUPLICATED_PACKAGES in xtask/src/tidy.rs to {count} (the number only falls)"
        )],
        std::cmp::Ordering::Equal => Vec::new(),
    }
}

/// Every locked version of a package named in [`LOCK_FLOORS`] is at least its floor.
pub(crate) fn check_lock_floors(lock: &str) -> Vec<String> {
    let locked = locked_versions(lock);
    let mut problems = Vec::new();
    for (package, floor) in LOCK_FLOORS {
        for version in locked.get(package).into_iter().flatten() {
            if parse_version(version) < parse_version(floor) {
                let mut message = String::new();
                let _ = write!(
                    message,
                    "Cargo.lock: {package} {version} is below {floor}, which fixes a \
                     security advisory; run `cargo update -p {package}`"
                );
                problems.push(message);
            }
        }
    }
    problems
}

fn parse_version(version: &str) -> Vec<u64> {
    version.split(['.', '-', '+']).take(3).map(|part| part.parse().unwrap_or(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, deps: &[&str]) -> Member {
        Member {
            name: name.to_owned(),
            manifest_path: String::new(),
            path_deps: deps.iter().map(|dep| (*dep).to_owned()).collect(),
        }
    }

    #[test]
    fn downward_edges_pass() {
        let members = [
            member("cosmic-node", &["cosmic-sync", "cosmic-events"]),
            member("cosmic-sync", &["cosmic-net", "cosmic-store", "cosmic-blobs"]),
            member("cosmic-store", &["cosmic-auth"]),
            member("cosmic-tests", &["cosmic-node"]),
        ];
        assert_eq!(check_layering(&members), Vec::<String>::new());
    }

    #[test]
    fn same_level_and_upward_edges_are_named() {
        let members = [
            member("cosmic-store", &["cosmic-net", "cosmic-sync"]),
            member("cosmic-events", &["cosmic-config"]),
            member("cosmic-extra", &[]),
            member("xtask", &["cosmic-events"]),
        ];
        assert_eq!(
            check_layering(&members),
            [
                "cosmic-store (L3) -> cosmic-net (L3): same level",
                "cosmic-store (L3) -> cosmic-sync (L4): higher level",
                "cosmic-events (L1) -> cosmic-config (L1): same level",
                "cosmic-extra: not in the level table; add it to LEVELS in xtask/src/tidy.rs \
                 and to docs/ARCHITECTURE.md",
                "xtask -> cosmic-events: xtask must not depend on workspace crates",
            ]
        );
    }

    #[test]
    fn deps_must_come_from_the_workspace() {
        let manifest = r#"
[package]
name = "x"
version = "1.0.0"

[dependencies]
tokio = { workspace = true, features = ["sync"] }
serde.workspace = true
serde.features = ["derive"]
rand = "0.10"
cosmic-auth = { path = "../cosmic-auth" }

[dev-dependencies]
# a comment
tempfile = { version = "3" }

[features]
default = []
"#;
        assert_eq!(deps_not_from_workspace(manifest), ["rand", "cosmic-auth", "tempfile"]);
    }

    #[test]
    fn documents_may_name_only_files_that_exist() {
        let files: Vec<String> = ["crates/cosmic-sync/src/replicator/feed.rs", "docs/API.md"]
            .iter()
            .map(|file| (*file).to_owned())
            .collect();
        let text = "The feed (`replicator/feed.rs`, `feed.rs`) in `crates/cosmic-sync/`, \
                    `src/replicator`, see `docs/API.md`; gone: `replicator/old.rs`, `docs/OLD.md`, `crates/none/`. \
                    Not paths: `cosmic.toml`, `Store::open`, `a b.rs`, `blobs/`.";
        assert_eq!(
            missing_paths("X.md", text, &files),
            [
                "X.md: names `replicator/old.rs`, which the repository does not hold",
                "X.md: names `docs/OLD.md`, which the repository does not hold",
                "X.md: names `crates/none/`, which the repository does not hold",
            ]
        );
    }

    #[test]
    fn duplicated_packages_may_not_grow_and_must_be_counted_down() {
        let lock = "[[package]]\nname = \"syn\"\nversion = \"1.0.0\"\n\n\
                    [[package]]\nname = \"syn\"\nversion = \"2.0.0\"\n\n\
                    [[package]]\nname = \"once\"\nversion = \"1.0.0\"\n";
        assert!(check_duplicates(lock, 1).is_empty());
        let grown = check_duplicates(lock, 0);
        assert_eq!(grown.len(), 1);
        assert!(grown[0].starts_with("Cargo.lock: 1 packages in more than one version, more"));
        assert!(grown[0].ends_with(": syn"), "{grown:?}");
        let shrunk = check_duplicates(lock, 2);
        assert!(shrunk[0].contains("lower MAX_DUPLICATED_PACKAGES in xtask/src/tidy.rs to 1"));
    }

    #[test]
    fn lock_floors_catch_old_versions() {
        let lock = "[[package]]\nname = \"yamux\"\nversion = \"0.13.9\"\n\n\
                    [[package]]\nname = \"yamux\"\nversion = \"0.14.1\"\n\n\
                    [[package]]\nname = \"libp2p-gossipsub\"\nversion = \"0.50.1\"\n";
        assert_eq!(
            check_lock_floors(lock),
            ["Cargo.lock: yamux 0.13.9 is below 0.13.10, which fixes a security advisory; \
              run `cargo update -p yamux`"]
        );
        assert!(
            check_lock_floors("[[package]]\nname = \"yamux\"\nversion = \"0.13.10\"\n").is_empty()
        );
    }
}
