//! Serde adapters for the schema: each states in words what it expects, because that text
//! ends up in the user's error message (`expected a multiaddr such as ...`).

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// What a multiaddr error says was expected.
pub(crate) const EXPECTED_MULTIADDR: &str = "a multiaddr such as /ip4/0.0.0.0/tcp/4747";

/// A list of strings, parsed one by one with `parse`. A single string is accepted as a
/// one-element list, so `COSMIC_NET__LISTEN=/ip4/0.0.0.0/tcp/4747` works without brackets.
fn one_or_many<'de, D, T>(
    deserializer: D,
    expected: &'static str,
    parse: fn(&str) -> Option<T>,
) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
{
    struct ListVisitor<T> {
        expected: &'static str,
        parse: fn(&str) -> Option<T>,
    }

    struct ItemSeed<T> {
        expected: &'static str,
        parse: fn(&str) -> Option<T>,
    }

    impl<'de, T> Visitor<'de> for ListVisitor<T> {
        type Value = Vec<T>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(formatter, "a list of {}, or one of them", plural(self.expected))
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            let item = ItemSeed { expected: self.expected, parse: self.parse };
            Ok(vec![item.parse_str(value)?])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(item) =
                seq.next_element_seed(ItemSeed { expected: self.expected, parse: self.parse })?
            {
                items.push(item);
            }
            Ok(items)
        }
    }

    impl<T> ItemSeed<T> {
        fn parse_str<E: de::Error>(&self, value: &str) -> Result<T, E> {
            (self.parse)(value)
                .ok_or_else(|| E::invalid_value(de::Unexpected::Str(value), &self.expected))
        }
    }

    impl<'de, T> de::DeserializeSeed<'de> for ItemSeed<T> {
        type Value = T;

        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
            deserializer.deserialize_str(self)
        }
    }

    impl<'de, T> Visitor<'de> for ItemSeed<T> {
        type Value = T;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str(self.expected)
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
            self.parse_str(value)
        }
    }

    deserializer.deserialize_any(ListVisitor { expected, parse })
}

/// `"a multiaddr such as X"` becomes `"multiaddrs such as X"` for the list message.
fn plural(expected: &str) -> String {
    match expected.strip_prefix("a ") {
        Some(rest) => match rest.split_once(' ') {
            Some((noun, tail)) => format!("{noun}s {tail}"),
            None => format!("{rest}s"),
        },
        None => expected.to_owned(),
    }
}

/// `Vec<Multiaddr>` as a list of strings (or one string).
pub(crate) mod multiaddrs {
    use multiaddr::Multiaddr;
    use serde::{Deserializer, Serializer, ser::SerializeSeq};

    pub(crate) fn serialize<S: Serializer>(
        addrs: &[Multiaddr],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(addrs.len()))?;
        for addr in addrs {
            seq.serialize_element(&addr.to_string())?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Multiaddr>, D::Error> {
        super::one_or_many(deserializer, super::EXPECTED_MULTIADDR, |text| text.parse().ok())
    }
}

/// `Vec<String>` that also accepts one string.
pub(crate) mod strings {
    use serde::{Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        items: &[String],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        items.serialize(serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<String>, D::Error> {
        super::one_or_many(deserializer, "a string", |text| Some(text.to_owned()))
    }
}

/// `Duration` as a humantime string such as `"30s"` or `"5m"`.
pub(crate) mod duration {
    use std::{fmt, time::Duration};

    use serde::{
        Deserializer, Serializer,
        de::{self, Visitor},
    };

    pub(crate) const EXPECTED: &str = "a duration such as \"30s\", \"5m\" or \"1h\"";

    pub(crate) fn serialize<S: Serializer>(
        duration: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*duration).to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = Duration;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(EXPECTED)
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Duration, E> {
                humantime::parse_duration(value)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(value), &EXPECTED))
            }
        }

        deserializer.deserialize_str(DurationVisitor)
    }
}

/// `SocketAddr` as a string such as `"127.0.0.1:7878"`.
pub(crate) mod socket_addr {
    use std::{fmt, net::SocketAddr};

    use serde::{
        Deserializer, Serializer,
        de::{self, Visitor},
    };

    const EXPECTED: &str = "a socket address such as 127.0.0.1:7878";

    pub(crate) fn serialize<S: Serializer>(
        addr: &SocketAddr,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&addr.to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<SocketAddr, D::Error> {
        struct AddrVisitor;

        impl Visitor<'_> for AddrVisitor {
            type Value = SocketAddr;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(EXPECTED)
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<SocketAddr, E> {
                value.parse().map_err(|_| E::invalid_value(de::Unexpected::Str(value), &EXPECTED))
            }
        }

        deserializer.deserialize_str(AddrVisitor)
    }
}
