//! The walkthrough's `mesh.sh up`, then describe/list/update, then `mesh.sh down`, run with
//! the real AWS CLI against `appliance control`, and again with `appliance ctl` in its place;
//! both must succeed at every step and print the same thing (up to ids and times).

mod common;

use std::path::PathBuf;

use common::{aws_cli, render, run_cli, Control, Out, BIN};
use serde_json::Value;

const MESH: &str = "ColorApp-Ingress";
const DOMAIN: &str = "default.svc.cluster.local";

/// One CLI flavour: the program and the words before the operation name.
struct Cli {
    program: PathBuf,
    prefix: Vec<String>,
}

impl Cli {
    fn aws() -> Cli {
        Cli {
            program: aws_cli(),
            prefix: vec!["appmesh".into()],
        }
    }
    fn ctl() -> Cli {
        Cli {
            program: PathBuf::from(BIN),
            prefix: vec!["ctl".into()],
        }
    }
    fn call(&self, control: &Control, args: &[&str]) -> Out {
        let mut all: Vec<String> = self.prefix.clone();
        all.extend(args.iter().map(|s| s.to_string()));
        all.push("--endpoint-url".into());
        all.push(control.endpoint());
        run_cli(&self.program, &all, control)
    }
}

/// Runs one step; it must succeed. Returns its output with ids and times masked.
fn step(cli: &Cli, control: &Control, log: &mut Vec<String>, args: &[&str]) -> String {
    let out = cli.call(control, args);
    assert_eq!(
        out.code,
        0,
        "{} {:?} failed:\n{}",
        cli.program.display(),
        args,
        out.stderr
    );
    let masked = mask(&out.stdout);
    log.push(format!("$ {}\n{masked}", args[0]));
    out.stdout
}

/// Masks what differs between two runs: uids, timestamps, account ids.
fn mask(text: &str) -> String {
    let uid =
        regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap();
    let account = regex::Regex::new(r"\b[1-9][0-9]{11}\b").unwrap();
    let ts = regex::Regex::new(r#""(createdAt|lastUpdatedAt)": [^,\n]+"#).unwrap();
    let text = uid.replace_all(text, "<uid>");
    let text = account.replace_all(&text, "<account>");
    ts.replace_all(&text, "\"$1\": <time>").into_owned()
}

fn certificate_arn(control: &Control) -> String {
    let out = control.ctl(&[
        "request-certificate",
        "--domain-name",
        &format!("*.{DOMAIN}"),
        "--query",
        "CertificateArn",
        "--output",
        "text",
    ]);
    assert_eq!(out.code, 0, "request-certificate: {}", out.stderr);
    out.stdout.trim().to_owned()
}

/// `mesh.sh up`: the 14 calls, in order, each printing the new resource's uid.
fn up(cli: &Cli, c: &Control, log: &mut Vec<String>, cert: &str) {
    let fixture = |f: &str| format!("file://{}", common::fixture_path(f).display());
    let uid = ["--output", "text"];
    let mut run = |args: Vec<String>, res: &str| {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        let q = format!("{res}.metadata.uid");
        a.extend(["--query", q.as_str()]);
        a.extend(uid);
        let out = step(cli, c, log, &a);
        assert!(out.trim().len() == 36, "{a:?} printed {out:?}, not a uid");
    };
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let node = |color: &str| {
        render(
            &format!("colorteller-{color}-vn.json"),
            &[("DNS_HOSTNAME", &format!("colorteller-{color}.{DOMAIN}"))],
        )
    };
    run(
        s(&[
            "create-mesh",
            "--mesh-name",
            MESH,
            "--cli-input-json",
            &fixture("mesh.json"),
        ]),
        "mesh",
    );
    for (vr, nodes, n) in [
        ("colorteller-vr-1", ["white", "blue"], 1),
        ("colorteller-vr-2", ["black", "red"], 2),
    ] {
        for color in nodes {
            let name = format!("colorteller-{color}-vn");
            run(
                s(&[
                    "create-virtual-node",
                    "--mesh-name",
                    MESH,
                    "--virtual-node-name",
                    &name,
                    "--cli-input-json",
                    &node(color),
                ]),
                "virtualNode",
            );
        }
        run(
            s(&[
                "create-virtual-router",
                "--mesh-name",
                MESH,
                "--virtual-router-name",
                vr,
                "--cli-input-json",
                &fixture(&format!("{vr}.json")),
            ]),
            "virtualRouter",
        );
        let route = format!("colorteller-route-{n}");
        run(
            s(&[
                "create-route",
                "--mesh-name",
                MESH,
                "--virtual-router-name",
                vr,
                "--route-name",
                &route,
                "--cli-input-json",
                &fixture(&format!("{route}.json")),
            ]),
            "route",
        );
        let vs = format!("colorteller-{n}.{DOMAIN}");
        run(
            s(&[
                "create-virtual-service",
                "--mesh-name",
                MESH,
                "--virtual-service-name",
                &vs,
                "--cli-input-json",
                &fixture(&format!("colorteller-vs-{n}.json")),
            ]),
            "virtualService",
        );
    }
    let vg = render("colorgateway-vg.json", &[("CERTIFICATE_ARN", cert)]);
    run(
        s(&[
            "create-virtual-gateway",
            "--mesh-name",
            MESH,
            "--virtual-gateway-name",
            "colorgateway-vg",
            "--cli-input-json",
            &vg,
        ]),
        "virtualGateway",
    );
    for n in 1..=2 {
        let gr = render(
            &format!("colorgateway-route-{n}.json"),
            &[("VIRTUALSERVICE_NAME", &format!("colorteller-{n}.{DOMAIN}"))],
        );
        run(
            s(&[
                "create-gateway-route",
                "--mesh-name",
                MESH,
                "--virtual-gateway-name",
                "colorgateway-vg",
                "--gateway-route-name",
                &format!("colorgateway-route-{n}"),
                "--cli-input-json",
                &gr,
            ]),
            "gatewayRoute",
        );
    }
}

/// `mesh.sh down`: the 14 deletes in reverse dependency order.
fn down(cli: &Cli, c: &Control, log: &mut Vec<String>) {
    let m = ["--mesh-name", MESH];
    let vs1 = format!("colorteller-1.{DOMAIN}");
    let vs2 = format!("colorteller-2.{DOMAIN}");
    let calls: Vec<Vec<&str>> = vec![
        vec![
            "delete-gateway-route",
            "--virtual-gateway-name",
            "colorgateway-vg",
            "--gateway-route-name",
            "colorgateway-route-1",
        ],
        vec![
            "delete-gateway-route",
            "--virtual-gateway-name",
            "colorgateway-vg",
            "--gateway-route-name",
            "colorgateway-route-2",
        ],
        vec![
            "delete-virtual-gateway",
            "--virtual-gateway-name",
            "colorgateway-vg",
        ],
        vec!["delete-virtual-service", "--virtual-service-name", &vs1],
        vec![
            "delete-route",
            "--virtual-router-name",
            "colorteller-vr-1",
            "--route-name",
            "colorteller-route-1",
        ],
        vec![
            "delete-virtual-router",
            "--virtual-router-name",
            "colorteller-vr-1",
        ],
        vec![
            "delete-virtual-node",
            "--virtual-node-name",
            "colorteller-white-vn",
        ],
        vec![
            "delete-virtual-node",
            "--virtual-node-name",
            "colorteller-blue-vn",
        ],
        vec!["delete-virtual-service", "--virtual-service-name", &vs2],
        vec![
            "delete-route",
            "--virtual-router-name",
            "colorteller-vr-2",
            "--route-name",
            "colorteller-route-2",
        ],
        vec![
            "delete-virtual-router",
            "--virtual-router-name",
            "colorteller-vr-2",
        ],
        vec![
            "delete-virtual-node",
            "--virtual-node-name",
            "colorteller-black-vn",
        ],
        vec![
            "delete-virtual-node",
            "--virtual-node-name",
            "colorteller-red-vn",
        ],
    ];
    for mut call in calls {
        call.extend(m);
        let out: Value = serde_json::from_str(&step(cli, c, log, &call)).unwrap();
        let data = out.as_object().and_then(|o| o.values().next()).unwrap();
        assert_eq!(data["status"]["status"], "DELETED", "{call:?}");
    }
    step(cli, c, log, &["delete-mesh", "--mesh-name", MESH]);
}

/// Describe, list, update and pagination between up and down.
fn inspect_and_update(cli: &Cli, c: &Control, log: &mut Vec<String>) {
    let m = ["--mesh-name", MESH];
    let desc = |log: &mut Vec<String>| -> Value {
        let args = [
            "describe-route",
            "--virtual-router-name",
            "colorteller-vr-1",
            "--route-name",
            "colorteller-route-1",
            m[0],
            m[1],
        ];
        serde_json::from_str(&step(cli, c, log, &args)).unwrap()
    };
    let before = desc(log);
    assert_eq!(before["route"]["metadata"]["version"], 1);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let spec = r#"{"httpRoute":{"match":{"prefix":"/tell"},"action":{"weightedTargets":[{"virtualNode":"colorteller-white-vn","weight":100},{"virtualNode":"colorteller-blue-vn","weight":0}]}}}"#;
    let args = [
        "update-route",
        "--virtual-router-name",
        "colorteller-vr-1",
        "--route-name",
        "colorteller-route-1",
        "--spec",
        spec,
        m[0],
        m[1],
    ];
    step(cli, c, log, &args);
    let after = desc(log);
    assert_eq!(after["route"]["metadata"]["version"], 2);
    let (t0, t1) = (
        &before["route"]["metadata"]["lastUpdatedAt"],
        &after["route"]["metadata"]["lastUpdatedAt"],
    );
    assert_ne!(t0, t1, "lastUpdatedAt must move on update");
    assert_eq!(
        before["route"]["metadata"]["createdAt"],
        after["route"]["metadata"]["createdAt"]
    );
    assert_eq!(
        after["route"]["spec"]["httpRoute"]["action"]["weightedTargets"][0]["weight"],
        100
    );

    update_the_other_kinds(cli, c, log);

    let nodes: Value =
        serde_json::from_str(&step(cli, c, log, &["list-virtual-nodes", m[0], m[1]])).unwrap();
    let names: Vec<&str> = nodes["virtualNodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["virtualNodeName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "colorteller-black-vn",
            "colorteller-blue-vn",
            "colorteller-red-vn",
            "colorteller-white-vn"
        ]
    );
    // One item per page: the CLI follows nextToken and must still see all four.
    let paged: Value = serde_json::from_str(&step(
        cli,
        c,
        log,
        &["list-virtual-nodes", m[0], m[1], "--page-size", "1"],
    ))
    .unwrap();
    assert_eq!(paged["virtualNodes"].as_array().unwrap().len(), 4);
    for op in [
        "list-virtual-routers",
        "list-virtual-services",
        "list-virtual-gateways",
    ] {
        step(cli, c, log, &[op, m[0], m[1]]);
    }
    step(
        cli,
        c,
        log,
        &[
            "list-routes",
            m[0],
            m[1],
            "--virtual-router-name",
            "colorteller-vr-2",
        ],
    );
    step(
        cli,
        c,
        log,
        &[
            "list-gateway-routes",
            m[0],
            m[1],
            "--virtual-gateway-name",
            "colorgateway-vg",
        ],
    );
    let vs = format!("colorteller-1.{DOMAIN}");
    step(
        cli,
        c,
        log,
        &[
            "describe-virtual-service",
            m[0],
            m[1],
            "--virtual-service-name",
            &vs,
        ],
    );
    step(
        cli,
        c,
        log,
        &[
            "describe-virtual-gateway",
            m[0],
            m[1],
            "--virtual-gateway-name",
            "colorgateway-vg",
        ],
    );
    step(
        cli,
        c,
        log,
        &[
            "describe-gateway-route",
            m[0],
            m[1],
            "--virtual-gateway-name",
            "colorgateway-vg",
            "--gateway-route-name",
            "colorgateway-route-1",
        ],
    );
    step(cli, c, log, &["describe-mesh", m[0], m[1]]);
    let arn = after["route"]["metadata"]["arn"]
        .as_str()
        .unwrap()
        .to_owned();
    step(
        cli,
        c,
        log,
        &[
            "tag-resource",
            "--resource-arn",
            &arn,
            "--tags",
            r#"[{"key":"team","value":"colors"}]"#,
        ],
    );
    let tags: Value = serde_json::from_str(&step(
        cli,
        c,
        log,
        &["list-tags-for-resource", "--resource-arn", &arn],
    ))
    .unwrap();
    assert_eq!(
        tags["tags"],
        serde_json::json!([{"key": "team", "value": "colors"}])
    );
    step(
        cli,
        c,
        log,
        &[
            "untag-resource",
            "--resource-arn",
            &arn,
            "--tag-keys",
            "team",
        ],
    );
}

/// (update args, describe args, JSON key of the resource, path to a spec field, its value).
type UpdateCase<'a> = (Vec<&'a str>, Vec<&'a str>, &'a str, &'a [&'a str], Value);

/// update-mesh, update-virtual-router, update-virtual-service and update-gateway-route: each
/// moves the resource's version to 2 and its describe shows the new spec.
fn update_the_other_kinds(cli: &Cli, c: &Control, log: &mut Vec<String>) {
    let m = ["--mesh-name", MESH];
    let vs = format!("colorteller-1.{DOMAIN}");
    // (update args, describe args, JSON path to the resource, field in its spec, value)
    let cases: [UpdateCase; 4] = [
        (
            vec![
                "update-mesh",
                "--spec",
                r#"{"egressFilter":{"type":"DROP_ALL"}}"#,
            ],
            vec!["describe-mesh"],
            "mesh",
            &["egressFilter", "type"],
            "DROP_ALL".into(),
        ),
        (
            vec![
                "update-virtual-router",
                "--virtual-router-name",
                "colorteller-vr-1",
                "--spec",
                r#"{"listeners":[{"portMapping":{"port":9090,"protocol":"http"}}]}"#,
            ],
            vec![
                "describe-virtual-router",
                "--virtual-router-name",
                "colorteller-vr-1",
            ],
            "virtualRouter",
            &["listeners", "0", "portMapping", "port"],
            9090.into(),
        ),
        (
            vec![
                "update-virtual-service",
                "--virtual-service-name",
                &vs,
                "--spec",
                r#"{"provider":{"virtualRouter":{"virtualRouterName":"colorteller-vr-2"}}}"#,
            ],
            vec!["describe-virtual-service", "--virtual-service-name", &vs],
            "virtualService",
            &["provider", "virtualRouter", "virtualRouterName"],
            "colorteller-vr-2".into(),
        ),
        (
            vec![
                "update-gateway-route",
                "--virtual-gateway-name",
                "colorgateway-vg",
                "--gateway-route-name",
                "colorgateway-route-1",
                "--spec",
                GATEWAY_ROUTE_UPDATE,
            ],
            vec![
                "describe-gateway-route",
                "--virtual-gateway-name",
                "colorgateway-vg",
                "--gateway-route-name",
                "colorgateway-route-1",
            ],
            "gatewayRoute",
            &["httpRoute", "match", "prefix"],
            "/colour1".into(),
        ),
    ];
    for (update, describe, kind, field, want) in cases {
        let mut args = update.clone();
        args.extend(m);
        let updated: Value = serde_json::from_str(&step(cli, c, log, &args)).unwrap();
        let mut args = describe.clone();
        args.extend(m);
        let described: Value = serde_json::from_str(&step(cli, c, log, &args)).unwrap();
        for v in [&updated, &described] {
            assert_eq!(v[kind]["metadata"]["version"], 2, "{}: {v}", update[0]);
            let got = field
                .iter()
                .fold(&v[kind]["spec"], |at, k| match k.parse::<usize>() {
                    Ok(i) => &at[i],
                    Err(_) => &at[*k],
                });
            assert_eq!(got, &want, "{}: spec.{} in {v}", update[0], field.join("."));
        }
    }
}

const GATEWAY_ROUTE_UPDATE: &str = concat!(
    r#"{"httpRoute":{"match":{"prefix":"/colour1"},"action":{"target":{"virtualService":"#,
    r#"{"virtualServiceName":"colorteller-1.default.svc.cluster.local"}}}}}"#
);

fn whole_sequence(cli: &Cli) -> Vec<String> {
    let control = Control::start();
    let cert = certificate_arn(&control);
    let mut log = Vec::new();
    up(cli, &control, &mut log, &cert);
    inspect_and_update(cli, &control, &mut log);
    down(cli, &control, &mut log);
    let meshes: Value =
        serde_json::from_str(&step(cli, &control, &mut log, &["list-meshes"])).unwrap();
    assert_eq!(meshes["meshes"], serde_json::json!([]));
    log
}

#[test]
fn walkthrough_up_update_down_with_aws_cli_and_ctl_print_the_same() {
    let aws = whole_sequence(&Cli::aws());
    let ctl = whole_sequence(&Cli::ctl());
    assert_eq!(aws.len(), ctl.len());
    for (a, c) in aws.iter().zip(&ctl) {
        assert_eq!(a, c, "aws and ctl differ");
    }
}
