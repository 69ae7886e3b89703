//! The 38 App Mesh operations: finding one by its kebab-case name, calling it (following
//! `nextToken` across pages) and printing its answer as the AWS CLI does.

use serde_json::{Map, Value};

use super::output::{self, Format};
use super::params::{parse_params, required_members, skeleton, Parsed};
use super::{credentials, exit, print_result, request, usage_error, Globals};
use crate::model::service_model::{service_model, Operation, Shape};

/// Whether `name` is one of the 38 App Mesh operations (kebab-case).
pub fn is_model_operation(name: &str) -> bool {
    operation_for(name).is_some()
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

pub(super) fn operation_for(command: &str) -> Option<&'static Operation> {
    service_model()
        .operations
        .values()
        .find(|op| kebab(&op.name) == command)
}

/// Runs one modelled operation; returns the process exit code.
pub(super) async fn run(
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
}
