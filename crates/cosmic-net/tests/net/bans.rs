//! A peer that sends garbage frames on our protocol is banned.

use std::io;
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{StreamProtocol, Swarm, noise, tcp, yamux};

use cosmic_net::codec::PROTOCOL;
use cosmic_net::{Config, Keypair, PeerBanned, PeerState};

use crate::common::{address_of, eventually, next_matching, node_with, within};

/// Writes raw bytes as a "request" on our protocol, whatever they are.
#[derive(Debug, Clone, Default)]
struct JunkCodec;

impl request_response::Codec for JunkCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("the junk peer serves nothing"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("the junk peer reads nothing"))
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        junk: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&junk).await?;
        io.flush().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}

fn junk_swarm() -> Swarm<request_response::Behaviour<JunkCodec>> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .expect("a tcp transport")
        .with_behaviour(|_| {
            request_response::Behaviour::new(
                [(PROTOCOL, ProtocolSupport::Outbound)],
                request_response::Config::default(),
            )
        })
        .expect("an infallible behaviour")
        .with_swarm_config(|config| config.with_idle_connection_timeout(Duration::from_secs(30)))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_garbage_is_banned() {
    let mut config = Config::local();
    config.ban_threshold = 3;
    config.max_message_size = 1024;
    let (net, bus) = node_with(Keypair::generate_ed25519(), config).await;
    let mut banned = bus.subscribe::<PeerBanned>();
    let mut junk = junk_swarm();
    let junk_id = *junk.local_peer_id();
    let target = net.peer_id();
    junk.dial(address_of(&net).await).unwrap();

    let frames: Vec<Vec<u8>> = vec![
        // A length prefix far above max_message_size.
        vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        // A well-formed frame holding envelope version 9.
        vec![0, 0, 0, 3, 9, 1, 0],
        // A request whose protocol name runs past the end of the frame.
        vec![0, 0, 0, 4, 1, 1, 60, b'x'],
    ];
    within(async {
        let mut sent = false;
        loop {
            match junk.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == target && !sent => {
                    for frame in &frames {
                        junk.behaviour_mut().send_request(&target, frame.clone());
                    }
                    sent = true;
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. }
                    if peer_id == target && sent =>
                {
                    return;
                }
                _ => {}
            }
        }
    })
    .await;

    let event = next_matching(&mut banned, |event| event.peer_id == junk_id).await;
    assert_eq!(event.duration, Duration::from_secs(3600));
    // The node may see its side of the connection close a moment after the junk peer.
    eventually(|| async { net.stats().await.unwrap().connected_peers == 0 }).await;
    let stats = within(net.stats()).await.unwrap();
    assert_eq!(stats.bad_frames, 3);
    assert_eq!((stats.bans, stats.banned_peers), (1, 1));
    let peers = within(net.peers()).await.unwrap();
    let info = peers.iter().find(|peer| peer.peer_id == junk_id).expect("the junk peer is known");
    assert!(matches!(info.state, PeerState::Banned { .. }), "{:?}", info.state);

    // A banned peer cannot come back.
    junk.dial(address_of(&net).await).unwrap();
    within(async {
        loop {
            match junk.select_next_some().await {
                SwarmEvent::ConnectionClosed { peer_id, .. } if peer_id == target => return,
                SwarmEvent::OutgoingConnectionError { .. } => return,
                _ => {}
            }
        }
    })
    .await;

    // Until the ban is lifted.
    assert!(within(net.unban(junk_id)).await.unwrap());
    let peers = within(net.peers()).await.unwrap();
    let info = peers.iter().find(|peer| peer.peer_id == junk_id).unwrap();
    assert_eq!(info.strikes, 0);
}
