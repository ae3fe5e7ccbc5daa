//! Tool (function) calls in OpenAI's shape. [`CallFormat`] is the one place that knows how a
//! model writes a call: taken from the chat template where it defines one (Qwen2.5's
//! `<tool_call>` block, Llama 3.1's `{"name", "parameters"}` object: the template renders the
//! tool list itself), else the generic format (SmolLM2): the tool list in a system message and
//! one JSON object `{"name": "<tool>", "arguments": {…}}`. Either way the call is constrained by
//! each tool's `parameters` schema. `tool_choice: "auto"` allows either free text (not starting
//! with the call's first character) or one call; `"required"` or a named function allows only a
//! call.

use super::schema;
use super::GrammarSpec;
use crate::error::{Error, Result};
use crate::tokenizer::{ChatMessage, Tokenizer};
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ToolCall {
    /// `call_<n>`.
    #[serde(default)]
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// Name and arguments.
    pub function: FunctionCall,
}

/// The function part of a [`ToolCall`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
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

/// How a model writes a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallFormat {
    /// The template has no tool syntax (SmolLM2): the tools are described in a system message,
    /// a call is `{"name": …, "arguments": {…}}`.
    Generic,
    /// Hermes / Qwen2.5: the template renders `tools` in a `<tools></tools>` block; a call is
    /// `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`.
    Hermes,
    /// Llama 3.1 / 3.2 (custom tools): the template renders `tools`; a call is
    /// `{"name": …, "parameters": {…}}`.
    Llama3,
}

/// Hermes' call markers.
const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";

impl CallFormat {
    /// The format a chat template defines: one that renders `tools` and writes the calls of
    /// assistant messages (`tool_calls`) in a known shape; otherwise [`CallFormat::Generic`].
    pub fn detect(template: Option<&str>) -> Self {
        let Some(t) = template else {
            return CallFormat::Generic;
        };
        // `tools` used as a variable (not the `<tools>` text of a prompt).
        let renders_tools = ["in tools", "if tools", "tools is ", "tools | ", "tools|"]
            .iter()
            .any(|p| t.contains(p));
        if !renders_tools || !t.contains("tool_call") {
            return CallFormat::Generic;
        }
        if t.contains(HERMES_OPEN) && t.contains(HERMES_CLOSE) {
            CallFormat::Hermes
        } else if t.contains("\"parameters\": ") && (t.contains("<|python_tag|>") || t.contains("ipython")) {
            CallFormat::Llama3
        } else {
            CallFormat::Generic
        }
    }

    /// The format of `tok`'s default chat template.
    pub fn of(tok: &Tokenizer) -> Self {
        Self::detect(tok.chat_template(None))
    }

    /// Whether the chat template renders the tools and the calls itself.
    pub fn in_template(self) -> bool {
        self != CallFormat::Generic
    }

    /// The key of a call's arguments object.
    pub fn arguments_key(self) -> &'static str {
        match self {
            CallFormat::Generic | CallFormat::Hermes => "arguments",
            CallFormat::Llama3 => "parameters",
        }
    }

    /// The first character of every call's text (free text under `tool_choice: 'auto'` never
    /// starts with it, so a stream can hold a call back from its first character).
    pub fn call_start(self) -> char {
        match self {
            CallFormat::Generic | CallFormat::Llama3 => '{',
            CallFormat::Hermes => '<',
        }
    }

    /// The text of one call (as the model writes it; `arguments` is the JSON text of OpenAI's
    /// shape).
    pub fn write_call(self, name: &str, arguments: &str) -> String {
        let args: Value = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
        let obj = format!(
            "{{\"name\": {}, \"{}\": {}}}",
            Value::String(name.to_string()),
            self.arguments_key(),
            python_json(&args)
        );
        match self {
            CallFormat::Hermes => format!("{HERMES_OPEN}\n{obj}\n{HERMES_CLOSE}"),
            CallFormat::Generic | CallFormat::Llama3 => obj,
        }
    }

    /// The grammar of the output: one call (`required`), or a call or free text that does not
    /// start with [`CallFormat::call_start`]. `special(name)` tells whether the tokenizer has
    /// `name` as one special token (then the grammar asks for that token, else for its text).
    pub fn grammar(self, tools: &[&Tool], required: bool, special: impl Fn(&str) -> bool) -> GrammarSpec {
        let mut schema = call_schema(self, tools);
        if let Some(o) = schema.as_object_mut() {
            o.insert(
                "x-guidance".into(),
                json!({ "whitespace_flexible": false, "item_separator": ", ", "key_separator": ": " }),
            );
        }
        if self == CallFormat::Generic && required {
            return GrammarSpec::JsonSchema(schema);
        }
        let marker = |m: &str| {
            if special(m) {
                m.to_string()
            } else {
                Value::String(m.to_string()).to_string()
            }
        };
        let call = match self {
            CallFormat::Hermes => format!(
                "call: {} \"\\n\" obj \"\\n\" {}\nobj: %json {schema}\n",
                marker(HERMES_OPEN),
                marker(HERMES_CLOSE)
            ),
            CallFormat::Generic | CallFormat::Llama3 => format!("call: %json {schema}\n"),
        };
        let first = match self.call_start() {
            '{' => "{",
            _ => "<",
        };
        let start = if required {
            "start: call\n".to_string()
        } else {
            format!("start: call | TEXT\nTEXT: /[^{first}\\s][\\s\\S]*/\n")
        };
        GrammarSpec::Lark(format!("{start}{call}"))
    }

    /// The tool call in `text`, if it is one in this format naming one of `tools`.
    pub fn parse_call(self, text: &str, tools: &[&Tool], index: usize) -> Option<ToolCall> {
        let mut body = text.trim();
        if self == CallFormat::Hermes {
            body = body.strip_prefix(HERMES_OPEN)?.strip_suffix(HERMES_CLOSE)?.trim();
        }
        let v: Value = serde_json::from_str(body).ok()?;
        let name = v.get("name")?.as_str()?;
        tools.iter().find(|t| t.function.name == name)?;
        let args = v.get(self.arguments_key()).cloned().unwrap_or_else(|| json!({}));
        Some(ToolCall {
            id: format!("call_{index}"),
            kind: "function".into(),
            function: FunctionCall {
                name: name.to_string(),
                arguments: args.to_string(),
            },
        })
    }

    /// The chat template's context for `messages` with `tools` offered (none: `tools` is not
    /// set). Template formats get `tools` in OpenAI's shape and the assistant messages'
    /// `tool_calls` with `arguments` as objects (as transformers passes them); the generic
    /// format gets the tool description in the system message and each call as the message's
    /// text (its template knows no tool calls).
    pub fn context(self, messages: &[ChatMessage], tools: &[&Tool], required: bool) -> Value {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| {
                let mut v = json!({ "role": m.role, "content": m.content });
                let calls = m.tool_calls.as_deref().unwrap_or_default();
                if self.in_template() {
                    if !calls.is_empty() {
                        let calls: Vec<Value> = calls
                            .iter()
                            .map(|c| {
                                let args: Value =
                                    serde_json::from_str(&c.function.arguments).unwrap_or_else(|_| json!({}));
                                json!({ "id": c.id, "type": "function",
                                        "function": { "name": c.function.name, "arguments": args } })
                            })
                            .collect();
                        v["tool_calls"] = Value::Array(calls);
                    }
                    if let Some(id) = &m.tool_call_id {
                        v["tool_call_id"] = json!(id);
                    }
                } else if !calls.is_empty() {
                    let text: Vec<String> = calls
                        .iter()
                        .map(|c| self.write_call(&c.function.name, &c.function.arguments))
                        .collect();
                    let mut content = m.content.clone();
                    if !content.is_empty() {
                        content.push('\n');
                    }
                    content.push_str(&text.join("\n"));
                    v["content"] = json!(content);
                }
                v
            })
            .collect();
        if tools.is_empty() {
            return json!({ "messages": msgs });
        }
        if self.in_template() {
            let list: Vec<Value> = tools.iter().map(|t| json!(t)).collect();
            return json!({ "messages": msgs, "tools": list });
        }
        let text = system_prompt(tools, required);
        let mut msgs = msgs;
        match msgs.first_mut() {
            Some(m) if m["role"] == "system" => {
                let old = m["content"].as_str().unwrap_or_default().to_string();
                m["content"] = json!(format!("{old}\n\n{text}"));
            }
            _ => msgs.insert(0, json!({ "role": "system", "content": text })),
        }
        json!({ "messages": msgs })
    }
}

/// JSON text with Python's separators (`, ` and `: `), as templates' `tojson` writes it.
fn python_json(v: &Value) -> String {
    match v {
        Value::Object(o) => {
            let items: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), python_json(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(python_json).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

/// The system message that describes `tools` and the generic call format to the model.
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

/// The JSON Schema of one call to any of `tools` in `format` (`name` a `const`, the arguments
/// the tool's `parameters`).
pub fn call_schema(format: CallFormat, tools: &[&Tool]) -> Value {
    let key = format.arguments_key();
    let one = |t: &Tool| {
        let mut props = serde_json::Map::new();
        props.insert("name".into(), json!({ "const": t.function.name }));
        props.insert(
            key.into(),
            t.function
                .parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object"})),
        );
        json!({
            "type": "object",
            "properties": props,
            "required": ["name", key],
            "additionalProperties": false,
        })
    };
    match tools {
        [t] => one(t),
        many => json!({ "anyOf": many.iter().map(|t| one(t)).collect::<Vec<_>>() }),
    }
}
