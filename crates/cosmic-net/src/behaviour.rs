//! The composed libp2p behaviour and the swarm built from a [`Config`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use libp2p::allow_block_list::{self, AllowedPeers, BlockedPeers};
use libp2p::connection_limits::{self, ConnectionLimits};
use libp2p::gossipsub::{self, MessageAuthenticity, ValidationMode};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{StreamProtocol, Swarm, autonat, dcutr, identify, kad, mdns, noise, ping, relay};
use libp2p::{tcp, yamux};
use sha2::{Digest, Sha256};

use crate::codec::{self, Codec};
use crate::{Config, Error, Result};

/// Our Kademlia protocol: a DHT of CosmicSyncCore peers only, apart from the IPFS one.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/cosmic/kad/1.0.0");

/// The protocol version announced by identify.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/cosmic/1.0.0";

/// Room for the gossipsub RPC framing around a payload: signature, key, topic, seqno.
const GOSSIP_RPC_OVERHEAD: usize = 64 * 1024;

/// Every protocol a node speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    // The allow and block lists and the limits come first: they deny a connection
    // before any other behaviour hears of it.
    pub(crate) allow: Toggle<allow_block_list::Behaviour<AllowedPeers>>,
    pub(crate) block: allow_block_list::Behaviour<BlockedPeers>,
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) request_response: request_response::Behaviour<Codec>,
    pub(crate) relay_client: Toggle<relay::client::Behaviour>,
    pub(crate) relay_server: Toggle<relay::Behaviour>,
    pub(crate) dcutr: Toggle<dcutr::Behaviour>,
    pub(crate) autonat: Toggle<autonat::Behaviour>,
}

/// The content-addressed gossip message id: SHA-256 over topic, a zero byte and data,
/// so the same bytes on two topics are two messages.
pub(crate) fn message_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    let mut hasher = Sha256::new();
    hasher.update(message.topic.as_str().as_bytes());
    hasher.update([0u8]);
    hasher.update(&message.data);
    gossipsub::MessageId::new(hasher.finalize().as_slice())
}

/// Score parameters for one topic.
///
/// The mesh-delivery penalties (P3, P3b) are off: our topics are quiet most of the time,
/// and with them an honest peer of a quiet space would be graylisted for delivering
/// nothing. Invalid messages (P4) weigh heavily: three in a short while graylist a peer.
pub(crate) fn topic_score_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 3600.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.5,
        first_message_deliveries_cap: 100.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.3,
        ..gossipsub::TopicScoreParams::default()
    }
}

fn gossipsub(keypair: &Keypair, config: &Config) -> Result<gossipsub::Behaviour> {
    let heartbeat = config.gossip_heartbeat_interval;
    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(message_id)
        .max_transmit_size(config.max_gossip_size_usize().saturating_add(GOSSIP_RPC_OVERHEAD))
        .mesh_n(config.gossip_mesh_n)
        .mesh_n_low(config.gossip_mesh_n_low)
        .mesh_n_high(config.gossip_mesh_n_high)
        .mesh_outbound_min(config.gossip_mesh_outbound_min)
        .heartbeat_interval(heartbeat)
        .heartbeat_initial_delay(heartbeat.min(Duration::from_millis(500)))
        .build()
        .map_err(|error| Error::Build(Box::new(error)))?;
    let mut behaviour =
        gossipsub::Behaviour::new(MessageAuthenticity::Signed(keypair.clone()), gossip_config)
            .map_err(|error| Error::Build(error.into()))?;
    let mut score_params = gossipsub::PeerScoreParams::default();
    // Many nodes on one host (a test cluster, a dev machine) are not a Sybil attack.
    score_params.ip_colocation_factor_whitelist.insert(IpAddr::V4(Ipv4Addr::LOCALHOST));
    score_params.ip_colocation_factor_whitelist.insert(IpAddr::V6(Ipv6Addr::LOCALHOST));
    behaviour
        .with_peer_score(score_params, gossipsub::PeerScoreThresholds::default())
        .map_err(|error| Error::Build(error.into()))?;
    Ok(behaviour)
}

fn behaviour(
    keypair: &Keypair,
    relay_client: relay::client::Behaviour,
    config: &Config,
) -> Result<Behaviour> {
    let peer_id = keypair.public().to_peer_id();

    let mut allow = allow_block_list::Behaviour::<AllowedPeers>::default();
    for peer in &config.allow {
        allow.allow_peer(*peer);
    }
    let mut block = allow_block_list::Behaviour::<BlockedPeers>::default();
    for peer in &config.block {
        block.block_peer(*peer);
    }
    let limits = ConnectionLimits::default()
        .with_max_established(Some(config.max_connections))
        .with_max_established_per_peer(Some(config.max_connections_per_peer))
        .with_max_pending_incoming(Some(config.max_pending_connections))
        .with_max_pending_outgoing(Some(config.max_pending_connections));

    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL_VERSION.to_owned(), keypair.public())
            .with_agent_version(format!("cosmic-net/{}", env!("CARGO_PKG_VERSION"))),
    );

    let mdns = if config.mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                .map_err(|error| Error::Build(Box::new(error)))?,
        )
    } else {
        None
    };

    let mut kad_config = kad::Config::new(KAD_PROTOCOL);
    kad_config.set_query_timeout(Duration::from_secs(30));
    let mut kad =
        kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
    // Without an explicit mode, Kademlia stays a client until an external address is
    // confirmed, and then put and get fail between local nodes.
    kad.set_mode(Some(kad::Mode::Server));

    let request_response = request_response::Behaviour::with_codec(
        Codec::new(config.max_message_size_usize()),
        [(codec::PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(256),
    );

    Ok(Behaviour {
        allow: Toggle::from((!config.allow.is_empty()).then_some(allow)),
        block,
        limits: connection_limits::Behaviour::new(limits),
        identify,
        ping: ping::Behaviour::default(),
        mdns: Toggle::from(mdns),
        kad,
        gossipsub: gossipsub(keypair, config)?,
        request_response,
        relay_client: Toggle::from(config.relay_client.then_some(relay_client)),
        relay_server: Toggle::from(
            config.relay_server.then(|| relay::Behaviour::new(peer_id, relay::Config::default())),
        ),
        dcutr: Toggle::from(config.relay_client.then(|| dcutr::Behaviour::new(peer_id))),
        autonat: Toggle::from(
            config.autonat.then(|| autonat::Behaviour::new(peer_id, autonat::Config::default())),
        ),
    })
}

/// Builds the swarm: TCP and QUIC, noise, yamux, the relay transport, and [`Behaviour`].
pub(crate) fn build_swarm(keypair: Keypair, config: &Config) -> Result<Swarm<Behaviour>> {
    let build_error = |error: Box<dyn std::error::Error + Send + Sync>| Error::Build(error);
    let mut behaviour_error = None;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|error| build_error(Box::new(error)))?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|error| build_error(Box::new(error)))?
        .with_behaviour(|keypair, relay_client| {
            behaviour(keypair, relay_client, config).map_err(|error| {
                let message = error.to_string();
                behaviour_error = Some(error);
                Box::<dyn std::error::Error + Send + Sync>::from(message)
            })
        })
        .map_err(|error| match behaviour_error.take() {
            Some(error) => error,
            None => build_error(Box::new(error)),
        })?
        .with_swarm_config(|swarm_config| {
            swarm_config.with_idle_connection_timeout(config.idle_timeout)
        })
        .build();
    Ok(swarm)
}
