//! The names under which a space is found on the network: its gossip topic and its
//! Kademlia provider key.
//!
//! Both are visible to third parties (gossipsub announces every subscription to every
//! connected peer; provider records are stored on DHT nodes chosen by key), so neither
//! carries the space id. Each is BLAKE3 in keyed mode, keyed by the 32 bytes of the space
//! id, over a fixed label: whoever knows the space id computes the same name, and the name
//! tells nothing about the id to whoever does not (finding it means guessing the id, a
//! 256-bit key). Someone who already knows a space id can still recognise its names; that
//! is what lets peers find each other. docs/SECURITY.md says what this hides and what not.

use cosmic_auth::PublicKey;

/// The label hashed for a space's gossip topic.
const TOPIC_LABEL: &[u8] = b"cosmic-sync/space-topic/2";
/// The label hashed for a space's Kademlia provider key.
const PROVIDER_LABEL: &[u8] = b"cosmic-sync/space-provider/2";
/// What every space topic starts with.
pub const TOPIC_PREFIX: &str = "cosmic/space/2/";

/// The gossip topic of a space: [`TOPIC_PREFIX`] then 64 hex digits of a keyed hash.
pub fn space_topic(space: &PublicKey) -> String {
    let hash = blake3::keyed_hash(space.as_bytes(), TOPIC_LABEL);
    format!("{TOPIC_PREFIX}{}", hash.to_hex())
}

/// The Kademlia key under which the nodes of a space provide it: 32 bytes of a keyed hash.
pub fn space_provider_key(space: &PublicKey) -> Vec<u8> {
    blake3::keyed_hash(space.as_bytes(), PROVIDER_LABEL).as_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use cosmic_auth::SpaceKey;

    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    #[test]
    fn names_are_stable_distinct_and_do_not_contain_the_space_id() {
        let space = SpaceKey::from_secret_bytes(&[1; 32]).id();
        let other = SpaceKey::from_secret_bytes(&[2; 32]).id();
        let topic = space_topic(&space);
        let key = space_provider_key(&space);
        // Pinned: every node of every version must derive the same names.
        expect_test::expect![
            "cosmic/space/2/fca04e2e5ef2c7b9ed24d50e9f361d3a6c3503ea35beda52834a85abcf07da7e"
        ]
        .assert_eq(&topic);
        assert_eq!(topic.len(), TOPIC_PREFIX.len() + 64);
        assert_eq!(key.len(), 32);
        assert_ne!(topic, space_topic(&other));
        assert_ne!(key, space_provider_key(&other));
        assert_ne!(hex(&key), topic[TOPIC_PREFIX.len()..], "topic and key are separate names");
        for name in [topic.clone(), hex(&key)] {
            assert!(!name.contains(&space.to_string()), "{name}");
            assert!(!name.contains(&hex(space.as_bytes())), "{name}");
        }
        assert_ne!(key, space.as_bytes().to_vec());
    }
}
