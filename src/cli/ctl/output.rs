//! Printing results the way the AWS CLI (v1) does: JSON indented by four spaces, or its
//! text format, after an optional JMESPath `--query`.

use serde_json::Value;

use super::{exit, Globals};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Text,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "json" => Some(Format::Json),
            "text" => Some(Format::Text),
            _ => None,
        }
    }
}

/// Applies `--query` (JMESPath) to a result.
pub fn query(value: &Value, expression: &str) -> anyhow::Result<Value> {
    let expr = jmespath::compile(expression)
        .map_err(|e| anyhow::anyhow!("Bad value for --query {expression}: {e}"))?;
    let data =
        jmespath::Variable::from_json(&value.to_string()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let result = expr
        .search(data)
        .map_err(|e| anyhow::anyhow!("Bad value for --query {expression}: {e}"))?;
    Ok(serde_json::to_value(&*result)?)
}

/// Renders a result; `None` when the CLI prints nothing (an empty result).
pub fn render(value: &Value, format: Format) -> Option<String> {
    match format {
        Format::Json => {
            // The AWS CLI prints nothing for an empty result (TagResource's `{}`).
            if value.is_null() || value.as_object().is_some_and(|m| m.is_empty()) {
                return None;
            }
            let mut out = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
            serde::Serialize::serialize(value, &mut ser).ok()?;
            String::from_utf8(out).ok().map(|s| s + "\n")
        }
        Format::Text => {
            let mut out = String::new();
            text(value, None, None, &mut out);
            Some(out)
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Object(_) | Value::Array(_))
}

// The AWS CLI's text formatter: a dict's scalars on one tab-separated line (prefixed by the
// upper-cased key it sits under), its lists and dicts below; a list of dicts shares one
// sorted set of scalar columns.
fn text(v: &Value, identifier: Option<&str>, scalar_keys: Option<&[String]>, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut scalars = Vec::new();
            let mut nested = Vec::new();
            match scalar_keys {
                None => {
                    for (k, v) in map {
                        if is_scalar(v) {
                            scalars.push(scalar(v));
                        } else {
                            nested.push((k.as_str(), v));
                        }
                    }
                }
                Some(keys) => {
                    for k in keys {
                        scalars.push(map.get(k).map(scalar).unwrap_or_default());
                    }
                    for (k, v) in map {
                        if !keys.contains(k) {
                            nested.push((k.as_str(), v));
                        }
                    }
                }
            }
            if !scalars.is_empty() {
                if let Some(id) = identifier {
                    scalars.insert(0, id.to_uppercase());
                }
                out.push_str(&scalars.join("\t"));
                out.push('\n');
            }
            for (k, v) in nested {
                text(v, Some(k), None, out);
            }
        }
        Value::Array(items) => {
            if items.is_empty() {
                return;
            }
            if items.iter().any(Value::is_object) {
                let mut keys: Vec<String> = items
                    .iter()
                    .filter_map(Value::as_object)
                    .flat_map(|m| {
                        m.iter()
                            .filter(|(_, v)| is_scalar(v))
                            .map(|(k, _)| k.clone())
                    })
                    .collect();
                keys.sort();
                keys.dedup();
                for item in items {
                    text(item, identifier, Some(&keys), out);
                }
            } else if items.iter().any(Value::is_array) {
                let scalars: Vec<&Value> = items.iter().filter(|v| is_scalar(v)).collect();
                if !scalars.is_empty() {
                    scalar_list(&scalars, identifier, out);
                }
                for item in items.iter().filter(|v| !is_scalar(v)) {
                    text(item, identifier, None, out);
                }
            } else {
                scalar_list(&items.iter().collect::<Vec<_>>(), identifier, out);
            }
        }
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn scalar_list(items: &[&Value], identifier: Option<&str>, out: &mut String) {
    match identifier {
        Some(id) => {
            for item in items {
                out.push_str(&format!("{}\t{}\n", id.to_uppercase(), scalar(item)));
            }
        }
        None => {
            out.push_str(
                &items
                    .iter()
                    .map(|v| scalar(v))
                    .collect::<Vec<_>>()
                    .join("\t"),
            );
            out.push('\n');
        }
    }
}

/// Prints a result after `--query`, as the AWS CLI does.
pub(crate) fn print_result(
    globals: &Globals,
    format: Format,
    result: &Value,
) -> anyhow::Result<u8> {
    let shown = match &globals.query {
        Some(q) => match query(result, q) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("\n{e:#}");
                return Ok(exit::FAILED);
            }
        },
        None => result.clone(),
    };
    if let Some(text) = render(&shown, format) {
        print!("{text}");
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_is_indented_by_four_spaces() {
        assert_eq!(
            render(&json!({"a": {"b": 1}}), Format::Json).unwrap(),
            "{\n    \"a\": {\n        \"b\": 1\n    }\n}\n"
        );
    }

    #[test]
    fn a_queried_scalar_prints_bare_in_text() {
        let v = query(
            &json!({"mesh": {"metadata": {"uid": "u-1"}}}),
            "mesh.metadata.uid",
        )
        .unwrap();
        assert_eq!(render(&v, Format::Text).unwrap(), "u-1\n");
    }

    #[test]
    fn text_lists_of_dicts_share_sorted_scalar_columns() {
        let v =
            json!({"meshes": [{"meshName": "a", "version": 1}, {"meshName": "b", "version": 2}]});
        assert_eq!(
            render(&v, Format::Text).unwrap(),
            "MESHES\ta\t1\nMESHES\tb\t2\n"
        );
    }

    #[test]
    fn text_scalars_lead_with_their_identifier() {
        let v = json!({"mesh": {"meshName": "m", "status": {"status": "ACTIVE"}}});
        assert_eq!(
            render(&v, Format::Text).unwrap(),
            "MESH\tm\nSTATUS\tACTIVE\n"
        );
    }
}
