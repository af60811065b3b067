//! The text form of an edge, checked before it is sent: `SRC->DST:PORT/PROTO`
//! (PROTO tcp, udp or sctp; PORT 1-65535) or `SRC->DST:icmp`.
//!
//! This is the grammar `zonewarden-profiles` parses (`Edge::from_str`); zwctl only
//! checks the shape so a typo fails at once with an example. Zone names inside an
//! edge are validated by the enforcer, whose message zwctl prints.

/// Shown in every error, so the fix is one copy away.
pub const EXAMPLES: &str = "e.g. shop/frontend->shop/api:8080/tcp, or host->shop/db:icmp";

/// A clap value parser for `--edge`: the edge as given (trimmed), or why it is
/// not an edge.
pub fn parse_edge(text: &str) -> Result<String, String> {
    let text = text.trim();
    let fail = |why: &str| Err(format!("edge {text:?} {why} ({EXAMPLES})"));
    let Some((src, rest)) = text.split_once("->") else {
        return fail("is not SRC->DST:PORT/PROTO or SRC->DST:icmp: \"->\" is missing");
    };
    let Some((dst, service)) = rest.rsplit_once(':') else {
        return fail("has no \":PORT/PROTO\" (or \":icmp\") after the destination zone");
    };
    for (end, zone) in [("source", src.trim()), ("destination", dst.trim())] {
        if zone.is_empty() {
            return fail(&format!("has no {end} zone"));
        }
        if zone.contains(char::is_whitespace) || zone.contains("->") {
            return fail(&format!("has an invalid {end} zone {zone:?}"));
        }
    }
    match service.split_once('/') {
        Some((port, proto)) => {
            if !is_protocol(proto) {
                return fail(&format!(
                    "names protocol {proto:?}, not one of tcp, udp, sctp, icmp"
                ));
            }
            if !port.parse::<u16>().is_ok_and(|port| port > 0) {
                return fail(&format!(
                    "names port {port:?}, not a number from 1 to 65535"
                ));
            }
        }
        None if is_icmp(service) => {}
        None if is_protocol(service) => {
            return fail(&format!("has no port: write PORT/{service}"));
        }
        None if service.parse::<u16>().is_ok() => {
            return fail(&format!(
                "has no protocol: write {service}/tcp, {service}/udp or {service}/sctp"
            ));
        }
        None => {
            return fail(&format!(
                "names protocol {service:?}, not one of tcp, udp, sctp, icmp"
            ));
        }
    }
    Ok(text.to_owned())
}

fn is_icmp(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("icmp") || proto.eq_ignore_ascii_case("icmpv6")
}

fn is_protocol(proto: &str) -> bool {
    is_icmp(proto)
        || ["tcp", "udp", "sctp"]
            .iter()
            .any(|p| proto.eq_ignore_ascii_case(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_the_enforcer_accepts() {
        for text in [
            "shop/frontend->shop/api:8080/tcp",
            "a->b:53/udp",
            "a->b:3868/sctp",
            "host->shop/db:icmp",
            "x->world:443/tcp",
            "a->b:65535/TCP",
            "a->b:icmpv6",
        ] {
            assert_eq!(parse_edge(text).as_deref(), Ok(text), "{text}");
        }
        assert_eq!(
            parse_edge("  a->b:80/tcp ").as_deref(),
            Ok("a->b:80/tcp"),
            "surrounding spaces are trimmed"
        );
    }

    #[test]
    fn rejects_bad_edges_naming_them_the_reason_and_an_example() {
        let cases = [
            ("a-b:80/tcp", "\"->\" is missing"),
            ("a->b", "no \":PORT/PROTO\""),
            ("->b:80/tcp", "no source zone"),
            ("a->:80/tcp", "no destination zone"),
            ("a->b c:80/tcp", "invalid destination zone"),
            ("a->b:80", "no protocol: write 80/tcp"),
            ("a->b:tcp", "no port: write PORT/tcp"),
            ("a->b:0/tcp", "port \"0\""),
            ("a->b:99999/tcp", "port \"99999\""),
            ("a->b:http/tcp", "port \"http\""),
            ("a->b:80/gre", "protocol \"gre\""),
            ("a->b:gre", "protocol \"gre\""),
            ("", "\"->\" is missing"),
        ];
        for (text, needle) in cases {
            let err = parse_edge(text).expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
            assert!(
                err.starts_with(&format!("edge {:?} ", text.trim())),
                "{err}"
            );
            assert!(
                err.contains("shop/frontend->shop/api:8080/tcp"),
                "no example: {err}"
            );
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }
}
