//! Request validation driven by App Mesh's service model: every JSON type, required member,
//! union, enum, range, length and pattern the model states, checked against the operation's
//! input shape. Rules the model does not encode live in `rules.rs`.
//!
//! Errors are `ApiError::BadRequest` naming the full path of the offending value and the rule,
//! e.g. `spec.listeners[0].healthCheck.intervalMillis: 10 is below the minimum 5000`. The first
//! error found is reported; object members are visited in name order, so the choice is stable.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::service_model::{service_model, Shape, ShapeRef};
use super::ApiError;

/// Checks the JSON body of `operation` against the body members of its input shape.
/// JSON `null` counts as absent, at any depth.
pub fn validate_body(operation: &str, body: &Value) -> Result<(), ApiError> {
    let (members, required) = input_structure(operation)?;
    let Value::Object(object) = body else {
        return Err(bad(
            "request body",
            format!("must be a JSON object, got {}", type_name(body)),
        ));
    };
    for name in required {
        let is_body = members.get(name).is_some_and(ShapeRef::is_body);
        if is_body && is_absent(object.get(name)) {
            return Err(bad(
                "request body",
                format!("missing required member {name}"),
            ));
        }
    }
    for (name, value) in object {
        if value.is_null() {
            continue;
        }
        match members.get(name) {
            Some(member) if member.is_body() => check_value(name, &member.shape, value)?,
            _ => return Err(bad(name, "unknown field")),
        }
    }
    Ok(())
}

/// Checks one path or query-string parameter of `operation` (`member` is the model's member name
/// or its `locationName`) in its raw text form.
pub fn validate_param(operation: &str, member: &str, raw: &str) -> Result<(), ApiError> {
    let (members, _) = input_structure(operation)?;
    let shape_ref = members
        .iter()
        .find(|(name, r)| {
            !r.is_body() && (name.as_str() == member || r.location_name.as_deref() == Some(member))
        })
        .map(|(_, r)| r)
        .ok_or_else(|| bad(member, format!("unknown parameter of {operation}")))?;
    match lookup(&shape_ref.shape)? {
        Shape::Integer { min, max } | Shape::Long { min, max } => {
            let n: i64 = raw
                .parse()
                .map_err(|_| bad(member, format!("{raw:?} is not an integer")))?;
            check_range(member, n, *min, *max)
        }
        Shape::String {
            min,
            max,
            pattern,
            enum_values,
        } => check_string(
            member,
            raw,
            *min,
            *max,
            pattern.as_deref(),
            enum_values.as_deref(),
        ),
        Shape::Boolean {} => match raw {
            "true" | "false" => Ok(()),
            _ => Err(bad(member, format!("{raw:?} is not a boolean"))),
        },
        _ => Ok(()),
    }
}

// === walking values against shapes ===

fn input_structure(
    operation: &str,
) -> Result<(&'static BTreeMap<String, ShapeRef>, &'static [String]), ApiError> {
    let model = service_model();
    let op = model
        .operation(operation)
        .ok_or_else(|| ApiError::UnknownOperation(format!("unknown operation {operation}")))?;
    let Some(input) = &op.input else {
        return Ok((empty_members(), &[]));
    };
    match lookup(&input.shape)? {
        Shape::Structure {
            members, required, ..
        } => Ok((members, required)),
        _ => Err(model_defect(&input.shape)),
    }
}

fn empty_members() -> &'static BTreeMap<String, ShapeRef> {
    static EMPTY: OnceLock<BTreeMap<String, ShapeRef>> = OnceLock::new();
    EMPTY.get_or_init(BTreeMap::new)
}

fn lookup(shape: &str) -> Result<&'static Shape, ApiError> {
    service_model()
        .shape(shape)
        .ok_or_else(|| model_defect(shape))
}

/// The model's references all resolve (tested in `service_model`); reaching this is our bug.
fn model_defect(shape: &str) -> ApiError {
    ApiError::internal(anyhow::anyhow!(
        "service model shape {shape} is missing or malformed"
    ))
}

fn check_value(path: &str, shape_name: &str, value: &Value) -> Result<(), ApiError> {
    match lookup(shape_name)? {
        Shape::Structure {
            members,
            required,
            union,
            ..
        } => {
            let Value::Object(object) = value else {
                return Err(type_error(path, "an object", value));
            };
            check_structure(path, members, required, *union, object)
        }
        Shape::List { member, min, max } => {
            let Value::Array(items) = value else {
                return Err(type_error(path, "an array", value));
            };
            let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
            if let Some(min) = min.filter(|&m| len < m) {
                return Err(bad(
                    path,
                    format!("has {len} items, below the minimum {min}"),
                ));
            }
            if let Some(max) = max.filter(|&m| len > m) {
                return Err(bad(
                    path,
                    format!("has {len} items, above the maximum {max}"),
                ));
            }
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                if item.is_null() {
                    return Err(bad(&item_path, "must not be null"));
                }
                check_value(&item_path, &member.shape, item)?;
            }
            Ok(())
        }
        Shape::Map { key, value: val } => {
            let Value::Object(object) = value else {
                return Err(type_error(path, "an object", value));
            };
            for (k, v) in object {
                let key_path = format!("{path}.{k}");
                check_value(&key_path, &key.shape, &Value::String(k.clone()))?;
                if !v.is_null() {
                    check_value(&key_path, &val.shape, v)?;
                }
            }
            Ok(())
        }
        Shape::String {
            min,
            max,
            pattern,
            enum_values,
        } => {
            let Value::String(s) = value else {
                return Err(type_error(path, "a string", value));
            };
            check_string(
                path,
                s,
                *min,
                *max,
                pattern.as_deref(),
                enum_values.as_deref(),
            )
        }
        Shape::Integer { min, max } => {
            let n = integer(path, value)?;
            // The model's `integer` is a 32-bit Java int.
            let (min, max) = (
                min.or(Some(i64::from(i32::MIN))),
                max.or(Some(i64::from(i32::MAX))),
            );
            check_range(path, n, min, max)
        }
        Shape::Long { min, max } => check_range(path, integer(path, value)?, *min, *max),
        Shape::Boolean {} => match value {
            Value::Bool(_) => Ok(()),
            _ => Err(type_error(path, "a boolean", value)),
        },
        Shape::Timestamp {} => match value {
            Value::Number(_) => Ok(()),
            Value::String(s) => {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .map(|_| ())
                    .map_err(|_| bad(path, format!("{s:?} is not an ISO-8601 timestamp")))
            }
            _ => Err(type_error(path, "a timestamp", value)),
        },
    }
}

fn check_structure(
    path: &str,
    members: &BTreeMap<String, ShapeRef>,
    required: &[String],
    union: bool,
    object: &Map<String, Value>,
) -> Result<(), ApiError> {
    for (name, _) in object.iter().filter(|(_, v)| !v.is_null()) {
        if !members.contains_key(name) {
            return Err(bad(&format!("{path}.{name}"), "unknown field"));
        }
    }
    for name in required {
        if is_absent(object.get(name)) {
            return Err(bad(path, format!("missing required member {name}")));
        }
    }
    if union {
        let set: Vec<&str> = object
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, _)| k.as_str())
            .collect();
        if set.len() != 1 {
            let allowed: Vec<&str> = members.keys().map(String::as_str).collect();
            let got = if set.is_empty() {
                "none".to_owned()
            } else {
                set.join(", ")
            };
            return Err(bad(
                path,
                format!(
                    "exactly one of {} must be set, got {got}",
                    allowed.join(", ")
                ),
            ));
        }
    }
    for (name, value) in object.iter().filter(|(_, v)| !v.is_null()) {
        if let Some(member) = members.get(name) {
            check_value(&format!("{path}.{name}"), &member.shape, value)?;
        }
    }
    Ok(())
}

fn check_string(
    path: &str,
    s: &str,
    min: Option<i64>,
    max: Option<i64>,
    pattern: Option<&str>,
    enum_values: Option<&[String]>,
) -> Result<(), ApiError> {
    if let Some(allowed) = enum_values {
        if !allowed.iter().any(|a| a == s) {
            return Err(bad(
                path,
                format!("{s:?} is not one of {}", allowed.join(", ")),
            ));
        }
    }
    let len = i64::try_from(s.chars().count()).unwrap_or(i64::MAX);
    if let Some(min) = min.filter(|&m| len < m) {
        return Err(bad(
            path,
            format!("length {len} is below the minimum {min}"),
        ));
    }
    if let Some(max) = max.filter(|&m| len > m) {
        return Err(bad(
            path,
            format!("length {len} is above the maximum {max}"),
        ));
    }
    if let Some(pattern) = pattern {
        let re = compiled_pattern(pattern)?;
        if !re.is_match(s) {
            return Err(bad(
                path,
                format!("{s:?} does not match the pattern {pattern}"),
            ));
        }
    }
    Ok(())
}

fn check_range(path: &str, n: i64, min: Option<i64>, max: Option<i64>) -> Result<(), ApiError> {
    if let Some(min) = min.filter(|&m| n < m) {
        return Err(bad(path, format!("{n} is below the minimum {min}")));
    }
    if let Some(max) = max.filter(|&m| n > m) {
        return Err(bad(path, format!("{n} is above the maximum {max}")));
    }
    Ok(())
}

/// An integral JSON number. `1.5`, `5.0` and `"5"` are refused.
fn integer(path: &str, value: &Value) -> Result<i64, ApiError> {
    match value {
        Value::Number(n) => match n.as_i64() {
            Some(i) => Ok(i),
            None if n.is_u64() => Err(bad(path, format!("{n} is out of range"))),
            None => Err(bad(path, format!("{n} is not an integer"))),
        },
        _ => Err(type_error(path, "an integer", value)),
    }
}

/// The model's regex patterns, compiled once.
fn compiled_pattern(pattern: &str) -> Result<&'static Regex, ApiError> {
    static PATTERNS: OnceLock<BTreeMap<String, Regex>> = OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        service_model()
            .shapes
            .values()
            .filter_map(|shape| match shape {
                Shape::String {
                    pattern: Some(p), ..
                } => Regex::new(p).ok().map(|re| (p.clone(), re)),
                _ => None,
            })
            .collect()
    });
    patterns.get(pattern).ok_or_else(|| {
        ApiError::internal(anyhow::anyhow!(
            "service model pattern {pattern} does not compile"
        ))
    })
}

fn is_absent(value: Option<&Value>) -> bool {
    value.is_none_or(Value::is_null)
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn type_error(path: &str, want: &str, value: &Value) -> ApiError {
    let shown = match value {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => type_name(other).to_owned(),
    };
    bad(path, format!("{shown} is not {want}"))
}

fn bad(path: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("{path}: {message}"))
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
