//! [`Error`]: everything the network layer reports to its callers.

use libp2p::{Multiaddr, PeerId};

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in the network layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range.
    #[error("invalid net config `{field}` = {value:?}: expected {expected}")]
    InvalidConfig {
        /// The field name.
        field: &'static str,
        /// The offending value.
        value: String,
        /// What the field accepts.
        expected: &'static str,
    },
    /// The transport or a behaviour could not be built.
    #[error("failed to build the libp2p swarm")]
    Build(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Listening on an address failed.
    #[error("failed to listen on {address}")]
    Listen {
        /// The address.
        address: Multiaddr,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Dialling an address failed.
    #[error("failed to dial {address}")]
    Dial {
        /// The address.
        address: Multiaddr,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The network task has stopped; the handle can do nothing more.
    #[error("the network task has stopped")]
    Shutdown,
    /// A gossip message or request frame is above its configured limit.
    #[error("message of {size} bytes exceeds `{limit_name}` = {limit}")]
    MessageTooLarge {
        /// The message size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
        /// The configuration field that sets the limit.
        limit_name: &'static str,
    },
    /// Subscribing to a gossip topic failed.
    #[error("failed to subscribe to topic {topic:?}")]
    Subscribe {
        /// The topic.
        topic: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Publishing a gossip message failed.
    #[error("failed to publish on topic {topic:?}: {reason}")]
    Publish {
        /// The topic.
        topic: String,
        /// Why, from gossipsub.
        reason: PublishFailure,
    },
    /// An outbound request failed before a response came.
    #[error("request to peer {peer_id} failed")]
    Request {
        /// The peer asked.
        peer_id: PeerId,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The remote peer answered a request with an error.
    #[error("peer {peer_id} refused the request: {message}")]
    Remote {
        /// The peer asked.
        peer_id: PeerId,
        /// The peer's error message.
        message: String,
    },
    /// A request id is unknown: it was answered already, or it timed out.
    #[error("no pending inbound request with id {request_id}")]
    UnknownRequest {
        /// The id.
        request_id: u64,
    },
    /// An application protocol name is empty, too long or not printable ASCII.
    #[error("invalid protocol name {name:?}: expected 1 to 64 printable ASCII characters")]
    InvalidProtocolName {
        /// The name.
        name: String,
    },
    /// A Kademlia operation failed.
    #[error("kademlia {operation} failed")]
    Kademlia {
        /// What was attempted.
        operation: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Reading or writing the peers file failed.
    #[error("failed to {action} the peers file {path:?}")]
    PeersFile {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Why gossipsub refused to publish a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishFailure {
    /// No connected peer subscribes to the topic yet; retry once one does.
    NoPeersSubscribed,
    /// The same bytes were published on this topic recently (message ids are content
    /// hashes).
    Duplicate,
    /// Every subscribed peer's send queue is full.
    QueuesFull,
    /// Signing or encoding the message failed.
    Other,
}

impl std::fmt::Display for PublishFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NoPeersSubscribed => "no peers subscribed to the topic",
            Self::Duplicate => "duplicate message",
            Self::QueuesFull => "all peer queues are full",
            Self::Other => "signing or encoding failed",
        })
    }
}
