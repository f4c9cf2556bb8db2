//! Unit tests of the codec, the config checks, the peers file and the backoff.

use std::time::Duration;

use bytes::Bytes;
use futures::io::Cursor;
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::time::Instant;

use crate::codec::{self, Request, Response};
use crate::peers::{self, Backoff, KnownPeers};
use crate::{Config, Error};

fn request(protocol: &str, body: &[u8]) -> Request {
    Request { protocol: protocol.to_owned(), body: Bytes::copy_from_slice(body) }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut bytes = u32::try_from(payload.len()).unwrap().to_be_bytes().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

#[test]
fn requests_and_responses_round_trip() {
    for original in [
        request("sync/reconcile/1", b"body"),
        request("a", b""),
        request(&"x".repeat(64), &[0; 300]),
    ] {
        let payload = codec::encode_request(&original).unwrap();
        assert_eq!(codec::decode_request(&payload).unwrap(), original);
    }
    for original in [
        Response::Ok(Bytes::from_static(b"answer")),
        Response::Ok(Bytes::new()),
        Response::Error("no such space".to_owned()),
    ] {
        let payload = codec::encode_response(&original);
        assert_eq!(codec::decode_response(&payload).unwrap(), original);
    }
}

#[test]
fn the_request_layout_is_stable() {
    let payload = codec::encode_request(&request("p/1", b"hi")).unwrap();
    assert_eq!(payload, [1, 1, 3, b'p', b'/', b'1', b'h', b'i']);
    assert_eq!(
        codec::encode_response(&Response::Ok(Bytes::from_static(b"ok"))),
        [1, 2, b'o', b'k']
    );
    assert_eq!(codec::encode_response(&Response::Error("no".to_owned())), [1, 3, b'n', b'o']);
}

#[test]
fn malformed_envelopes_are_errors_not_panics() {
    let cases: &[(&[u8], &str)] = &[
        (&[], "envelope of 0 bytes is too short"),
        (&[1], "envelope of 1 bytes is too short"),
        (&[2, 1, 0], "unsupported envelope version 2"),
        (&[1, 2, 0], "unexpected envelope kind 2"),
        (&[1, 1], "request without a name"),
        (&[1, 1, 5, b'a'], "protocol name of 5 bytes runs past the frame"),
        (&[1, 1, 0], "invalid protocol name \"\""),
        (&[1, 1, 2, b'a', b' '], "invalid protocol name \"a \""),
        (&[1, 1, 2, 0xff, 0xfe], "invalid protocol name \"\u{fffd}\u{fffd}\""),
    ];
    for (payload, expected) in cases {
        let error = codec::decode_request(payload).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(error.to_string(), *expected);
    }
    let error = codec::decode_response(&[1, 1]).unwrap_err();
    assert_eq!(error.to_string(), "unexpected envelope kind 1");
    let error = codec::decode_response(&[1, 3, 0xff]).unwrap_err();
    assert_eq!(error.to_string(), "error response is not valid utf-8");
    assert!(codec::encode_request(&request("", b"")).is_err());
    assert!(codec::encode_request(&request(&"x".repeat(65), b"")).is_err());
}

#[tokio::test]
async fn frames_are_read_up_to_the_limit() {
    let mut io = Cursor::new(frame(&[7; 100]));
    assert_eq!(codec::read_frame(&mut io, 100).await.unwrap(), vec![7; 100]);

    let mut io = Cursor::new(frame(&[7; 101]));
    let error = codec::read_frame(&mut io, 100).await.unwrap_err();
    assert_eq!(error.to_string(), "frame of 101 bytes exceeds max_message_size 100");
    assert_eq!(io.position(), 4, "nothing past the length prefix is read");

    let mut io = Cursor::new(vec![0xff, 0xff, 0xff, 0xff]);
    let error = codec::read_frame(&mut io, 100).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);

    let mut truncated = frame(&[1; 10]);
    truncated.truncate(8);
    let error = codec::read_frame(&mut Cursor::new(truncated), 100).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);

    let mut out = Cursor::new(Vec::new());
    codec::write_frame(&mut out, b"abc", 3).await.unwrap();
    assert_eq!(out.into_inner(), frame(b"abc"));
    assert!(codec::write_frame(&mut Cursor::new(Vec::new()), b"abcd", 3).await.is_err());
}

#[tokio::test]
async fn the_codec_reads_bad_requests_as_malformed_frames() {
    use libp2p::request_response::Codec as _;

    let mut codec = codec::Codec::new(64);
    let good = frame(&codec::encode_request(&request("p/1", b"x")).unwrap());
    let read = codec.read_request(&codec::PROTOCOL, &mut Cursor::new(good)).await.unwrap();
    assert_eq!(read, codec::Frame::Request(request("p/1", b"x")));
    for junk in [frame(&[9, 9, 9]), frame(&[0; 65]), vec![0xff; 8]] {
        let read = codec.read_request(&codec::PROTOCOL, &mut Cursor::new(junk)).await.unwrap();
        assert!(matches!(read, codec::Frame::Malformed(_)), "{read:?}");
    }
    // A stream that ends early is an I/O error, not an offence.
    assert!(codec.read_request(&codec::PROTOCOL, &mut Cursor::new(vec![0, 0])).await.is_err());
}

fn config_error(config: &Config) -> String {
    match config.validate() {
        Err(error @ Error::InvalidConfig { .. }) => error.to_string(),
        other => panic!("expected an invalid config, got {other:?}"),
    }
}

#[test]
fn the_default_configs_are_valid() {
    Config::default().validate().unwrap();
    Config::local().validate().unwrap();
    assert_eq!(Config::default().listen.len(), 2);
}

#[test]
fn invalid_configs_name_the_field_and_value() {
    let mut config = Config::local();
    config.max_connections = 0;
    assert_eq!(
        config_error(&config),
        "invalid net config `max_connections` = \"0\": expected at least 1"
    );

    let mut config = Config::local();
    config.gossip_mesh_n_low = 8;
    assert_eq!(
        config_error(&config),
        "invalid net config `gossip_mesh_n` = \"n=6 n_low=8 n_high=12 outbound_min=2\": \
         expected 1 <= n_low <= n <= n_high and outbound_min <= n_low and 2 * outbound_min <= n"
    );

    let mut config = Config::local();
    config.gossip_mesh_outbound_min = 4;
    config.gossip_mesh_n_low = 4;
    assert!(config_error(&config).contains("outbound_min=4"));

    let mut config = Config::local();
    config.max_message_size = 10;
    assert!(config_error(&config).starts_with("invalid net config `max_message_size` = \"10\""));

    let mut config = Config::local();
    config.idle_timeout = Duration::ZERO;
    assert!(config_error(&config).contains("`idle_timeout`"));

    let mut config = Config::local();
    config.bootstrap = vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()];
    assert_eq!(
        config_error(&config),
        "invalid net config `bootstrap` = \"/ip4/127.0.0.1/tcp/1\": \
         expected a multiaddr ending in /p2p/<peer id>"
    );
}

fn peer() -> PeerId {
    Keypair::generate_ed25519().public().to_peer_id()
}

fn address(text: &str) -> Multiaddr {
    text.parse().unwrap()
}

#[test]
fn known_peers_keep_recent_dialable_addresses() {
    let mut known = KnownPeers::default();
    let peer_id = peer();
    known.add_address(peer_id, &address("/ip4/0.0.0.0/tcp/1"));
    assert!(known.addresses(&peer_id).is_empty(), "unspecified addresses are skipped");
    assert!(!known.take_dirty());

    for port in 0..10 {
        known.add_address(peer_id, &address(&format!("/ip4/10.0.0.1/tcp/{port}")));
    }
    let with_suffix = address(&format!("/ip4/10.0.0.1/tcp/3/p2p/{peer_id}"));
    known.add_address(peer_id, &with_suffix);
    let addresses = known.addresses(&peer_id);
    assert_eq!(addresses.len(), 8);
    assert_eq!(addresses[0], address("/ip4/10.0.0.1/tcp/3"));
    assert_eq!(addresses[1], address("/ip4/10.0.0.1/tcp/9"));
    assert!(known.take_dirty());
    assert!(!known.take_dirty());
}

#[test]
fn the_peers_file_round_trips_and_tolerates_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.json");
    assert_eq!(KnownPeers::load(&path).iter().count(), 0, "a missing file is no peers");

    let mut known = KnownPeers::default();
    let (first, second) = (peer(), peer());
    known.add_address(first, &address("/ip4/10.0.0.1/tcp/1"));
    known.add_address(second, &address("/ip4/10.0.0.2/udp/2/quic-v1"));
    peers::write_atomically(&path, &known.to_json()).unwrap();
    assert!(!dir.path().join("peers.json.tmp").exists());

    let loaded = KnownPeers::load(&path);
    assert_eq!(loaded.addresses(&first), vec![address("/ip4/10.0.0.1/tcp/1")]);
    assert_eq!(loaded.addresses(&second), vec![address("/ip4/10.0.0.2/udp/2/quic-v1")]);

    std::fs::write(&path, b"{ not json").unwrap();
    assert_eq!(KnownPeers::load(&path).iter().count(), 0);
    std::fs::write(&path, br#"{"version": 2, "peers": []}"#).unwrap();
    assert_eq!(KnownPeers::load(&path).iter().count(), 0);
    let mixed = format!(
        r#"{{"version": 1, "peers": [
            {{"peer_id": "nope", "addresses": ["/ip4/10.0.0.1/tcp/1"], "last_seen": 0}},
            {{"peer_id": "{first}", "addresses": ["garbage", "/ip4/10.0.0.9/tcp/9"], "last_seen": 5}}
        ]}}"#
    );
    std::fs::write(&path, mixed).unwrap();
    let loaded = KnownPeers::load(&path);
    assert_eq!(loaded.iter().count(), 1);
    assert_eq!(loaded.addresses(&first), vec![address("/ip4/10.0.0.9/tcp/9")]);
}

#[test]
fn backoff_doubles_up_to_its_cap_and_gives_up() {
    let (min, max) = (Duration::from_millis(100), Duration::from_secs(1));
    let delays: Vec<u128> =
        (1..=6).map(|attempts| Backoff::delay(attempts, min, max).as_millis()).collect();
    assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    assert_eq!(Backoff::delay(u32::MAX, min, max), max);

    let now = Instant::now();
    let mut backoff = Backoff::new(now, Some(3));
    assert!(backoff.failed(now, min, max));
    assert_eq!(backoff.next_at, now + min);
    assert!(backoff.failed(now, min, max));
    assert!(!backoff.failed(now, min, max), "the third failure gives up");
    let mut forever = Backoff::new(now, None);
    assert!((0..100).all(|_| forever.failed(now, min, max)));
}

#[test]
fn peer_ids_are_read_from_the_address_suffix() {
    let peer_id = peer();
    let with = address(&format!("/ip4/1.2.3.4/tcp/5/p2p/{peer_id}"));
    assert_eq!(peers::peer_id_of(&with), Some(peer_id));
    assert_eq!(peers::without_peer_id(&with), address("/ip4/1.2.3.4/tcp/5"));
    assert_eq!(peers::peer_id_of(&address("/ip4/1.2.3.4/tcp/5")), None);
}

#[cfg(feature = "cosmic-config")]
#[test]
fn the_node_config_maps_field_by_field() {
    let mut net = cosmic_config::NetConfig::default();
    let config = Config::from_net_config(&net).unwrap();
    assert_eq!(config.listen, net.listen);
    assert_eq!(config.max_message_size, net.max_message_size);
    assert_eq!(config.ban_duration, net.ban_duration);

    let allowed = peer();
    net.allow = vec![allowed.to_base58()];
    net.mdns = false;
    let config = Config::from_net_config(&net).unwrap();
    assert_eq!(config.allow, vec![allowed]);
    assert!(!config.mdns);

    net.block = vec!["not-a-peer-id".to_owned()];
    let error = Config::from_net_config(&net).unwrap_err().to_string();
    assert_eq!(
        error,
        "invalid net config `block` = \"not-a-peer-id\": expected a base58 peer id such as 12D3KooW..."
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_valid_request_round_trips(
            protocol in "[!-~]{1,64}",
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let original = request(&protocol, &body);
            let payload = codec::encode_request(&original).unwrap();
            prop_assert_eq!(codec::decode_request(&payload).unwrap(), original);
        }

        #[test]
        fn any_response_round_trips(ok in any::<bool>(), text in ".{0,64}") {
            let original = if ok {
                Response::Ok(Bytes::from(text.into_bytes()))
            } else {
                Response::Error(text)
            };
            let payload = codec::encode_response(&original);
            prop_assert_eq!(codec::decode_response(&payload).unwrap(), original);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = codec::decode_request(&bytes);
            let _ = codec::decode_response(&bytes);
        }

        #[test]
        fn reading_arbitrary_frames_never_panics_nor_overreads(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let mut io = Cursor::new(bytes.clone());
            if let Ok(payload) = runtime.block_on(codec::read_frame(&mut io, 64)) {
                prop_assert!(payload.len() <= 64);
                prop_assert_eq!(&bytes[4..4 + payload.len()], &payload[..]);
            }
        }
    }
}
