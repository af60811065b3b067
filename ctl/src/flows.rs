//! `zwctl flows watch`: the connections the data plane reports, live, one line
//! each, as `hubble observe` shows them; until Ctrl-C.
//!
//! The table's log rules report the first packet of a connection once per
//! (source, destination, protocol, port) and window, so a busy edge shows up once
//! per window, not once per connection. `-o json` prints one JSON object per line,
//! `-o yaml` one document per flow.

use std::io::{self, Write as _};

use clap::{Args, Subcommand};
use serde::Serialize;
use zonewarden_profiles::Edge;
use zonewarden_profiles::event::ReportKind;
use zonewarden_proto::model::{self, verdict_to_proto};
use zonewarden_proto::v1;

use crate::choice;
use crate::cli::{GlobalArgs, OutputFormat};
use crate::client::Enforcer;
use crate::view::word;

pub const EXAMPLES: &str = "\
Verdicts:
  allow       a zone in learn mode let it pass and recorded the edge
  violation   a zone in monitor mode let an unapproved edge pass and reported it
  drop        an enforcing zone dropped an unapproved edge
  quarantine  a quarantined zone or endpoint was cut off
  spoof       a container sent from an address that is not its own

Examples:
  # Everything, live, until Ctrl-C
  zwctl flows watch

  # What is dropped for one zone right now
  zwctl flows watch --zone shop/db --verdict drop

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

    /// Only flows with this verdict.
    #[arg(
        long,
        value_name = "VERDICT",
        value_parser = choice::parser(&FLOW_VERDICTS, flow_verdict_word, flow_verdict_help)
    )]
    pub verdict: Option<FlowVerdict>,
}

/// What the data plane did with a flow: the report's kind, or `None` for a flow a
/// learning zone let pass (the model's `Option<ReportKind>`, a type of its own so
/// that clap reads `Option<FlowVerdict>` as an optional flag with a value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowVerdict(pub Option<ReportKind>);

const FLOW_VERDICTS: [FlowVerdict; 5] = [
    FlowVerdict(None),
    FlowVerdict(Some(ReportKind::Violation)),
    FlowVerdict(Some(ReportKind::Drop)),
    FlowVerdict(Some(ReportKind::Quarantine)),
    FlowVerdict(Some(ReportKind::Spoof)),
];

/// The word zwctl prints and takes for a flow's verdict: `allow` for a learned flow
/// (the data plane's `learn`), the report's kind otherwise.
fn flow_verdict_word(verdict: FlowVerdict) -> &'static str {
    verdict.0.map_or("allow", ReportKind::as_str)
}

fn flow_verdict_help(verdict: FlowVerdict) -> &'static str {
    match verdict.0 {
        None => "Passed and recorded (learn mode)",
        Some(ReportKind::Violation) => "Passed and reported (monitor mode)",
        Some(ReportKind::Drop) => "Dropped (enforce mode)",
        Some(ReportKind::Quarantine) => "Dropped: quarantine",
        Some(ReportKind::Spoof) => "Dropped: spoofed source address",
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
    pub reported_by: String,
    pub profile_version: u64,
    pub node: String,
}

impl From<v1::Flow> for FlowView {
    fn from(f: v1::Flow) -> Self {
        Self {
            at_unix_ms: f.at_unix_ms,
            verdict: word(model::verdict("verdict", f.verdict), |v| {
                flow_verdict_word(FlowVerdict(v))
            }),
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
            verdict: args.verdict.map(|v| verdict_to_proto(v.0).into()),
        })
        .await?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let flow = tokio::select! {
            _ = &mut ctrl_c => return Ok(String::new()),
            flow = enforcer.next_flow(&mut flows) => flow?,
        };
        let Some(flow) = flow else {
            anyhow::bail!("the enforcer ended the flow stream (was it stopped?)");
        };
        let text = render_flow(&FlowView::from(flow), global.output)?;
        let mut stdout = io::stdout().lock();
        match stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            Ok(()) => {}
            // The reader went away (`| head`): done.
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => return Ok(String::new()),
            Err(err) => return Err(err.into()),
        }
    }
}

/// One flow: a line of text, a JSON line, or a YAML document.
pub fn render_flow(flow: &FlowView, format: OutputFormat) -> anyhow::Result<String> {
    Ok(match format {
        OutputFormat::Json => format!("{}\n", serde_json::to_string(flow)?),
        OutputFormat::Yaml => format!("---\n{}", serde_saphyr::to_string(flow)?),
        _ => flow_line(flow),
    })
}

/// `12:00:01.123  DROP        shop/web -> shop/db  5432/tcp  10.0.0.1:40312 -> 10.0.0.2  by shop/db v3`
pub fn flow_line(flow: &FlowView) -> String {
    let (zones, service) = match flow.edge.parse::<Edge>() {
        Ok(edge) => (format!("{} -> {}", edge.src, edge.dst), edge.service()),
        Err(_) => (flow.edge.clone(), String::new()),
    };
    let src = match (flow.src.contains(':'), flow.src_port) {
        (_, 0) => flow.src.clone(),
        (true, port) => format!("[{}]:{port}", flow.src),
        (false, port) => format!("{}:{port}", flow.src),
    };
    let mut line = format!(
        "{}  {:<10}  {zones}  {service}  {src} -> {}",
        time_of_day(flow.at_unix_ms),
        flow.verdict.to_uppercase(),
        flow.dst
    );
    if !flow.reported_by.is_empty() {
        line.push_str(&format!(
            "  by {} v{}",
            flow.reported_by, flow.profile_version
        ));
    }
    line.push('\n');
    line
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
        FlowView {
            at_unix_ms: 1_800_000_001_123,
            verdict: "drop".into(),
            edge: "shop/web->shop/db:5432/tcp".into(),
            src: "10.0.0.1".into(),
            dst: "10.0.0.2".into(),
            src_port: 40312,
            reported_by: "shop/db".into(),
            profile_version: 3,
            node: "n1".into(),
        }
    }

    #[test]
    fn a_flow_is_one_line_like_hubble_observe() {
        assert_eq!(
            flow_line(&flow()),
            "08:00:01.123  DROP        shop/web -> shop/db  5432/tcp  10.0.0.1:40312 -> 10.0.0.2  by shop/db v3\n"
        );
        let mut icmp = flow();
        icmp.edge = "a->b:icmp".into();
        icmp.src = "fd00::1".into();
        icmp.src_port = 0;
        icmp.reported_by.clear();
        icmp.verdict = "allow".into();
        assert_eq!(
            flow_line(&icmp),
            "08:00:01.123  ALLOW       a -> b  icmp  fd00::1 -> 10.0.0.2\n"
        );
    }

    #[test]
    fn verdicts_print_the_same_words_as_before() {
        for (verdict, text) in [
            (v1::Verdict::Learn, "allow"),
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
            ("allow", v1::Verdict::Learn),
            ("violation", v1::Verdict::Violation),
            ("drop", v1::Verdict::Drop),
            ("quarantine", v1::Verdict::Quarantine),
            ("spoof", v1::Verdict::Spoof),
        ] {
            let cli = Cli::try_parse_from(["zwctl", "flows", "watch", "--verdict", text]).unwrap();
            let Command::Flows(FlowsCommand::Watch(args)) = cli.command else {
                panic!("expected flows watch");
            };
            let sent = args.verdict.map(|v| i32::from(verdict_to_proto(v.0)));
            assert_eq!(sent, Some(verdict.into()), "{text}");
        }
        assert!(Cli::try_parse_from(["zwctl", "flows", "watch", "--verdict", "learn"]).is_err());
    }

    #[test]
    fn json_is_one_object_per_line() {
        let text = render_flow(&flow(), OutputFormat::Json).unwrap();
        assert_eq!(text.lines().count(), 1);
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["verdict"], "drop");
        assert_eq!(json["srcPort"], 40312);
        let yaml = render_flow(&flow(), OutputFormat::Yaml).unwrap();
        assert!(yaml.starts_with("---\natUnixMs: 1800000001123\n"), "{yaml}");
    }
}
