//! Live flows: every connection the table's log rules report, as it is ingested,
//! for `zwctl flows watch` (the `WatchFlows` stream).
//!
//! Learning publishes each logged packet on one process-wide broadcast channel
//! (there is one node daemon per process, as there is one tracing subscriber);
//! each watcher subscribes and filters. Publishing never blocks and costs nothing
//! without watchers; a watcher too slow to keep up loses the oldest flows and is
//! told how many.

use std::net::IpAddr;
use std::sync::LazyLock;

use tokio::sync::broadcast;
use zonewarden_profiles::event::FlowVerdict;
use zonewarden_profiles::{Edge, ZoneName};
use zonewarden_proto::model::flow_verdict_to_proto;
use zonewarden_proto::v1;

pub mod allowed;
pub mod ctnetlink;

pub use allowed::AllowedFlows;

use crate::learning::Prefix;
use crate::nflog::LogEvent;
use crate::registry::Resolver;

/// Flows a watcher may lag behind before it loses the oldest.
const CAPACITY: usize = 4096;

static BUS: LazyLock<broadcast::Sender<v1::Flow>> =
    LazyLock::new(|| broadcast::channel(CAPACITY).0);

/// One connection, as learning (logged ones) or the reader of connection tracking
/// (approved ones) resolved it.
pub struct FlowEvent<'a> {
    pub at_unix_ms: i64,
    pub verdict: FlowVerdict,
    pub edge: &'a Edge,
    pub src: IpAddr,
    pub src_port: u16,
    pub dst: IpAddr,
    pub reported_by: Option<ZoneName>,
    pub profile_version: u64,
    pub node: &'a str,
}

/// Hands a flow to every watcher; does nothing without watchers.
pub fn publish(event: &FlowEvent<'_>) {
    if BUS.receiver_count() == 0 {
        return;
    }
    let _ = BUS.send(crate::convert::flow_to_proto(event));
}

/// Publishes one packet the table's log rules reported (called by learning).
pub fn publish_logged(
    event: &LogEvent,
    prefix: &Prefix,
    edge: &Edge,
    resolver: &Resolver,
    node: &str,
    now_ms: i64,
) {
    publish(&FlowEvent {
        at_unix_ms: now_ms,
        verdict: FlowVerdict::logged(prefix.report),
        edge,
        src: event.src,
        src_port: event.src_port,
        dst: event.dst,
        reported_by: prefix.zone_id.and_then(|id| resolver.zone_by_id(id)),
        profile_version: prefix.version,
        node,
    });
}

pub fn subscribe() -> broadcast::Receiver<v1::Flow> {
    BUS.subscribe()
}

/// How many watchers there are.
fn watchers() -> usize {
    BUS.receiver_count()
}

/// The flows one watcher receives, until it goes away.
pub type FlowStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<v1::Flow, tonic::Status>> + Send>>;

/// A watcher's stream: the flows its filter wants, approved ones from `allowed`'s
/// reader (started for it unless one runs). A watcher that falls behind skips what
/// it missed and goes on (the stream says nothing; `zwctl get violations` keeps the
/// record).
pub fn stream(filter: FlowFilter, allowed: &AllowedFlows) -> FlowStream {
    let flows = tokio_stream::wrappers::BroadcastStream::new(subscribe());
    allowed.ensure_running();
    Box::pin(tokio_stream::StreamExt::filter_map(flows, move |flow| {
        flow.ok().filter(|f| filter.matches(f)).map(Ok)
    }))
}

/// Which flows a watcher wants.
#[derive(Debug, Clone, Default)]
pub struct FlowFilter {
    pub zone: Option<ZoneName>,
    /// Flows from or to a zone of this namespace.
    pub namespace: Option<String>,
    pub verdict: Option<FlowVerdict>,
}

impl FlowFilter {
    /// Validates a `WatchFlowsRequest`.
    pub fn from_request(request: &v1::WatchFlowsRequest) -> Result<Self, tonic::Status> {
        let zone = if request.zone.is_empty() {
            None
        } else {
            Some(ZoneName::parse_any(&request.zone).map_err(|e| {
                tonic::Status::invalid_argument(format!("zone {:?}: {e}", request.zone))
            })?)
        };
        let namespace = if request.namespace.is_empty() {
            None
        } else {
            let ns = zonewarden_profiles::zone::parse_namespace(&request.namespace)
                .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
            Some(ns.to_owned())
        };
        let verdict = crate::convert::flow_filter(request.verdict)?;
        Ok(Self {
            zone,
            namespace,
            verdict,
        })
    }

    pub fn matches(&self, flow: &v1::Flow) -> bool {
        let edge = flow.edge.parse::<Edge>().ok();
        let zone_ok = self
            .zone
            .as_ref()
            .is_none_or(|zone| edge.as_ref().is_some_and(|e| e.touches(zone)));
        let namespace_ok = self.namespace.as_deref().is_none_or(|ns| {
            edge.as_ref().is_some_and(|e| {
                [&e.src, &e.dst]
                    .into_iter()
                    .any(|z| z.namespace() == Some(ns))
            })
        });
        zone_ok
            && namespace_ok
            && self
                .verdict
                .is_none_or(|v| flow.verdict == i32::from(flow_verdict_to_proto(v)))
    }
}

#[cfg(test)]
mod tests {
    use zonewarden_profiles::event::ReportKind;

    use super::*;

    fn event(edge: &Edge, report: Option<ReportKind>) -> FlowEvent<'_> {
        FlowEvent {
            at_unix_ms: 7,
            verdict: FlowVerdict::logged(report),
            edge,
            src: "10.0.0.1".parse().unwrap(),
            src_port: 40000,
            dst: "10.0.0.2".parse().unwrap(),
            reported_by: Some(ZoneName::parse("shop/db").unwrap()),
            profile_version: 3,
            node: "n1",
        }
    }

    #[tokio::test]
    async fn watchers_get_what_their_filter_wants() {
        let mut rx = subscribe();
        let edge: Edge = "shop/web->shop/db:5432/tcp".parse().unwrap();
        let other: Edge = "a->b:80/tcp".parse().unwrap();
        for (edge, report) in [
            (&other, Some(ReportKind::Drop)),
            (&edge, None),
            (&edge, Some(ReportKind::Drop)),
        ] {
            publish(&event(edge, report));
        }
        let filter = FlowFilter::from_request(&v1::WatchFlowsRequest {
            zone: "shop/db".into(),
            verdict: Some(v1::Verdict::Drop.into()),
            ..Default::default()
        })
        .unwrap();
        let mut got = Vec::new();
        while let Ok(flow) = rx.try_recv() {
            if filter.matches(&flow) {
                got.push(flow);
            }
        }
        // Other tests in this process may publish too; ours is there exactly once.
        let ours: Vec<_> = got.iter().filter(|f| f.at_unix_ms == 7).collect();
        assert_eq!(ours.len(), 1, "{got:?}");
        assert_eq!(ours[0].verdict(), v1::Verdict::Drop);
        assert_eq!(ours[0].edge, "shop/web->shop/db:5432/tcp");
        assert_eq!(ours[0].reported_by, "shop/db");
        let learned = FlowFilter::from_request(&v1::WatchFlowsRequest {
            verdict: Some(v1::Verdict::Learn.into()),
            ..Default::default()
        })
        .unwrap();
        assert!(learned.matches(&crate::convert::flow_to_proto(&event(&edge, None))));
        assert!(!learned.matches(ours[0]));
        for bad in [0, 9] {
            let err = FlowFilter::from_request(&v1::WatchFlowsRequest {
                verdict: Some(bad),
                ..Default::default()
            })
            .unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(err.message().starts_with("verdict "), "{err}");
        }
    }

    #[test]
    fn the_namespace_filter_keeps_flows_from_or_to_its_zones() {
        let filter = |ns: &str| {
            FlowFilter::from_request(&v1::WatchFlowsRequest {
                namespace: ns.into(),
                ..Default::default()
            })
        };
        let shop = filter("shop").unwrap();
        for (edge, wanted) in [
            ("shop/web->shop/db:5432/tcp", true),
            ("ops/monitor->shop/web:9100/tcp", true),
            ("shop/web->world:443/tcp", true),
            ("ops/monitor->world:443/tcp", false),
            ("shopping/a->host:80/tcp", false),
        ] {
            let edge: Edge = edge.parse().unwrap();
            let flow = crate::convert::flow_to_proto(&event(&edge, None));
            assert_eq!(shop.matches(&flow), wanted, "{edge}");
        }
        let flow = crate::convert::flow_to_proto(&event(
            &"shop/web->shop/db:5432/tcp".parse().unwrap(),
            None,
        ));
        assert_eq!(
            (
                flow.src_zone.as_str(),
                flow.dst_zone.as_str(),
                flow.protocol.as_str(),
                flow.dst_port
            ),
            ("shop/web", "shop/db", "tcp", 5432)
        );
        let err = filter("shop/web").unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("namespace \"shop/web\" is invalid"),
            "{err}"
        );
    }
}
