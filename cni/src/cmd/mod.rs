//! The CNI commands. Each takes a validated [`Invocation`] and either prints a result
//! (ADD), nothing (DEL, CHECK, STATUS, GC) or fails with a [`CniError`].

mod add;
mod check;
mod del;
mod gc;
mod repeat;
mod status;

use std::path::Path;

use ipnet::IpNet;
use zonewarden_profiles::ZoneSource;
use zonewarden_proto::v1;

use crate::args::CniArgs;
use crate::config::NetConf;
use crate::env::{CniEnv, Command};
use crate::error::{CniError, ErrorCode, from_netns};
use crate::ipam::Delegate;

pub use add::add;
pub use check::check;
pub use del::del;
pub use gc::gc;
pub use status::status;

/// One validated invocation: environment, configuration and the raw stdin.
pub struct Invocation<'a> {
    pub env: &'a CniEnv,
    pub conf: &'a NetConf,
    pub stdin: &'a [u8],
    pub args: CniArgs,
}

impl Invocation<'_> {
    pub fn key(&self) -> v1::AttachmentKey {
        v1::AttachmentKey {
            network: self.conf.name.clone(),
            container_id: self.env.container_id.clone(),
            ifname: self.env.ifname.clone(),
        }
    }

    pub fn hints(&self) -> v1::ZoneHints {
        let (explicit_zone, explicit_source) = match (&self.args.zone, &self.conf.zone) {
            (Some(zone), _) => (zone.clone(), v1::ZoneSource::from(ZoneSource::CniArgs)),
            (None, Some(zone)) => (zone.to_string(), ZoneSource::Config.into()),
            (None, None) => (String::new(), v1::ZoneSource::Unspecified),
        };
        v1::ZoneHints {
            explicit_zone,
            explicit_source: explicit_source.into(),
            pod_namespace: self.args.pod_namespace.clone().unwrap_or_default(),
            pod_name: self.args.pod_name.clone().unwrap_or_default(),
            pod_annotations: self
                .conf
                .runtime_config
                .pod_annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The IPAM delegate of routed mode (none with zonewarden IPAM: the enforcer
    /// leases the addresses, see [`Self::enforcer_ipam`]).
    pub fn ipam(&self) -> Option<Delegate<'_>> {
        if self.enforcer_ipam() {
            return None;
        }
        self.conf.ipam_type.as_deref().map(|plugin| Delegate {
            plugin,
            search_path: &self.env.path,
            stdin: self.stdin,
            cni_args: &self.env.args,
        })
    }

    /// Whether the addresses come from the enforcer (`"ipam": {"type": "zonewarden"}`):
    /// leased over its socket, released with the endpoint's DelEndpoint.
    pub fn enforcer_ipam(&self) -> bool {
        self.conf.ipam_type.as_deref() == Some(crate::config::ENFORCER_IPAM)
    }

    /// The host end's name of this attachment (network, container and ifname).
    pub fn host_ifname(&self) -> String {
        crate::link::host_ifname(&self.conf.name, &self.env.container_id, &self.env.ifname)
    }

    /// The names the host end of this attachment may have: [`Self::host_ifname`], then
    /// the name earlier versions gave it (without the network).
    pub fn host_ifname_candidates(&self) -> [String; 2] {
        [
            self.host_ifname(),
            crate::link::legacy_host_ifname(&self.env.container_id, &self.env.ifname),
        ]
    }

    /// The routed-mode attachment of this invocation with `addrs` (host prefixes).
    pub fn routed_spec(&self, addrs: Vec<IpNet>) -> crate::link::RoutedSpec {
        crate::link::RoutedSpec {
            netns: self.env.netns.clone().unwrap_or_default(),
            ifname: self.env.ifname.clone(),
            host_ifname: self.host_ifname(),
            addrs,
            mtu: self.conf.mtu,
        }
    }

    /// `CNI_NETNS` of ADD and CHECK, checked before anything is touched: it must be a
    /// network namespace (error 8 naming it otherwise; 4 when it does not exist) and not
    /// the plugin's own.
    pub fn container_netns(&self) -> Result<&Path, CniError> {
        let netns = self.env.netns.as_deref().unwrap_or(Path::new(""));
        let fail = |e| from_netns(e, "CNI_NETNS");
        crate::netns::require_netns(netns).map_err(fail)?;
        if crate::netns::is_current_netns(netns).map_err(fail)? {
            return Err(CniError::new(
                ErrorCode::InvalidNetns,
                format!(
                    "CNI_NETNS={} is the plugin's own network namespace: pass the container's",
                    netns.display()
                ),
            ));
        }
        Ok(netns)
    }

    pub fn netns_str(&self) -> String {
        self.env
            .netns
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    /// Refuses commands the configuration's version does not have.
    pub fn require_version(&self, command: Command) -> Result<(), CniError> {
        let v = self.conf.version;
        let allowed = match command {
            Command::Check => v.allows_check(),
            Command::Gc | Command::Status => v.allows_gc_and_status(),
            _ => true,
        };
        if allowed {
            return Ok(());
        }
        Err(CniError::new(
            ErrorCode::IncompatibleVersion,
            format!(
                "config version does not allow {}: cniVersion {} is too old for it",
                command.as_str(),
                v.as_str()
            ),
        ))
    }
}

/// Host prefixes (/32, /128) of addresses, as routed mode assigns them.
pub fn host_prefixes(ips: &[IpNet]) -> Vec<IpNet> {
    ips.iter().map(|ip| IpNet::from(ip.addr())).collect()
}
