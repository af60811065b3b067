//! Benchmark 6: the enforcer killed with SIGKILL and restarted at scale: start →
//! reconciled (Status answers ready), and disallowed connections that got through
//! while a loop kept trying them during the whole restart.

use std::time::Duration;

use crate::report::{Section, verdict};
use crate::scale::{DISALLOWED_PORT, Scale};
use crate::stats::{Samples, fmt};
use crate::traffic::{finish_loop, spawn_loop};

pub fn run(scale: &mut Scale, reps: usize) -> anyhow::Result<Section> {
    let mut ready = Samples::default();
    let (mut attempts, mut passed) = (0, 0);
    let dir = tempfile::tempdir()?;
    let target = format!("{}:{DISALLOWED_PORT}", scale.server.ip);
    for r in 0..reps {
        let stop = dir.path().join(format!("stop-{r}"));
        let p = spawn_loop(&scale.client.netns, &target, 0.0, 20, Some(&stop))?;
        std::thread::sleep(Duration::from_millis(300));
        scale.node.stop_enforcer(true);
        let took = scale.node.start_enforcer()?;
        ready.push(took.as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(500));
        std::fs::write(&stop, b"")?;
        let res = finish_loop(p)?;
        attempts += res.attempts;
        passed += res.ok;
    }
    let mut sec = Section::new(&format!(
        "6. Restart at scale ({} endpoints, {} edges): SIGKILL, then start",
        scale.size.endpoints, scale.size.edges
    ));
    sec.row([
        format!("start → reconciled (Status ready) (n={})", ready.len()),
        format!(
            "p50 {} ms, p99 {} ms ({})",
            fmt(ready.p50()),
            fmt(ready.p99()),
            ready.spread("ms")
        ),
        "—".into(),
        "—".into(),
        "—".into(),
        "—".into(),
    ]);
    sec.row([
        "disallowed connections that passed during the restarts".into(),
        format!("{passed} of {attempts} attempts"),
        "0".into(),
        "—".into(),
        "0".into(),
        verdict(passed == 0, || format!("{passed} passed")),
    ]);
    sec.note("A loop in the client pod kept opening connections to a port the server listens on but no edge approves (20 ms connect timeout) from 300 ms before the kill until 500 ms after the restarted enforcer answered ready.");
    Ok(sec)
}
