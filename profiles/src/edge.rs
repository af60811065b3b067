//! Edges: `src zone -> dst zone, protocol, destination port`, the unit that is learned,
//! shown, approved and enforced. Source ports never become part of an edge.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::zone::{ZoneError, ZoneName};

/// Transport protocols an edge can name. ICMP edges carry port 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
    Icmp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
            Self::Icmp => "icmp",
        }
    }

    /// Whether edges of this protocol carry a destination port.
    pub fn has_ports(self) -> bool {
        self != Self::Icmp
    }

    /// The IP protocol number (ICMP for IPv4; the data plane matches ICMPv6 alike).
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Sctp => 132,
            Self::Icmp => 1,
        }
    }

    pub fn from_number(n: u8) -> Option<Self> {
        Some(match n {
            6 => Self::Tcp,
            17 => Self::Udp,
            132 => Self::Sctp,
            1 | 58 => Self::Icmp,
            _ => return None,
        })
    }
}

impl FromStr for Proto {
    type Err = EdgeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "tcp" => Self::Tcp,
            "udp" => Self::Udp,
            "sctp" => Self::Sctp,
            "icmp" | "icmpv6" => Self::Icmp,
            _ => {
                return Err(EdgeError::Proto {
                    proto: s.to_owned(),
                });
            }
        })
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeError {
    #[error(
        "edge {text:?} is not SRC->DST:PORT/PROTO (e.g. shop/frontend->shop/api:8080/tcp, or a->b:icmp)"
    )]
    Syntax { text: String },
    #[error("protocol {proto:?} is not one of tcp, udp, sctp, icmp")]
    Proto { proto: String },
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
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.proto.has_ports() {
            write!(f, "{}->{}:{}/{}", self.src, self.dst, self.port, self.proto)
        } else {
            write!(f, "{}->{}:{}", self.src, self.dst, self.proto)
        }
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
                    let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                        EdgeError::Port {
                            port: port.to_owned(),
                        }
                    })?;
                    (proto, port)
                }
                None => {
                    let proto: Proto = service.parse()?;
                    if proto.has_ports() {
                        return Err(syntax());
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
        ] {
            let edge: Edge = text.parse().unwrap();
            assert_eq!(edge.to_string(), text);
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
            ("a->b:80/gre", "protocol"),
            ("A->b:80/tcp", "invalid"),
        ];
        for (text, needle) in cases {
            let err = text.parse::<Edge>().unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
