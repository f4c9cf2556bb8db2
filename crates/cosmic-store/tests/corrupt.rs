//! A damaged database file is an error naming the file and a way out, never a panic.

#![allow(clippy::unwrap_used, reason = "a test fails loudly, helpers included")]

use std::path::Path;

use cosmic_auth::{AuthorKey, PublicKey, SpaceKey, SpaceMode};
use cosmic_store::{Error, Options, Store, Value};

const DOCS: usize = 300;

/// A store with some documents in it, closed; returns its space.
fn fill(path: &Path) -> PublicKey {
    let store = Store::open(path, Options::default()).unwrap();
    let space = store.create_space(&SpaceKey::from_secret_bytes(&[1; 32]), SpaceMode::Open);
    let space = space.unwrap().space;
    let author = AuthorKey::from_secret_bytes(&[2; 32]);
    for i in 0..DOCS {
        let fields = vec![
            ("n".to_owned(), Value::Int(i as i64)),
            ("pad".to_owned(), Value::String("x".repeat(300))),
        ];
        store.write(&author, &space, &format!("doc-{i:04}"), fields).unwrap();
    }
    space
}

/// Everything a node does with its store right after opening it.
fn use_store(path: &Path, space: &PublicKey) -> cosmic_store::Result<()> {
    let store = Store::open(path, Options::default())?;
    for i in 0..DOCS {
        store.get_doc(space, &format!("doc-{i:04}"))?;
    }
    store.list_spaces()?;
    store.fingerprint(space, None, None)?;
    store.changes_since(space, 0, 10_000)?;
    store.write(
        &AuthorKey::from_secret_bytes(&[3; 32]),
        space,
        "after",
        vec![("f".into(), Value::Int(1))],
    )?;
    Ok(())
}

fn damage(name: &str, bytes: &mut Vec<u8>) {
    let len = bytes.len();
    match name {
        "truncated-to-half" => bytes.truncate(len / 2),
        "truncated-to-100-bytes" => bytes.truncate(100),
        "garbage-header" => {
            bytes.iter_mut().take(4096).enumerate().for_each(|(i, b)| *b = (i * 31 % 251) as u8)
        }
        "zeroed-header" => bytes.iter_mut().take(4096).for_each(|b| *b = 0),
        "flipped-middle" => {
            bytes[len / 2 - 8192..len / 2 + 8192].iter_mut().for_each(|b| *b ^= 0xff)
        }
        "flipped-everywhere" => bytes.iter_mut().step_by(97).for_each(|b| *b ^= 0x10),
        other => unreachable!("{other}"),
    }
}

const DAMAGES: [&str; 6] = [
    "truncated-to-half",
    "truncated-to-100-bytes",
    "garbage-header",
    "zeroed-header",
    "flipped-middle",
    "flipped-everywhere",
];

#[test]
fn damaged_files_are_errors_naming_the_file_and_a_way_out() {
    for name in DAMAGES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let space = fill(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        damage(name, &mut bytes);
        std::fs::write(&path, &bytes).unwrap();

        let result = std::panic::catch_unwind(|| use_store(&path, &space));
        let error = match result {
            Err(_) => panic!("{name}: the store panicked on a damaged file"),
            Ok(Ok(())) => panic!("{name}: the damage went unnoticed"),
            Ok(Err(error)) => error,
        };
        assert!(matches!(error, Error::Corrupted { .. }), "{name}: {error:?}");
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{name}: {message}");
        assert!(message.contains("move the file aside"), "{name}: {message}");
        // The damaged file is left as it was, for whoever wants to look at it.
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name}: the file was changed");

        // The way out works: with the file moved aside, a fresh store opens and writes.
        std::fs::rename(&path, dir.path().join("store.redb.damaged")).unwrap();
        let store = Store::open(&path, Options::default()).unwrap();
        let space = store.create_space(&SpaceKey::from_secret_bytes(&[1; 32]), SpaceMode::Open);
        let space = space.unwrap().space;
        store
            .write(
                &AuthorKey::from_secret_bytes(&[2; 32]),
                &space,
                "d",
                vec![("f".into(), Value::Int(1))],
            )
            .unwrap();
    }
}

#[test]
fn an_intact_file_passes_the_same_checks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let space = fill(&path);
    use_store(&path, &space).unwrap();
    let store = Store::open(&path, Options::default()).unwrap();
    assert_eq!(store.get_doc(&space, "doc-0123").unwrap().unwrap()["n"].value, Value::Int(123));
}
