//! Tool (function) calls in OpenAI's shape. Models whose chat template defines no tool-call
//! format (SmolLM2) get the tool list in a system message and answer a call as one JSON object,
//! `{"name": "<tool>", "arguments": {…}}`, constrained by each tool's `parameters` schema.
//! `tool_choice: "auto"` allows either free text (not starting with `{`) or one call;
//! `"required"` or a named function allows only a call.

use super::schema;
use crate::error::{Error, Result};
use crate::tokenizer::ChatMessage;
use llguidance::api::TopLevelGrammar;
use serde_json::{json, Value};

/// A tool the model may call: `{ type: "function", function: { name, description, parameters } }`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Tool {
    /// Always `function`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function.
    pub function: FunctionDef,
}

fn function_type() -> String {
    "function".into()
}

/// A function's name, description and JSON Schema of its arguments.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct FunctionDef {
    /// The name the model calls it by.
    pub name: String,
    /// What it does (shown to the model).
    #[serde(default)]
    pub description: String,
    /// JSON Schema of the arguments object (default: any object).
    #[serde(default)]
    pub parameters: Option<Value>,
}

/// OpenAI's `tool_choice`.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `"none"`, `"auto"` (default) or `"required"`.
    Mode(String),
    /// `{ type: "function", function: { name } }`: this function must be called.
    Named {
        /// `{ name }`.
        function: NamedFunction,
    },
    /// Not given: `auto`.
    #[default]
    #[serde(skip)]
    Auto,
}

/// The function of a named [`ToolChoice`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct NamedFunction {
    /// Its name.
    pub name: String,
}

/// A call the model made: `{ id, type: "function", function: { name, arguments } }` (`arguments`
/// is a JSON string, as in OpenAI's API).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct ToolCall {
    /// `call_<n>`.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Name and arguments.
    pub function: FunctionCall,
}

/// The function part of a [`ToolCall`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct FunctionCall {
    /// The tool's name.
    pub name: String,
    /// The arguments, as JSON text.
    pub arguments: String,
}

fn invalid(field: String, detail: impl Into<String>) -> Error {
    Error::InvalidArgument {
        field,
        detail: detail.into(),
    }
}

/// The tools that may be called under `choice` (checked: names unique and non-empty, parameters
/// valid schemas, a named choice among the tools); empty for `"none"` or no tools.
pub fn callable<'a>(tools: &'a [Tool], choice: &ToolChoice) -> Result<(Vec<&'a Tool>, bool)> {
    for (i, t) in tools.iter().enumerate() {
        if t.kind != "function" {
            return Err(invalid(
                format!("tools[{i}].type"),
                format!("must be 'function', not '{}'", t.kind),
            ));
        }
        if t.function.name.is_empty() {
            return Err(invalid(format!("tools[{i}].function.name"), "must not be empty"));
        }
        if tools[..i].iter().any(|u| u.function.name == t.function.name) {
            return Err(invalid(
                format!("tools[{i}].function.name"),
                format!("'{}' is defined twice", t.function.name),
            ));
        }
        if let Some(p) = &t.function.parameters {
            schema::prepare(p, false, &format!("tools[{i}].function.parameters"))?;
        }
    }
    let (list, required): (Vec<&Tool>, bool) = match choice {
        ToolChoice::Auto => (tools.iter().collect(), false),
        ToolChoice::Mode(m) => match m.as_str() {
            "none" => (Vec::new(), false),
            "auto" => (tools.iter().collect(), false),
            "required" => (tools.iter().collect(), true),
            other => {
                return Err(invalid(
                    "tool_choice".into(),
                    format!(
                        "must be 'none', 'auto', 'required' or {{type: 'function', function: {{name}}}}, not '{other}'"
                    ),
                ))
            }
        },
        ToolChoice::Named { function } => match tools.iter().find(|t| t.function.name == function.name) {
            Some(t) => (vec![t], true),
            None => {
                return Err(invalid(
                    "tool_choice.function.name".into(),
                    format!("'{}' is not among the tools", function.name),
                ))
            }
        },
    };
    if required && list.is_empty() {
        return Err(invalid(
            "tool_choice".into(),
            "requires a tool call but no tools are given",
        ));
    }
    Ok((list, required))
}

/// The system message that describes `tools` and the call format to the model.
pub fn system_prompt(tools: &[&Tool], required: bool) -> String {
    let mut s = String::from("You can call these functions:\n");
    for t in tools {
        let params = t
            .function
            .parameters
            .clone()
            .unwrap_or_else(|| json!({"type": "object"}));
        s.push_str(&format!(
            "- {}: {} Parameters: {}\n",
            t.function.name, t.function.description, params
        ));
    }
    s.push_str("To call a function, answer with only a JSON object {\"name\": <function name>, \"arguments\": <arguments object>}.");
    if !required {
        s.push_str(" Otherwise answer in plain text.");
    }
    s
}

/// `messages` with the tool description added to the system message (or as a new first one).
pub fn with_tools(messages: &[ChatMessage], tools: &[&Tool], required: bool) -> Vec<ChatMessage> {
    let text = system_prompt(tools, required);
    let mut out = messages.to_vec();
    match out.first_mut() {
        Some(m) if m.role == "system" => {
            m.content = format!("{}\n\n{text}", m.content);
        }
        _ => out.insert(0, ChatMessage::new("system", &text)),
    }
    out
}

/// The JSON Schema of one call to any of `tools`.
pub fn call_schema(tools: &[&Tool]) -> Value {
    let one = |t: &Tool| {
        json!({
            "type": "object",
            "properties": {
                "name": { "const": t.function.name },
                "arguments": t.function.parameters.clone().unwrap_or_else(|| json!({"type": "object"})),
            },
            "required": ["name", "arguments"],
            "additionalProperties": false,
        })
    };
    match tools {
        [t] => one(t),
        many => json!({ "anyOf": many.iter().map(|t| one(t)).collect::<Vec<_>>() }),
    }
}

/// The grammar of the output: one call (`required`), or a call or free text not starting with `{`.
pub fn grammar(tools: &[&Tool], required: bool) -> TopLevelGrammar {
    let mut schema = call_schema(tools);
    if let Some(o) = schema.as_object_mut() {
        o.insert(
            "x-guidance".into(),
            json!({ "whitespace_flexible": false, "item_separator": ", ", "key_separator": ": " }),
        );
    }
    if required {
        return TopLevelGrammar::from_json_schema(schema);
    }
    TopLevelGrammar::from_lark(format!(
        "start: call | TEXT\ncall: %json {schema}\nTEXT: /[^{{\\s][\\s\\S]*/\n"
    ))
}

/// The tool call in `text`, if it is one (a JSON object naming one of `tools`).
pub fn parse_call(text: &str, tools: &[&Tool], index: usize) -> Option<ToolCall> {
    let v: Value = serde_json::from_str(text.trim()).ok()?;
    let name = v.get("name")?.as_str()?;
    tools.iter().find(|t| t.function.name == name)?;
    let args = v.get("arguments").cloned().unwrap_or_else(|| json!({}));
    Some(ToolCall {
        id: format!("call_{index}"),
        kind: "function".into(),
        function: FunctionCall {
            name: name.to_string(),
            arguments: args.to_string(),
        },
    })
}
