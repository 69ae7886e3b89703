//! Certificates for proxies: a leaf at enrolment (for a join token and a CSR) and at renewal,
//! each carrying the names the CA chooses from the proxy's spec.

use std::sync::Arc;

use time::OffsetDateTime;

use super::frame::ToProxy;
use super::server::Context;
use super::tls::{self, SERVER_NAME};
use super::token::JoinToken;
use crate::model::spec::{ListenerTlsCertificate, ServiceDiscovery};
use crate::model::{Identity, ProxyKind, ResourceId, Spec};

/// The DNS names a proxy's leaf carries: its service-discovery hostname (what client
/// policies' subjectAlternativeNames name), and the names of the ACM certificates its
/// listeners use, which on the appliance are served with the proxy's own leaf.
fn leaf_dns_names(ctx: &Context, identity: &Identity) -> Vec<String> {
    let id = ResourceId {
        kind: identity.kind.resource_kind(),
        mesh: identity.mesh.clone(),
        parent: None,
        name: identity.name.clone(),
    };
    let Ok(record) = ctx.store.describe(&id) else {
        return Vec::new();
    };
    let Ok(spec) = Spec::parse(id.kind, Some(&record.row.spec)) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    let mut acm = |arn: &str| {
        if let Some(c) = ctx.ca.certificate(arn) {
            names.extend(c.dns_names());
        }
    };
    match (&spec, identity.kind) {
        (Spec::VirtualNode(n), ProxyKind::VirtualNode) => {
            for l in n.listeners.iter().flatten() {
                if let Some(ListenerTlsCertificate::Acm(a)) = l.tls.as_ref().map(|t| &t.certificate)
                {
                    acm(&a.certificate_arn);
                }
            }
            match &n.service_discovery {
                Some(ServiceDiscovery::Dns(d)) => names.push(d.hostname.clone()),
                // App Mesh checks a Cloud Map node's certificate against service.namespace.
                Some(ServiceDiscovery::AwsCloudMap(c)) => {
                    names.push(format!("{}.{}", c.service_name, c.namespace_name));
                }
                None => {}
            }
        }
        (Spec::VirtualGateway(g), ProxyKind::VirtualGateway) => {
            for l in &g.listeners {
                if let Some(ListenerTlsCertificate::Acm(a)) = l.tls.as_ref().map(|t| &t.certificate)
                {
                    acm(&a.certificate_arn);
                }
            }
        }
        _ => {}
    }
    names.retain(|n| crate::ca::check_dns_name(n).is_ok() && n != SERVER_NAME);
    names.sort();
    names.dedup();
    names
}

pub(super) async fn enrol(
    ctx: &Arc<Context>,
    token: &str,
    identity: &str,
    csr_pem: &str,
) -> Result<ToProxy, String> {
    let parsed = JoinToken::parse(token).map_err(|e| e.to_string())?;
    let id = Identity::parse(identity).map_err(|e| format!("identity: {e}"))?;
    let (c, token_hash, csr) = (ctx.clone(), parsed.hash(), csr_pem.to_owned());
    tokio::task::spawn_blocking(move || {
        let now = OffsetDateTime::now_utc();
        // A bad CSR or a revoked identity is refused before the token is spent.
        c.ca.check_enrolment(&id, &csr).map_err(|e| e.to_string())?;
        c.store
            .redeem_join_token(&token_hash, &id.to_string(), now.unix_timestamp())
            .map_err(|e| e.to_string())?;
        let names = leaf_dns_names(&c, &id);
        let leaf =
            c.ca.issue_leaf(&id, &csr, &names, now)
                .map_err(|e| e.to_string())?;
        Ok(ToProxy::Enrolled {
            chain_pem: leaf.chain_pem,
            trust_bundle_pem: c.ca.bundle_pem(),
        })
    })
    .await
    .map_err(|e| format!("enrolment task failed: {e}"))?
}

pub(super) async fn renew(
    ctx: &Arc<Context>,
    identity: &Identity,
    csr_pem: String,
) -> Result<(ToProxy, OffsetDateTime), String> {
    let (c, id) = (ctx.clone(), identity.clone());
    tokio::task::spawn_blocking(move || {
        let now = OffsetDateTime::now_utc();
        let names = leaf_dns_names(&c, &id);
        let leaf =
            c.ca.issue_leaf(&id, &csr_pem, &names, now)
                .map_err(|e| e.to_string())?;
        let (_, expiry) = tls::validity(&leaf.chain_pem)?;
        Ok((
            ToProxy::Certificate {
                chain_pem: leaf.chain_pem,
                trust_bundle_pem: c.ca.bundle_pem(),
            },
            expiry,
        ))
    })
    .await
    .map_err(|e| format!("renewal task failed: {e}"))?
}
