//! An operation's parameter flags, read against its input shape in App Mesh's service
//! model: `--spec file://...`, shorthand, `--cli-input-json`, paging flags.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{exit, kebab};
use crate::model::service_model::{service_model, Operation, Shape, ShapeRef};

/// What the parameter flags of one operation said.
pub(super) struct Parsed {
    pub(super) input: Map<String, Value>,
    pub(super) page_size: Option<u64>,
    pub(super) max_items: Option<usize>,
    pub(super) skeleton: bool,
    pub(super) help: bool,
}

/// Why one parameter's value could not be read. The texts are the AWS CLI's, which scripts
/// and tests match on.
#[derive(Debug, thiserror::Error)]
pub(super) enum ParamError {
    /// A `file://` value whose file cannot be read.
    #[error("Error parsing parameter '{flag}': Unable to load paramfile {raw}: {source}")]
    ParamFile {
        flag: String,
        raw: String,
        source: std::io::Error,
    },
    /// A shorthand pair without its `=`.
    #[error("Error parsing parameter '{flag}': Expected: '=', received: EOF for input: {text}")]
    Shorthand { flag: String, text: String },
    /// A value that should be JSON and is not.
    #[error("Error parsing parameter '{flag}': Invalid JSON: {source}\nJSON received: {text}")]
    Json {
        flag: String,
        text: String,
        source: serde_json::Error,
    },
}

/// Reads a parameter value that may be `file://path` (the file's text), as the AWS CLI does.
fn load_param(flag: &str, raw: &str) -> Result<String, ParamError> {
    match raw.strip_prefix("file://") {
        Some(path) => std::fs::read_to_string(path).map_err(|source| ParamError::ParamFile {
            flag: flag.to_owned(),
            raw: raw.to_owned(),
            source,
        }),
        None => Ok(raw.to_owned()),
    }
}

/// The AWS CLI's shorthand for a flat structure: `key=a,value=b`.
fn shorthand(flag: &str, text: &str) -> Result<Value, ParamError> {
    let mut m = Map::new();
    for pair in text.split(',') {
        let (k, v) = pair.split_once('=').ok_or_else(|| ParamError::Shorthand {
            flag: flag.to_owned(),
            text: text.to_owned(),
        })?;
        m.insert(k.trim().to_owned(), Value::String(v.to_owned()));
    }
    Ok(Value::Object(m))
}

fn parse_json(flag: &str, text: &str) -> Result<Value, ParamError> {
    serde_json::from_str(text).map_err(|source| ParamError::Json {
        flag: flag.to_owned(),
        text: text.to_owned(),
        source,
    })
}

/// Parses the operation's flags against its input shape.
pub(super) fn parse_params(op: &Operation, args: &[String]) -> Result<Parsed, (u8, String)> {
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
    fn fail(e: impl std::fmt::Display) -> (u8, String) {
        (exit::FAILED, e.to_string())
    }
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
                        "Error parsing parameter '--cli-input-json': the JSON must be an object",
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

pub(super) fn required_members(op: &Operation) -> Vec<String> {
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
pub(super) fn skeleton(shape: &str, depth: usize) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::ctl::operation::operation_for;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
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
