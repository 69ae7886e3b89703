//! `appliance ctl`: the `aws appmesh` command line, driven by App Mesh's own service model,
//! so every operation, flag and output shape matches the AWS CLI (v1). A script written for
//! `aws appmesh` works with `appliance ctl` in its place. The appliance's own commands (the
//! CA, join tokens, proxies) live in `extra`.

mod admin;
pub mod api;
mod credentials;
mod extra;
mod import;
mod output;
mod request;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::model::service_model::{service_model, Operation, Shape, ShapeRef};
pub use credentials::{parse_profile, Credentials};
use output::Format;

/// Exit codes as the AWS CLI v1 uses them.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The command line could not be parsed (argparse's usage error).
    pub const USAGE: u8 = 2;
    /// The service refused the call, or a parameter, credential or connection problem.
    pub const FAILED: u8 = 255;
}

/// Default API endpoint: the control plane's default listen address.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7070";

#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct CtlArgs {
    /// An `aws appmesh` operation in kebab-case (`create-virtual-node`, ...) or one of the
    /// appliance's own commands, with its flags; `appliance ctl help` lists them.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

/// Options every command takes, before or after the operation name, as in the AWS CLI.
#[derive(Debug, Clone, Default)]
pub struct Globals {
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub output: Option<String>,
    pub query: Option<String>,
    pub profile: Option<String>,
    pub ca_bundle: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub no_paginate: bool,
    pub debug: bool,
}

impl Globals {
    pub fn endpoint(&self) -> String {
        self.endpoint_url
            .clone()
            .or_else(|| std::env::var("APPLIANCE_ENDPOINT_URL").ok())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned())
            .trim_end_matches('/')
            .to_owned()
    }

    pub fn region(&self) -> String {
        self.region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_owned())
    }

    pub fn format(&self) -> Result<Format, String> {
        let name = self.output.clone().unwrap_or_else(|| "json".into());
        Format::parse(&name).ok_or_else(|| {
            format!("argument --output: Invalid choice '{name}', valid choices are: json, text")
        })
    }
}

/// Runs one `ctl` command line; returns the process exit code.
pub async fn run(args: CtlArgs) -> anyhow::Result<u8> {
    let (globals, command, rest) = match split_globals(&args.args) {
        Ok(parts) => parts,
        Err(msg) => return Ok(usage_error(&msg)),
    };
    let Some(command) = command else {
        print_help();
        return Ok(exit::USAGE);
    };
    if command == "help" {
        print_help();
        return Ok(exit::OK);
    }
    if let Some(op) = operation_for(&command) {
        return run_operation(&globals, op, &rest).await;
    }
    if let Some(code) = admin::run(&globals, &command, &rest).await? {
        return Ok(code);
    }
    if command == import::ABOUT.0 {
        return import::run(&globals, &rest).await;
    }
    if let Some(code) = extra::run(&globals, &command, &rest).await? {
        return Ok(code);
    }
    Ok(usage_error(&format!("argument operation: Invalid choice '{command}', see `appliance ctl help` for the valid choices")))
}

/// Whether `name` is one of the 38 App Mesh operations (kebab-case).
pub fn is_model_operation(name: &str) -> bool {
    operation_for(name).is_some()
}

pub(crate) fn usage_error(msg: &str) -> u8 {
    eprintln!("usage: appliance ctl [options] <operation> [parameters]\nTo see help text, you can run:\n\n  appliance ctl help\n  appliance ctl <operation> help\nappliance ctl: error: {msg}");
    exit::USAGE
}

fn print_help() {
    println!("appliance ctl: the `aws appmesh` commands against an appliance control plane.\n");
    println!("Global options: --endpoint-url URL (default {DEFAULT_ENDPOINT}), --region R, --output json|text,");
    println!("  --query JMESPATH, --no-paginate, --profile P, --data-dir DIR (credentials from DIR/credentials),");
    println!("  --ca-bundle PEM, --debug\n\nApp Mesh operations:");
    for name in service_model().operations.keys() {
        println!("  {}", kebab(name));
    }
    println!("\nappliance commands:");
    for (name, about) in extra::COMMANDS
        .iter()
        .chain(admin::COMMANDS)
        .chain([&import::ABOUT])
    {
        println!("  {name:<34} {about}");
    }
}

/// `CreateVirtualNode` -> `create-virtual-node`; `virtualNodeName` -> `virtual-node-name`.
pub fn kebab(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn operation_for(command: &str) -> Option<&'static Operation> {
    service_model()
        .operations
        .values()
        .find(|op| kebab(&op.name) == command)
}

const GLOBAL_WITH_VALUE: [&str; 7] = [
    "--endpoint-url",
    "--region",
    "--output",
    "--query",
    "--profile",
    "--ca-bundle",
    "--data-dir",
];

/// Pulls the global options out of the command line, wherever they stand.
fn split_globals(args: &[String]) -> Result<(Globals, Option<String>, Vec<String>), String> {
    let mut g = Globals::default();
    let mut command = None;
    let mut rest = Vec::new();
    let mut it = args.iter().peekable();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        if GLOBAL_WITH_VALUE.contains(&flag) {
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("argument {flag}: expected one argument"))?,
            };
            match flag {
                "--endpoint-url" => g.endpoint_url = Some(value),
                "--region" => g.region = Some(value),
                "--output" => g.output = Some(value),
                "--query" => g.query = Some(value),
                "--profile" => g.profile = Some(value),
                "--ca-bundle" => g.ca_bundle = Some(PathBuf::from(value)),
                _ => g.data_dir = Some(PathBuf::from(value)),
            }
            continue;
        }
        match flag {
            "--no-paginate" => g.no_paginate = true,
            "--debug" => g.debug = true,
            "--no-cli-pager" | "--no-verify-ssl" => {}
            _ if command.is_none() && !arg.starts_with("--") => command = Some(arg.clone()),
            _ => rest.push(arg.clone()),
        }
    }
    Ok((g, command, rest))
}

/// What the parameter flags of one operation said.
struct Parsed {
    input: Map<String, Value>,
    page_size: Option<u64>,
    max_items: Option<usize>,
    skeleton: bool,
    help: bool,
}

/// Reads a parameter value that may be `file://path` (the file's text), as the AWS CLI does.
fn load_param(flag: &str, raw: &str) -> Result<String, String> {
    match raw.strip_prefix("file://") {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            format!("Error parsing parameter '{flag}': Unable to load paramfile {raw}: {e}")
        }),
        None => Ok(raw.to_owned()),
    }
}

/// The AWS CLI's shorthand for a flat structure: `key=a,value=b`.
fn shorthand(flag: &str, text: &str) -> Result<Value, String> {
    let mut m = Map::new();
    for pair in text.split(',') {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            format!(
                "Error parsing parameter '{flag}': Expected: '=', received: EOF for input: {text}"
            )
        })?;
        m.insert(k.trim().to_owned(), Value::String(v.to_owned()));
    }
    Ok(Value::Object(m))
}

fn parse_json(flag: &str, text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| {
        format!("Error parsing parameter '{flag}': Invalid JSON: {e}\nJSON received: {text}")
    })
}

/// Parses the operation's flags against its input shape.
fn parse_params(op: &Operation, args: &[String]) -> Result<Parsed, (u8, String)> {
    let model = service_model();
    let members: BTreeMap<String, &ShapeRef> =
        match op.input.as_ref().and_then(|i| model.shape(&i.shape)) {
            Some(Shape::Structure { members, .. }) => {
                members.iter().map(|(k, v)| (k.clone(), v)).collect()
            }
            _ => BTreeMap::new(),
        };
    let by_flag: BTreeMap<String, &str> = members
        .keys()
        .map(|k| (format!("--{}", kebab(k)), k.as_str()))
        .collect();
    let mut parsed = Parsed {
        input: Map::new(),
        page_size: None,
        max_items: None,
        skeleton: false,
        help: false,
    };
    let mut cli_input: Option<Map<String, Value>> = None;
    let mut unknown = Vec::new();
    let mut i = 0;
    let fail = |m: String| (exit::FAILED, m);
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let take = |i: &mut usize| -> Result<String, (u8, String)> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            let v = args.get(*i).cloned().ok_or_else(|| {
                (
                    exit::USAGE,
                    format!("argument {flag}: expected one argument"),
                )
            })?;
            *i += 1;
            Ok(v)
        };
        match flag.as_str() {
            "help" => parsed.help = true,
            "--cli-input-json" => {
                let text = load_param(&flag, &take(&mut i)?).map_err(fail)?;
                match parse_json(&flag, &text).map_err(fail)? {
                    Value::Object(m) => cli_input = Some(m),
                    _ => return Err(fail(
                        "Error parsing parameter '--cli-input-json': the JSON must be an object"
                            .into(),
                    )),
                }
            }
            "--generate-cli-skeleton" => parsed.skeleton = true,
            "--page-size" => {
                parsed.page_size = Some(take(&mut i)?.parse().map_err(|_| {
                    (
                        exit::USAGE,
                        "argument --page-size: expected an integer".to_owned(),
                    )
                })?)
            }
            "--max-items" => {
                parsed.max_items = Some(take(&mut i)?.parse().map_err(|_| {
                    (
                        exit::USAGE,
                        "argument --max-items: expected an integer".to_owned(),
                    )
                })?)
            }
            f => {
                let negated = f.strip_prefix("--no-").map(|rest| format!("--{rest}"));
                let (member, negate) = match (
                    by_flag.get(f),
                    negated.as_ref().and_then(|n| by_flag.get(n)),
                ) {
                    (Some(m), _) => (*m, false),
                    (None, Some(m)) => (*m, true),
                    (None, None) => {
                        unknown.push(arg.clone());
                        continue;
                    }
                };
                let shape_ref = members[member];
                let value = match model.shape(&shape_ref.shape) {
                    Some(Shape::Boolean {}) => Value::Bool(!negate),
                    Some(Shape::Integer { .. } | Shape::Long { .. }) => {
                        let raw = take(&mut i)?;
                        let n: i64 = raw.parse().map_err(|_| {
                            fail(format!(
                                "Error parsing parameter '{f}': expected an integer, got {raw:?}"
                            ))
                        })?;
                        Value::from(n)
                    }
                    Some(Shape::List { member: item, .. })
                        if matches!(model.shape(&item.shape), Some(Shape::String { .. })) =>
                    {
                        // `--tag-keys a b c` or a JSON array.
                        let first = load_param(f, &take(&mut i)?).map_err(fail)?;
                        if first.trim_start().starts_with('[') {
                            parse_json(f, &first).map_err(fail)?
                        } else {
                            let mut items = vec![Value::String(first)];
                            while i < args.len() && !args[i].starts_with("--") {
                                items.push(Value::String(args[i].clone()));
                                i += 1;
                            }
                            Value::Array(items)
                        }
                    }
                    Some(Shape::List { .. }) => {
                        // JSON, or the AWS CLI's shorthand: `key=a,value=b key=c,value=d`.
                        let first = load_param(f, &take(&mut i)?).map_err(fail)?;
                        if first.trim_start().starts_with('[') {
                            parse_json(f, &first).map_err(fail)?
                        } else {
                            let mut items = vec![shorthand(f, &first).map_err(fail)?];
                            while i < args.len() && !args[i].starts_with("--") {
                                items.push(shorthand(f, &args[i]).map_err(fail)?);
                                i += 1;
                            }
                            Value::Array(items)
                        }
                    }
                    Some(Shape::Structure { .. } | Shape::Map { .. }) => {
                        let text = load_param(f, &take(&mut i)?).map_err(fail)?;
                        if text.trim_start().starts_with('{') {
                            parse_json(f, &text).map_err(fail)?
                        } else {
                            shorthand(f, &text).map_err(fail)?
                        }
                    }
                    _ => Value::String(load_param(f, &take(&mut i)?).map_err(fail)?),
                };
                parsed.input.insert(member.to_owned(), value);
            }
        }
    }
    if !unknown.is_empty() {
        return Err((
            exit::FAILED,
            format!("Unknown options: {}", unknown.join(", ")),
        ));
    }
    // Flags win over --cli-input-json, as in the AWS CLI.
    if let Some(mut base) = cli_input {
        for (k, v) in std::mem::take(&mut parsed.input) {
            base.insert(k, v);
        }
        for k in base.keys() {
            if !members.contains_key(k) {
                return Err(fail(format!("Parameter validation failed:\nUnknown parameter in input: \"{k}\", must be one of: {}", members.keys().cloned().collect::<Vec<_>>().join(", "))));
            }
        }
        parsed.input = base;
    }
    Ok(parsed)
}

fn required_members(op: &Operation) -> Vec<String> {
    match op
        .input
        .as_ref()
        .and_then(|i| service_model().shape(&i.shape))
    {
        Some(Shape::Structure { required, .. }) => required.clone(),
        _ => Vec::new(),
    }
}

/// An input skeleton: every member with an empty value of its type.
fn skeleton(shape: &str, depth: usize) -> Value {
    let model = service_model();
    match model.shape(shape) {
        Some(Shape::Structure { members, .. }) if depth < 12 => Value::Object(
            members
                .iter()
                .map(|(k, r)| (k.clone(), skeleton(&r.shape, depth + 1)))
                .collect(),
        ),
        Some(Shape::List { member, .. }) if depth < 12 => {
            Value::Array(vec![skeleton(&member.shape, depth + 1)])
        }
        Some(Shape::Integer { .. } | Shape::Long { .. }) => Value::from(0),
        Some(Shape::Boolean {}) => Value::Bool(true),
        _ => Value::String(String::new()),
    }
}

async fn run_operation(
    globals: &Globals,
    op: &'static Operation,
    args: &[String],
) -> anyhow::Result<u8> {
    let format = match globals.format() {
        Ok(f) => f,
        Err(msg) => return Ok(usage_error(&msg)),
    };
    let parsed = match parse_params(op, args) {
        Ok(p) => p,
        Err((code, msg)) if code == exit::USAGE => return Ok(usage_error(&msg)),
        Err((code, msg)) => {
            eprintln!("\n{msg}");
            return Ok(code);
        }
    };
    if parsed.help {
        println!("{}\n", kebab(&op.name));
        let required = required_members(op);
        if let Some(Shape::Structure { members, .. }) = op
            .input
            .as_ref()
            .and_then(|i| service_model().shape(&i.shape))
        {
            for (name, r) in members {
                let mark = if required.contains(name) {
                    " (required)"
                } else {
                    ""
                };
                println!("  --{} <{}>{mark}", kebab(name), r.shape);
            }
        }
        return Ok(exit::OK);
    }
    if parsed.skeleton {
        let shape = op
            .input
            .as_ref()
            .map(|i| i.shape.as_str())
            .unwrap_or_default();
        print!(
            "{}",
            output::render(&skeleton(shape, 0), Format::Json).unwrap_or_default()
        );
        return Ok(exit::OK);
    }
    let missing: Vec<String> = required_members(op)
        .into_iter()
        .filter(|m| !parsed.input.contains_key(m))
        .map(|m| format!("--{}", kebab(&m)))
        .collect();
    if !missing.is_empty() {
        return Ok(usage_error(&format!(
            "the following arguments are required: {}",
            missing.join(", ")
        )));
    }
    let creds = match credentials::resolve(globals.data_dir.as_deref(), globals.profile.as_deref())
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e:#}");
            return Ok(exit::FAILED);
        }
    };
    let client = request::Client::new(globals, creds)?;
    let result = match call_paginated(&client, op, parsed, globals.no_paginate).await {
        Ok(v) => v,
        Err(request::CallError::Service { kind, message }) => {
            eprintln!(
                "\nAn error occurred ({kind}) when calling the {} operation: {message}",
                op.name
            );
            return Ok(exit::FAILED);
        }
        Err(request::CallError::Other(e)) => {
            eprintln!("\n{e:#}");
            return Ok(exit::FAILED);
        }
    };
    print_result(globals, format, &result)
}

/// Prints a result after `--query`, as the AWS CLI does.
pub(crate) fn print_result(
    globals: &Globals,
    format: Format,
    result: &Value,
) -> anyhow::Result<u8> {
    let shown = match &globals.query {
        Some(q) => match output::query(result, q) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("\n{e:#}");
                return Ok(exit::FAILED);
            }
        },
        None => result.clone(),
    };
    if let Some(text) = output::render(&shown, format) {
        print!("{text}");
    }
    Ok(exit::OK)
}

/// The list member a paginated output keeps its items in, if the operation pages.
fn result_key(op: &Operation) -> Option<String> {
    let out = op.output.as_ref()?;
    match service_model().shape(&out.shape)? {
        Shape::Structure { members, .. } if members.contains_key("nextToken") => {
            members.keys().find(|k| *k != "nextToken").cloned()
        }
        _ => None,
    }
}

/// Calls the operation; for List operations follows `nextToken` and concatenates the pages
/// unless the caller asked for one page (`--no-paginate`, `--limit`, `--next-token`).
async fn call_paginated(
    client: &request::Client,
    op: &Operation,
    parsed: Parsed,
    no_paginate: bool,
) -> Result<Value, request::CallError> {
    let mut input = parsed.input;
    let key = result_key(op);
    let explicit = input.contains_key("limit") || input.contains_key("nextToken");
    let Some(key) = key.filter(|_| !no_paginate && !explicit) else {
        return client.call(op, &input).await;
    };
    if let Some(size) = parsed.page_size {
        input.insert("limit".into(), Value::from(size));
    }
    let mut items = Vec::new();
    let mut next_token = None;
    loop {
        let mut page = client.call(op, &input).await?;
        if let Some(Value::Array(got)) = page.get_mut(&key).map(Value::take) {
            items.extend(got);
        }
        let token = page
            .get("nextToken")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(max) = parsed.max_items {
            if items.len() >= max {
                let more = items.len() > max || token.is_some();
                items.truncate(max);
                next_token = more.then(|| {
                    "truncated: use --no-paginate with --next-token to continue".to_owned()
                });
                break;
            }
        }
        match token {
            Some(t) => {
                input.insert("nextToken".into(), Value::String(t));
            }
            None => break,
        }
    }
    let mut out = Map::new();
    out.insert(key, Value::Array(items));
    if let Some(t) = next_token {
        out.insert("NextToken".into(), Value::String(t));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn every_operation_has_a_kebab_name() {
        assert!(is_model_operation("create-virtual-node"));
        assert!(is_model_operation("list-tags-for-resource"));
        assert_eq!(
            service_model()
                .operations
                .keys()
                .filter(|n| is_model_operation(&kebab(n)))
                .count(),
            38
        );
    }

    #[test]
    fn global_options_are_found_before_and_after_the_operation() {
        let (g, cmd, rest) = split_globals(&args(
            "--output text list-meshes --endpoint-url http://x:1 --limit 5",
        ))
        .unwrap();
        assert_eq!(cmd.as_deref(), Some("list-meshes"));
        assert_eq!(g.output.as_deref(), Some("text"));
        assert_eq!(g.endpoint(), "http://x:1");
        assert_eq!(rest, args("--limit 5"));
    }

    #[test]
    fn flags_map_to_members_by_shape() {
        let op = operation_for("create-virtual-node").unwrap();
        let p = parse_params(
            op,
            &args(r#"--mesh-name m --virtual-node-name n --spec {"listeners":[]}"#),
        )
        .unwrap();
        assert_eq!(p.input["meshName"], "m");
        assert_eq!(p.input["spec"], serde_json::json!({"listeners": []}));
        let untag = operation_for("untag-resource").unwrap();
        let p = parse_params(untag, &args("--resource-arn a --tag-keys k1 k2")).unwrap();
        assert_eq!(p.input["tagKeys"], serde_json::json!(["k1", "k2"]));
        let tag = operation_for("tag-resource").unwrap();
        let p = parse_params(
            tag,
            &args("--resource-arn a --tags key=a,value=b key=c,value=d"),
        )
        .unwrap();
        assert_eq!(
            p.input["tags"],
            serde_json::json!([{"key": "a", "value": "b"}, {"key": "c", "value": "d"}])
        );
        let p = parse_params(untag, &args("--resource-arn a --tag-keys k1 k2")).unwrap();
        assert_eq!(p.input["tagKeys"], serde_json::json!(["k1", "k2"]));
        let list = operation_for("list-meshes").unwrap();
        assert_eq!(
            parse_params(list, &args("--limit 3")).unwrap().input["limit"],
            3
        );
    }

    #[test]
    fn cli_input_json_merges_under_the_flags() {
        let op = operation_for("create-mesh").unwrap();
        let p = parse_params(
            op,
            &args(r#"--cli-input-json {"meshName":"a","spec":{}} --mesh-name b"#),
        )
        .unwrap();
        assert_eq!(p.input["meshName"], "b");
        assert_eq!(p.input["spec"], serde_json::json!({}));
    }

    #[test]
    fn unknown_options_and_bad_json_are_refused() {
        let op = operation_for("describe-mesh").unwrap();
        assert_eq!(
            parse_params(op, &args("--mesh-name x --bogus 1"))
                .err()
                .unwrap()
                .1,
            "Unknown options: --bogus, 1"
        );
        let op = operation_for("create-virtual-node").unwrap();
        let err = parse_params(op, &args("--spec {bad")).err().unwrap().1;
        assert!(
            err.starts_with("Error parsing parameter '--spec': Invalid JSON"),
            "{err}"
        );
    }
}
