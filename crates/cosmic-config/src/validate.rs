//! Checks that serde cannot express: ranges, required multiaddr parts, peer id syntax and
//! the limits that depend on each other.

use std::time::Duration;

use multiaddr::{Multiaddr, Protocol};

use crate::{
    Config, ENTRY_OVERHEAD,
    error::{Error, Result},
    load::Resolver,
};

const DAY: Duration = Duration::from_secs(24 * 3600);
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

const BASE58_ALPHABET: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
const EXPECTED_PEER_ID: &str =
    "a base58 peer id such as 12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

pub(crate) fn validate(config: &Config, resolver: &Resolver<'_>) -> Result<()> {
    let net = &config.net;
    let counts = [
        ("net.max_connections", net.max_connections, 1, 65536),
        ("net.max_connections_per_peer", net.max_connections_per_peer, 1, 64),
        ("net.max_pending_connections", net.max_pending_connections, 1, 65536),
        ("net.ban_threshold", net.ban_threshold, 1, 1_000_000),
        ("net.inbound_request_rate", net.inbound_request_rate, 1, 1_000_000),
    ];
    for (key, value, min, max) in counts {
        check_range(resolver, key, u64::from(value), min, max)?;
    }
    let sizes = [
        ("store.max_value_size", config.store.max_value_size, 1, 64 * MIB),
        ("store.cache_size", config.store.cache_size, MIB, 64 * GIB),
        ("store.author_quota", config.store.author_quota, 64 * KIB, 1024 * 1024 * GIB),
        ("net.max_message_size", net.max_message_size, 64 * KIB, GIB),
        ("net.max_gossip_size", net.max_gossip_size, 64 * KIB, GIB),
        ("api.max_request_size", config.api.max_request_size, KIB, GIB),
        ("blobs.max_blob_size", config.blobs.max_blob_size, 1, u64::MAX),
    ];
    for (key, value, min, max) in sizes {
        check_range(resolver, key, value, min, max)?;
    }
    let second = Duration::from_secs(1);
    let durations = [
        ("net.idle_timeout", net.idle_timeout, second, DAY),
        ("net.ban_duration", net.ban_duration, second, 365 * DAY),
        ("blobs.fetch_timeout", config.blobs.fetch_timeout, second, DAY),
        ("blobs.gc_interval", config.blobs.gc_interval, second, 365 * DAY),
        ("sync.max_clock_drift", config.sync.max_clock_drift, second, DAY),
        ("sync.reconcile_interval", config.sync.reconcile_interval, second, DAY),
    ];
    for (key, value, min, max) in durations {
        check_duration(resolver, key, value, min, max)?;
    }

    check_entry_fits(resolver, config, "net.max_gossip_size", net.max_gossip_size)?;
    check_entry_fits(resolver, config, "net.max_message_size", net.max_message_size)?;

    for (index, addr) in net.bootstrap.iter().enumerate() {
        if !has_peer_id(addr) {
            let key = format!("net.bootstrap[{index}]");
            return Err(Error::InvalidValue {
                origin: resolver.origin(&key),
                key,
                value: format!("{:?}", addr.to_string()),
                expected: "a multiaddr ending in /p2p/<peer id>, such as \
                           /ip4/198.51.100.7/tcp/4747/p2p/12D3KooW..."
                    .to_owned(),
            });
        }
    }
    for (name, peers) in [("net.allow", &net.allow), ("net.block", &net.block)] {
        for (index, peer) in peers.iter().enumerate() {
            if !looks_like_peer_id(peer) {
                let key = format!("{name}[{index}]");
                return Err(Error::InvalidValue {
                    origin: resolver.origin(&key),
                    key,
                    value: format!("{peer:?}"),
                    expected: EXPECTED_PEER_ID.to_owned(),
                });
            }
        }
    }

    if config.log.filter.trim().is_empty() {
        return Err(Error::InvalidValue {
            key: "log.filter".to_owned(),
            value: format!("{:?}", config.log.filter),
            origin: resolver.origin("log.filter"),
            expected: "a tracing filter such as info or info,cosmic_net=debug".to_owned(),
        });
    }
    Ok(())
}

fn check_range(resolver: &Resolver<'_>, key: &str, value: u64, min: u64, max: u64) -> Result<()> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    let expected =
        if max == u64::MAX { format!("at least {min}") } else { format!("{min} to {max}") };
    Err(Error::OutOfRange {
        key: key.to_owned(),
        value: value.to_string(),
        origin: resolver.origin(key),
        expected,
    })
}

fn check_duration(
    resolver: &Resolver<'_>,
    key: &str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<()> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(Error::OutOfRange {
        key: key.to_owned(),
        value: format!("{:?}", humantime::format_duration(value).to_string()),
        origin: resolver.origin(key),
        expected: format!(
            "{} to {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ),
    })
}

/// One entry with the largest value must fit in a frame of `size`. The key the user set
/// last is blamed: the frame size if it is not the default, else the value size.
fn check_entry_fits(resolver: &Resolver<'_>, config: &Config, key: &str, size: u64) -> Result<()> {
    let value_size = config.store.max_value_size;
    let needed = value_size.saturating_add(ENTRY_OVERHEAD);
    if size >= needed {
        return Ok(());
    }
    let size_origin = resolver.origin(key);
    if size_origin == crate::Origin::Default {
        return Err(Error::OutOfRange {
            key: "store.max_value_size".to_owned(),
            value: value_size.to_string(),
            origin: resolver.origin("store.max_value_size"),
            expected: format!(
                "at most {} (`{key}` {size} from {size_origin} minus {ENTRY_OVERHEAD} bytes \
                 of entry overhead)",
                size.saturating_sub(ENTRY_OVERHEAD)
            ),
        });
    }
    Err(Error::OutOfRange {
        key: key.to_owned(),
        value: size.to_string(),
        origin: size_origin,
        expected: format!(
            "at least {needed} (`store.max_value_size` {value_size} plus {ENTRY_OVERHEAD} bytes \
             of entry overhead)"
        ),
    })
}

fn has_peer_id(addr: &Multiaddr) -> bool {
    matches!(addr.iter().last(), Some(Protocol::P2p(_)))
}

/// Base58 alphabet and a plausible length (46 for `Qm...`, 52 for `12D3KooW...`); the full
/// decoding is `cosmic-net`'s, which owns libp2p.
fn looks_like_peer_id(text: &str) -> bool {
    (40..=100).contains(&text.len()) && text.chars().all(|c| BASE58_ALPHABET.contains(c))
}
