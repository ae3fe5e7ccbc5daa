//! Constrained decoding (notes/structured.md): JSON Schema, regular expressions and Lark grammars
//! compiled by `llguidance` into a per-step set of allowed tokens, applied to the logits on the
//! GPU through the sampler's logit mask (bit `i % 32` of word `i / 32` = token `i` allowed).
//!
//! [`TokenBytes`] is the byte vocabulary of one tokenizer; [`Vocab`] adds the constraint backend
//! over it (built once per model); [`Constraint`] is one generation's parser state (a
//! [`TokenConstraint`]), fed with each accepted token, giving the next token's mask. The backend
//! is llguidance in this crate (feature `structured`, on by default) or, in the npm package's
//! core wasm (built without it), the structured module the JS layer loads on the first
//! constrained request (`module`, feature `structured-module`; `js` calls it).
//! [`ResponseFormat`] and [`Tool`] are the OpenAI request shapes; [`tools`] renders tool
//! definitions into the prompt and parses tool calls out of the output.

pub mod schema;
#[cfg(test)]
mod tests;
pub mod tools;

#[cfg(feature = "structured")]
mod guidance;
#[cfg(all(target_arch = "wasm32", not(feature = "structured")))]
mod js;
#[cfg(all(target_arch = "wasm32", feature = "structured-module"))]
pub mod module;

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;
use std::sync::Arc;

pub use tools::{CallFormat, Tool, ToolCall, ToolChoice};

/// What the output must look like (OpenAI's `response_format`, plus `regex` and `grammar`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text (no constraint).
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON valid under a schema.
    JsonSchema {
        /// `{ name, schema, strict }`.
        json_schema: JsonSchemaFormat,
    },
    /// Text matching a regular expression (whole output; Rust `regex` syntax, no look-around).
    Regex {
        /// The pattern.
        pattern: String,
    },
    /// Text in the language of a Lark grammar (llguidance's dialect: `start` rule, `%json {…}`).
    Grammar {
        /// The grammar.
        grammar: String,
    },
}

/// OpenAI's `json_schema` object.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct JsonSchemaFormat {
    /// A name for the schema (informational).
    #[serde(default)]
    pub name: String,
    /// The JSON Schema (`true`-like `{}` allows any JSON value).
    #[serde(default = "empty_object")]
    pub schema: serde_json::Value,
    /// OpenAI's strict mode: objects without `additionalProperties` get `false` (no keys beyond
    /// `properties`). Off: extra keys are allowed where the schema allows them.
    #[serde(default)]
    pub strict: Option<bool>,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// The grammar of one constrained output, as the core builds it (no llguidance needed): a JSON
/// Schema (with the layout options of [`with_options`] in it), a regular expression or a Lark
/// grammar. Handed to the constraint backend as JSON (the lazily loaded module on the web).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrammarSpec {
    /// A JSON Schema.
    JsonSchema(serde_json::Value),
    /// A regular expression (whole output).
    Regex(String),
    /// A Lark grammar (llguidance's dialect).
    Lark(String),
}

/// GPT-2's byte ↔ printable-character table (byte-level BPE token strings).
fn byte_level_chars() -> std::collections::HashMap<char, u8> {
    (0u8..=255)
        .zip(crate::tokenizer::byte_level_table())
        .map(|(b, c)| (c, b))
        .collect()
}

/// How the tokenizer's token strings map to bytes.
#[derive(Clone, Copy, PartialEq)]
enum Scheme {
    /// GPT-2 byte-level (SmolLM2, Qwen, Llama 3).
    ByteLevel,
    /// SentencePiece with byte fallback (`<0xAB>` tokens, `▁` for spaces).
    ByteFallback,
}

fn scheme(d: &tokenizers::DecoderWrapper) -> Option<Scheme> {
    use tokenizers::DecoderWrapper as D;
    match d {
        D::ByteLevel(_) => Some(Scheme::ByteLevel),
        D::ByteFallback(_) => Some(Scheme::ByteFallback),
        D::Sequence(s) => s.get_decoders().iter().find_map(scheme),
        _ => None,
    }
}

/// The first byte of a special token's bytes (llguidance's `TokTrie::SPECIAL_TOKEN_MARKER`):
/// grammars never produce such a token as text.
pub const SPECIAL_TOKEN_MARKER: u8 = 0xff;

/// The byte-level vocabulary of one tokenizer: each id's bytes (special tokens marked with
/// [`SPECIAL_TOKEN_MARKER`]), the vocabulary size, end and start tokens. All a constraint
/// backend needs of the tokenizer (the web's structured module gets exactly this).
#[derive(Debug, Clone)]
pub struct TokenBytes {
    /// The bytes of each id (empty: never allowed).
    pub bytes: Vec<Vec<u8>>,
    /// Ids in the masks' domain (`max(logits, tokenizer vocabulary)`).
    pub vocab_size: u32,
    /// The grammar's end token.
    pub eos: u32,
    /// The start token, if any.
    pub bos: Option<u32>,
    /// Words of each mask (`ceil(logits / 32)`).
    pub words: usize,
}

impl TokenBytes {
    /// The bytes of `tok` for a model with `logits` outputs (masks have `ceil(logits / 32)`
    /// words; ids past the tokenizer's vocabulary are never allowed) ending generations with
    /// `eos` (the first is the grammar's end token). A tokenizer whose bytes cannot be
    /// recovered, or no end token, is [`Error::UnsupportedByModel`].
    pub fn new(tok: &Tokenizer, logits: usize, eos: &[u32]) -> Result<Self> {
        let hf = tok.hf();
        let scheme = hf
            .get_decoder()
            .and_then(scheme)
            .ok_or_else(|| Error::UnsupportedByModel {
                what: "constrained decoding (response_format, tools)",
                why: "its tokenizer's decoder is neither byte-level nor byte-fallback".into(),
            })?;
        let n = logits.max(tok.vocab_size());
        let vocab_size = u32::try_from(n).map_err(|_| Error::Internal(format!("vocabulary of {n} tokens")))?;
        let eos0 = eos
            .first()
            .copied()
            .or_else(|| tok.eos_token_id())
            .ok_or_else(|| Error::UnsupportedByModel {
                what: "constrained decoding (response_format, tools)",
                why: "it names no end-of-sequence token".into(),
            })?;
        let mut bytes: Vec<Vec<u8>> = vec![Vec::new(); n];
        let added = hf.get_added_tokens_decoder();
        let chars = byte_level_chars();
        for (id, word) in bytes.iter_mut().enumerate() {
            let id32 = id as u32;
            if let Some(a) = added.get(&id32) {
                let mut b = a.content.as_bytes().to_vec();
                if a.special || (a.content.starts_with('<') && a.content.ends_with('>')) {
                    b.insert(0, SPECIAL_TOKEN_MARKER);
                }
                *word = b;
                continue;
            }
            let Some(name) = hf.id_to_token(id32) else { continue };
            *word = match scheme {
                Scheme::ByteLevel => match name
                    .chars()
                    .map(|c| chars.get(&c).copied())
                    .collect::<Option<Vec<u8>>>()
                {
                    Some(b) => b,
                    None => continue,
                },
                Scheme::ByteFallback => {
                    let hex = name.strip_prefix("<0x").and_then(|h| h.strip_suffix('>'));
                    match hex.map(|h| u8::from_str_radix(h, 16)) {
                        Some(Ok(b)) => vec![b],
                        Some(Err(_)) => continue,
                        None => name.replace('\u{2581}', " ").into_bytes(),
                    }
                }
            };
        }
        Ok(TokenBytes {
            bytes,
            vocab_size,
            eos: eos0,
            bos: tok.bos_token_id(),
            words: logits.div_ceil(32),
        })
    }

    /// The bytes as one buffer and the end offset of each id's bytes in it (the layout handed
    /// to the web's structured module).
    pub fn flat(&self) -> (Vec<u8>, Vec<u32>) {
        let mut flat = Vec::with_capacity(self.bytes.iter().map(Vec::len).sum());
        let mut ends = Vec::with_capacity(self.bytes.len());
        for b in &self.bytes {
            flat.extend_from_slice(b);
            ends.push(flat.len() as u32);
        }
        (flat, ends)
    }

    /// The inverse of [`TokenBytes::flat`] (`ends` must be non-decreasing and within `flat`).
    pub fn from_flat(
        flat: &[u8],
        ends: &[u32],
        vocab_size: u32,
        eos: u32,
        bos: Option<u32>,
        words: usize,
    ) -> Result<Self> {
        let mut bytes = Vec::with_capacity(ends.len());
        let mut start = 0usize;
        for &e in ends {
            let e = e as usize;
            let b = flat.get(start..e).ok_or_else(|| {
                Error::Internal(format!("token bytes: offset {e} out of order or past {}", flat.len()))
            })?;
            bytes.push(b.to_vec());
            start = e;
        }
        Ok(TokenBytes {
            bytes,
            vocab_size,
            eos,
            bos,
            words,
        })
    }

    /// Whether the tokenizer has `name` as one special token (a grammar then asks for the
    /// token, not its text).
    pub fn has_special(&self, name: &str) -> bool {
        self.bytes
            .iter()
            .any(|b| b.first() == Some(&SPECIAL_TOKEN_MARKER) && &b[1..] == name.as_bytes())
    }
}

/// One generation's grammar state as the decode loop sees it (the per-token mask hook of
/// [`generate`]): llguidance in this module (feature `structured`) or, in the web package's
/// core, the lazily loaded structured module called through JS.
pub trait TokenConstraint {
    /// The mask of the next token after `tokens` (the generation so far; tokens not seen yet
    /// are fed first): bit `i % 32` of word `i / 32` = token `i` allowed, `ceil(logits / 32)`
    /// words. Once the grammar is complete only the end token is allowed.
    fn mask(&mut self, tokens: &[u32]) -> Result<Vec<u32>>;
    /// Feed the tokens of `tokens` (the generation so far) not fed yet.
    fn feed(&mut self, tokens: &[u32]) -> Result<()>;
    /// Whether the output so far is complete (the grammar accepts it as it is).
    fn is_accepting(&mut self) -> bool;
    /// Milliseconds spent computing masks, and the number of masks.
    fn mask_time(&self) -> (f64, usize);
}

#[derive(Clone)]
enum Backend {
    #[cfg(feature = "structured")]
    Guidance(Arc<guidance::Factory>),
    #[cfg(all(target_arch = "wasm32", not(feature = "structured")))]
    Js(js::JsVocab),
    /// A native build without llguidance: never built (no constructor), every request refused.
    #[cfg(all(not(target_arch = "wasm32"), not(feature = "structured")))]
    #[allow(dead_code)]
    None,
}

/// The vocabulary of one tokenizer and the constraint backend over it (building it walks the
/// whole vocabulary: do it once per model and share it).
#[derive(Clone)]
pub struct Vocab {
    tokens: Arc<TokenBytes>,
    backend: Backend,
}

impl std::fmt::Debug for Vocab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocab").field("mask_words", &self.tokens.words).finish()
    }
}

impl Vocab {
    /// The vocabulary of `tok` for a model with `logits` outputs ending generations with `eos`
    /// ([`TokenBytes::new`]), with llguidance in this module.
    #[cfg(feature = "structured")]
    pub fn new(tok: &Tokenizer, logits: usize, eos: &[u32]) -> Result<Self> {
        let tokens = TokenBytes::new(tok, logits, eos)?;
        let factory = guidance::Factory::with_tokenizer(&tokens, tok.hf().clone())?;
        Ok(Vocab {
            tokens: Arc::new(tokens),
            backend: Backend::Guidance(Arc::new(factory)),
        })
    }

    /// The vocabulary of `tokens` in the lazily loaded structured module `module` (its
    /// namespace: `StructuredVocab` is built from the token bytes).
    #[cfg(all(target_arch = "wasm32", not(feature = "structured")))]
    pub fn js(tokens: TokenBytes, module: &wasm_bindgen::JsValue) -> Result<Self> {
        let v = js::JsVocab::new(module, &tokens)?;
        Ok(Vocab {
            tokens: Arc::new(tokens),
            backend: Backend::Js(v),
        })
    }

    /// Whether the tokenizer has `name` as one special token (a grammar then asks for the
    /// token, not its text).
    pub fn has_special(&self, name: &str) -> bool {
        self.tokens.has_special(name)
    }

    /// Words of each mask (`ceil(logits / 32)`).
    pub fn mask_words(&self) -> usize {
        self.tokens.words
    }
}

/// One generation's grammar state (a [`TokenConstraint`] of the vocabulary's backend).
pub struct Constraint {
    inner: Box<dyn TokenConstraint>,
    #[cfg(feature = "structured")]
    spec: GrammarSpec,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint").finish_non_exhaustive()
    }
}

/// Compile options put into every JSON schema: one space after `,` and `:`, no other
/// whitespace (free whitespace lets a small model pad forever).
pub(crate) fn with_options(mut schema: serde_json::Value) -> serde_json::Value {
    if let Some(o) = schema.as_object_mut() {
        o.insert(
            "x-guidance".into(),
            serde_json::json!({ "whitespace_flexible": false, "item_separator": ", ", "key_separator": ": " }),
        );
    }
    schema
}

impl Constraint {
    /// A constraint for `format` (`field` names it in errors, e.g. `response_format`); `None` for
    /// [`ResponseFormat::Text`]. An invalid or unsupported schema, pattern or grammar is
    /// [`Error::InvalidArgument`] naming where it is wrong.
    pub fn new(vocab: &Vocab, format: &ResponseFormat, field: &str) -> Result<Option<Self>> {
        let grammar = match format {
            ResponseFormat::Text => return Ok(None),
            ResponseFormat::JsonObject => {
                GrammarSpec::JsonSchema(with_options(serde_json::json!({ "type": "object" })))
            }
            ResponseFormat::JsonSchema { json_schema } => {
                let path = format!("{field}.json_schema.schema");
                let schema = schema::prepare(&json_schema.schema, json_schema.strict.unwrap_or(false), &path)?;
                GrammarSpec::JsonSchema(with_options(schema))
            }
            ResponseFormat::Regex { pattern } => GrammarSpec::Regex(pattern.clone()),
            ResponseFormat::Grammar { grammar } => GrammarSpec::Lark(grammar.clone()),
        };
        let what = match format {
            ResponseFormat::Regex { .. } => format!("{field}.pattern"),
            ResponseFormat::Grammar { .. } => format!("{field}.grammar"),
            ResponseFormat::JsonSchema { .. } => format!("{field}.json_schema.schema"),
            _ => field.to_string(),
        };
        Self::from_grammar(vocab, grammar, &what).map(Some)
    }

    /// A constraint from a grammar (`what` names it in errors). Compiling it and computing the
    /// first mask happen here: a grammar that does not compile, allows no output, or starts
    /// with text the model's vocabulary cannot write (a tool call or JSON object without a
    /// token starting with `{`) is [`Error::InvalidArgument`], the same from llguidance in
    /// this crate and from the web's structured module.
    #[cfg_attr(
        all(not(target_arch = "wasm32"), not(feature = "structured")),
        allow(unreachable_code, unused_variables)
    )]
    pub fn from_grammar(vocab: &Vocab, grammar: GrammarSpec, what: &str) -> Result<Self> {
        let inner: Box<dyn TokenConstraint> = match &vocab.backend {
            #[cfg(feature = "structured")]
            Backend::Guidance(f) => Box::new(f.constraint(&grammar, what)?),
            #[cfg(all(target_arch = "wasm32", not(feature = "structured")))]
            Backend::Js(v) => Box::new(v.constraint(&grammar, what)?),
            #[cfg(all(not(target_arch = "wasm32"), not(feature = "structured")))]
            Backend::None => {
                return Err(Error::Unsupported {
                    kernel: "constrained decoding",
                    variant: what.to_string(),
                    why: "this build has no llguidance (feature `structured`)".into(),
                })
            }
        };
        Ok(Constraint {
            inner,
            #[cfg(feature = "structured")]
            spec: grammar,
        })
    }

    /// The mask of the next token after `tokens` ([`TokenConstraint::mask`]).
    pub fn mask(&mut self, tokens: &[u32]) -> Result<Vec<u32>> {
        self.inner.mask(tokens)
    }

    /// Feed the tokens of `tokens` (the generation so far) not fed yet.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<()> {
        self.inner.feed(tokens)
    }

    /// Whether the output so far is complete (the grammar accepts it as it is).
    pub fn is_accepting(&mut self) -> bool {
        self.inner.is_accepting()
    }

    /// Milliseconds spent computing masks, and the number of masks.
    pub fn mask_time(&self) -> (f64, usize) {
        self.inner.mask_time()
    }
}

/// Whether `text` is in the language of `format` (a check independent of the sampled tokens:
/// it re-tokenises the text). Tests use it to validate outputs.
#[cfg(feature = "structured")]
pub fn accepts(vocab: &Vocab, format: &ResponseFormat, text: &str) -> Result<bool> {
    match Constraint::new(vocab, format, "format")? {
        None => Ok(true),
        Some(c) => c.accepts_text(vocab, text),
    }
}

#[cfg(feature = "structured")]
impl Constraint {
    /// Whether this (fresh) constraint's grammar accepts `text` as a whole output
    /// (re-tokenised; llguidance in this module).
    pub fn accepts_text(self, vocab: &Vocab, text: &str) -> Result<bool> {
        match &vocab.backend {
            Backend::Guidance(f) => f.accepts_text(&self.spec, text),
        }
    }
}

/// A chat request's structured-output parts, resolved before any token is generated: the
/// template context to render (messages, and the tools in the model's [`CallFormat`]) and the
/// constraint.
#[derive(Debug)]
pub struct Prepared {
    /// The chat template's context (`messages`, `tools` where the template renders them).
    pub context: serde_json::Value,
    /// The constraint of the output (`None`: free text).
    pub constraint: Option<Constraint>,
    /// How calls are written.
    pub format: CallFormat,
    tools: Vec<Tool>,
}

/// The end of a constrained chat completion, in OpenAI's terms.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Outcome {
    /// The message text (`None` when the answer is a tool call).
    pub content: Option<String>,
    /// Tool calls (empty: none).
    pub tool_calls: Vec<ToolCall>,
    /// `stop`, `length`, `tool_calls` or `abort`.
    pub finish_reason: &'static str,
    /// Why the output does not satisfy the format, when it does not (cut by `max_tokens`).
    pub incomplete: Option<String>,
}

/// The request's own checks, which need no model: `response_format`'s schema (walked, with the
/// JSON-pointer path of what is wrong), the tools and `tool_choice`. All [`Error::InvalidArgument`].
pub fn check(response_format: Option<&ResponseFormat>, tools: &[Tool], tool_choice: &ToolChoice) -> Result<()> {
    let (callable, _) = tools::callable(tools, tool_choice)?;
    if callable.is_empty() {
        if let Some(ResponseFormat::JsonSchema { json_schema }) = response_format {
            schema::prepare(
                &json_schema.schema,
                json_schema.strict.unwrap_or(false),
                "response_format.json_schema.schema",
            )?;
        }
    }
    Ok(())
}

/// Resolve `response_format`, `tools` and `tool_choice` of a chat request for a model writing
/// calls in `format`. Errors ([`Error::InvalidArgument`] naming the field and schema path) come
/// before any generation. A tool call takes precedence over `response_format` (the call is JSON
/// already).
pub fn prepare(
    vocab: &Vocab,
    format: CallFormat,
    messages: &[crate::tokenizer::ChatMessage],
    response_format: Option<&ResponseFormat>,
    tools: &[Tool],
    tool_choice: &ToolChoice,
) -> Result<Prepared> {
    let (callable, required) = tools::callable(tools, tool_choice)?;
    if !callable.is_empty() {
        let grammar = format.grammar(&callable, required, |t| vocab.has_special(t));
        // A call that must be made is `tool_choice`'s doing (errors such as "cannot be written
        // by this model" name it); under `auto` the call is optional.
        let field = if required { "tool_choice" } else { "tools" };
        let constraint = Constraint::from_grammar(vocab, grammar, field)?;
        return Ok(Prepared {
            context: format.context(messages, &callable, required),
            constraint: Some(constraint),
            format,
            tools: callable.into_iter().cloned().collect(),
        });
    }
    let constraint = match response_format {
        Some(f) => Constraint::new(vocab, f, "response_format")?,
        None => None,
    };
    Ok(Prepared {
        context: format.context(messages, &[], false),
        constraint,
        format,
        tools: Vec::new(),
    })
}

/// Whether a request needs constrained decoding.
pub fn is_constrained(response_format: Option<&ResponseFormat>, tools: &[Tool], tool_choice: &ToolChoice) -> bool {
    let calls = !tools.is_empty() && *tool_choice != ToolChoice::Mode("none".into());
    calls || response_format.is_some_and(|f| *f != ResponseFormat::Text)
}

/// [`prepare`] for a chat request to the model of `tok` (`logits` outputs, end tokens `eos`),
/// with errors in this order: the request's own ([`check`]: INVALID_ARGUMENT naming the schema
/// path), then what the model cannot do ([`Vocab::new`]: UNSUPPORTED for this model), then
/// compiling the grammar. `vocab` caches the model's vocabulary (built at the first
/// constrained request). An unconstrained request gets the template context only.
#[allow(clippy::too_many_arguments)]
pub fn prepare_chat(
    tok: &crate::tokenizer::Tokenizer,
    logits: usize,
    eos: &[u32],
    vocab: &mut Option<Vocab>,
    messages: &[crate::tokenizer::ChatMessage],
    response_format: Option<&ResponseFormat>,
    tools: &[Tool],
    tool_choice: &ToolChoice,
) -> Result<Prepared> {
    check(response_format, tools, tool_choice)?;
    let format = CallFormat::of(tok);
    if !is_constrained(response_format, tools, tool_choice) {
        return Ok(Prepared {
            context: format.context(messages, &[], false),
            constraint: None,
            format,
            tools: Vec::new(),
        });
    }
    let v = match vocab {
        Some(v) => v.clone(),
        #[cfg(feature = "structured")]
        None => {
            let v = Vocab::new(tok, logits, eos)?;
            *vocab = Some(v.clone());
            v
        }
        // Without llguidance in this build the caller builds the vocabulary (the web core:
        // `Vocab::js` once the structured module is loaded).
        #[cfg(not(feature = "structured"))]
        None => {
            let _ = (logits, eos);
            return Err(Error::Internal(
                "constrained decoding: no vocabulary (the structured module was not loaded)".into(),
            ));
        }
    };
    prepare(&v, format, messages, response_format, tools, tool_choice)
}

impl Prepared {
    /// The prompt: the context rendered with `tok`'s chat template (with the assistant header)
    /// and tokenized.
    pub fn prompt(&self, tok: &crate::tokenizer::Tokenizer) -> Result<Vec<u32>> {
        let mut ctx = self.context.clone();
        ctx["add_generation_prompt"] = serde_json::Value::Bool(true);
        let text = tok.render_template(None, ctx)?;
        tok.encode(&text, false)
    }

    /// The outcome of generation `g`.
    pub fn finish(&mut self, g: &crate::generate::Generation) -> Outcome {
        use crate::generate::FinishReason;
        // The last token (sampled with max_tokens reached) was never fed for a next mask.
        let complete = self
            .constraint
            .as_mut()
            .is_none_or(|c| c.feed(&g.tokens).is_ok() && c.is_accepting());
        let tools: Vec<&Tool> = self.tools.iter().collect();
        if complete && !tools.is_empty() {
            if let Some(call) = self.format.parse_call(&g.text, &tools, 0) {
                return Outcome {
                    content: None,
                    tool_calls: vec![call],
                    finish_reason: "tool_calls",
                    incomplete: None,
                };
            }
        }
        let finish_reason = match g.finish {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "abort",
        };
        let incomplete = (!complete && g.finish != FinishReason::Cancelled).then(|| match g.finish {
            FinishReason::Length => format!(
                "the output ended after {} tokens, before the format was complete (raise max_tokens)",
                g.tokens.len()
            ),
            _ => format!(
                "a stop string or token ended the output after {} tokens, before the format was complete",
                g.tokens.len()
            ),
        });
        Outcome {
            content: Some(g.text.clone()),
            tool_calls: Vec::new(),
            finish_reason,
            incomplete,
        }
    }
}

/// [`crate::generate::generate`] under `constraint` (one step in flight: each mask needs the
/// previous token).
#[allow(clippy::too_many_arguments)]
pub async fn generate<M: crate::generate::CausalLm>(
    model: &mut M,
    gpu: &crate::gpu::Gpu,
    decode: impl FnMut(&[u32]) -> Result<String>,
    prompt: &[u32],
    opts: &crate::generate::GenerateOptions,
    cancel: &crate::generate::CancelToken,
    on_text: &mut dyn FnMut(&str),
    constraint: Option<&mut Constraint>,
) -> Result<crate::generate::Generation> {
    match constraint {
        None => crate::generate::generate(model, gpu, decode, prompt, opts, cancel, on_text).await,
        Some(c) => {
            let mut f = |t: &[u32]| c.mask(t);
            crate::generate::generate_masked(model, gpu, decode, prompt, opts, cancel, on_text, Some(&mut f)).await
        }
    }
}
