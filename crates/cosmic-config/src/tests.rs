//! Precedence, origins, every kind of load error, and the commented template.
//!
//! Tests that read environment variables run inside figment's `Jail`, which serializes them
//! and restores the environment; every other test sets `ignore_env`. Every test points the
//! data dir at a temp dir so that nothing touches the real one.

use std::path::Path;

use expect_test::{Expect, expect, expect_file};
use figment::Jail;

use crate::{
    Config, FILE_NAME, Layer, LoadOptions, LogFormat, Origin, Overrides, Result,
    commented_defaults, load,
};

/// Options with the data dir set by `--data-dir` and the environment ignored.
fn options(data_dir: &Path) -> LoadOptions {
    LoadOptions { overrides: overrides(data_dir), ignore_env: true, ..LoadOptions::default() }
}

fn overrides(data_dir: &Path) -> Overrides {
    Overrides::default().set("node.data_dir", data_dir, "--data-dir").unwrap()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// The error message with the temp dir replaced by `[TMP]`.
fn check_error(result: Result<crate::Loaded>, tmp: &Path, expect: Expect) {
    let error = result.expect_err("load should fail");
    let message = error.to_string().replace(tmp.to_str().unwrap(), "[TMP]");
    assert!(!message.contains('\n'), "error messages are one line: {message}");
    expect.assert_eq(&message);
}

/// Runs `test` in figment's `Jail`: a temp working directory and an environment that is
/// restored afterwards, one jail at a time.
#[expect(clippy::result_large_err, reason = "figment's Jail fixes the error type")]
fn in_jail(test: impl FnOnce(&mut Jail)) {
    Jail::expect_with(|jail| {
        test(jail);
        Ok(())
    });
}

// Precedence: one test per adjacent pair of layers.

#[test]
fn defaults_are_used_when_nothing_is_set() {
    let tmp = tempfile::tempdir().unwrap();
    let loaded = load(&options(tmp.path())).unwrap();
    let expected =
        Config { node: crate::NodeConfig { data_dir: tmp.path().to_owned() }, ..Config::default() };
    assert_eq!(loaded.config, expected);
    assert_eq!(loaded.layers(), [Layer::Defaults, Layer::Flags]);
    assert!(tmp.path().is_dir());
}

#[test]
fn data_dir_file_overrides_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join(FILE_NAME), "[log]\nformat = \"json\"\n");
    let loaded = load(&options(tmp.path())).unwrap();
    assert_eq!(loaded.config.log.format, LogFormat::Json);
    assert_eq!(loaded.origin("log.format"), Some(&Origin::File(tmp.path().join(FILE_NAME))));
    assert_eq!(loaded.origin("log.filter"), Some(&Origin::Default));
    assert_eq!(
        loaded.layers(),
        [Layer::Defaults, Layer::File(tmp.path().join(FILE_NAME)), Layer::Flags]
    );
}

#[test]
fn config_file_overrides_data_dir_file() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join(FILE_NAME), "[log]\nfilter = \"debug\"\nformat = \"json\"\n");
    let config_file = tmp.path().join("other.toml");
    write(&config_file, "[log]\nfilter = \"warn\"\n");
    let loaded =
        load(&LoadOptions { config_file: Some(config_file.clone()), ..options(tmp.path()) })
            .unwrap();
    assert_eq!(loaded.config.log.filter, "warn");
    assert_eq!(loaded.config.log.format, LogFormat::Json, "lower layers still count");
    assert_eq!(loaded.origin("log.filter"), Some(&Origin::File(config_file.clone())));
    assert_eq!(
        loaded.layers(),
        [
            Layer::Defaults,
            Layer::File(tmp.path().join(FILE_NAME)),
            Layer::File(config_file),
            Layer::Flags
        ]
    );
}

#[test]
fn env_overrides_config_file() {
    in_jail(|jail| {
        let dir = jail.directory().to_owned();
        jail.create_file("config.toml", "[sync]\nmax_clock_drift = \"10m\"\n").unwrap();
        jail.set_env("COSMIC_SYNC__MAX_CLOCK_DRIFT", "2m");
        let loaded = load(&LoadOptions {
            config_file: Some(dir.join("config.toml")),
            overrides: overrides(&dir),
            ..LoadOptions::default()
        })
        .unwrap();
        assert_eq!(loaded.config.sync.max_clock_drift.as_secs(), 120);
        assert_eq!(
            loaded.origin("sync.max_clock_drift"),
            Some(&Origin::Env("COSMIC_SYNC__MAX_CLOCK_DRIFT".to_owned()))
        );
        assert!(loaded.layers().contains(&Layer::Env));
    });
}

#[test]
fn overrides_beat_env() {
    in_jail(|jail| {
        let dir = jail.directory().to_owned();
        jail.set_env("COSMIC_API__ADDR", "127.0.0.1:9000");
        let loaded = load(&LoadOptions {
            overrides: overrides(&dir).set("api.addr", "127.0.0.1:9001", "--api-addr").unwrap(),
            ..LoadOptions::default()
        })
        .unwrap();
        assert_eq!(loaded.config.api.addr.port(), 9001);
        assert_eq!(loaded.origin("api.addr"), Some(&Origin::Flag("--api-addr".to_owned())));
        assert_eq!(
            loaded.layers(),
            [Layer::Defaults, Layer::Env, Layer::Flags],
            "env counts as a source even when every value it set was overridden"
        );
    });
}

#[test]
fn overrides_take_typed_values() {
    let tmp = tempfile::tempdir().unwrap();
    let listen: Vec<multiaddr::Multiaddr> = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    let api: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let options = LoadOptions {
        overrides: overrides(tmp.path())
            .set("net.listen", &listen, "--listen")
            .unwrap()
            .set("api.addr", api, "--api")
            .unwrap()
            .set("sync.max_clock_drift", "90s", "--max-clock-drift")
            .unwrap(),
        ..options(tmp.path())
    };
    let loaded = load(&options).unwrap();
    assert_eq!(loaded.config.net.listen, listen);
    assert_eq!(loaded.config.api.addr, api);
    assert_eq!(loaded.config.sync.max_clock_drift.as_secs(), 90);
    assert_eq!(loaded.sources(), ["defaults", "flags"]);
    let explained = loaded.explain();
    let row = explained.iter().find(|row| row.key == "api.addr").unwrap();
    assert_eq!((row.value.as_str(), row.origin.as_str()), ("\"127.0.0.1:0\"", "flag --api"));
}

#[test]
fn data_dir_comes_from_env_and_its_file_is_read() {
    in_jail(|jail| {
        let dir = jail.directory().join("data");
        jail.set_env("COSMIC_NODE__DATA_DIR", dir.display());
        std::fs::create_dir(&dir).unwrap();
        write(&dir.join(FILE_NAME), "[net]\nmdns = false\n");
        let loaded = load(&LoadOptions::default()).unwrap();
        assert_eq!(loaded.config.node.data_dir, dir);
        assert!(!loaded.config.net.mdns);
        assert_eq!(
            loaded.origin("node.data_dir"),
            Some(&Origin::Env("COSMIC_NODE__DATA_DIR".to_owned()))
        );
    });
}

#[test]
fn data_dir_from_config_file_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("a/b");
    let config_file = tmp.path().join("config.toml");
    write(&config_file, &format!("[node]\ndata_dir = {:?}\n", data_dir.to_str().unwrap()));
    let loaded = load(&LoadOptions {
        config_file: Some(config_file),
        ignore_env: true,
        ..LoadOptions::default()
    })
    .unwrap();
    assert_eq!(loaded.config.node.data_dir, data_dir);
    assert!(data_dir.is_dir());
}

#[test]
fn config_file_may_be_the_data_dir_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join(FILE_NAME);
    write(&file, &format!("[node]\ndata_dir = {:?}\n", tmp.path().to_str().unwrap()));
    let loaded = load(&LoadOptions {
        config_file: Some(file.clone()),
        ignore_env: true,
        ..LoadOptions::default()
    })
    .unwrap();
    assert_eq!(loaded.layers(), [Layer::Defaults, Layer::File(file)]);
}

#[test]
fn env_lists_accept_brackets_or_one_value() {
    in_jail(|jail| {
        let dir = jail.directory().to_owned();
        jail.set_env("COSMIC_NET__LISTEN", "/ip4/127.0.0.1/tcp/0");
        jail.set_env("COSMIC_NET__BOOTSTRAP", format!("[{BOOTSTRAP}, {BOOTSTRAP}]"));
        // Not configuration: no `__` after the prefix.
        jail.set_env("COSMIC_PASSPHRASE", "secret");
        jail.set_env("COSMIC_NODE_BIN", "/bin/true");
        let loaded =
            load(&LoadOptions { overrides: overrides(&dir), ..LoadOptions::default() }).unwrap();
        let listen: Vec<String> = loaded.config.net.listen.iter().map(|a| a.to_string()).collect();
        assert_eq!(listen, ["/ip4/127.0.0.1/tcp/0"]);
        assert_eq!(loaded.config.net.bootstrap.len(), 2);
    });
}

const BOOTSTRAP: &str =
    "/ip4/198.51.100.7/tcp/4747/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

#[test]
fn explain_names_the_origin_of_every_value() {
    in_jail(|jail| {
        let dir = jail.directory().to_owned();
        write(&dir.join(FILE_NAME), "[net]\nmdns = false\n");
        jail.create_file("config.toml", "[sync]\nreconcile_interval = \"30s\"\n").unwrap();
        jail.set_env("COSMIC_LOG__FORMAT", "json");
        let loaded = load(&LoadOptions {
            config_file: Some(dir.join("config.toml")),
            overrides: overrides(&dir)
                .set("net.listen", ["/ip4/127.0.0.1/tcp/0"], "--listen")
                .unwrap(),
            ..LoadOptions::default()
        })
        .unwrap();
        let text: String = loaded
            .explain()
            .iter()
            .map(|e| format!("{} = {}  # {}\n", e.key, e.value, e.origin))
            .collect();
        let text = text.replace(dir.to_str().unwrap(), "[TMP]");
        expect![[r#"
            node.data_dir = "[TMP]"  # flag --data-dir
            net.listen = ["/ip4/127.0.0.1/tcp/0"]  # flag --listen
            net.bootstrap = []  # default
            net.mdns = false  # file [TMP]/cosmic.toml
            net.relay_client = true  # default
            net.autonat = true  # default
            net.max_connections = 256  # default
            net.max_connections_per_peer = 2  # default
            net.max_pending_connections = 64  # default
            net.idle_timeout = "1m"  # default
            net.max_message_size = 4194304  # default
            net.max_gossip_size = 2097152  # default
            net.ban_threshold = 10  # default
            net.ban_duration = "1h"  # default
            net.inbound_request_rate = 100  # default
            net.allow = []  # default
            net.block = []  # default
            store.max_value_size = 1048576  # default
            store.durability = "immediate"  # default
            store.cache_size = 67108864  # default
            store.author_quota = 1073741824  # default
            blobs.max_blob_size = 1073741824  # default
            blobs.fetch_timeout = "5m"  # default
            blobs.gc_interval = "1h"  # default
            blobs.default_fetch_policy = "lazy"  # default
            sync.max_clock_drift = "5m"  # default
            sync.reconcile_interval = "30s"  # file [TMP]/config.toml
            api.enabled = true  # default
            api.addr = "127.0.0.1:7878"  # default
            api.max_request_size = 4194304  # default
            log.format = "json"  # env COSMIC_LOG__FORMAT
            log.filter = "info"  # default
        "#]]
        .assert_eq(&text);
    });
}

// Errors: one test per kind.

#[test]
fn error_bad_multiaddr_in_file() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join(FILE_NAME), "[net]\nlisten = [\"/ip4/0.0.0.0/tcp/1\", \"foo\"]\n");
    check_error(
        load(&options(tmp.path())),
        tmp.path(),
        expect![[
            r#"invalid value "foo" for `net.listen[1]` from file [TMP]/cosmic.toml: expected a multiaddr such as /ip4/0.0.0.0/tcp/4747"#
        ]],
    );
}

#[test]
fn error_bad_multiaddr_in_env() {
    in_jail(|jail| {
        let dir = jail.directory().to_owned();
        jail.set_env("COSMIC_NET__LISTEN", "foo");
        let result = load(&LoadOptions { overrides: overrides(&dir), ..LoadOptions::default() });
        check_error(
            result,
            &dir,
            expect![[
                r#"invalid value "foo" for `net.listen` from env var COSMIC_NET__LISTEN: expected a multiaddr such as /ip4/0.0.0.0/tcp/4747"#
            ]],
        );
    });
}

#[test]
fn error_bootstrap_without_peer_id() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join(FILE_NAME), "[net]\nbootstrap = [\"/ip4/198.51.100.7/tcp/4747\"]\n");
    check_error(
        load(&options(tmp.path())),
        tmp.path(),
        expect![[
            r#"invalid value "/ip4/198.51.100.7/tcp/4747" for `net.bootstrap[0]` from file [TMP]/cosmic.toml: expected a multiaddr ending in /p2p/<peer id>, such as /ip4/198.51.100.7/tcp/4747/p2p/12D3KooW..."#
        ]],
    );
}

#[test]
fn error_bad_socket_addr_from_env() {
    in_jail(|jail| {
        let dir = jail.directory().to_owned();
        jail.set_env("COSMIC_API__ADDR", "localhost");
        let result = load(&LoadOptions { overrides: overrides(&dir), ..LoadOptions::default() });
        check_error(
            result,
            &dir,
            expect![[
                r#"invalid value "localhost" for `api.addr` from env var COSMIC_API__ADDR: expected a socket address such as 127.0.0.1:7878"#
            ]],
        );
    });
}

#[test]
fn error_out_of_range_from_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let options = LoadOptions {
        overrides: overrides(tmp.path())
            .set("net.max_connections", 0, "--max-connections")
            .unwrap(),
        ..options(tmp.path())
    };
    check_error(
        load(&options),
        tmp.path(),
        expect![
            "value 0 for `net.max_connections` from flag --max-connections is out of range: expected 1 to 65536"
        ],
    );
}

#[test]
fn error_negative_number_from_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let options = LoadOptions {
        overrides: overrides(tmp.path()).set("net.ban_threshold", -3, "--ban-threshold").unwrap(),
        ..options(tmp.path())
    };
    check_error(
        load(&options),
        tmp.path(),
        expect![
            "invalid value -3 for `net.ban_threshold` from flag --ban-threshold: expected a non-negative integer"
        ],
    );
}

#[test]
fn error_duration_out_of_range_and_unparsable() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join(FILE_NAME), "[sync]\nmax_clock_drift = \"0s\"\n");
    check_error(
        load(&options(tmp.path())),
        tmp.path(),
        expect![[
            r#"value "0s" for `sync.max_clock_drift` from file [TMP]/cosmic.toml is out of range: expected 1s to 1day"#
        ]],
    );
    write(&tmp.path().join(FILE_NAME), "[sync]\nmax_clock_drift = 300\n");
    check_error(
        load(&options(tmp.path())),
        tmp.path(),
        expect![[
            r#"invalid value 300 for `sync.max_clock_drift` from file [TMP]/cosmic.toml: expected a duration such as "30s", "5m" or "1h""#
        ]],
    );
}

#[test]
fn error_unknown_enum_value() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join(FILE_NAME), "[log]\nformat = \"xml\"\n");
    check_error(
        load(&options(tmp.path())),
        tmp.path(),
        expect![[
            r#"invalid value "xml" for `log.format` from file [TMP]/cosmic.toml: expected one of pretty, json"#
        ]],
    );
}

#[test]
fn error_value_too_large_for_gossip() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join(FILE_NAME), "[store]\nmax_value_size = 4194304\n");
    check_error(
        load(&options(tmp.path())),
        tmp.path(),
        expect![
            "value 4194304 for `store.max_value_size` from file [TMP]/cosmic.toml is out of range: expected at most 2031616 (`net.max_gossip_size` 2097152 from default minus 65536 bytes of entry overhead)"
        ],
    );
    // Raising the gossip size is not enough: request frames must carry the value too.
    let options = LoadOptions {
        overrides: overrides(tmp.path())
            .set("net.max_gossip_size", 2_097_152 * 4, "--max-gossip-size")
            .unwrap(),
        ..options(tmp.path())
    };
    check_error(
        load(&options),
        tmp.path(),
        expect![
            "value 4194304 for `store.max_value_size` from file [TMP]/cosmic.toml is out of range: expected at most 4128768 (`net.max_message_size` 4194304 from default minus 65536 bytes of entry overhead)"
        ],
    );
}

#[test]
fn error_gossip_size_too_small_for_values() {
    let tmp = tempfile::tempdir().unwrap();
    let options = LoadOptions {
        overrides: overrides(tmp.path())
            .set("net.max_gossip_size", 1_048_576, "--max-gossip-size")
            .unwrap(),
        ..options(tmp.path())
    };
    check_error(
        load(&options),
        tmp.path(),
        expect![
            "value 1048576 for `net.max_gossip_size` from flag --max-gossip-size is out of range: expected at least 1114112 (`store.max_value_size` 1048576 plus 65536 bytes of entry overhead)"
        ],
    );
}

#[test]
fn error_section_that_is_not_a_table() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join(FILE_NAME), "net = 5\n");
    check_error(
        load(&options(tmp.path())),
        tmp.path(),
        expect!["invalid value 5 for `net` from file [TMP]/cosmic.toml: expected a table"],
    );
}

#[test]
fn env_strings_with_commas_stay_strings() {
    in_jail(|jail| {
        let dir = jail.directory().to_owned();
        jail.set_env("COSMIC_LOG__FILTER", "info,cosmic_net=debug");
        let loaded =
            load(&LoadOptions { overrides: overrides(&dir), ..LoadOptions::default() }).unwrap();
        assert_eq!(loaded.config.log.filter, "info,cosmic_net=debug");
    });
}

#[test]
fn error_unknown_key_in_file() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join(FILE_NAME), "[net]\nlisen = []\n");
    check_error(
        load(&options(tmp.path())),
        tmp.path(),
        expect![
            "unknown key `net.lisen` in file [TMP]/cosmic.toml: expected one of listen, bootstrap, mdns, relay_client, autonat, max_connections, max_connections_per_peer, max_pending_connections, idle_timeout, max_message_size, max_gossip_size, ban_threshold, ban_duration, inbound_request_rate, allow, block"
        ],
    );
}

#[test]
fn error_unknown_section_in_file() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join(FILE_NAME), "[nett]\nlisten = []\n");
    check_error(
        load(&options(tmp.path())),
        tmp.path(),
        expect![
            "unknown key `nett` in file [TMP]/cosmic.toml: expected one of node, net, store, blobs, sync, api, log"
        ],
    );
}

#[test]
fn error_unknown_key_in_env() {
    in_jail(|jail| {
        let dir = jail.directory().to_owned();
        jail.set_env("COSMIC_FOO__BAR", "1");
        let result = load(&LoadOptions { overrides: overrides(&dir), ..LoadOptions::default() });
        check_error(
            result,
            &dir,
            expect![
                "unknown key `foo` in env var COSMIC_FOO__BAR: expected one of node, net, store, blobs, sync, api, log"
            ],
        );
    });
    in_jail(|jail| {
        let dir = jail.directory().to_owned();
        jail.set_env("COSMIC_LOG__FROMAT", "json");
        let result = load(&LoadOptions { overrides: overrides(&dir), ..LoadOptions::default() });
        check_error(
            result,
            &dir,
            expect![
                "unknown key `log.fromat` in env var COSMIC_LOG__FROMAT: expected one of format, filter"
            ],
        );
    });
}

#[test]
fn error_unknown_key_from_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let options = LoadOptions {
        overrides: overrides(tmp.path()).set("api.port", 1, "--api-port").unwrap(),
        ..options(tmp.path())
    };
    check_error(
        load(&options),
        tmp.path(),
        expect![
            "unknown key `api.port` in flag --api-port: expected one of enabled, addr, max_request_size"
        ],
    );
}

#[test]
fn error_data_dir_cannot_be_created() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    write(&file, "");
    let result = load(&options(&file.join("data")));
    let error = result.as_ref().err().unwrap();
    assert!(std::error::Error::source(error).is_some(), "the io error is the source");
    check_error(
        result,
        tmp.path(),
        expect![[
            r#"cannot create data dir "[TMP]/file/data" (`node.data_dir` from flag --data-dir)"#
        ]],
    );
}

#[test]
fn error_empty_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let options = LoadOptions {
        overrides: Overrides::default().set("node.data_dir", "", "--data-dir").unwrap(),
        ..options(tmp.path())
    };
    check_error(
        load(&options),
        tmp.path(),
        expect![[
            r#"invalid value "" for `node.data_dir` from flag --data-dir: expected a directory path"#
        ]],
    );
}

#[test]
fn error_data_dir_set_in_its_own_file() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join(FILE_NAME), "[node]\ndata_dir = \"/elsewhere\"\n");
    check_error(
        load(&options(tmp.path())),
        tmp.path(),
        expect![
            "`node.data_dir` cannot be set in file [TMP]/cosmic.toml, which is inside the data dir: expected it in a --config file, COSMIC_NODE__DATA_DIR or a flag"
        ],
    );
}

#[test]
fn error_missing_config_file() {
    let tmp = tempfile::tempdir().unwrap();
    let options =
        LoadOptions { config_file: Some(tmp.path().join("nope.toml")), ..options(tmp.path()) };
    check_error(
        load(&options),
        tmp.path(),
        expect![[r#"config file "[TMP]/nope.toml" does not exist"#]],
    );
}

#[test]
fn error_invalid_toml() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bad.toml");
    write(&file, "[net]\nmdns = \n");
    let options = LoadOptions { config_file: Some(file), ..options(tmp.path()) };
    check_error(
        load(&options),
        tmp.path(),
        expect![[
            r#"config file "[TMP]/bad.toml" is not valid TOML: string values must be quoted, expected literal string at line 2 column 8"#
        ]],
    );
}

#[test]
fn error_bad_peer_id_in_allow() {
    let tmp = tempfile::tempdir().unwrap();
    let options = LoadOptions {
        overrides: overrides(tmp.path()).set("net.allow", "not-a-peer-id", "--allow").unwrap(),
        ..options(tmp.path())
    };
    check_error(
        load(&options),
        tmp.path(),
        expect![[
            r#"invalid value "not-a-peer-id" for `net.allow[0]` from flag --allow: expected a base58 peer id such as 12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"#
        ]],
    );
}

#[test]
fn error_override_with_empty_key_segment() {
    let error = Overrides::default().set("net..listen", 1, "--x").unwrap_err();
    expect![
        "invalid override for `net..listen` from flag --x: expected a dotted key such as net.listen"
    ]
    .assert_eq(&error.to_string());
}

// The template.

#[test]
fn template_matches_the_committed_example() {
    expect_file!["../cosmic.example.toml"].assert_eq(&commented_defaults());
}

/// Uncommenting every key line of the template gives back the defaults.
#[test]
fn template_round_trips_to_defaults() {
    let template = commented_defaults();
    let mut n_keys = 0;
    let uncommented: String = template
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if is_key_line(rest) => {
                n_keys += 1;
                format!("{rest}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    let parsed: Config = toml::from_str(&uncommented).unwrap();
    assert_eq!(parsed, Config::default());
    let n_fields: usize = Config::SECTIONS.iter().map(|section| section.fields.len()).sum();
    assert_eq!(n_keys, n_fields - 1, "every key but node.data_dir has a line");
    assert!(!uncommented.contains("data_dir ="));
}

fn is_key_line(text: &str) -> bool {
    match text.split_once(" = ") {
        Some((key, _)) => {
            !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        }
        None => false,
    }
}

/// Every field's doc comment states its default, and the statement is true.
#[test]
fn docs_state_the_true_defaults() {
    let defaults = crate::template::to_table(&Config::default()).unwrap();
    for section in &Config::SECTIONS {
        for field in section.fields {
            let doc = field.doc.join("\n");
            assert!(doc.contains("Default:"), "{}.{} states no default", section.name, field.name);
            if section.name == "node" && field.name == "data_dir" {
                continue;
            }
            let value = &defaults[section.name][field.name];
            let stated = format!("Default: `{value}`");
            assert!(doc.contains(&stated), "{}.{}: doc lacks {stated:?}", section.name, field.name);
        }
    }
}

#[test]
fn numeric_looking_env_values_of_text_keys_stay_text() {
    in_jail(|jail| {
        let dir = jail.directory().to_owned();
        jail.set_env("COSMIC_LOG__FILTER", "007");
        jail.set_env("COSMIC_NODE__DATA_DIR", dir.join("2.50").display().to_string());
        jail.set_env("COSMIC_SYNC__MAX_CLOCK_DRIFT", "2m");
        let loaded = load(&LoadOptions::default()).unwrap();
        assert_eq!(loaded.config.log.filter, "007");
        assert_eq!(loaded.config.node.data_dir, dir.join("2.50"));
        assert_eq!(loaded.config.sync.max_clock_drift.as_secs(), 120);
        // A bare number for a data dir is a relative path, not a number.
        jail.set_env("COSMIC_NODE__DATA_DIR", "1");
        let loaded = load(&LoadOptions::default()).unwrap();
        assert_eq!(loaded.config.node.data_dir, std::path::PathBuf::from("1"));
    });
}
