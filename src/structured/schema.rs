//! JSON Schema checks before compiling: every keyword llguidance cannot enforce is reported with
//! the JSON-pointer path of the subschema holding it (a constraint that silently ignored
//! `uniqueItems` would produce outputs that do not validate), and OpenAI's strict mode is applied.

use crate::error::{Error, Result};
use serde_json::{Map, Value};

/// JSON Schema keywords (draft 2020-12 and older) that llguidance does not enforce.
const UNSUPPORTED: &[&str] = &[
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "contains",
    "minContains",
    "maxContains",
    "uniqueItems",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "$dynamicRef",
    "$dynamicAnchor",
    "$recursiveRef",
    "$recursiveAnchor",
    "contentSchema",
];

const TYPES: &[&str] = &["null", "boolean", "object", "array", "number", "string", "integer"];

/// Keywords whose value is a subschema.
const ONE: &[&str] = &["additionalProperties", "additionalItems", "items"];
/// Keywords whose value is a list of subschemas.
const LIST: &[&str] = &["anyOf", "oneOf", "allOf", "prefixItems", "items"];
/// Keywords whose value is a map of subschemas.
const MAP: &[&str] = &["properties", "patternProperties", "$defs", "definitions"];

fn err(path: &str, detail: String) -> Error {
    Error::InvalidArgument {
        field: path.to_string(),
        detail,
    }
}

/// Check `schema` (at `path`, e.g. `response_format.json_schema.schema`) and return the schema
/// to compile: with `strict`, objects that do not say otherwise get `additionalProperties: false`.
pub fn prepare(schema: &Value, strict: bool, path: &str) -> Result<Value> {
    let mut s = schema.clone();
    walk(&mut s, strict, path, 0)?;
    Ok(s)
}

fn walk(v: &mut Value, strict: bool, path: &str, depth: usize) -> Result<()> {
    if depth > 64 {
        return Err(err(path, "is nested more than 64 levels deep".into()));
    }
    let o: &mut Map<String, Value> = match v {
        Value::Bool(_) => return Ok(()),
        Value::Object(o) => o,
        other => {
            return Err(err(
                path,
                format!("must be a schema object or a boolean, not {}", kind(other)),
            ))
        }
    };
    if let Some(k) = UNSUPPORTED.iter().find(|k| o.contains_key(**k)) {
        return Err(err(
            &format!("{path}/{k}"),
            format!("uses the keyword '{k}', which constrained decoding does not support"),
        ));
    }
    if let Some(t) = o.get("type") {
        let names: Vec<&Value> = match t {
            Value::Array(a) => a.iter().collect(),
            one => vec![one],
        };
        for n in names {
            match n.as_str() {
                Some(n) if TYPES.contains(&n) => {}
                _ => return Err(err(&format!("{path}/type"), format!("{n} is not a JSON Schema type"))),
            }
        }
    }
    if let Some(r) = o.get("required") {
        if !r.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
            return Err(err(
                &format!("{path}/required"),
                "must be an array of property names".into(),
            ));
        }
    }
    if let Some(r) = o.get("$ref").and_then(Value::as_str) {
        if !r.starts_with('#') {
            return Err(err(
                &format!("{path}/$ref"),
                format!("'{r}' is not a local reference (only '#…' references are resolved)"),
            ));
        }
    }
    if let Some(p) = o.get("pattern") {
        if !p.is_string() {
            return Err(err(&format!("{path}/pattern"), "must be a string".into()));
        }
    }
    let is_object = o.contains_key("properties") || o.get("type").and_then(Value::as_str) == Some("object");
    if strict && is_object && !o.contains_key("additionalProperties") {
        o.insert("additionalProperties".into(), Value::Bool(false));
    }
    for (k, sub) in o.iter_mut() {
        let here = format!("{path}/{k}");
        if MAP.contains(&k.as_str()) {
            let Value::Object(m) = sub else {
                return Err(err(&here, format!("must be an object, not {}", kind(sub))));
            };
            for (name, s) in m.iter_mut() {
                walk(s, strict, &format!("{here}/{name}"), depth + 1)?;
            }
        } else if let (true, Value::Array(a)) = (LIST.contains(&k.as_str()), &mut *sub) {
            for (i, s) in a.iter_mut().enumerate() {
                walk(s, strict, &format!("{here}/{i}"), depth + 1)?;
            }
        } else if ONE.contains(&k.as_str()) {
            walk(sub, strict, &here, depth + 1)?;
        } else if LIST.contains(&k.as_str()) {
            return Err(err(&here, format!("must be an array of schemas, not {}", kind(sub))));
        }
    }
    Ok(())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unsupported_keywords_name_their_path() {
        let s = json!({"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true}}});
        let e = prepare(&s, false, "rf").unwrap_err();
        assert_eq!(e.code(), "INVALID_ARGUMENT");
        assert!(e.to_string().starts_with("rf/properties/tags/uniqueItems "), "{e}");
        let e = prepare(&json!({"anyOf": [{"type": "string"}, {"type": "strin"}]}), false, "rf").unwrap_err();
        assert!(e.to_string().starts_with("rf/anyOf/1/type "), "{e}");
        let e = prepare(&json!({"properties": 3}), false, "rf").unwrap_err();
        assert!(e.to_string().starts_with("rf/properties "), "{e}");
    }

    #[test]
    fn strict_closes_objects() {
        let s = prepare(
            &json!({"type": "object", "properties": {"a": {"type": "object"}}}),
            true,
            "rf",
        )
        .unwrap();
        assert_eq!(s["additionalProperties"], json!(false));
        assert_eq!(s["properties"]["a"]["additionalProperties"], json!(false));
        let s = prepare(
            &json!({"type": "object", "additionalProperties": {"type": "integer"}}),
            true,
            "rf",
        )
        .unwrap();
        assert_eq!(s["additionalProperties"], json!({"type": "integer"}));
    }
}
