//! The appliance's own `ctl` commands, beyond App Mesh's 38 operations: its private CA in
//! ACM's shapes (so the walkthrough's `$ROOT_CA_ARN` and `$CERTIFICATE_ARN` have values),
//! identity revocation, join tokens, the connected proxies, and a dry-run `compile`.

use serde_json::{json, Value};

use super::request::{CallError, Client};
use super::{credentials, exit, print_result, usage_error, Globals};

/// (name, one-line description), for `appliance ctl help`.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "describe-certificate-authority",
        "the CA in ACM PCA's shape; its Arn is $ROOT_CA_ARN",
    ),
    (
        "request-certificate",
        "--domain-name N [--subject-alternative-names N ...]: a certificate ARN",
    ),
    (
        "describe-certificate",
        "--certificate-arn ARN: its domain names, in ACM's describe-certificate shape",
    ),
    (
        "get-ca-bundle",
        "the PEM trust bundle, for curl --cacert and aws --ca-bundle",
    ),
    (
        "rotate-certificate-authority",
        "[--root]: a new intermediate (or root) with overlap",
    ),
    (
        "revoke-identity",
        "--identity mesh/M/virtualNode/N: no more certificates for it",
    ),
    (
        "unrevoke-identity",
        "--identity mesh/M/virtualNode/N: it may enrol and renew again",
    ),
    (
        "create-join-token",
        "--identity mesh/M/virtualNode/N [--ttl-seconds S] [--single-use]: enrols one proxy",
    ),
    (
        "list-join-tokens",
        "every join token: id, identity, state, expiry (never the secret)",
    ),
    (
        "revoke-join-token",
        "--token-id ID: the token enrols nobody more",
    ),
    (
        "list-proxies",
        "connected proxies: identity, address, config versions, last nack, certificate expiry",
    ),
    (
        "compile",
        "--identity ID [--endpoint NODE=HOST:PORT ...]: the ProxyConfig it gets",
    ),
];

/// The flags of one command: each `--name` with the values after it.
struct Flags(Vec<(String, Vec<String>)>);

impl Flags {
    fn parse(args: &[String], allowed: &[&str]) -> Result<Flags, String> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for arg in args {
            if let Some(name) = arg.strip_prefix("--") {
                if !allowed.contains(&name) {
                    return Err(format!("Unknown options: {arg}"));
                }
                out.push((name.to_owned(), Vec::new()));
            } else {
                match out.last_mut() {
                    Some((_, values)) => values.push(arg.clone()),
                    None => return Err(format!("Unknown options: {arg}")),
                }
            }
        }
        Ok(Flags(out))
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.first())
            .map(String::as_str)
    }

    fn many(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.iter().cloned())
            .collect()
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }
}

/// Runs an appliance command; `None` if `command` is not one.
pub async fn run(globals: &Globals, command: &str, args: &[String]) -> anyhow::Result<Option<u8>> {
    let allowed: &[&str] = match command {
        "describe-certificate-authority" | "get-ca-bundle" => &[],
        "request-certificate" => &["domain-name", "subject-alternative-names"],
        "describe-certificate" => &["certificate-arn"],
        "rotate-certificate-authority" => &["root"],
        "revoke-identity" | "unrevoke-identity" => &["identity"],
        "compile" => &["identity", "endpoint"],
        "create-join-token" => &["identity", "ttl-seconds", "single-use"],
        "list-join-tokens" | "list-proxies" => &[],
        "revoke-join-token" => &["token-id"],
        _ => return Ok(None),
    };
    let flags = match Flags::parse(args, allowed) {
        Ok(f) => f,
        Err(msg) => {
            eprintln!("\n{msg}");
            return Ok(Some(exit::FAILED));
        }
    };
    let format = match globals.format() {
        Ok(f) => f,
        Err(msg) => return Ok(Some(usage_error(&msg))),
    };
    let compile_path: String;
    let (method, path, body) = match command {
        "describe-certificate-authority" => ("GET", "/appliance/v1/certificate-authority", None),
        "get-ca-bundle" => ("GET", "/appliance/v1/certificate-authority/bundle", None),
        "describe-certificate" => {
            let Some(arn) = flags.one("certificate-arn") else {
                return Ok(Some(usage_error(
                    "the following arguments are required: --certificate-arn",
                )));
            };
            (
                "POST",
                "/appliance/v1/certificates/describe",
                Some(json!({ "CertificateArn": arn })),
            )
        }
        "request-certificate" => {
            let Some(domain) = flags.one("domain-name") else {
                return Ok(Some(usage_error(
                    "the following arguments are required: --domain-name",
                )));
            };
            let sans = flags.many("subject-alternative-names");
            (
                "POST",
                "/appliance/v1/certificates",
                Some(json!({"DomainName": domain, "SubjectAlternativeNames": sans})),
            )
        }
        "rotate-certificate-authority" => (
            "POST",
            "/appliance/v1/certificate-authority/rotate",
            Some(json!({"Root": flags.has("root")})),
        ),
        "create-join-token" => {
            let Some(identity) = flags.one("identity") else {
                return Ok(Some(usage_error(
                    "the following arguments are required: --identity",
                )));
            };
            let ttl = match flags.one("ttl-seconds").map(str::parse::<u64>) {
                None => None,
                Some(Ok(n)) => Some(n),
                Some(Err(_)) => {
                    return Ok(Some(usage_error(
                        "argument --ttl-seconds: expected a whole number of seconds",
                    )))
                }
            };
            (
                "POST",
                "/appliance/v1/join-tokens",
                Some(json!({
                    "Identity": identity,
                    "TtlSeconds": ttl,
                    "SingleUse": flags.has("single-use"),
                })),
            )
        }
        "list-join-tokens" => ("GET", "/appliance/v1/join-tokens", None),
        "list-proxies" => ("GET", "/appliance/v1/proxies", None),
        "revoke-join-token" => {
            let Some(id) = flags.one("token-id") else {
                return Ok(Some(usage_error(
                    "the following arguments are required: --token-id",
                )));
            };
            (
                "POST",
                "/appliance/v1/join-tokens/revoke",
                Some(json!({ "Id": id })),
            )
        }
        "compile" => {
            let Some(identity) = flags.one("identity") else {
                return Ok(Some(usage_error(
                    "the following arguments are required: --identity",
                )));
            };
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            q.append_pair("identity", identity);
            for e in flags.many("endpoint") {
                q.append_pair("endpoint", &e);
            }
            compile_path = format!("/appliance/v1/compile?{}", q.finish());
            ("GET", compile_path.as_str(), None)
        }
        _ => {
            let Some(identity) = flags.one("identity") else {
                return Ok(Some(usage_error(
                    "the following arguments are required: --identity",
                )));
            };
            let path = if command == "unrevoke-identity" {
                "/appliance/v1/identities/unrevoke"
            } else {
                "/appliance/v1/identities/revoke"
            };
            ("POST", path, Some(json!({"Identity": identity})))
        }
    };
    let creds = match credentials::resolve(globals.data_dir.as_deref(), globals.profile.as_deref())
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e:#}");
            return Ok(Some(exit::FAILED));
        }
    };
    let client = Client::new(globals, creds)?;
    let url = format!("{}{path}", globals.endpoint());
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let (status, kind, text) = match client.send(method, &url, bytes).await {
        Ok(r) => r,
        Err(CallError::Other(e)) => {
            eprintln!("\n{e:#}");
            return Ok(Some(exit::FAILED));
        }
        Err(CallError::Service { kind, message }) => {
            eprintln!(
                "\nAn error occurred ({kind}) when calling the {command} operation: {message}"
            );
            return Ok(Some(exit::FAILED));
        }
    };
    if !(200..300).contains(&status) {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or(text);
        eprintln!(
            "\nAn error occurred ({}) when calling the {command} operation: {message}",
            kind.unwrap_or_else(|| format!("HTTP{status}"))
        );
        return Ok(Some(exit::FAILED));
    }
    if command == "get-ca-bundle" {
        print!("{text}");
        return Ok(Some(exit::OK));
    }
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("the endpoint answered with invalid JSON: {e}"))?;
    Ok(Some(print_result(globals, format, &value)?))
}
