//! The text form of an edge, checked before it is sent: `SRC->DST:PORT/PROTO`
//! (PROTO tcp, udp or sctp; PORT 1-65535), `SRC->DST:icmp` or `SRC->DST:proto-N`.
//!
//! The grammar is the one of `zonewarden-profiles` ([`Edge`]), the same the enforcer
//! parses: zwctl checks it at once so that a typo fails with the reason and an example.

use zonewarden_profiles::Edge;

/// Shown in every error, so the fix is one copy away.
pub const EXAMPLES: &str =
    "e.g. shop/frontend->shop/api:8080/tcp, host->shop/db:icmp or shop/vpn->world:proto-47";

/// A clap value parser for `--edge`: the edge in its canonical form, or why it is not
/// an edge.
pub fn parse_edge(text: &str) -> Result<String, String> {
    let text = text.trim();
    match text.parse::<Edge>() {
        Ok(edge) => Ok(edge.to_string()),
        Err(err) => {
            let reason = err.to_string();
            let reason = if reason.starts_with("edge ") {
                reason
            } else {
                format!("edge {text:?}: {reason}")
            };
            Err(format!("{reason} ({EXAMPLES})"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_the_enforcer_accepts_in_its_canonical_form() {
        for (text, canonical) in [
            (
                "shop/frontend->shop/api:8080/tcp",
                "shop/frontend->shop/api:8080/tcp",
            ),
            ("a->b:53/udp", "a->b:53/udp"),
            ("a->b:3868/sctp", "a->b:3868/sctp"),
            ("host->shop/db:icmp", "host->shop/db:icmp"),
            ("x->world:443/tcp", "x->world:443/tcp"),
            ("a->b:65535/TCP", "a->b:65535/tcp"),
            ("a->b:icmpv6", "a->b:icmp"),
            ("a->b:gre", "a->b:proto-47"),
            ("a->b:proto-253", "a->b:proto-253"),
            ("  a->b:80/tcp ", "a->b:80/tcp"),
        ] {
            assert_eq!(parse_edge(text).as_deref(), Ok(canonical), "{text}");
        }
    }

    #[test]
    fn rejects_bad_edges_naming_them_the_reason_and_an_example() {
        let cases = [
            ("a-b:80/tcp", "SRC->DST"),
            ("a->b", "SRC->DST"),
            ("->b:80/tcp", "zone"),
            ("a->:80/tcp", "zone"),
            ("a->b c:80/tcp", "zone"),
            ("a->b:80", "no protocol: write 80/tcp"),
            ("a->b:tcp", "no port: write PORT/tcp"),
            ("a->b:0/tcp", "port \"0\""),
            ("a->b:99999/tcp", "port \"99999\""),
            ("a->b:http/tcp", "port \"http\""),
            ("a->b:80/gre", "has no ports"),
            ("a->b:ipx", "protocol \"ipx\""),
            ("", "SRC->DST"),
        ];
        for (text, needle) in cases {
            let err = parse_edge(text).expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
            assert!(err.starts_with(&format!("edge {:?}", text.trim())), "{err}");
            assert!(
                err.contains("shop/frontend->shop/api:8080/tcp"),
                "no example: {err}"
            );
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }
}
