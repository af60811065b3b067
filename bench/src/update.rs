//! Benchmark 3: update latency at scale, as the RPC round trip that returns once the
//! kernel holds the change: an endpoint added, one edge approved (then checked with a
//! real connection), one zone switched to enforce.

use std::time::Instant;

use zonewarden_proto::v1;

use crate::report::{Section, latency_row};
use crate::scale::{CLIENT_ZONE, SERVER_ZONE, Scale, UPDATE_PORTS, add_request, approve_request};
use crate::stats::Samples;
use crate::traffic::{finish_loop, spawn_loop};

pub fn run(scale: &Scale, reps: usize) -> anyhow::Result<Section> {
    let mut c = scale.node.client()?;
    let rt = &scale.node.rt;
    let (mut add, mut del, mut approve, mut mode) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    let mut allowed_at_once = 0;
    let fake_zones = scale.size.zones - 4;
    for i in 0..reps {
        let zone = format!("scale/z{:04}", (i * 7) % fake_zones);
        let (id, addr) = (format!("update-{i}"), format!("10.61.0.{}", i + 1));
        let t = Instant::now();
        rt.block_on(c.add_endpoint(add_request(&id, &zone, &addr)))?;
        add.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    // The same, for pods without a routed interface of their own (chained behind a
    // bridge): their address jumps to the zone's chains, and a jump element makes the
    // kernel validate the whole table at commit.
    let mut add_by_addr = Samples::default();
    for i in 0..reps {
        let zone = format!("scale/z{:04}", (i * 11 + 3) % fake_zones);
        let (id, addr) = (format!("update-addr-{i}"), format!("10.61.1.{}", i + 1));
        let mut request = add_request(&id, &zone, &addr);
        request.host_ifname.clear();
        let t = Instant::now();
        rt.block_on(c.add_endpoint(request))?;
        add_by_addr.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    for i in 0..reps {
        rt.block_on(c.del_endpoint(v1::DelEndpointRequest {
            key: Some(v1::AttachmentKey {
                network: "zwbench-scale".into(),
                container_id: format!("update-addr-{i}"),
                ifname: "eth0".into(),
            }),
            retire_host_link: false,
        }))?;
    }
    for i in 0..reps {
        let key = v1::AttachmentKey {
            network: "zwbench-scale".into(),
            container_id: format!("update-{i}"),
            ifname: "eth0".into(),
        };
        let t = Instant::now();
        rt.block_on(c.del_endpoint(v1::DelEndpointRequest {
            key: Some(key),
            retire_host_link: false,
        }))?;
        del.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let ports = usize::from(UPDATE_PORTS.1 - UPDATE_PORTS.0 + 1);
    for i in 0..reps.min(ports) {
        let port = UPDATE_PORTS.0 + i as u16;
        let edge = format!("{CLIENT_ZONE}->{SERVER_ZONE}:{port}/tcp");
        let t = Instant::now();
        rt.block_on(c.approve_edges(approve_request(CLIENT_ZONE, vec![edge])))?;
        approve.push(t.elapsed().as_secs_f64() * 1000.0);
        // One new connection right after the RPC returned must pass.
        let r = finish_loop(spawn_loop(
            &scale.client.netns,
            &format!("{}:{port}", scale.server.ip),
            0.0,
            200,
            None,
        )?)?;
        allowed_at_once += r.ok;
    }
    for i in 0..reps {
        let zone = format!("scale/z{:04}", (i * 13 + 1) % fake_zones);
        let t = Instant::now();
        rt.block_on(c.set_mode(v1::SetModeRequest {
            zone,
            mode: v1::Mode::Enforce.into(),
            comment: "zw-bench".into(),
            create: true,
        }))?;
        mode.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    let mut sec = Section::new(&format!(
        "3. Update latency at scale ({} zones, {} endpoints, {} edges)",
        scale.size.zones, scale.size.endpoints, scale.size.edges
    ));
    let mut row = |what: &str, s: &Samples, goal: Option<f64>| sec.row(latency_row(what, s, goal));
    row(
        "endpoint added → enforced (AddEndpoint round trip)",
        &add,
        Some(5.0),
    );
    row(
        "endpoint without a routed interface added (AddEndpoint round trip, an address jump)",
        &add_by_addr,
        None,
    );
    row(
        "one edge approved → allowed (ApproveEdges round trip)",
        &approve,
        Some(10.0),
    );
    row(
        "one zone switched to enforce → active (SetMode round trip)",
        &mode,
        Some(10.0),
    );
    row("endpoint removed (DelEndpoint round trip)", &del, None);
    sec.note(format!(
        "After each approval returned, one new connection on the newly approved port was opened at once: {allowed_at_once} of {} passed (both pods' zones enforce).",
        approve.len()
    ));
    sec.note("The node's endpoints are pods with a routed host interface of their own (as the plugin makes them; the links themselves do not exist on this node): their packets reach their zone's chains by the interface's group, so adding one adds no jump. The second row adds pods without one (chained behind a bridge), whose address jumps to the zone's chains.");
    sec.note("Each RPC returns after the kernel holds the change. An endpoint, an approval and a removal change set elements only: the enforcer recompiles what the change touches and sends one netlink batch. A mode switch rewrites the zone's two chains in one netlink batch too (no nft process). The ratio column is p99 / goal.");
    Ok(sec)
}
