//! Hostile peers at the network layer: a raw libp2p swarm that sends or answers with bad
//! frames, and swarms that open connections without end, against real nodes.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, noise, ping, tcp, yamux};

use cosmic_net::codec::{self, PROTOCOL};
use cosmic_net::{Config, Keypair, Net, PeerState, Response};

use crate::common::{address_of, eventually, is_connected, node, node_with, within};

/// Requests and responses as raw bytes on our protocol: the hostile peer writes whatever
/// it is given, and reads a request frame only to answer it with junk.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        codec::read_frame(io, 1 << 20).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        // Waits for the node to give up on the stream, so a failure here means the node
        // has judged the frame.
        let mut rest = Vec::new();
        io.take(1 << 20).read_to_end(&mut rest).await?;
        Err(io::Error::other("the hostile peer expects no answer"))
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        raw: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&raw).await?;
        io.flush().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        raw: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&raw).await?;
        io.flush().await
    }
}

#[derive(NetworkBehaviour)]
struct Hostile {
    raw: request_response::Behaviour<RawCodec>,
    ping: ping::Behaviour,
}

/// A raw swarm on 127.0.0.1 that speaks our request protocol with [`RawCodec`].
fn hostile_swarm() -> Swarm<Hostile> {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .expect("a tcp transport")
        .with_behaviour(|_| Hostile {
            raw: request_response::Behaviour::new(
                [(PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default(),
            ),
            ping: ping::Behaviour::default(),
        })
        .expect("an infallible behaviour")
        .with_swarm_config(|config| config.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("an address")).expect("a listener");
    swarm
}

/// Drives `swarm` until `stop` says so for one of its events, within the test timeout.
async fn drive_until(
    swarm: &mut Swarm<Hostile>,
    mut stop: impl FnMut(&mut Swarm<Hostile>, SwarmEvent<HostileEvent>) -> bool,
) {
    within(async {
        loop {
            let event = swarm.select_next_some().await;
            if stop(swarm, event) {
                return;
            }
        }
    })
    .await;
}

/// Drives `swarm` in the background, answering every request with `answer`, until the
/// returned handle is aborted.
fn serve_junk(mut swarm: Swarm<Hostile>, answer: Vec<u8>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(HostileEvent::Raw(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            })) = swarm.select_next_some().await
            {
                let _ = swarm.behaviour_mut().raw.send_response(channel, answer.clone());
            }
        }
    })
}

/// Sends the malformed request frames `frames` from `swarm` to `target` once connected,
/// and waits until the target has dropped every one of them.
async fn send_junk(swarm: &mut Swarm<Hostile>, target: PeerId, frames: &[Vec<u8>]) {
    let mut pending = 0usize;
    if swarm.is_connected(&target) {
        for frame in frames {
            swarm.behaviour_mut().raw.send_request(&target, frame.clone());
        }
        pending = frames.len();
    }
    drive_until(swarm, |swarm, event| match event {
        SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == target && pending == 0 => {
            for frame in frames {
                swarm.behaviour_mut().raw.send_request(&target, frame.clone());
            }
            pending = frames.len();
            false
        }
        SwarmEvent::Behaviour(HostileEvent::Raw(request_response::Event::OutboundFailure {
            ..
        })) => {
            pending = pending.saturating_sub(1);
            pending == 0
        }
        _ => false,
    })
    .await;
}

/// A frame with envelope version 9: malformed.
fn bad_version() -> Vec<u8> {
    vec![0, 0, 0, 3, 9, 1, 0]
}

async fn strikes_of(net: &Net, peer_id: PeerId) -> u32 {
    let peers = within(net.peers()).await.expect("peers");
    peers.iter().find(|peer| peer.peer_id == peer_id).map_or(0, |peer| peer.strikes)
}

/// Answers every echo request on `net`.
async fn echo(net: Net) {
    let mut requests = within(net.request_inbox("test/echo/1", 64)).await.expect("a handler");
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let _ = net.respond(request.request_id, Response::Ok(request.body)).await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strikes_decay_so_a_rare_offender_is_not_banned_but_a_burst_is() {
    let mut config = Config::local();
    config.ban_threshold = 3;
    config.strike_decay = Duration::from_secs(1);
    let (net, _bus) = node_with(Keypair::generate_ed25519(), config).await;
    let mut hostile = hostile_swarm();
    let hostile_id = *hostile.local_peer_id();
    hostile.dial(address_of(&net).await).expect("a dial");

    // Two bad frames now, two later: four in all, over the threshold of three, but
    // never three within the decay window.
    send_junk(&mut hostile, net.peer_id(), &[bad_version(), bad_version()]).await;
    let strikes = strikes_of(&net, hostile_id).await;
    assert!((1..=2).contains(&strikes), "{strikes} strikes after two bad frames");
    eventually(|| async { strikes_of(&net, hostile_id).await == 0 }).await;
    send_junk(&mut hostile, net.peer_id(), &[bad_version(), bad_version()]).await;
    let stats = within(net.stats()).await.expect("stats");
    assert_eq!(stats.bad_frames, 4);
    assert_eq!(stats.bans, 0, "a rare offender is not banned");
    assert!(is_connected(&net, hostile_id).await);

    // A burst of three within the window is a ban.
    send_junk(&mut hostile, net.peer_id(), &[bad_version(), bad_version(), bad_version()]).await;
    eventually(|| async { net.stats().await.expect("stats").bans == 1 }).await;
    let peers = within(net.peers()).await.expect("peers");
    let info = peers.iter().find(|peer| peer.peer_id == hostile_id).expect("known");
    assert!(matches!(info.state, PeerState::Banned { .. }), "{:?}", info.state);
    eventually(|| async { !is_connected(&net, hostile_id).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_answering_with_bad_frames_fails_the_request_and_is_struck() {
    let (net, _bus) = node().await;
    let (honest, _honest_bus) = node().await;
    echo(honest.clone()).await;
    within(net.dial(address_of(&honest).await)).await.expect("dial honest");

    // One hostile responder per kind of junk answer: a length prefix far above
    // max_message_size, an unknown envelope version, an envelope kind that is a request.
    let answers: Vec<Vec<u8>> =
        vec![vec![0xff, 0xff, 0xff, 0xf0, 2, 0], vec![0, 0, 0, 2, 7, 2], vec![0, 0, 0, 3, 1, 1, 0]];
    for (index, answer) in answers.into_iter().enumerate() {
        let mut hostile = hostile_swarm();
        let hostile_id = *hostile.local_peer_id();
        let mut address: Option<Multiaddr> = None;
        drive_until(&mut hostile, |_, event| match event {
            SwarmEvent::NewListenAddr { address: listening, .. } => {
                address = Some(listening);
                true
            }
            _ => false,
        })
        .await;
        let address =
            address.expect("a listen address").with(libp2p::multiaddr::Protocol::P2p(hostile_id));
        let server = serve_junk(hostile, answer);
        within(net.dial(address)).await.expect("dial the hostile peer");
        let result = within(net.request(hostile_id, "test/echo/1", &b"hello"[..])).await;
        assert!(
            matches!(&result, Err(cosmic_net::Error::Request { peer_id, .. }) if *peer_id == hostile_id),
            "{result:?}"
        );
        assert_eq!(strikes_of(&net, hostile_id).await, 1, "answer {index}");
        assert_eq!(within(net.stats()).await.expect("stats").bad_frames, index as u64 + 1);
        server.abort();
    }

    // Honest peers are still served.
    let answer = within(net.request(honest.peer_id(), "test/echo/1", &b"still here"[..])).await;
    assert_eq!(answer.expect("an echo"), Bytes::from_static(b"still here"));
    assert_eq!(strikes_of(&net, honest.peer_id()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_opening_connections_without_end_stays_under_the_limits() {
    const MAX_CONNECTIONS: u32 = 6;
    let mut config = Config::local();
    config.max_connections = MAX_CONNECTIONS;
    config.max_connections_per_peer = 2;
    let (hub, _hub_bus) = node_with(Keypair::generate_ed25519(), config).await;
    echo(hub.clone()).await;
    let (honest, _honest_bus) = node().await;
    let hub_address = address_of(&hub).await;
    within(honest.dial(hub_address.clone())).await.expect("dial the hub");
    eventually(|| is_connected(&hub, honest.peer_id())).await;

    // One identity dials the hub again and again; a crowd of fresh identities joins in.
    let mut flooder = hostile_swarm();
    for _ in 0..12 {
        let opts = DialOpts::peer_id(hub.peer_id())
            .addresses(vec![hub_address.clone()])
            .condition(PeerCondition::Always)
            .build();
        flooder.dial(opts).expect("a dial");
    }
    let mut crowd: Vec<Swarm<Hostile>> = (0..8).map(|_| hostile_swarm()).collect();
    for swarm in &mut crowd {
        swarm.dial(hub_address.clone()).expect("a dial");
    }
    let drivers: Vec<_> = std::iter::once(flooder)
        .chain(crowd)
        .map(|mut swarm| tokio::spawn(async move { while swarm.next().await.is_some() {} }))
        .collect();

    // The hub never holds more than its limit, refuses the rest, and keeps the honest
    // peer connected and served.
    let mut most = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = within(hub.stats()).await.expect("stats");
        most = most.max(stats.connections);
        assert!(stats.connections <= MAX_CONNECTIONS as usize, "{stats:?}");
        let peers = within(hub.peers()).await.expect("peers");
        for peer in &peers {
            assert!(peer.connections.len() <= 2, "{peer:?}");
        }
        // 1 honest + 2 of the flooder + 8 of the crowd were attempted: at least 5 refused.
        if stats.connections_denied >= 5 && stats.connections == MAX_CONNECTIONS as usize {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the flood never filled the hub: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(most, MAX_CONNECTIONS as usize);
    assert!(is_connected(&hub, honest.peer_id()).await);
    let answer = within(honest.request(hub.peer_id(), "test/echo/1", &b"ping"[..])).await;
    assert_eq!(answer.expect("an echo"), Bytes::from_static(b"ping"));
    for driver in drivers {
        driver.abort();
    }
}
