//! [`Peers`]: the peers of a node.

use super::*;

/// The peers of a node: list and dial. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Peers {
    pub(crate) shared: Arc<Shared>,
}

impl Peers {
    /// Every peer the network layer knows.
    pub async fn list(&self) -> Result<Vec<PeerInfo>> {
        Ok(self.shared.net.peers().await?)
    }

    /// Dials `address` and waits for the connection; returns the peer's id.
    pub async fn dial(&self, address: Multiaddr) -> Result<PeerId> {
        Ok(self.shared.net.dial(address).await?)
    }

    /// The addresses this node listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>> {
        Ok(self.shared.net.listen_addrs().await?)
    }
}
