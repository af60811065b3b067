//! `zwctl status`: is the enforcer up and ready to serve container attachments?
//!
//! It exits 1 when the enforcer answers "not ready", so it doubles as a
//! readiness probe (see `deploy/kubernetes/zonewarden.yaml`).

use clap::Args;

use crate::CommandOutput;
use crate::cli::GlobalArgs;
use crate::client::Enforcer;
use crate::render::{self, RenderContext, TableRow};
use crate::view::StatusView;

pub const EXAMPLES: &str = "\
Columns:
  NODE       the node the enforcer runs on
  READY      true when the enforcer accepts new container attachments
  ENDPOINTS  how many container attachments it holds
  EDGES      learned edges kept / the most kept (--max-learned-edges; the stalest goes)
  LOST       logged connections learning missed (the kernel's or the learning
             queue's buffer was full during a flood; -o json says which)
  VERSION    the enforcer's version
  STORE      where the state lives: local, or etcd with its revision and watch lag
             (revisions seen, not yet applied); DOWN when it takes no writes (operator
             changes are refused, enforcement goes on)
  MESSAGE    why it is not ready, or other news from the enforcer

Exit status: 0 when the enforcer is ready, 1 when it is not ready or cannot be reached.

Examples:
  # Check the enforcer on this node
  zwctl status

  # As a readiness or monitoring probe: quiet, exit status only
  zwctl status --timeout 2 >/dev/null

  # The enforcer's version, for scripts
  zwctl status -o json | jq -r .version

  # Logged connections lost, by cause (kernel, queue, unreadable)
  zwctl status -o json | jq .learning.dropped

  # The events log (--events-log): where it goes, lines written and lost
  zwctl status -o json | jq .eventsLog";

#[derive(Debug, Args)]
pub struct StatusArgs {}

/// Asks the enforcer for its status; a "not ready" answer is printed and fails.
pub async fn run(_args: &StatusArgs, global: &GlobalArgs) -> anyhow::Result<CommandOutput> {
    let mut enforcer = Enforcer::connect(global).await?;
    let status = StatusView::from(enforcer.status().await?);
    let stdout = render::render_object(&status, global.output, &RenderContext::now())?;
    Ok(CommandOutput {
        failure: not_ready_failure(&status, global),
        stdout,
    })
}

fn not_ready_failure(status: &StatusView, global: &GlobalArgs) -> Option<anyhow::Error> {
    if status.ready {
        return None;
    }
    let reason = if status.message.is_empty() {
        "no reason given"
    } else {
        &status.message
    };
    Some(anyhow::anyhow!(
        "the zonewarden enforcer at {} is not ready: {reason}",
        global.socket.display()
    ))
}

impl TableRow for StatusView {
    const HEADERS: &'static [&'static str] = &[
        "NODE",
        "READY",
        "ENDPOINTS",
        "EDGES",
        "LOST",
        "VERSION",
        "STORE",
        "MESSAGE",
    ];

    fn cells(&self, _: &RenderContext) -> Vec<String> {
        let learning = &self.learning;
        vec![
            self.node.clone(),
            self.ready.to_string(),
            self.endpoint_count.to_string(),
            format!("{}/{}", learning.edges_learned, learning.edges_limit),
            learning.dropped.total().to_string(),
            self.version.clone(),
            self.store.summary(),
            self.message.clone(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use crate::cli::OutputFormat;
    use clap::Parser;

    const CTX: RenderContext = RenderContext { now_unix_ms: 0 };

    fn status(ready: bool, message: &str) -> StatusView {
        StatusView {
            ready,
            message: message.into(),
            node: "node-a".into(),
            endpoint_count: 7,
            version: "0.1.0".into(),
            store: crate::view::StoreView {
                kind: "local".into(),
                up: true,
                ..Default::default()
            },
            learning: crate::view::LearningView {
                events: 12,
                ingested: 9,
                dropped: crate::view::DroppedView {
                    kernel: 2,
                    queue: 1,
                    unreadable: 0,
                },
                edges_learned: 5,
                edges_limit: 10000,
                ..Default::default()
            },
            events_log: None,
        }
    }

    #[test]
    fn status_table_is_one_row() {
        let text = render::render_object(&status(true, ""), OutputFormat::Table, &CTX).unwrap();
        assert_eq!(
            text,
            "NODE     READY   ENDPOINTS   EDGES     LOST   VERSION   STORE   MESSAGE\n\
             node-a   true    7           5/10000   3      0.1.0     local   <none>\n"
        );
    }

    #[test]
    fn the_store_column_says_where_the_state_lives_and_whether_it_is_up() {
        let mut etcd = status(true, "");
        etcd.store = crate::view::StoreView {
            kind: "etcd".into(),
            up: true,
            detail: "etcd at http://10.0.0.1:2379".into(),
            revision: 42,
            watch_lag: 0,
        };
        assert_eq!(etcd.store.summary(), "etcd up (rev 42, lag 0)");
        etcd.store.up = false;
        assert_eq!(etcd.store.summary(), "etcd DOWN");
        let json = render::render_object(&etcd, OutputFormat::Json, &CTX).unwrap();
        assert!(json.contains("\"watchLag\": 0"), "{json}");
    }

    #[test]
    fn not_ready_fails_with_the_enforcers_reason() {
        let global = Cli::parse_from(["zwctl", "--socket", "/s", "status"]).global;
        assert!(not_ready_failure(&status(true, ""), &global).is_none());
        let failure =
            not_ready_failure(&status(false, "nftables table not yet programmed"), &global)
                .expect("a not-ready enforcer must fail the command");
        assert_eq!(
            failure.to_string(),
            "the zonewarden enforcer at /s is not ready: nftables table not yet programmed"
        );
    }
}
