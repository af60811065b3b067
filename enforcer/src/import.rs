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

use crate::convert::zone_import_to_proto;
use crate::registry::import::plan;
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
        zones: zones.iter().map(zone_import_to_proto).collect(),
        dry_run: request.dry_run,
        changed_zones: u32::try_from(changed).unwrap_or(u32::MAX),
    })
}
