//! The private CA through the control plane: ACM-shaped ARNs that make the walkthrough's TLS
//! specs work unchanged, the CA bundle, the API over TLS, and no key material anywhere a
//! user or a log can see it.

mod common;

use common::{aws_cli, render, run_cli, Control};
use serde_json::Value;

const MESH: &str = "ColorApp-Ingress";

fn json(out: &common::Out) -> Value {
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn setup_mesh(c: &Control) {
    json(&c.ctl(&["create-mesh", "--mesh-name", MESH]));
    for color in ["white", "blue"] {
        let spec = render(
            &format!("colorteller-{color}-vn.json"),
            &[(
                "DNS_HOSTNAME",
                &format!("colorteller-{color}.default.svc.cluster.local"),
            )],
        );
        json(&c.ctl(&[
            "create-virtual-node",
            "--mesh-name",
            MESH,
            "--virtual-node-name",
            &format!("colorteller-{color}-vn"),
            "--cli-input-json",
            &spec,
        ]));
    }
}

#[test]
fn walkthrough_tls_specs_are_accepted_with_the_appliance_arns_and_refused_with_unknown_ones() {
    let c = Control::start();
    setup_mesh(&c);
    let ca = json(&c.ctl(&["describe-certificate-authority"]));
    let root_ca_arn = ca["CertificateAuthority"]["Arn"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(ca["CertificateAuthority"]["Status"], "ACTIVE");
    assert!(root_ca_arn.starts_with("arn:aws:acm-pca:"), "{root_ca_arn}");
    let cert = c.ctl(&[
        "request-certificate",
        "--domain-name",
        "*.default.svc.cluster.local",
        "--query",
        "CertificateArn",
        "--output",
        "text",
    ]);
    assert_eq!(cert.code, 0, "{}", cert.stderr);
    let certificate_arn = cert.stdout.trim().to_owned();
    assert!(
        certificate_arn.starts_with("arn:aws:acm:"),
        "{certificate_arn}"
    );

    let vn = render(
        "colorteller-white-vn-tls.json",
        &[
            (
                "DNS_HOSTNAME",
                "colorteller-white.default.svc.cluster.local",
            ),
            ("CERTIFICATE_ARN", &certificate_arn),
        ],
    );
    let updated = json(&c.ctl(&[
        "update-virtual-node",
        "--mesh-name",
        MESH,
        "--virtual-node-name",
        "colorteller-white-vn",
        "--cli-input-json",
        &vn,
    ]));
    assert_eq!(
        updated["virtualNode"]["spec"]["listeners"][0]["tls"]["certificate"]["acm"]
            ["certificateArn"],
        certificate_arn.as_str()
    );
    let vg = render(
        "colorgateway-vg.json",
        &[("CERTIFICATE_ARN", &certificate_arn)],
    );
    json(&c.ctl(&[
        "create-virtual-gateway",
        "--mesh-name",
        MESH,
        "--virtual-gateway-name",
        "colorgateway-vg",
        "--cli-input-json",
        &vg,
    ]));
    let defaults = render(
        "colorgateway-vg-backendDefaults.json",
        &[
            ("CERTIFICATE_ARN", &certificate_arn),
            ("ROOT_CA_ARN", &root_ca_arn),
        ],
    );
    let vg = json(&c.ctl(&[
        "update-virtual-gateway",
        "--mesh-name",
        MESH,
        "--virtual-gateway-name",
        "colorgateway-vg",
        "--cli-input-json",
        &defaults,
    ]));
    assert_eq!(
        vg["virtualGateway"]["spec"]["backendDefaults"]["clientPolicy"]["tls"]["enforce"], true,
        "App Mesh's default"
    );

    // The same specs naming ARNs this appliance never issued.
    let bogus_cert =
        "arn:aws:acm:us-west-2:123456789012:certificate/00000000-0000-0000-0000-000000000000";
    let bogus_ca = "arn:aws:acm-pca:us-west-2:123456789012:certificate-authority/00000000-0000-0000-0000-000000000000";
    let vn = render(
        "colorteller-blue-vn-tls.json",
        &[
            ("DNS_HOSTNAME", "colorteller-blue.default.svc.cluster.local"),
            ("CERTIFICATE_ARN", bogus_cert),
        ],
    );
    let out = c.ctl(&[
        "update-virtual-node",
        "--mesh-name",
        MESH,
        "--virtual-node-name",
        "colorteller-blue-vn",
        "--cli-input-json",
        &vn,
    ]);
    assert_eq!(out.code, 255);
    assert!(
        out.stderr.contains("BadRequestException")
            && out.stderr.contains(bogus_cert)
            && out
                .stderr
                .contains("spec.listeners[0].tls.certificate.acm.certificateArn"),
        "{}",
        out.stderr
    );
    let defaults = render(
        "colorgateway-vg-backendDefaults.json",
        &[
            ("CERTIFICATE_ARN", &certificate_arn),
            ("ROOT_CA_ARN", bogus_ca),
        ],
    );
    let out = c.ctl(&[
        "update-virtual-gateway",
        "--mesh-name",
        MESH,
        "--virtual-gateway-name",
        "colorgateway-vg",
        "--cli-input-json",
        &defaults,
    ]);
    assert!(out.stderr.contains(bogus_ca), "{}", out.stderr);
    let blue = json(&c.ctl(&[
        "describe-virtual-node",
        "--mesh-name",
        MESH,
        "--virtual-node-name",
        "colorteller-blue-vn",
    ]));
    assert_eq!(
        blue["virtualNode"]["metadata"]["version"], 1,
        "a refused update leaves the node as it was"
    );
}

#[test]
fn the_api_serves_tls_that_the_aws_cli_accepts_with_the_ca_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Control::start_with(&tmp.path().join("data"), &["--api-tls"]);
    assert!(c.endpoint().starts_with("https://"));
    let bundle = c.ctl(&["get-ca-bundle", "--ca-bundle", "/dev/null"]);
    // Without the bundle the client must refuse the server.
    assert_ne!(
        bundle.code, 0,
        "a client with no trust in the CA must not connect"
    );
    // Fetch the bundle from the data directory's CA files instead, as an operator would the first time.
    let pem: String = std::fs::read_dir(c.data_dir.join("certs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name().to_string_lossy().starts_with("root-")
                && e.file_name().to_string_lossy().ends_with(".pem")
        })
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    let bundle_path = tmp.path().join("bundle.pem");
    std::fs::write(&bundle_path, pem).unwrap();
    let b = bundle_path.to_str().unwrap();
    let fetched = c.ctl(&["get-ca-bundle", "--ca-bundle", b]);
    assert_eq!(fetched.code, 0, "{}", fetched.stderr);
    assert!(fetched.stdout.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(!fetched.stdout.contains("PRIVATE KEY"));
    let out = run_cli(
        &aws_cli(),
        &[
            "appmesh".into(),
            "list-meshes".into(),
            "--endpoint-url".into(),
            c.endpoint(),
            "--ca-bundle".into(),
            b.into(),
        ],
        &c,
    );
    assert_eq!(out.code, 0, "aws appmesh over TLS: {}", out.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap()["meshes"],
        serde_json::json!([])
    );
}

#[test]
fn keys_are_owner_only_and_never_in_logs_or_api_output() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let c = Control::start_with(&tmp.path().join("data"), &["--api-tls"]);
    let certs = c.data_dir.join("certs");
    let mut keys = 0;
    for entry in std::fs::read_dir(&certs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "key") {
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600,
                "{}",
                path.display()
            );
            keys += 1;
        }
    }
    assert_eq!(keys, 2);
    assert_eq!(
        std::fs::metadata(c.credentials())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let bundle_path = tmp.path().join("bundle.pem");
    let roots: String = std::fs::read_dir(&certs)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name().to_string_lossy().starts_with("root-")
                && e.file_name().to_string_lossy().ends_with(".pem")
        })
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    std::fs::write(&bundle_path, roots).unwrap();
    let b = bundle_path.to_str().unwrap();
    let mut seen = String::new();
    // revoke-identity needs the node to exist.
    for args in [
        vec!["create-mesh", "--mesh-name", "m"],
        vec![
            "create-virtual-node",
            "--mesh-name",
            "m",
            "--virtual-node-name",
            "x",
            "--spec",
            "{}",
        ],
    ] {
        let mut a = args.clone();
        a.extend(["--ca-bundle", b]);
        let out = c.ctl(&a);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }
    for args in [
        vec!["describe-certificate-authority"],
        vec!["get-ca-bundle"],
        vec!["request-certificate", "--domain-name", "a.local"],
        vec!["rotate-certificate-authority"],
        vec!["rotate-certificate-authority", "--root"],
        vec!["revoke-identity", "--identity", "mesh/m/virtualNode/x"],
    ] {
        let mut a = args.clone();
        a.extend(["--ca-bundle", b]);
        let out = c.ctl(&a);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        seen.push_str(&out.stdout);
        seen.push_str(&out.stderr);
    }
    let status: Value = serde_json::from_str(
        &c.ctl(&["describe-certificate-authority", "--ca-bundle", b])
            .stdout,
    )
    .unwrap();
    let authorities = status["CertificateAuthority"]["Authorities"]
        .as_array()
        .unwrap();
    assert_eq!(
        authorities
            .iter()
            .filter(|a| a["status"] == "RETIRING")
            .count(),
        3,
        "old root, two old intermediates: {status}"
    );
    let key_text: Vec<String> = std::fs::read_dir(&certs)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "key"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    let log = c.log_text();
    for key in key_text {
        let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(
            !seen.contains(&body[..40]) && !log.contains(&body[..40]),
            "key material leaked"
        );
    }
    assert!(!seen.contains("PRIVATE KEY") && !log.contains("PRIVATE KEY"));
}
