//! The walkthrough's mesh in its TLS form, created through the App Mesh API from the
//! walkthrough's own spec files (`demo/walkthrough/`, copies of `mesh/*.json` in
//! aws-app-mesh-examples' howto-ingress-gateway).

use serde_json::{json, Value};

use crate::cli::ctl::api::{segment, Api, ApiError};

pub const MESH: &str = "ColorApp-Ingress";
pub const GATEWAY: &str = "colorgateway-vg";
/// The walkthrough's Cloud Map namespace; node DNS names and service names live in it.
pub const DOMAIN: &str = "default.svc.cluster.local";
pub const COLORS: [&str; 4] = ["white", "blue", "black", "red"];

/// The spec templates, built into the binary so the demo needs no checkout.
const FILES: &[(&str, &str)] = &[
    (
        "mesh.json",
        include_str!("../../../demo/walkthrough/mesh.json"),
    ),
    (
        "colorteller-white-vn-tls.json",
        include_str!("../../../demo/walkthrough/colorteller-white-vn-tls.json"),
    ),
    (
        "colorteller-blue-vn-tls.json",
        include_str!("../../../demo/walkthrough/colorteller-blue-vn-tls.json"),
    ),
    (
        "colorteller-black-vn-tls.json",
        include_str!("../../../demo/walkthrough/colorteller-black-vn-tls.json"),
    ),
    (
        "colorteller-red-vn-tls.json",
        include_str!("../../../demo/walkthrough/colorteller-red-vn-tls.json"),
    ),
    (
        "colorteller-vr-1.json",
        include_str!("../../../demo/walkthrough/colorteller-vr-1.json"),
    ),
    (
        "colorteller-vr-2.json",
        include_str!("../../../demo/walkthrough/colorteller-vr-2.json"),
    ),
    (
        "colorteller-route-1.json",
        include_str!("../../../demo/walkthrough/colorteller-route-1.json"),
    ),
    (
        "colorteller-route-2.json",
        include_str!("../../../demo/walkthrough/colorteller-route-2.json"),
    ),
    (
        "colorteller-vs-1.json",
        include_str!("../../../demo/walkthrough/colorteller-vs-1.json"),
    ),
    (
        "colorteller-vs-2.json",
        include_str!("../../../demo/walkthrough/colorteller-vs-2.json"),
    ),
    (
        "colorgateway-vg-backendDefaults.json",
        include_str!("../../../demo/walkthrough/colorgateway-vg-backendDefaults.json"),
    ),
    (
        "colorgateway-route-1.json",
        include_str!("../../../demo/walkthrough/colorgateway-route-1.json"),
    ),
    (
        "colorgateway-route-2.json",
        include_str!("../../../demo/walkthrough/colorgateway-route-2.json"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("{file}: {reason}")]
    Template { file: String, reason: String },
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: ApiError,
    },
}

pub fn node_name(color: &str) -> String {
    format!("colorteller-{color}-vn")
}

/// Creates (or, on a second run against the same data directory, updates) every resource
/// of `mesh.sh up` with the TLS specs: STRICT listeners on the gateway and the four nodes,
/// and the gateway's backend defaults validating the appliance's CA. The nodes' certificate
/// is the walkthrough's `*.default.svc.cluster.local`; the gateway's names `localhost`, so
/// `curl https://localhost:PORT` can check it.
pub async fn create(api: &Api) -> Result<(), MeshError> {
    let ca = api.ca_arn().await.map_err(api_error("the CA's ARN"))?;
    let nodes = api
        .request_certificate(&format!("*.{DOMAIN}"), &[])
        .await
        .map_err(api_error("a certificate for the nodes"))?;
    let gateway = api
        .request_certificate("localhost", &[])
        .await
        .map_err(api_error("a certificate for the gateway"))?;
    let m = format!("/v20190125/meshes/{MESH}");
    put(
        api,
        "/v20190125/meshes",
        "meshName",
        MESH,
        spec("mesh.json", &[])?,
    )
    .await?;
    for color in COLORS {
        let vars = [
            ("DNS_HOSTNAME", format!("colorteller-{color}.{DOMAIN}")),
            ("CERTIFICATE_ARN", nodes.clone()),
        ];
        let s = spec(&format!("colorteller-{color}-vn-tls.json"), &vars)?;
        let collection = format!("{m}/virtualNodes");
        put(api, &collection, "virtualNodeName", &node_name(color), s).await?;
    }
    for i in 1..=2 {
        let vr = format!("colorteller-vr-{i}");
        let s = spec(&format!("{vr}.json"), &[])?;
        put(
            api,
            &format!("{m}/virtualRouters"),
            "virtualRouterName",
            &vr,
            s,
        )
        .await?;
        let s = spec(&format!("colorteller-route-{i}.json"), &[])?;
        let routes = format!("{m}/virtualRouter/{vr}/routes");
        put(
            api,
            &routes,
            "routeName",
            &format!("colorteller-route-{i}"),
            s,
        )
        .await?;
        let s = spec(&format!("colorteller-vs-{i}.json"), &[])?;
        let vs = format!("colorteller-{i}.{DOMAIN}");
        put(
            api,
            &format!("{m}/virtualServices"),
            "virtualServiceName",
            &vs,
            s,
        )
        .await?;
    }
    let vars = [("CERTIFICATE_ARN", gateway), ("ROOT_CA_ARN", ca)];
    let s = spec("colorgateway-vg-backendDefaults.json", &vars)?;
    put(
        api,
        &format!("{m}/virtualGateways"),
        "virtualGatewayName",
        GATEWAY,
        s,
    )
    .await?;
    for i in 1..=2 {
        let vars = [("VIRTUALSERVICE_NAME", format!("colorteller-{i}.{DOMAIN}"))];
        let s = spec(&format!("colorgateway-route-{i}.json"), &vars)?;
        let routes = format!("{m}/virtualGateway/{GATEWAY}/gatewayRoutes");
        put(
            api,
            &routes,
            "gatewayRouteName",
            &format!("colorgateway-route-{i}"),
            s,
        )
        .await?;
    }
    Ok(())
}

/// App Mesh's create (`PUT collection`), or its update (`PUT collection/name`) when the
/// resource is already there from an earlier run.
async fn put(
    api: &Api,
    collection: &str,
    name_member: &str,
    name: &str,
    spec: Value,
) -> Result<(), MeshError> {
    let what = format!("{collection}/{name}");
    let mut body = json!({ "spec": spec });
    body[name_member] = Value::String(name.to_owned());
    match api.call("PUT", collection, Some(&body)).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == Some("ConflictException") => {
            let path = format!("{collection}/{}", segment(name));
            api.call("PUT", &path, Some(&json!({ "spec": body["spec"] })))
                .await
                .map(drop)
                .map_err(|source| MeshError::Api { what, source })
        }
        Err(source) => Err(MeshError::Api { what, source }),
    }
}

fn api_error(what: &'static str) -> impl Fn(ApiError) -> MeshError {
    move |source| MeshError::Api {
        what: what.to_owned(),
        source,
    }
}

/// A template's `spec` with its jq variables bound, as `jq -n --arg NAME value` binds them:
/// each `$NAME` becomes a JSON string.
fn spec(file: &str, vars: &[(&str, String)]) -> Result<Value, MeshError> {
    let bad = |reason: String| MeshError::Template {
        file: file.to_owned(),
        reason,
    };
    let (_, text) = FILES
        .iter()
        .find(|(name, _)| *name == file)
        .ok_or_else(|| bad("not built into the binary".to_owned()))?;
    let mut text = (*text).to_owned();
    // Longest names first, so a short name never eats the start of a longer one.
    let mut vars = vars.to_vec();
    vars.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    for (k, v) in vars {
        text = text.replace(&format!("${k}"), &Value::String(v).to_string());
    }
    if text.contains('$') {
        return Err(bad("a jq variable is left unbound".to_owned()));
    }
    let mut v: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    match v.get_mut("spec").map(Value::take) {
        Some(s @ Value::Object(_)) => Ok(s),
        _ => Err(bad("no spec object".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_with_the_variables_the_demo_binds() {
        let arn = "arn:aws:acm:us-east-1:000000000000:certificate/x".to_owned();
        let node = spec(
            "colorteller-red-vn-tls.json",
            &[
                ("DNS_HOSTNAME", "colorteller-red.x".to_owned()),
                ("CERTIFICATE_ARN", arn.clone()),
            ],
        )
        .unwrap();
        assert_eq!(node["listeners"][0]["tls"]["mode"], "STRICT");
        assert_eq!(
            node["listeners"][0]["tls"]["certificate"]["acm"]["certificateArn"],
            arn
        );
        assert!(matches!(
            spec("colorteller-red-vn-tls.json", &[]),
            Err(MeshError::Template { .. })
        ));
        assert!(spec("mesh.json", &[]).unwrap().is_object());
    }
}
