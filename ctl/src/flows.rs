//! `zwctl flows watch`: the connections the data plane reports, live, one line
//! each, as `hubble observe` shows them; until Ctrl-C.
//!
//! The table's log rules report the first packet of a connection once per
//! (source, destination, protocol, port) and window, so a busy edge shows up once
//! per window, not once per connection; approved connections, which no rule logs,
//! come from connection tracking while someone watches, with the same window. The table output starts with a header line
//! and has fixed columns (time, verdict, source and destination with their zones,
//! addresses and ports, protocol, the reporting zone); `-o json` prints one JSON
//! object per line (camelCase fields), `-o yaml` one document per flow.

use std::io::{self, Write as _};

use clap::{Args, Subcommand};
use serde::Serialize;
use zonewarden_profiles::Edge;
use zonewarden_profiles::event::{FlowVerdict, ReportKind};
use zonewarden_proto::model::{self, flow_verdict_to_proto};
use zonewarden_proto::v1;

use crate::choice;
use crate::cli::{GlobalArgs, OutputFormat};
use crate::client::Enforcer;
use crate::view::word;

pub const EXAMPLES: &str = "\
Columns:
  TIME         when the enforcer received it (UTC, HH:MM:SS.mmm)
  VERDICT      what the data plane did (below)
  SOURCE       the source zone, address and port
  DESTINATION  the destination zone, address and port (no port for ICMP and protocols
               without ports)
  PROTO        tcp, udp, sctp, icmp or proto-N
  REPORTED-BY  the zone whose rule reported it and its profile version in force; for
               allow, the zone whose approval let it pass (empty when exempt)

Verdicts:
  allow       its edge is approved (or exempt, like the node's probes): passed
  learn       a zone in learn mode let it pass and recorded the edge
  violation   a zone in monitor mode let an unapproved edge pass and reported it
  drop        an enforcing zone dropped an unapproved edge
  quarantine  a quarantined zone or endpoint was cut off
  spoof       a container sent from an address that is not its own

Examples:
  # Everything, live, until Ctrl-C
  zwctl flows watch

  # What is dropped for one zone right now
  zwctl flows watch --zone shop/db --verdict drop

  # Everything from or to the zones of one namespace
  zwctl flows watch --namespace shop

  # JSON lines, for jq
  zwctl flows watch -o json | jq -r 'select(.verdict == \"drop\") | .edge'";

#[derive(Debug, Subcommand)]
pub enum FlowsCommand {
    /// Stream reported connections live (like hubble observe), until Ctrl-C.
    #[command(after_help = EXAMPLES)]
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only flows from or to this zone (e.g. shop/db).
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,

    /// Only flows from or to a zone of this namespace (shop: shop/web, shop/db, ...).
    #[arg(long, value_name = "NAMESPACE", value_parser = parse_namespace)]
    pub namespace: Option<String>,

    /// Only flows with this verdict.
    #[arg(
        long,
        value_name = "VERDICT",
        value_parser = choice::parser(&FlowVerdict::ALL, FlowVerdict::as_str, flow_verdict_help)
    )]
    pub verdict: Option<FlowVerdict>,
}

fn parse_namespace(text: &str) -> Result<String, String> {
    zonewarden_profiles::zone::parse_namespace(text)
        .map(str::to_owned)
        .map_err(|e| e.to_string())
}

fn flow_verdict_help(verdict: FlowVerdict) -> &'static str {
    match verdict {
        FlowVerdict::Allow => "Passed: its edge is approved (or exempt, like host probes)",
        FlowVerdict::Learn => "Passed and recorded (learn mode)",
        FlowVerdict::Reported(ReportKind::Violation) => "Passed and reported (monitor mode)",
        FlowVerdict::Reported(ReportKind::Drop) => "Dropped (enforce mode)",
        FlowVerdict::Reported(ReportKind::Quarantine) => "Dropped: quarantine",
        FlowVerdict::Reported(ReportKind::Spoof) => "Dropped: spoofed source address",
    }
}

/// One flow as `-o json|yaml` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowView {
    pub at_unix_ms: i64,
    pub verdict: String,
    pub edge: String,
    pub src: String,
    pub dst: String,
    pub src_port: u32,
    /// Left out (with `profileVersion`) when no profile's rule reported it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reported_by: String,
    #[serde(skip_serializing_if = "crate::view::is_zero")]
    pub profile_version: u64,
    pub node: String,
    pub src_zone: String,
    pub dst_zone: String,
    /// `tcp`, `udp`, `sctp`, `icmp` or `proto-N`.
    pub protocol: String,
    /// 0 for protocols without ports.
    pub dst_port: u32,
}

impl From<v1::Flow> for FlowView {
    fn from(f: v1::Flow) -> Self {
        // An enforcer that sends only the edge: its ends, protocol and port from it.
        let parsed = f.edge.parse::<Edge>().ok();
        let or_edge = |given: String, part: fn(&Edge) -> String| {
            if given.is_empty() {
                parsed.as_ref().map(part).unwrap_or_default()
            } else {
                given
            }
        };
        let src_zone = or_edge(f.src_zone, |e| e.src.to_string());
        let dst_zone = or_edge(f.dst_zone, |e| e.dst.to_string());
        let protocol = or_edge(f.protocol, |e| e.proto.to_string());
        let dst_port = match (f.dst_port, &parsed) {
            (0, Some(edge)) => u32::from(edge.port),
            (port, _) => port,
        };
        Self {
            src_zone,
            dst_zone,
            protocol,
            dst_port,
            at_unix_ms: f.at_unix_ms,
            verdict: word(
                model::flow_verdict("verdict", f.verdict),
                FlowVerdict::as_str,
            ),
            edge: f.edge,
            src: f.src,
            dst: f.dst,
            src_port: f.src_port,
            reported_by: f.reported_by,
            profile_version: f.profile_version,
            node: f.node,
        }
    }
}

pub async fn run(command: &FlowsCommand, global: &GlobalArgs) -> anyhow::Result<String> {
    let FlowsCommand::Watch(args) = command;
    let mut enforcer = Enforcer::connect(global).await?;
    let mut flows = enforcer
        .watch_flows(v1::WatchFlowsRequest {
            zone: args.zone.clone().unwrap_or_default(),
            verdict: args.verdict.map(|v| flow_verdict_to_proto(v).into()),
            namespace: args.namespace.clone().unwrap_or_default(),
        })
        .await?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    // The header goes out at once: the watcher sees it is watching.
    let mut pending = if global.output.is_structured() {
        String::new()
    } else {
        flow_header()
    };
    loop {
        if !pending.is_empty() {
            let mut stdout = io::stdout().lock();
            match stdout
                .write_all(pending.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => pending.clear(),
                // The reader went away (`| head`): done.
                Err(err) if err.kind() == io::ErrorKind::BrokenPipe => return Ok(String::new()),
                Err(err) => return Err(err.into()),
            }
        }
        let flow = tokio::select! {
            _ = &mut ctrl_c => return Ok(String::new()),
            flow = enforcer.next_flow(&mut flows) => flow?,
        };
        let Some(flow) = flow else {
            anyhow::bail!("the enforcer ended the flow stream (was it stopped?)");
        };
        pending = render_flow(&FlowView::from(flow), global.output)?;
    }
}

/// Widths of the fixed columns of the table output (a longer value pushes the rest).
const COLUMNS: [usize; 5] = [12, 10, 38, 38, 6];

/// The header line of the table output.
pub fn flow_header() -> String {
    row([
        "TIME",
        "VERDICT",
        "SOURCE",
        "DESTINATION",
        "PROTO",
        "REPORTED-BY",
    ])
}

fn row(cells: [&str; 6]) -> String {
    let mut line = String::new();
    for (cell, width) in cells.iter().zip(COLUMNS) {
        line.push_str(&format!("{cell:<width$}  "));
    }
    line.push_str(cells[5]);
    let mut line = line.trim_end().to_owned();
    line.push('\n');
    line
}

/// One flow: a line of text, a JSON line, or a YAML document.
pub fn render_flow(flow: &FlowView, format: OutputFormat) -> anyhow::Result<String> {
    Ok(match format {
        OutputFormat::Json => format!("{}\n", serde_json::to_string(flow)?),
        OutputFormat::Yaml => format!("---\n{}", serde_saphyr::to_string(flow)?),
        _ => flow_line(flow),
    })
}

/// One row of the table output, under [`flow_header`]:
/// `08:00:01.123  DROP        shop/web 10.0.0.1:40312  shop/db 10.0.0.2:5432  tcp  shop/db v3`.
pub fn flow_line(flow: &FlowView) -> String {
    let with_port = |addr: &str, port: u32| match (addr.contains(':'), port) {
        (_, 0) => addr.to_owned(),
        (true, port) => format!("[{addr}]:{port}"),
        (false, port) => format!("{addr}:{port}"),
    };
    let end = |zone: &str, addr: String| {
        if zone.is_empty() {
            addr
        } else {
            format!("{zone} {addr}")
        }
    };
    let src = end(&flow.src_zone, with_port(&flow.src, flow.src_port));
    let dst = end(&flow.dst_zone, with_port(&flow.dst, flow.dst_port));
    let by = if flow.reported_by.is_empty() {
        String::new()
    } else {
        format!("{} v{}", flow.reported_by, flow.profile_version)
    };
    row([
        &time_of_day(flow.at_unix_ms),
        &flow.verdict.to_uppercase(),
        &src,
        &dst,
        &flow.protocol,
        &by,
    ])
}

/// `HH:MM:SS.mmm` (UTC) of a time in milliseconds since the Unix epoch.
fn time_of_day(unix_ms: i64) -> String {
    let ms = unix_ms.rem_euclid(86_400_000);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> FlowView {
        FlowView::from(v1::Flow {
            at_unix_ms: 1_800_000_001_123,
            verdict: v1::Verdict::Drop.into(),
            edge: "shop/web->shop/db:5432/tcp".into(),
            src: "10.0.0.1".into(),
            dst: "10.0.0.2".into(),
            src_port: 40312,
            reported_by: "shop/db".into(),
            profile_version: 3,
            node: "n1".into(),
            src_zone: "shop/web".into(),
            dst_zone: "shop/db".into(),
            protocol: "tcp".into(),
            dst_port: 5432,
        })
    }

    #[test]
    fn a_flow_is_one_row_under_a_header_like_hubble_observe() {
        let text = flow_header() + &flow_line(&flow());
        assert_eq!(
            text,
            "\
TIME          VERDICT     SOURCE                                  DESTINATION                             PROTO   REPORTED-BY
08:00:01.123  DROP        shop/web 10.0.0.1:40312                 shop/db 10.0.0.2:5432                   tcp     shop/db v3
"
        );
        // ICMP from IPv6, reported by nobody, from an enforcer that sends only the edge.
        let icmp = FlowView::from(v1::Flow {
            at_unix_ms: 1_800_000_001_123,
            verdict: v1::Verdict::Learn.into(),
            edge: "a->b:icmp".into(),
            src: "fd00::1".into(),
            dst: "fd00::2".into(),
            ..Default::default()
        });
        assert_eq!(
            flow_line(&icmp),
            "08:00:01.123  LEARN       a fd00::1                               b fd00::2                               icmp\n"
        );
        let mut v6 = flow();
        v6.src = "fd00::1".into();
        assert!(flow_line(&v6).contains("shop/web [fd00::1]:40312"));
    }

    #[test]
    fn the_namespace_filter_is_checked_before_anything_is_sent() {
        use crate::cli::{Cli, Command};
        use clap::Parser;
        let cli = Cli::try_parse_from(["zwctl", "flows", "watch", "--namespace", "shop"]).unwrap();
        let Command::Flows(FlowsCommand::Watch(args)) = cli.command else {
            panic!("expected flows watch");
        };
        assert_eq!(args.namespace.as_deref(), Some("shop"));
        let err = Cli::try_parse_from(["zwctl", "flows", "watch", "--namespace", "shop/web"])
            .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(err.to_string().contains("before '/'"), "{err}");
    }

    #[test]
    fn verdicts_print_the_model_words() {
        for (verdict, text) in [
            (v1::Verdict::Allow, "allow"),
            (v1::Verdict::Learn, "learn"),
            (v1::Verdict::Violation, "violation"),
            (v1::Verdict::Drop, "drop"),
            (v1::Verdict::Quarantine, "quarantine"),
            (v1::Verdict::Spoof, "spoof"),
        ] {
            let view = FlowView::from(v1::Flow {
                verdict: verdict.into(),
                ..Default::default()
            });
            let json = serde_json::to_value(&view).unwrap();
            assert_eq!(json["verdict"], text);
        }
    }

    #[test]
    fn the_verdict_filter_takes_the_printed_words() {
        use crate::cli::{Cli, Command};
        use clap::Parser;
        for (text, verdict) in [
            ("allow", v1::Verdict::Allow),
            ("learn", v1::Verdict::Learn),
            ("violation", v1::Verdict::Violation),
            ("drop", v1::Verdict::Drop),
            ("quarantine", v1::Verdict::Quarantine),
            ("spoof", v1::Verdict::Spoof),
        ] {
            let cli = Cli::try_parse_from(["zwctl", "flows", "watch", "--verdict", text]).unwrap();
            let Command::Flows(FlowsCommand::Watch(args)) = cli.command else {
                panic!("expected flows watch");
            };
            let sent = args.verdict.map(|v| i32::from(flow_verdict_to_proto(v)));
            assert_eq!(sent, Some(verdict.into()), "{text}");
        }
        assert!(Cli::try_parse_from(["zwctl", "flows", "watch", "--verdict", "pass"]).is_err());
    }

    #[test]
    fn json_is_one_object_per_line() {
        let text = render_flow(&flow(), OutputFormat::Json).unwrap();
        assert_eq!(text.lines().count(), 1);
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["verdict"], "drop");
        assert_eq!(json["srcPort"], 40312);
        assert_eq!(json["dstPort"], 5432);
        assert_eq!(json["srcZone"], "shop/web");
        assert_eq!(json["dstZone"], "shop/db");
        assert_eq!(json["protocol"], "tcp");
        let yaml = render_flow(&flow(), OutputFormat::Yaml).unwrap();
        assert!(yaml.starts_with("---\natUnixMs: 1800000001123\n"), "{yaml}");
    }
}
