//! The `ImportProfiles` call: exported YAML in, every zone's profile set exactly.
//!
//! The whole file is parsed and validated before anything happens; an invalid file
//! is refused with every problem's line and column, and changes nothing. A dry run
//! answers with the changes an import would make.

use tonic::Status;
use tracing::info;
use zonewarden_profiles::export;
use zonewarden_profiles::profile::Actor;
use zonewarden_proto::v1;

use crate::registry::import::{ZoneImport, plan};
use crate::registry::{EndpointRegistry, RegistryError};

/// Validates, then applies (or, in a dry run, plans) an import.
pub async fn import_profiles(
    request: &v1::ImportProfilesRequest,
    actor: Actor,
    registry: &EndpointRegistry,
) -> Result<v1::ImportProfilesResponse, Status> {
    let mut documents = export::parse(&request.documents_yaml).map_err(|err| {
        Status::invalid_argument(format!("the import was refused, nothing changed: {err}"))
    })?;
    documents.sort_by(|a, b| a.zone.cmp(&b.zone));
    let zones = if request.dry_run {
        let snapshot = registry.snapshot();
        plan(&documents, |z| snapshot.policy.profiles.get(z))
    } else {
        registry
            .import_profiles(documents, actor)
            .await
            .map_err(|err| match err {
                RegistryError::Store(_) | RegistryError::Kernel(_) => Status::unavailable(format!(
                    "the import was rolled back, nothing changed: {err}"
                )),
                other => Status::internal(other.to_string()),
            })?
    };
    let changed = zones.iter().filter(|z| z.delta.count() > 0).count();
    if !request.dry_run {
        info!(zones = zones.len(), changed, "profiles imported");
    }
    Ok(v1::ImportProfilesResponse {
        zones: zones.iter().map(zone_to_proto).collect(),
        dry_run: request.dry_run,
        changed_zones: u32::try_from(changed).unwrap_or(u32::MAX),
    })
}

fn zone_to_proto(z: &ZoneImport) -> v1::ZoneImport {
    let (mode_before, mode_after) = z
        .delta
        .mode
        .map(|(before, after)| (before.to_string(), after.to_string()))
        .unwrap_or_default();
    v1::ZoneImport {
        zone: z.zone.to_string(),
        added: z.delta.added.iter().map(ToString::to_string).collect(),
        removed: z.delta.removed.iter().map(ToString::to_string).collect(),
        mode_before,
        mode_after,
        version_before: z.version_before,
        version_after: z.version_after,
    }
}
