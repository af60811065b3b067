//! Whether the zone a profile change names exists: a typo (`shop/apii`) must not
//! quietly become a zone of its own. A zone exists when it has endpoints or a profile,
//! or is built in (`host`, `world`) or an operator's CIDR zone.

use std::collections::BTreeSet;

use zonewarden_profiles::ZoneName;
use zonewarden_profiles::zone::nearest;

use super::RegistryError;
use super::state::RegistryState;

/// What a profile change does with a zone that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    /// Refuse it, naming the nearest existing zone.
    Refuse,
    /// Make its profile (`--create`; imports and tests).
    Create,
}

/// Every zone that exists, sorted.
fn known(state: &RegistryState) -> BTreeSet<&ZoneName> {
    let policy = &state.policy;
    let mut zones: BTreeSet<&ZoneName> = policy.profiles.keys().collect();
    zones.extend(policy.cidr_zones.keys());
    zones.extend(state.endpoints.values().map(|e| &e.zone));
    zones
}

/// `Ok` when `zone` exists; otherwise the refusal, with the zone a typo most likely meant.
pub fn require(state: &RegistryState, zone: &ZoneName) -> Result<(), RegistryError> {
    let known = known(state);
    if zone.is_builtin() || known.contains(zone) {
        return Ok(());
    }
    Err(RegistryError::UnknownZone {
        zone: zone.clone(),
        nearest: nearest(zone.as_str(), known).cloned(),
    })
}

/// ` did you mean "shop/api"?` or nothing.
pub fn did_you_mean(nearest: Option<&ZoneName>) -> String {
    nearest
        .map(|zone| format!(" did you mean {:?}?", zone.as_str()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use zonewarden_profiles::profile::Actor;
    use zonewarden_profiles::{AttachMode, Mode, ZoneHints};

    use super::*;
    use crate::registry::{AddRequest, EndpointRegistry};
    use crate::store::{LocalStore, Store};
    use crate::test_support::{key, memory_registry, note, noted};

    fn zone(name: &str) -> ZoneName {
        ZoneName::parse_any(name).unwrap()
    }

    async fn set_mode(
        registry: &EndpointRegistry,
        name: &str,
        if_missing: IfMissing,
    ) -> Result<usize, RegistryError> {
        let actor = Actor {
            who: "test".into(),
            at_unix_ms: 1,
            comment: String::new(),
        };
        registry
            .change_profile(
                zone(name),
                if_missing,
                move |p| Ok(usize::from(p.set_mode(Mode::Enforce, &actor))),
                noted(),
            )
            .await
            .map(|(_, changed)| changed)
    }

    #[tokio::test]
    async fn a_zone_without_endpoints_or_profile_is_refused_unless_created() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalStore::open(dir.path()).unwrap());
        let registry = memory_registry(store.clone()).with_cidr_zones(BTreeMap::from([(
            zone("corp-dns"),
            vec!["10.1.2.0/24".parse().unwrap()],
        )]));
        let add = AddRequest {
            key: key("c1"),
            hints: ZoneHints {
                config_zone: Some("shop/api".into()),
                ..ZoneHints::default()
            },
            netns: "/var/run/netns/x".into(),
            host_ifname: Some("zwc1".into()),
            ips: vec!["10.0.0.6/32".parse().unwrap()],
            mac: None,
            attach_mode: AttachMode::Routed,
            bridge: None,
        };
        registry.add(add, note()).await.unwrap();

        let err = set_mode(&registry, "shop/apii", IfMissing::Refuse)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "zone \"shop/apii\" does not exist (no endpoints, no profile); \
             did you mean \"shop/api\"? pass --create to make it"
        );
        let err = set_mode(&registry, "shop/ghost", IfMissing::Refuse)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "zone \"shop/ghost\" does not exist (no endpoints, no profile); \
             pass --create to make it"
        );
        let snapshot = registry.snapshot();
        assert!(
            !snapshot.policy.profiles.contains_key(&zone("shop/apii")),
            "a refused zone gets no profile"
        );
        assert!(
            store.load().unwrap().profiles.is_empty(),
            "nothing was saved"
        );

        // Endpoints, CIDR zones and profiles make a zone exist.
        assert_eq!(
            set_mode(&registry, "shop/api", IfMissing::Refuse)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            set_mode(&registry, "corp-dns", IfMissing::Refuse)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            set_mode(&registry, "shop/new", IfMissing::Create)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            set_mode(&registry, "shop/new", IfMissing::Refuse)
                .await
                .unwrap(),
            0,
            "made once, it exists: an unchanged mode changes nothing"
        );
        assert!(
            registry
                .snapshot()
                .policy
                .profiles
                .contains_key(&zone("shop/new"))
        );
    }
}
