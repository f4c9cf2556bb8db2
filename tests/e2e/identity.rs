//! `cosmic-node identity`: create, list, export and import author identities.

use crate::harness::{node_command, run_to_end};

fn identity(
    data_dir: &std::path::Path,
    args: &[&str],
) -> (std::process::ExitStatus, String, String) {
    let mut command = node_command();
    command.env("COSMIC_PASSPHRASE", "correct horse battery staple");
    command.arg("--data-dir").arg(data_dir).arg("identity").args(args);
    run_to_end(command)
}

#[test]
fn identities_move_between_data_dirs_in_encrypted_form() {
    let temp = tempfile::tempdir().unwrap();
    let a = temp.path().join("a");
    let b = temp.path().join("b");

    let (status, stdout, stderr) = identity(&a, &["create", "alice"]);
    assert!(status.success(), "stderr:\n{stderr}");
    let author = stdout.trim().strip_prefix("created alice ").expect("created line").to_owned();
    assert_eq!(author.len(), 52, "author id {author:?}");

    let (status, stdout, _) = identity(&a, &["list"]);
    assert!(status.success());
    assert_eq!(stdout.trim(), format!("alice {author}"));

    let exported = temp.path().join("alice.identity");
    let exported_str = exported.to_str().unwrap();
    let (status, _, stderr) = identity(&a, &["export", "alice", exported_str]);
    assert!(status.success(), "stderr:\n{stderr}");
    let bytes = std::fs::read(&exported).unwrap();
    assert!(!bytes.windows(4).any(|w| w == b"hors"), "the export must be encrypted");

    let (status, stdout, stderr) = identity(&b, &["import", "alice2", exported_str]);
    assert!(status.success(), "stderr:\n{stderr}");
    assert_eq!(stdout.trim(), format!("imported alice2 {author}"));

    // Creating the same alias twice, or importing a damaged file, is a clear error.
    let (status, _, stderr) = identity(&a, &["create", "alice"]);
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    let damaged = temp.path().join("damaged.identity");
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let (status, _, stderr) = identity(&b, &["import", "bob", damaged.to_str().unwrap()]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.starts_with("error:"), "stderr:\n{stderr}");
    let (_, stdout, _) = identity(&b, &["list"]);
    assert_eq!(stdout.trim(), format!("alice2 {author}"), "nothing half-imported");

    // A damaged file in the keystore is named on stderr and hides no other identity.
    std::fs::write(b.join("keystore").join("carol.identity"), b"not an identity").unwrap();
    let (status, stdout, stderr) = identity(&b, &["list"]);
    assert!(status.success(), "stderr:\n{stderr}");
    assert_eq!(stdout.trim(), format!("alice2 {author}"));
    assert!(stderr.contains("warning: skipped a damaged identity file"), "stderr:\n{stderr}");
    assert!(stderr.contains("carol.identity"), "stderr:\n{stderr}");
}
