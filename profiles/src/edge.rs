//! Edges: `src zone -> dst zone, protocol, destination port`, the unit that is learned,
//! shown, approved and enforced. Source ports never become part of an edge.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::zone::{ZoneError, ZoneName};

/// The protocols an edge can name. TCP, UDP and SCTP edges carry a destination port;
/// ICMP (ICMP over IPv4 and ICMPv6 alike) and every other IP protocol carry port 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    /// Any other IP protocol (IPv4 protocol or IPv6 next header), by number: GRE is
    /// `Ip(47)`. Never 1, 6, 17, 58 or 132, which have their own variants.
    Ip(u8),
}

/// Names accepted for other IP protocols besides `proto-N` (which is how they print).
const PROTO_ALIASES: [(&str, u8); 10] = [
    ("igmp", 2),
    ("ipip", 4),
    ("dccp", 33),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("ospf", 89),
    ("pim", 103),
    ("vrrp", 112),
    ("udplite", 136),
];

impl Proto {
    /// The name an edge prints: `tcp`, `udp`, `sctp`, `icmp`, or `proto-N`.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match self {
            Self::Tcp => "tcp".into(),
            Self::Udp => "udp".into(),
            Self::Sctp => "sctp".into(),
            Self::Icmp => "icmp".into(),
            Self::Ip(n) => format!("proto-{n}").into(),
        }
    }

    /// Whether edges of this protocol carry a destination port.
    pub fn has_ports(self) -> bool {
        matches!(self, Self::Tcp | Self::Udp | Self::Sctp)
    }

    /// The IPv4 protocol number (ICMP: 1).
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Sctp => 132,
            Self::Icmp => 1,
            Self::Ip(n) => n,
        }
    }

    /// The IPv6 next header of this protocol (ICMP: ICMPv6, 58).
    pub fn number_v6(self) -> u8 {
        match self {
            Self::Icmp => 58,
            other => other.number(),
        }
    }

    /// The protocol of an IPv4 protocol number or IPv6 next header (1 and 58 are ICMP).
    pub fn from_number(n: u8) -> Self {
        match n {
            6 => Self::Tcp,
            17 => Self::Udp,
            132 => Self::Sctp,
            1 | 58 => Self::Icmp,
            other => Self::Ip(other),
        }
    }
}

impl FromStr for Proto {
    type Err = EdgeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let unknown = || EdgeError::Proto {
            proto: s.to_owned(),
        };
        Ok(match lower.as_str() {
            "tcp" => Self::Tcp,
            "udp" => Self::Udp,
            "sctp" => Self::Sctp,
            "icmp" | "icmpv6" | "ipv6-icmp" => Self::Icmp,
            other => {
                let number = match other.strip_prefix("proto-") {
                    Some(n) => n.parse::<u8>().map_err(|_| unknown())?,
                    None => PROTO_ALIASES
                        .iter()
                        .find(|(name, _)| *name == other)
                        .map(|(_, n)| *n)
                        .ok_or_else(unknown)?,
                };
                match Self::from_number(number) {
                    Self::Ip(n) => Self::Ip(n),
                    Self::Icmp => Self::Icmp,
                    named => {
                        return Err(EdgeError::NamedProto {
                            proto: s.to_owned(),
                            name: named.name().into_owned(),
                        });
                    }
                }
            }
        })
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for Proto {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Proto {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeError {
    #[error(
        "edge {text:?} is not SRC->DST:PORT/PROTO (e.g. shop/frontend->shop/api:8080/tcp), SRC->DST:icmp or SRC->DST:proto-N"
    )]
    Syntax { text: String },
    #[error(
        "protocol {proto:?} is not one of tcp, udp, sctp, icmp, or proto-N for another IP protocol number N (gre, esp, ah, vrrp, ... are accepted too)"
    )]
    Proto { proto: String },
    #[error("edge {text:?} has no port: write PORT/{proto}")]
    MissingPort { text: String, proto: String },
    #[error("edge {text:?} has no protocol: write {port}/tcp, {port}/udp or {port}/sctp")]
    MissingProto { text: String, port: String },
    #[error("edge {text:?}: {proto} has no ports; write SRC->DST:{proto}")]
    NoPorts { text: String, proto: String },
    #[error("protocol {proto:?} is {name}: write PORT/{name}")]
    NamedProto { proto: String, name: String },
    #[error("port {port:?} is not a number from 1 to 65535")]
    Port { port: String },
    #[error("edge {text:?}: {source}")]
    Zone {
        text: String,
        #[source]
        source: ZoneError,
    },
}

/// One edge of the zone map. It is stored and exchanged in its text form
/// (`src->dst:port/proto`), which is also what operators type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Edge {
    pub src: ZoneName,
    pub dst: ZoneName,
    pub proto: Proto,
    /// Destination port; 0 for ICMP.
    pub port: u16,
}

impl Edge {
    pub fn new(src: ZoneName, dst: ZoneName, proto: Proto, port: u16) -> Self {
        let port = if proto.has_ports() { port } else { 0 };
        Self {
            src,
            dst,
            proto,
            port,
        }
    }

    /// Whether `zone` is one of the two ends.
    pub fn touches(&self, zone: &ZoneName) -> bool {
        &self.src == zone || &self.dst == zone
    }

    /// What follows the `:` of the edge's text: `8080/tcp`, `icmp` or `proto-47`
    /// (the label of an arrow on a zone map).
    pub fn service(&self) -> String {
        if self.proto.has_ports() {
            format!("{}/{}", self.port, self.proto)
        } else {
            self.proto.to_string()
        }
    }
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{}:{}", self.src, self.dst, self.service())
    }
}

impl TryFrom<String> for Edge {
    type Error = EdgeError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Edge> for String {
    fn from(edge: Edge) -> Self {
        edge.to_string()
    }
}

impl FromStr for Edge {
    type Err = EdgeError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || EdgeError::Syntax {
            text: text.to_owned(),
        };
        let (src, rest) = text.split_once("->").ok_or_else(syntax)?;
        let (dst, service) = rest.rsplit_once(':').ok_or_else(syntax)?;
        let zone = |z: &str| {
            ZoneName::parse_any(z.trim()).map_err(|source| EdgeError::Zone {
                text: text.to_owned(),
                source,
            })
        };
        let (src, dst) = (zone(src)?, zone(dst)?);
        let (proto, port) =
            match service.split_once('/') {
                Some((port, proto)) => {
                    let proto: Proto = proto.parse()?;
                    if !proto.has_ports() {
                        return Err(EdgeError::NoPorts {
                            text: text.to_owned(),
                            proto: proto.name().into_owned(),
                        });
                    }
                    let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                        EdgeError::Port {
                            port: port.to_owned(),
                        }
                    })?;
                    (proto, port)
                }
                None => {
                    if service.parse::<u16>().is_ok() {
                        return Err(EdgeError::MissingProto {
                            text: text.to_owned(),
                            port: service.to_owned(),
                        });
                    }
                    let proto: Proto = service.parse()?;
                    if proto.has_ports() {
                        return Err(EdgeError::MissingPort {
                            text: text.to_owned(),
                            proto: proto.name().into_owned(),
                        });
                    }
                    (proto, 0)
                }
            };
        Ok(Self::new(src, dst, proto, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text() {
        for text in [
            "shop/frontend->shop/api:8080/tcp",
            "a->b:53/udp",
            "host->shop/db:icmp",
            "x->world:443/tcp",
            "a->b:proto-47",
            "a->b:proto-253",
        ] {
            let edge: Edge = text.parse().unwrap();
            assert_eq!(edge.to_string(), text);
            assert!(text.ends_with(&format!(":{}", edge.service())), "{text}");
        }
        let edge: Edge = "a->b:8080/tcp".parse().unwrap();
        assert_eq!(edge.service(), "8080/tcp");
    }

    #[test]
    fn other_protocols_by_number_or_name() {
        let gre: Edge = "a->b:gre".parse().unwrap();
        assert_eq!(gre.to_string(), "a->b:proto-47");
        assert_eq!(gre.proto, Proto::Ip(47));
        let icmp: Edge = "a->b:proto-58".parse().unwrap();
        assert_eq!(icmp.to_string(), "a->b:icmp", "ICMPv6 is icmp");
        assert_eq!(Proto::from_number(1), Proto::Icmp);
        assert_eq!(Proto::from_number(58), Proto::Icmp);
        assert_eq!(Proto::from_number(253), Proto::Ip(253));
        assert_eq!(Proto::Icmp.number_v6(), 58);
        assert_eq!(Proto::Ip(47).number_v6(), 47);
        for n in 0..=255u8 {
            let p = Proto::from_number(n);
            assert_eq!(p.name().parse::<Proto>().unwrap(), p, "protocol {n}");
        }
    }

    #[test]
    fn serializes_as_text_so_it_can_key_a_json_map() {
        let edge: Edge = "a->b:53/udp".parse().unwrap();
        let map = std::collections::BTreeMap::from([(edge.clone(), 1)]);
        let json = serde_json::to_string(&map).unwrap();
        assert_eq!(json, r#"{"a->b:53/udp":1}"#);
        let back: std::collections::BTreeMap<Edge, i32> = serde_json::from_str(&json).unwrap();
        assert_eq!(back[&edge], 1);
        assert!(serde_json::from_str::<Edge>(r#""a-b""#).is_err());
    }

    #[test]
    fn rejects_bad_edges_with_the_reason() {
        let cases = [
            ("a-b:80/tcp", "SRC->DST"),
            ("a->b:80", "protocol"),
            ("a->b:0/tcp", "port"),
            ("a->b:99999/tcp", "port"),
            ("a->b:80/gre", "has no ports"),
            ("a->b:proto-6", "write PORT/tcp"),
            ("a->b:proto-300", "proto-N"),
            ("a->b:ipx", "proto-N"),
            ("A->b:80/tcp", "invalid"),
        ];
        for (text, needle) in cases {
            let err = text.parse::<Edge>().unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
