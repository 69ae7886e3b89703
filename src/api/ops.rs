//! The write path every front end shares (the App Mesh API and the admin page): parse the
//! spec, check it against the store inside one transaction, write, log.

use serde_json::Value;

use super::AppState;
use crate::model::{consistency, ApiError, ResourceId, ResourceKind, ResourceName, Spec};
use crate::store::{ClientToken, Lookup, Record, Tag, Write};

/// Runs a store call off the async workers: redb commits wait for fsync.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

pub(crate) fn parse_spec(kind: ResourceKind, body: &Value) -> Result<Spec, ApiError> {
    Spec::parse(kind, body.get("spec").filter(|v| !v.is_null()))
}

/// The rules that relate a route to its router and targets, or a gateway route to its
/// gateway; run inside the write transaction so they see what the write will commit against.
fn check_related(lookup: &Lookup, id: &ResourceId, spec: &Spec) -> Result<(), ApiError> {
    let stored = |kind: ResourceKind, name: &ResourceName| -> Result<Option<Spec>, ApiError> {
        let rid = ResourceId::top(kind, id.mesh.clone(), name.clone());
        match lookup.spec(&rid)? {
            Some(v) => Spec::parse(kind, Some(&v)).map(Some).map_err(|e| {
                ApiError::internal(anyhow::anyhow!("stored {rid} no longer parses: {e}"))
            }),
            None => Ok(None),
        }
    };
    match (spec, &id.parent) {
        (Spec::Route(route), Some(router_name)) => {
            let Some(Spec::VirtualRouter(router)) =
                stored(ResourceKind::VirtualRouter, router_name)?
            else {
                return Ok(()); // the store reports the missing parent
            };
            let mut targets = Vec::new();
            for t in route.weighted_targets() {
                if let Some(Spec::VirtualNode(node)) =
                    stored(ResourceKind::VirtualNode, &t.virtual_node)?
                {
                    targets.push((t.virtual_node.clone(), node));
                }
            }
            consistency::check_route(route, router_name, &router, &targets)
        }
        (Spec::GatewayRoute(route), Some(gateway_name)) => {
            match stored(ResourceKind::VirtualGateway, gateway_name)? {
                Some(Spec::VirtualGateway(gateway)) => {
                    consistency::check_gateway_route(route, gateway_name, &gateway)
                }
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// Every ACM ARN a spec names must be the appliance's CA or a certificate it recorded, so a
/// typo is refused at write time rather than found by a proxy that cannot serve TLS.
pub(crate) fn check_acm_arns(state: &AppState, spec: &Spec) -> Result<(), ApiError> {
    for (path, arn) in spec.acm_arns() {
        let known = if arn.starts_with("arn:aws:acm-pca:") {
            state.ca.is_known_ca_arn(&arn)
        } else {
            state.ca.is_known_certificate_arn(&arn)
        };
        if !known {
            return Err(ApiError::bad_request(format!(
                "{path}: {arn} is not known to this appliance (use the CA's ARN from `appliance ctl describe-certificate-authority` or a certificate ARN from `appliance ctl request-certificate`)"
            )));
        }
    }
    Ok(())
}

/// Creates a resource from a parsed spec, in one store transaction.
pub(crate) async fn create(
    state: &AppState,
    id: ResourceId,
    spec: Spec,
    tags: Vec<Tag>,
    client_token: Option<ClientToken>,
) -> Result<Record, ApiError> {
    check_acm_arns(state, &spec)?;
    let write = Write {
        spec: spec.to_json(),
        references: spec.references(),
        tags,
        client_token,
    };
    let store = state.store.clone();
    let record = blocking(move || {
        let check_id = id.clone();
        store.create(&id, write, |lookup| check_related(lookup, &check_id, &spec))
    })
    .await?;
    tracing::info!(resource = %record.id, "created");
    Ok(record)
}

/// Replaces a resource's spec, in one store transaction.
pub(crate) async fn update(
    state: &AppState,
    id: ResourceId,
    spec: Spec,
    client_token: Option<ClientToken>,
) -> Result<Record, ApiError> {
    check_acm_arns(state, &spec)?;
    let write = Write {
        spec: spec.to_json(),
        references: spec.references(),
        tags: Vec::new(),
        client_token,
    };
    let store = state.store.clone();
    let record = blocking(move || {
        let check_id = id.clone();
        store.update(&id, write, |lookup| check_related(lookup, &check_id, &spec))
    })
    .await?;
    tracing::info!(resource = %record.id, version = record.row.version, "updated");
    Ok(record)
}

/// Deletes a resource nothing refers to.
pub(crate) async fn delete(state: &AppState, id: ResourceId) -> Result<Record, ApiError> {
    let store = state.store.clone();
    let record = blocking(move || store.delete(&id)).await?;
    tracing::info!(resource = %record.id, "deleted");
    Ok(record)
}
