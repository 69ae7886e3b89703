//! `appliance ctl import --from-dir DIR`: recreates a mesh exported from AWS App Mesh with
//! `scripts/appmesh-export.sh` (the `aws appmesh describe-*` JSON of every resource, in
//! `DIR/<kind>/...json`). Resources are created in the order the store's reference checks
//! need (a route's nodes, a service's provider and a gateway route's service must exist
//! first; a node's backends need not), and ACM ARNs are mapped to the appliance's CA.
//!
//! Every resource is tried even when an earlier one failed, so one run reports everything
//! that needs fixing; the exit code is 255 if anything failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Value};

use super::api::{segment, Api, ApiError};
use super::{exit, usage_error, Globals};

/// For `appliance ctl help`.
pub const ABOUT: (&str, &str) = (
    "import",
    "--from-dir DIR [--certificate-domain ARN=NAME[,NAME..] ...]: create a mesh exported by scripts/appmesh-export.sh",
);

/// One resource kind: its directory under the export, the key of `describe-*`'s output,
/// its name member, and (routes, gateway routes) the parent's name member. In creation order.
struct Kind {
    dir: &'static str,
    name_member: &'static str,
    parent_member: Option<&'static str>,
}

const ORDER: [Kind; 7] = [
    Kind {
        dir: "mesh",
        name_member: "meshName",
        parent_member: None,
    },
    Kind {
        dir: "virtualNode",
        name_member: "virtualNodeName",
        parent_member: None,
    },
    Kind {
        dir: "virtualRouter",
        name_member: "virtualRouterName",
        parent_member: None,
    },
    Kind {
        dir: "route",
        name_member: "routeName",
        parent_member: Some("virtualRouterName"),
    },
    Kind {
        dir: "virtualService",
        name_member: "virtualServiceName",
        parent_member: None,
    },
    Kind {
        dir: "virtualGateway",
        name_member: "virtualGatewayName",
        parent_member: None,
    },
    Kind {
        dir: "gatewayRoute",
        name_member: "gatewayRouteName",
        parent_member: Some("virtualGatewayName"),
    },
];

/// One exported resource, parsed from its file.
struct Exported {
    kind: &'static Kind,
    mesh: String,
    name: String,
    parent: Option<String>,
    spec: Value,
}

impl Exported {
    /// `mesh/M/virtualNode/N`-style label for the report.
    fn label(&self) -> String {
        match (&self.parent, self.kind.dir) {
            (_, "mesh") => format!("mesh {}", self.name),
            (Some(p), k) => format!("{k} {}/{p}/{}", self.mesh, self.name),
            (None, k) => format!("{k} {}/{}", self.mesh, self.name),
        }
    }

    /// (collection path, create body) for App Mesh's create operation.
    fn create_request(&self) -> (String, Value) {
        let m = format!("/v20190125/meshes/{}", segment(&self.mesh));
        let path = match (self.kind.dir, &self.parent) {
            ("mesh", _) => "/v20190125/meshes".to_owned(),
            ("route", Some(vr)) => format!("{m}/virtualRouter/{}/routes", segment(vr)),
            ("gatewayRoute", Some(vg)) => {
                format!("{m}/virtualGateway/{}/gatewayRoutes", segment(vg))
            }
            (dir, _) => format!("{m}/{dir}s"),
        };
        let mut body = json!({ "spec": self.spec });
        body[self.kind.name_member] = Value::String(self.name.clone());
        (path, body)
    }
}

pub async fn run(globals: &Globals, args: &[String]) -> anyhow::Result<u8> {
    let mut from_dir = None;
    let mut domains: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let Some(value) = it.next() else {
            return Ok(usage_error(&format!(
                "argument {arg}: expected one argument"
            )));
        };
        match arg.as_str() {
            "--from-dir" => from_dir = Some(PathBuf::from(value)),
            "--certificate-domain" => match value.split_once('=') {
                Some((arn, names)) if !names.is_empty() => {
                    domains.insert(
                        arn.to_owned(),
                        names.split(',').map(str::to_owned).collect(),
                    );
                }
                _ => {
                    return Ok(usage_error(
                        "argument --certificate-domain: expected ARN=NAME[,NAME...]",
                    ))
                }
            },
            other => return Ok(usage_error(&format!("Unknown options: {other}"))),
        }
    }
    let Some(dir) = from_dir else {
        return Ok(usage_error(
            "the following arguments are required: --from-dir",
        ));
    };
    let api = Api::new(globals)?;
    let (resources, mut failed) = read_export(&dir)?;
    for (path, reason) in &failed {
        println!("failed   {path}: {reason}");
    }
    if resources.is_empty() && failed.is_empty() {
        println!(
            "nothing to import: {} has none of {}",
            dir.display(),
            ORDER.map(|k| k.dir).join(", ")
        );
        return Ok(exit::FAILED);
    }
    read_acm_domains(&dir, &mut domains)?;
    // A certificate only gateways use still needs names: take those of the nodes sharing it.
    for r in resources.iter().filter(|r| r.kind.dir == "virtualNode") {
        let host = r.spec["serviceDiscovery"]["dns"]["hostname"].as_str();
        for arn in certificate_arns(&r.spec) {
            if let (Some(host), false) = (host, domains.contains_key(&arn)) {
                domains.insert(arn, vec![host.to_owned()]);
            }
        }
    }
    let mut arns = ArnMap {
        api: &api,
        ca: None,
        certificates: BTreeMap::new(),
        domains,
    };
    let mut created = 0usize;
    for mut r in resources {
        let label = r.label();
        if let Err(reason) = arns.map(&mut r.spec).await {
            println!("failed   {label}: {reason}");
            failed.push((label, reason));
            continue;
        }
        let (path, body) = r.create_request();
        match api.call("PUT", &path, Some(&body)).await {
            Ok(_) => {
                println!("created  {label}");
                created += 1;
            }
            Err(e) => {
                println!("failed   {label}: {e}");
                failed.push((label, e.to_string()));
            }
        }
    }
    for (from, to) in &arns.certificates {
        println!("mapped   {from} -> {to}");
    }
    println!(
        "imported {created} of {} resources; {} failed",
        created + failed.len(),
        failed.len()
    );
    Ok(if failed.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    })
}

/// Every resource file under `dir`, parsed, in creation order; and the files that could not
/// be read, with the reason.
#[allow(clippy::type_complexity)]
fn read_export(dir: &Path) -> anyhow::Result<(Vec<Exported>, Vec<(String, String)>)> {
    if !dir.is_dir() {
        anyhow::bail!("--from-dir {}: not a directory", dir.display());
    }
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for kind in &ORDER {
        let mut files = Vec::new();
        json_files(&dir.join(kind.dir), &mut files)?;
        files.sort();
        for file in files {
            match parse(kind, &file) {
                Ok(r) => ok.push(r),
                Err(e) => bad.push((file.display().to_string(), format!("{e:#}"))),
            }
        }
    }
    Ok((ok, bad))
}

/// `*.json` under `dir`, recursively (routes sit in a folder per router); none if missing.
fn json_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.is_dir() {
            json_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

/// One `aws appmesh describe-*` output: `{"virtualNode": {"meshName", "virtualNodeName",
/// "spec", "metadata", "status"}}`. Only names and spec are kept; metadata is the source's.
fn parse(kind: &'static Kind, file: &Path) -> anyhow::Result<Exported> {
    let text = std::fs::read_to_string(file).context("reading it")?;
    let outer: Value = serde_json::from_str(&text).context("not JSON")?;
    let inner = outer.get(kind.dir).unwrap_or(&outer);
    let field = |name: &str| -> anyhow::Result<String> {
        inner
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| {
                format!(
                    "no {name}: expected the output of `aws appmesh describe-{}`",
                    super::kebab(kind.dir)
                )
            })
    };
    let name = field(kind.name_member)?;
    let mesh = if kind.dir == "mesh" {
        name.clone()
    } else {
        field("meshName")?
    };
    let parent = kind.parent_member.map(field).transpose()?;
    let spec = match inner.get("spec") {
        Some(s @ Value::Object(_)) => s.clone(),
        _ => anyhow::bail!("no spec object"),
    };
    Ok(Exported {
        kind,
        mesh,
        name,
        parent,
        spec,
    })
}

/// `DIR/acm/*.json`: `aws acm describe-certificate` outputs, for the names a mapped
/// certificate must carry. `--certificate-domain` flags win over them.
fn read_acm_domains(dir: &Path, domains: &mut BTreeMap<String, Vec<String>>) -> anyhow::Result<()> {
    let mut files = Vec::new();
    json_files(&dir.join("acm"), &mut files)?;
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            tracing::warn!(file = %file.display(), "not JSON; ignored");
            continue;
        };
        let cert = v.get("Certificate").unwrap_or(&v);
        let (Some(arn), Some(domain)) = (
            cert.get("CertificateArn").and_then(Value::as_str),
            cert.get("DomainName").and_then(Value::as_str),
        ) else {
            continue;
        };
        let mut names = vec![domain.to_owned()];
        for san in cert["SubjectAlternativeNames"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(s) = san.as_str().filter(|s| *s != domain) {
                names.push(s.to_owned());
            }
        }
        domains.entry(arn.to_owned()).or_insert(names);
    }
    Ok(())
}

/// ACM certificate ARNs (`certificateArn`) anywhere in a spec.
fn certificate_arns(spec: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(spec, &mut |key, v| {
        if key == "certificateArn" {
            if let Some(s) = v.as_str() {
                out.push(s.to_owned());
            }
        }
    });
    out
}

fn walk(v: &Value, f: &mut impl FnMut(&str, &Value)) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                f(k, child);
                walk(child, f);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk(i, f)),
        _ => {}
    }
}

/// Source ACM ARNs -> this appliance's: every private CA is the appliance's CA (it is the
/// one trust root here); each certificate becomes one new certificate for the same names.
struct ArnMap<'a> {
    api: &'a Api,
    ca: Option<String>,
    certificates: BTreeMap<String, String>,
    domains: BTreeMap<String, Vec<String>>,
}

impl ArnMap<'_> {
    async fn map(&mut self, spec: &mut Value) -> Result<(), String> {
        match spec {
            Value::Object(m) => {
                for (k, v) in m.iter_mut() {
                    match (k.as_str(), &mut *v) {
                        ("certificateArn", Value::String(arn)) => {
                            *arn = self.certificate(arn).await?;
                        }
                        ("certificateAuthorityArns", Value::Array(items)) => {
                            if !items.is_empty() {
                                let ca = self.ca().await?;
                                // Several source CAs are one CA here.
                                *items = vec![Value::String(ca)];
                            }
                        }
                        _ => Box::pin(self.map(v)).await?,
                    }
                }
            }
            Value::Array(items) => {
                for i in items {
                    Box::pin(self.map(i)).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn ca(&mut self) -> Result<String, String> {
        if let Some(ca) = &self.ca {
            return Ok(ca.clone());
        }
        let ca = self.api.ca_arn().await.map_err(|e| reason("the CA", &e))?;
        self.ca = Some(ca.clone());
        Ok(ca)
    }

    async fn certificate(&mut self, source: &str) -> Result<String, String> {
        if let Some(arn) = self.certificates.get(source) {
            return Ok(arn.clone());
        }
        let names = self.domains.get(source).ok_or_else(|| {
            format!("certificate {source}: its domain names are unknown (export with the ACM lookup, or pass --certificate-domain {source}=NAME)")
        })?;
        let (domain, sans) = names
            .split_first()
            .ok_or_else(|| format!("certificate {source}: no domain name"))?;
        let arn = self
            .api
            .request_certificate(domain, sans)
            .await
            .map_err(|e| reason(&format!("requesting a certificate for {domain}"), &e))?;
        self.certificates.insert(source.to_owned(), arn.clone());
        Ok(arn)
    }
}

fn reason(what: &str, e: &ApiError) -> String {
    format!("{what}: {e}")
}
