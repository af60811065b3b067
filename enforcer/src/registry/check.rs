//! CHECK of one endpoint: every way the kernel differs from what the endpoint's
//! addresses should have there, each as a sentence an operator can act on.

use zonewarden_profiles::Endpoint;
use zonewarden_profiles::ruleset::Ruleset;

pub fn problems(endpoint: &Endpoint, wanted: &Ruleset, kernel: &Ruleset) -> Vec<String> {
    let mut problems = Vec::new();
    for addr in endpoint.addrs() {
        match (wanted.members.get(&addr), kernel.members.get(&addr)) {
            (Some(_), None) => problems.push(format!("the zone map has no element for {addr}")),
            (Some((want, _)), Some((have, _))) if want != have => {
                problems.push(format!(
                    "the zone map puts {addr} in zone id {have} instead of {want}"
                ));
            }
            (None, _) => problems.push(format!(
                "{addr} belongs to a newer endpoint than {}, not to this one",
                endpoint.key
            )),
            _ => {}
        }
        let Some(want) = wanted.local.get(&addr) else {
            continue;
        };
        match kernel.local.get(&addr) {
            None => problems.push(format!(
                "{addr} has no egress/ingress rules: its zone chains are not attached"
            )),
            Some(have) if have.zone_id != want.zone_id => {
                problems.push(format!(
                    "{addr} is attached to the chains of zone id {} instead of {}",
                    have.zone_id, want.zone_id
                ));
            }
            Some(have) if have.quarantined != want.quarantined => {
                problems.push(format!(
                    "{addr} quarantine is {} in the kernel but should be {}",
                    have.quarantined, want.quarantined
                ));
            }
            Some(have) if have.host_ifname != want.host_ifname => {
                problems.push(format!(
                    "{addr} anti-spoofing names interface {:?} instead of {:?}",
                    have.host_ifname, want.host_ifname
                ));
            }
            Some(_) => {}
        }
        if let (Some(want_zone), Some(have_zone)) = (
            wanted.zones.get(&want.zone_id),
            kernel.zones.get(&want.zone_id),
        ) && want_zone.chain_key() != have_zone.chain_key()
        {
            problems.push(format!(
                "the chains of zone {} are stale: the kernel has mode {}, the profile says {}",
                want_zone.zone, have_zone.mode, want_zone.mode
            ));
        }
    }
    problems
}
