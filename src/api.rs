//! The chat request of the JSON API (`WasmEngine.generate`), checked field by field: every
//! refusal is [`Error::InvalidArgument`] naming the field, as the JS layer (js/request.js)
//! refuses the same values (the table in js/README.md). Also the checks [`crate::generate`]
//! applies to any caller's [`SamplingParams`] and stop strings.

use crate::error::{Error, Result};
use crate::generate::SamplingParams;
use crate::tokenizer::ChatMessage;

/// The roles a chat message may have.
pub const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];
/// At most this many stop strings.
pub const MAX_STOP: usize = 4;
/// Longest stop string, in bytes of UTF-8 (JS counts 256 UTF-16 units; ≤ 3 bytes each).
pub const MAX_STOP_BYTES: usize = 768;
/// Seeds are below 2^53: exact as JS numbers.
pub const MAX_SEED: u64 = (1 << 53) - 1;

fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Error {
    Error::InvalidArgument {
        field: field.into(),
        detail: detail.into(),
    }
}

/// A chat-completion request (OpenAI field names).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// New-token limit (`None`: until the context is full).
    pub max_tokens: Option<usize>,
    /// Sampling (defaults filled in).
    pub sampling: SamplingParams,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Structured output: `{type: 'text' | 'json_object' | 'json_schema' | 'regex' | 'grammar', …}`.
    pub response_format: Option<crate::structured::ResponseFormat>,
    /// Tools the model may call (OpenAI `tools`).
    pub tools: Vec<crate::structured::Tool>,
    /// OpenAI `tool_choice`.
    pub tool_choice: crate::structured::ToolChoice,
}

/// An optional field deserialised into its type (`null` is absent); a mismatch names the field.
fn typed<T: serde::de::DeserializeOwned>(
    obj: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Option<T>> {
    match obj.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| invalid(key, e.to_string())),
    }
}

fn number(obj: &serde_json::Map<String, serde_json::Value>, key: &str) -> Result<Option<f64>> {
    match obj.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n.as_f64().map(Some).ok_or_else(|| invalid(key, "must be a number")),
        Some(v) => Err(invalid(key, format!("must be a number (got {v})"))),
    }
}

fn integer(obj: &serde_json::Map<String, serde_json::Value>, key: &str, min: u64, max: u64) -> Result<Option<u64>> {
    match obj.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => match n.as_u64() {
            Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(invalid(
                key,
                format!("must be an integer from {min} to {max} (got {n})"),
            )),
        },
        Some(v) => Err(invalid(key, format!("must be an integer (got {v})"))),
    }
}

impl ChatRequest {
    /// Parse and check a JSON request. `max_context`: the model's context; a `max_tokens`
    /// beyond it is refused.
    pub fn parse(json: &str, max_context: usize) -> Result<Self> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| invalid("request", format!("is not valid JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| invalid("request", "must be a JSON object"))?;
        let msgs = match obj.get("messages") {
            Some(serde_json::Value::Array(a)) if !a.is_empty() => a,
            _ => return Err(invalid("messages", "must be a non-empty array of { role, content }")),
        };
        let mut messages = Vec::with_capacity(msgs.len());
        for (i, m) in msgs.iter().enumerate() {
            let role = m.get("role").and_then(|r| r.as_str());
            let role = match role {
                Some(r) if ROLES.contains(&r) => r,
                _ => {
                    return Err(invalid(
                        format!("messages[{i}].role"),
                        format!(
                            "must be one of {} (got {})",
                            ROLES.join(", "),
                            m.get("role").unwrap_or(&serde_json::Value::Null)
                        ),
                    ))
                }
            };
            // An assistant message that calls tools may have no content (`null`).
            let tool_calls: Option<Vec<crate::structured::ToolCall>> = match m.get("tool_calls") {
                None | Some(serde_json::Value::Null) => None,
                Some(_) if role != "assistant" => {
                    return Err(invalid(
                        format!("messages[{i}].tool_calls"),
                        "only an assistant message may have tool_calls",
                    ))
                }
                Some(v) => Some(serde_json::from_value(v.clone()).map_err(|e| {
                    invalid(
                        format!("messages[{i}].tool_calls"),
                        format!("must be an array of {{ id, type: 'function', function: {{ name, arguments }} }}: {e}"),
                    )
                })?),
            };
            // The template gets the arguments as an object (as transformers passes them).
            for (j, c) in tool_calls.iter().flatten().enumerate() {
                let args: std::result::Result<serde_json::Value, _> = serde_json::from_str(&c.function.arguments);
                if !args.is_ok_and(|a| a.is_object()) {
                    return Err(invalid(
                        format!("messages[{i}].tool_calls[{j}].function.arguments"),
                        "must be the JSON text of an object",
                    ));
                }
            }
            let content = match m.get("content") {
                Some(serde_json::Value::String(c)) => c.as_str(),
                None | Some(serde_json::Value::Null) if tool_calls.is_some() => "",
                _ => return Err(invalid(format!("messages[{i}].content"), "must be a string")),
            };
            let mut msg = ChatMessage::new(role, content);
            msg.tool_calls = tool_calls;
            msg.tool_call_id = m.get("tool_call_id").and_then(|c| c.as_str()).map(str::to_string);
            messages.push(msg);
        }
        let stop: Vec<String> = match obj.get("stop") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    s.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| invalid(format!("stop[{i}]"), "must be a string"))
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(invalid("stop", "must be a string or an array of strings")),
        };
        check_stops(&stop)?;
        let limit = max_context.max(1) as u64;
        let key = match obj.get("max_tokens") {
            None | Some(serde_json::Value::Null) => "max_completion_tokens",
            Some(_) => "max_tokens",
        };
        let max_tokens = integer(obj, key, 1, limit)?.map(|v| v as usize);
        let d = SamplingParams::default();
        let sampling = SamplingParams {
            temperature: number(obj, "temperature")?.map_or(d.temperature, |v| v as f32),
            top_k: integer(obj, "top_k", 0, u32::MAX.into())?.map_or(d.top_k, |v| v as usize),
            top_p: number(obj, "top_p")?.map_or(d.top_p, |v| v as f32),
            min_p: number(obj, "min_p")?.map_or(d.min_p, |v| v as f32),
            repetition_penalty: number(obj, "repetition_penalty")?.map_or(d.repetition_penalty, |v| v as f32),
            seed: integer(obj, "seed", 0, MAX_SEED)?.unwrap_or(d.seed),
        };
        check_sampling(&sampling)?;
        Ok(ChatRequest {
            messages,
            max_tokens,
            sampling,
            stop,
            response_format: typed(obj, "response_format")?,
            tools: typed(obj, "tools")?.unwrap_or_default(),
            tool_choice: typed(obj, "tool_choice")?.unwrap_or_default(),
        })
    }
}

/// Sampling parameters any caller gives: finite, in range (a NaN temperature would otherwise
/// sample garbage silently).
pub fn check_sampling(p: &SamplingParams) -> Result<()> {
    let t = p.temperature;
    if !(t.is_finite() && t >= 0.0) {
        return Err(invalid("temperature", format!("must be a finite number ≥ 0 (got {t})")));
    }
    if !(p.top_p > 0.0 && p.top_p <= 1.0) {
        return Err(invalid("top_p", format!("must be in (0, 1] (got {})", p.top_p)));
    }
    if !(p.min_p >= 0.0 && p.min_p <= 1.0) {
        return Err(invalid("min_p", format!("must be in [0, 1] (got {})", p.min_p)));
    }
    let r = p.repetition_penalty;
    if !(r.is_finite() && r > 0.0) {
        return Err(invalid(
            "repetition_penalty",
            format!("must be a finite number > 0 (got {r})"),
        ));
    }
    Ok(())
}

/// Stop strings: at most [`MAX_STOP`], none empty or longer than [`MAX_STOP_BYTES`].
pub fn check_stops(stop: &[String]) -> Result<()> {
    if stop.len() > MAX_STOP {
        return Err(invalid(
            "stop",
            format!("may hold at most {MAX_STOP} strings (got {})", stop.len()),
        ));
    }
    for (i, s) in stop.iter().enumerate() {
        if s.is_empty() || s.len() > MAX_STOP_BYTES {
            return Err(invalid(
                format!("stop[{i}]"),
                format!("must be a non-empty string of at most {MAX_STOP_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

/// Logits a model produced at generation step `step` must be finite: NaN or Inf (overflowing
/// f16 weights, a broken file) would otherwise end the generation silently or sample garbage.
pub fn check_logits(logits: &[f32], step: usize) -> Result<()> {
    if let Some(i) = logits.iter().position(|l| !l.is_finite()) {
        return Err(Error::Data {
            tensor: "logits".into(),
            detail: format!(
                "step {step}: logit {i} is {} (not finite); the model's numbers overflowed",
                logits[i]
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(json: &str, ctx: usize) -> String {
        match ChatRequest::parse(json, ctx) {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("{json}: {other:?}"),
        }
    }

    #[test]
    fn a_valid_request_parses() {
        let r = ChatRequest::parse(
            r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":8,"temperature":0.5,"top_k":4,"seed":9007199254740991,"stop":"x"}"#,
            16,
        )
        .unwrap();
        assert_eq!(r.max_tokens, Some(8));
        assert_eq!(r.sampling.seed, MAX_SEED);
        assert_eq!(r.stop, ["x"]);
        assert_eq!(r.messages, [ChatMessage::new("user", "hi")]);
    }

    #[test]
    fn tool_calls_and_tool_answers_are_kept() {
        let r = ChatRequest::parse(
            r#"{"messages":[{"role":"user","content":"1+2?"},
                {"role":"assistant","content":null,"tool_calls":[{"id":"call_0","type":"function","function":{"name":"add","arguments":"{\"a\":1}"}}]},
                {"role":"tool","tool_call_id":"call_0","content":"3"}]}"#,
            16,
        )
        .unwrap();
        let calls = r.messages[1].tool_calls.as_ref().unwrap();
        assert_eq!(
            (r.messages[1].content.as_str(), calls[0].function.name.as_str()),
            ("", "add")
        );
        assert_eq!(calls[0].function.arguments, r#"{"a":1}"#);
        assert_eq!(r.messages[2].tool_call_id.as_deref(), Some("call_0"));
        for (bad, field) in [
            (
                r#"{"messages":[{"role":"user","content":"x","tool_calls":[]}]}"#,
                "messages[0].tool_calls",
            ),
            (
                r#"{"messages":[{"role":"assistant","content":null,"tool_calls":[{"function":{"name":"f"}}]}]}"#,
                "messages[0].tool_calls",
            ),
            (
                r#"{"messages":[{"role":"assistant","content":null}]}"#,
                "messages[0].content",
            ),
            (
                r#"{"messages":[{"role":"assistant","content":null,"tool_calls":[{"function":{"name":"f","arguments":"[1"}}]}]}"#,
                "messages[0].tool_calls[0].function.arguments",
            ),
        ] {
            let e = ChatRequest::parse(bad, 16).unwrap_err();
            assert!(e.to_string().starts_with(field), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_requests_name_the_field() {
        let m = r#""messages":[{"role":"user","content":"hi"}]"#;
        let cases = [
            ("[]".to_string(), "request"),
            ("{}".to_string(), "messages"),
            (r#"{"messages":[]}"#.to_string(), "messages"),
            (
                r#"{"messages":[{"role":"wizard","content":"x"}]}"#.to_string(),
                "messages[0].role",
            ),
            (r#"{"messages":[{"content":"x"}]}"#.to_string(), "messages[0].role"),
            (
                r#"{"messages":[{"role":"user","content":3}]}"#.to_string(),
                "messages[0].content",
            ),
            (
                r#"{"messages":[{"role":"user","content":"\ud800"}]}"#.to_string(),
                "request",
            ),
            (format!(r#"{{{m},"max_tokens":0}}"#), "max_tokens"),
            (format!(r#"{{{m},"max_tokens":-1}}"#), "max_tokens"),
            (format!(r#"{{{m},"max_tokens":17}}"#), "max_tokens"),
            (format!(r#"{{{m},"max_tokens":1.5}}"#), "max_tokens"),
            (format!(r#"{{{m},"max_completion_tokens":0}}"#), "max_completion_tokens"),
            (format!(r#"{{{m},"temperature":-1}}"#), "temperature"),
            (format!(r#"{{{m},"temperature":"hot"}}"#), "temperature"),
            (format!(r#"{{{m},"top_p":0}}"#), "top_p"),
            (format!(r#"{{{m},"min_p":2}}"#), "min_p"),
            (format!(r#"{{{m},"repetition_penalty":0}}"#), "repetition_penalty"),
            (format!(r#"{{{m},"seed":9007199254740992}}"#), "seed"),
            (format!(r#"{{{m},"seed":-1}}"#), "seed"),
            (format!(r#"{{{m},"stop":["a","b","c","d","e"]}}"#), "stop"),
            (format!(r#"{{{m},"stop":[""]}}"#), "stop[0]"),
            (format!(r#"{{{m},"stop":["a",1]}}"#), "stop[1]"),
        ];
        for (json, want) in cases {
            assert_eq!(field(&json, 16), want, "{json}");
        }
        assert_eq!(
            Error::InvalidArgument {
                field: "x".into(),
                detail: "y".into()
            }
            .code(),
            "INVALID_ARGUMENT"
        );
    }

    #[test]
    fn nan_sampling_parameters_are_refused() {
        for p in [
            SamplingParams {
                temperature: f32::NAN,
                ..Default::default()
            },
            SamplingParams {
                temperature: f32::INFINITY,
                ..Default::default()
            },
            SamplingParams {
                top_p: f32::NAN,
                ..Default::default()
            },
            SamplingParams {
                repetition_penalty: f32::NAN,
                ..Default::default()
            },
        ] {
            assert!(
                matches!(check_sampling(&p), Err(Error::InvalidArgument { .. })),
                "{p:?}"
            );
        }
        assert!(check_sampling(&SamplingParams::default()).is_ok());
    }

    #[test]
    fn non_finite_logits_are_bad_data_naming_the_step() {
        assert!(check_logits(&[0.0, 1.0, -3.0], 0).is_ok());
        let e = check_logits(&[0.0, f32::NAN], 7).unwrap_err();
        assert_eq!(e.code(), "BAD_DATA");
        assert!(e.to_string().contains("step 7"), "{e}");
        assert!(check_logits(&[f32::NEG_INFINITY], 0).is_err());
    }
}
