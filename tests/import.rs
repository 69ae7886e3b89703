//! Migration as the README tells it: a mesh in one appliance (standing in for AWS App Mesh)
//! is exported with `scripts/appmesh-export.sh` and the real AWS CLI, imported into a fresh
//! appliance with `appliance ctl import`, and every resource's spec comes out the same,
//! with ACM ARNs mapped to the new appliance's CA and certificates.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{aws_cli, render, Api, Control};
use serde_json::{json, Value};

const MESH: &str = "ColorApp-Ingress";
const D: &str = "default.svc.cluster.local";

fn call(api: &Api, method: &str, path: &str, body: Value) -> Value {
    let (s, _, b) = api.call(method, path, Some(&body.to_string()));
    assert_eq!(s, 200, "{method} {path}: {b}");
    b
}

fn spec(file: &str, vars: &[(&str, &str)]) -> Value {
    let v: Value = serde_json::from_str(&render(file, vars)).unwrap();
    v["spec"].clone()
}

fn ctl_field(c: &Control, args: &[&str], query: &str) -> String {
    let mut all = args.to_vec();
    all.extend(["--query", query, "--output", "text"]);
    let out = c.ctl(&all);
    assert_eq!(out.code, 0, "ctl {args:?}: {}", out.stderr);
    out.stdout.trim().to_owned()
}

/// The walkthrough in its full-TLS form, plus a node whose backend names a service (nodes
/// may name services that do not exist yet, so import creates nodes before services).
/// Returns (CA ARN, node certificate ARN, gateway certificate ARN).
fn build_walkthrough(c: &Control) -> (String, String, String) {
    let api = Api::new(c);
    let ca = ctl_field(
        c,
        &["describe-certificate-authority"],
        "CertificateAuthority.Arn",
    );
    let node_cert = ctl_field(
        c,
        &["request-certificate", "--domain-name", &format!("*.{D}")],
        "CertificateArn",
    );
    let gw_cert = ctl_field(
        c,
        &["request-certificate", "--domain-name", "localhost"],
        "CertificateArn",
    );
    let m = format!("/v20190125/meshes/{MESH}");
    call(
        &api,
        "PUT",
        "/v20190125/meshes",
        json!({"meshName": MESH, "spec": {}}),
    );
    for color in ["white", "blue", "black", "red"] {
        let host = format!("colorteller-{color}.{D}");
        let s = spec(
            &format!("colorteller-{color}-vn-tls.json"),
            &[("DNS_HOSTNAME", &host), ("CERTIFICATE_ARN", &node_cert)],
        );
        call(
            &api,
            "PUT",
            &format!("{m}/virtualNodes"),
            json!({"virtualNodeName": format!("colorteller-{color}-vn"), "spec": s}),
        );
    }
    call(
        &api,
        "PUT",
        &format!("{m}/virtualNodes"),
        json!({"virtualNodeName": "tester-vn", "spec": {
            "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": format!("tester.{D}")}},
            "backends": [{"virtualService": {"virtualServiceName": format!("colorteller-1.{D}"),
                "clientPolicy": {"tls": {"validation": {"trust": {"acm": {"certificateAuthorityArns": [ca]}}}}}}}]
        }}),
    );
    for i in 1..=2 {
        let vr = format!("colorteller-vr-{i}");
        call(
            &api,
            "PUT",
            &format!("{m}/virtualRouters"),
            json!({"virtualRouterName": vr, "spec": spec(&format!("{vr}.json"), &[])}),
        );
        call(
            &api,
            "PUT",
            &format!("{m}/virtualRouter/{vr}/routes"),
            json!({"routeName": format!("colorteller-route-{i}"), "spec": spec(&format!("colorteller-route-{i}.json"), &[])}),
        );
        call(
            &api,
            "PUT",
            &format!("{m}/virtualServices"),
            json!({"virtualServiceName": format!("colorteller-{i}.{D}"), "spec": spec(&format!("colorteller-vs-{i}.json"), &[])}),
        );
    }
    let s = spec(
        "colorgateway-vg-backendDefaults.json",
        &[("CERTIFICATE_ARN", &gw_cert), ("ROOT_CA_ARN", &ca)],
    );
    call(
        &api,
        "PUT",
        &format!("{m}/virtualGateways"),
        json!({"virtualGatewayName": "colorgateway-vg", "spec": s}),
    );
    for i in 1..=2 {
        let vs = format!("colorteller-{i}.{D}");
        call(
            &api,
            "PUT",
            &format!("{m}/virtualGateway/colorgateway-vg/gatewayRoutes"),
            json!({"gatewayRouteName": format!("colorgateway-route-{i}"), "spec": spec(&format!("colorgateway-route-{i}.json"), &[("VIRTUALSERVICE_NAME", &vs)])}),
        );
    }
    (ca, node_cert, gw_cert)
}

/// Runs the export script (scripts/appmesh-export.sh, docs/migrating.md) against `c` with the real AWS CLI.
fn export(c: &Control, dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/appmesh-export.sh");
    let aws = aws_cli();
    // The script calls `aws`: put the one under test first on PATH.
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(parent) = aws.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut p = parent.as_os_str().to_owned();
        p.push(":");
        p.push(&path);
        path = p;
    }
    let out = Command::new("bash")
        .arg(&script)
        .arg(MESH)
        .arg(dir)
        .args(["--endpoint-url", &c.endpoint()])
        .env("PATH", path)
        .env("APPMESH_EXPORT_ACM", "0")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env("AWS_SHARED_CREDENTIALS_FILE", c.credentials())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_DEFAULT_REGION", "us-west-2")
        .env("AWS_PAGER", "")
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "export: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every exported file, relative path -> the resource's spec.
fn specs(dir: &Path) -> BTreeMap<PathBuf, Value> {
    fn walk(root: &Path, at: &Path, out: &mut BTreeMap<PathBuf, Value>) {
        for e in std::fs::read_dir(at).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.extension().is_some_and(|x| x == "json") {
                let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                let (_, inner) = v.as_object().unwrap().iter().next().unwrap();
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    inner["spec"].clone(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn exported_walkthrough_imports_into_a_fresh_appliance_with_equal_specs() {
    let source = Control::start();
    let (ca, node_cert, gw_cert) = build_walkthrough(&source);
    let tmp = tempfile::tempdir().unwrap();
    let exported = tmp.path().join("export");
    export(&source, &exported);
    let before = specs(&exported);
    assert_eq!(before.len(), 15, "{:?}", before.keys());

    let target = Control::start();
    let dir = exported.to_string_lossy().into_owned();
    let gw_domain = format!("{gw_cert}=localhost");
    let out = target.ctl(&[
        "import",
        "--from-dir",
        &dir,
        "--certificate-domain",
        &gw_domain,
    ]);
    eprintln!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.code, 0, "import: {}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("imported 15 of 15 resources; 0 failed"),
        "{}",
        out.stdout
    );
    // Creation order: what a resource refers to exists before it.
    let order: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("created  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut kinds = order.clone();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "mesh",
            "virtualNode",
            "virtualRouter",
            "route",
            "virtualService",
            "virtualGateway",
            "gatewayRoute"
        ]
    );
    // Each source certificate maps to one new certificate, reported once.
    let mapped: BTreeMap<String, String> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("mapped   "))
        .filter_map(|l| l.split_once(" -> "))
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
    assert_eq!(
        mapped.keys().collect::<Vec<_>>(),
        {
            let mut k = vec![&node_cert, &gw_cert];
            k.sort();
            k
        },
        "{mapped:?}"
    );
    let new_ca = ctl_field(
        &target,
        &["describe-certificate-authority"],
        "CertificateAuthority.Arn",
    );
    assert_ne!(new_ca, ca, "two appliances, two CAs");

    let reexported = tmp.path().join("reexport");
    export(&target, &reexported);
    let after = specs(&reexported);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (file, spec) in &before {
        let mut text = spec.to_string().replace(&ca, &new_ca);
        for (from, to) in &mapped {
            text = text.replace(from, to);
        }
        let want: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(after[file], want, "{}", file.display());
    }
    // The gateway's new certificate names localhost, as --certificate-domain said; the
    // nodes' takes the nodes' DNS names (under the walkthrough's domain).
    let names = |arn: &str| -> (String, Vec<String>) {
        let out = target.ctl(&["describe-certificate", "--certificate-arn", arn]);
        assert_eq!(out.code, 0, "describe-certificate {arn}: {}", out.stderr);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        let c = &v["Certificate"];
        assert_eq!(c["CertificateArn"], arn);
        let sans = c["SubjectAlternativeNames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect();
        (c["DomainName"].as_str().unwrap().to_owned(), sans)
    };
    let (gw_name, _) = names(&mapped[&gw_cert]);
    assert_eq!(gw_name, "localhost", "the gateway's new certificate");
    let (node_name, node_sans) = names(&mapped[&node_cert]);
    assert!(
        node_name.ends_with(&format!(".{D}"))
            && node_sans.iter().all(|n| n.ends_with(&format!(".{D}"))),
        "the nodes' new certificate names their DNS names: {node_name} {node_sans:?}"
    );

    // A second import finds everything there already and says so, resource by resource.
    let again = target.ctl(&[
        "import",
        "--from-dir",
        &dir,
        "--certificate-domain",
        &gw_domain,
    ]);
    assert_eq!(again.code, 255, "{}", again.stdout);
    assert!(
        again
            .stdout
            .contains("imported 0 of 15 resources; 15 failed"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains(
            "failed   virtualNode ColorApp-Ingress/colorteller-white-vn: ConflictException"
        ),
        "{}",
        again.stdout
    );
}

#[test]
fn import_names_what_it_cannot_create_and_why() {
    let target = Control::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("virtualService")).unwrap();
    std::fs::create_dir_all(dir.join("virtualGateway")).unwrap();
    std::fs::create_dir_all(dir.join("mesh")).unwrap();
    std::fs::write(
        dir.join("mesh/m.json"),
        json!({"mesh": {"meshName": "m", "spec": {}}}).to_string(),
    )
    .unwrap();
    // Its provider was not exported: the store refuses the dangling reference.
    std::fs::write(
        dir.join("virtualService/s.json"),
        json!({"virtualService": {"meshName": "m", "virtualServiceName": "s",
            "spec": {"provider": {"virtualNode": {"virtualNodeName": "missing-vn"}}}}})
        .to_string(),
    )
    .unwrap();
    // An ACM certificate with no known domain names.
    std::fs::write(
        dir.join("virtualGateway/g.json"),
        json!({"virtualGateway": {"meshName": "m", "virtualGatewayName": "g",
            "spec": {"listeners": [{"portMapping": {"port": 443, "protocol": "http"},
                "tls": {"mode": "STRICT", "certificate": {"acm": {"certificateArn": "arn:aws:acm:us-west-2:111122223333:certificate/abc"}}}}]}}})
        .to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("virtualGateway/broken.json"), "{not json").unwrap();
    let out = target.ctl(&["import", "--from-dir", &dir.to_string_lossy()]);
    assert_eq!(out.code, 255, "{}", out.stdout);
    let text = &out.stdout;
    assert!(text.contains("created  mesh m"), "{text}");
    assert!(
        text.contains("failed   virtualService m/s: NotFoundException"),
        "{text}"
    );
    assert!(text.contains("missing-vn"), "{text}");
    assert!(
        text.contains("failed   virtualGateway m/g: certificate arn:aws:acm:us-west-2:111122223333:certificate/abc: its domain names are unknown"),
        "{text}"
    );
    assert!(text.contains("broken.json: not JSON"), "{text}");
    assert!(
        text.contains("imported 1 of 4 resources; 3 failed"),
        "{text}"
    );
}
