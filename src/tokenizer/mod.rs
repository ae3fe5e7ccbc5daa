//! Tokenizer and chat templates, wrapping well-kept crates (../shared/notes/tokenizers.md):
//! `tokenizers` (Hugging Face's own, pure-Rust regex build for wasm) for `tokenizer.json`, and
//! `minijinja` + `minijinja-contrib`'s Python compatibility for the Jinja chat templates.
//!
//! A model directory gives `tokenizer.json`, optionally `tokenizer_config.json` (special tokens;
//! the chat template in older directories, as a string or a list of named templates) and
//! `chat_template.jinja` (transformers 5).

use crate::error::{Error, Result};
use crate::load::ByteSource;
use minijinja::{Environment, ErrorKind};
use serde::Serialize;
use std::collections::BTreeMap;

/// Qwen2's pre-tokenizer split pattern (its tokenizer.json).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The name of the template used when none is asked for.
pub const DEFAULT_TEMPLATE: &str = "default";

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message.
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage { role: role.to_string(), content: content.to_string() }
    }
}

/// Special tokens named in `tokenizer_config.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SpecialTokens {
    /// Beginning of sequence.
    pub bos_token: Option<String>,
    /// End of sequence.
    pub eos_token: Option<String>,
    /// Padding.
    pub pad_token: Option<String>,
    /// Unknown.
    pub unk_token: Option<String>,
}

/// A tokenizer with its special tokens and chat templates.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialTokens,
    templates: BTreeMap<String, String>,
    env: Environment<'static>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("special", &self.special)
            .field("templates", &self.templates.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn tok_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(format!("{what}: {e}"))
}

/// A special token in tokenizer_config.json: a string or `{"content": "..."}` (AddedToken).
fn token_field(cfg: &serde_json::Value, key: &str) -> Option<String> {
    match cfg.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        v => v.get("content").and_then(|c| c.as_str()).map(str::to_string),
    }
}

/// Python's `json.dumps` separators (`", "`, `": "`), as HF's `tojson` filter writes them.
struct PyFormatter;

impl serde_json::ser::Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// HF's `tojson`: `json.dumps(x, ensure_ascii=False, indent=indent)` (no HTML escaping,
/// unlike minijinja's built-in filter).
fn tojson(value: minijinja::Value, indent: Option<usize>) -> std::result::Result<minijinja::Value, minijinja::Error> {
    let mut out = Vec::new();
    let r = match indent {
        Some(n) => {
            let pad = vec![b' '; n];
            let mut ser =
                serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::with_indent(&pad));
            value.serialize(&mut ser)
        }
        None => {
            let mut ser = serde_json::Serializer::with_formatter(&mut out, PyFormatter);
            value.serialize(&mut ser)
        }
    };
    r.map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let s = String::from_utf8(out).map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    Ok(minijinja::Value::from_safe_string(s))
}

fn template_env() -> Environment<'static> {
    // As transformers compiles templates: trim_blocks + lstrip_blocks, Python string methods.
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
        Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_filter("tojson", tojson);
    env
}

impl Tokenizer {
    /// Load `tokenizer.json`, `tokenizer_config.json` (optional) and `chat_template.jinja`
    /// (optional) from a model directory.
    pub async fn load<S: ByteSource>(source: &S) -> Result<Self> {
        let json = source.read_all("tokenizer.json").await?;
        let config = source.read_optional("tokenizer_config.json").await?;
        let template = source.read_optional("chat_template.jinja").await?;
        let template = match template {
            Some(t) => Some(String::from_utf8(t).map_err(|e| Error::BadModelFile {
                file: source.locate("chat_template.jinja"),
                detail: format!("not UTF-8: {e}"),
            })?),
            None => None,
        };
        Self::from_bytes(&json, config.as_deref(), template.as_deref())
    }

    /// Build from a GGUF header's `tokenizer.ggml.*` metadata and `tokenizer.chat_template`, as
    /// transformers' GGUF loader does: byte-level BPE (`gpt2` model) with the vocabulary and
    /// merges in file order, control tokens (type 3) as special added tokens, user-defined ones
    /// (type 4) as added tokens; the pre-tokenizer by `tokenizer.ggml.pre` (`qwen2`: Qwen's
    /// split regex + byte level; otherwise GPT-2's byte level). Other models (SentencePiece
    /// `llama`, WordPiece `bert`) are [`Error::Tokenizer`].
    pub fn from_gguf(header: &crate::gguf::GgufHeader) -> Result<Self> {
        let meta = header.tokenizer()?;
        if meta.model != "gpt2" {
            return Err(Error::Tokenizer(format!(
                "{}: tokenizer model '{}' is not supported from GGUF (only byte-level BPE, 'gpt2')",
                header.file, meta.model
            )));
        }
        let merges = meta.merges.ok_or_else(|| {
            Error::Tokenizer(format!("{}: a BPE tokenizer without 'tokenizer.ggml.merges'", header.file))
        })?;
        let mut vocab = serde_json::Map::with_capacity(meta.tokens.len());
        for (i, t) in meta.tokens.iter().enumerate() {
            vocab.insert(t.clone(), serde_json::Value::from(i));
        }
        let mut pairs = Vec::with_capacity(merges.len());
        for m in merges {
            let (a, b) = m.split_once(' ').ok_or_else(|| {
                Error::Tokenizer(format!("{}: merge '{m}' is not two tokens separated by a space", header.file))
            })?;
            pairs.push(serde_json::json!([a, b]));
        }
        let mut added = Vec::new();
        if let Some(types) = meta.token_type {
            for (i, (&ty, t)) in types.iter().zip(meta.tokens).enumerate() {
                if ty == 3 || ty == 4 {
                    added.push(serde_json::json!({
                        "id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                        "normalized": ty == 4, "special": ty == 3,
                    }));
                }
            }
        }
        let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
        let (normalizer, pre_tokenizer) = match meta.pre {
            Some("qwen2") => (
                serde_json::json!({"type": "NFC"}),
                serde_json::json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": false},
                    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
                ]}),
            ),
            _ => (serde_json::Value::Null, byte_level.clone()),
        };
        let json = serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": normalizer,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": pairs,
            },
        });
        let bytes = serde_json::to_vec(&json).map_err(|e| tok_err("building tokenizer.json from GGUF", e))?;
        drop(json);
        let token = |id: Option<u32>| id.and_then(|i| meta.tokens.get(i as usize)).cloned();
        let config = serde_json::json!({
            "bos_token": token(meta.bos),
            "eos_token": token(meta.eos),
            "pad_token": token(meta.padding),
            "unk_token": token(meta.unknown),
            "chat_template": meta.chat_template,
        });
        let config = serde_json::to_vec(&config).map_err(|e| tok_err("building tokenizer_config.json from GGUF", e))?;
        Self::from_bytes(&bytes, Some(&config), None)
    }

    /// Build from the files' contents. A fixed padding / truncation in `tokenizer.json` (MiniLM
    /// pads everything to 128) is switched off: callers pad per batch with a mask.
    pub fn from_bytes(
        tokenizer_json: &[u8],
        tokenizer_config: Option<&[u8]>,
        chat_template: Option<&str>,
    ) -> Result<Self> {
        let mut inner =
            tokenizers::Tokenizer::from_bytes(tokenizer_json).map_err(|e| tok_err("reading tokenizer.json", e))?;
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| tok_err("switching truncation off", e))?;

        let mut special = SpecialTokens::default();
        let mut templates = BTreeMap::new();
        if let Some(bytes) = tokenizer_config {
            let cfg: serde_json::Value = serde_json::from_slice(bytes)
                .map_err(|e| Error::BadModelFile { file: "tokenizer_config.json".into(), detail: e.to_string() })?;
            special.bos_token = token_field(&cfg, "bos_token");
            special.eos_token = token_field(&cfg, "eos_token");
            special.pad_token = token_field(&cfg, "pad_token");
            special.unk_token = token_field(&cfg, "unk_token");
            match cfg.get("chat_template") {
                Some(serde_json::Value::String(t)) => {
                    templates.insert(DEFAULT_TEMPLATE.to_string(), t.clone());
                }
                Some(serde_json::Value::Array(list)) => {
                    for item in list {
                        let name = item.get("name").and_then(|v| v.as_str());
                        let body = item.get("template").and_then(|v| v.as_str());
                        match (name, body) {
                            (Some(n), Some(b)) => {
                                templates.insert(n.to_string(), b.to_string());
                            }
                            _ => {
                                return Err(Error::BadModelFile {
                                    file: "tokenizer_config.json".into(),
                                    detail: "chat_template list entries need 'name' and 'template'".into(),
                                })
                            }
                        }
                    }
                }
                Some(serde_json::Value::Null) | None => {}
                Some(_) => {
                    return Err(Error::BadModelFile {
                        file: "tokenizer_config.json".into(),
                        detail: "chat_template is neither a string nor a list".into(),
                    })
                }
            }
        }
        // chat_template.jinja (transformers 5) wins over tokenizer_config.json's.
        if let Some(t) = chat_template {
            templates.insert(DEFAULT_TEMPLATE.to_string(), t.to_string());
        }
        let mut env = template_env();
        for (name, body) in &templates {
            env.add_template_owned(name.clone(), body.clone())
                .map_err(|e| tok_err(&format!("chat template '{name}' does not compile"), e))?;
        }
        Ok(Tokenizer { inner, special, templates, env })
    }

    /// Token ids of `text`. `add_special_tokens` applies the tokenizer's post-processor
    /// (`[CLS] … [SEP]` for BERT; nothing for SmolLM2).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, add_special_tokens).map_err(|e| tok_err("encode", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(|e| tok_err("decode", e))
    }

    /// The id of a token string (special tokens included).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token string of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The wrapped `tokenizers` tokenizer (the constrained-decoding vocabulary reads its
    /// decoder type and added tokens).
    pub(crate) fn hf(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Special tokens from `tokenizer_config.json`.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// The id of the end-of-sequence token, where it is known.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.special.eos_token.as_deref().and_then(|t| self.token_to_id(t))
    }

    /// The id of the beginning-of-sequence token, where it is known.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.special.bos_token.as_deref().and_then(|t| self.token_to_id(t))
    }

    /// Names of the chat templates (`default` first when present).
    pub fn template_names(&self) -> Vec<&str> {
        self.templates.keys().map(String::as_str).collect()
    }

    /// A chat template's source (`None`: the default one).
    pub fn chat_template(&self, name: Option<&str>) -> Option<&str> {
        self.templates.get(name.unwrap_or(DEFAULT_TEMPLATE)).map(String::as_str)
    }

    /// Render the default chat template with `messages`; `add_generation_prompt` appends the
    /// assistant header so the model answers next.
    pub fn apply_chat_template(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let ctx = serde_json::json!({ "messages": messages, "add_generation_prompt": add_generation_prompt });
        self.render_template(None, ctx)
    }

    /// Render and tokenize a chat as transformers does (`apply_chat_template(tokenize=True)`):
    /// the template writes the special tokens itself, so none are added when encoding.
    pub fn encode_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<Vec<u32>> {
        let text = self.apply_chat_template(messages, add_generation_prompt)?;
        self.encode(&text, false)
    }

    /// Render a named template (`None`: the default) with a JSON context (`messages`,
    /// `add_generation_prompt`, `tools`, ...). The special tokens (`bos_token`, `eos_token`, ...)
    /// are added to the context unless it sets them.
    pub fn render_template(&self, name: Option<&str>, context: serde_json::Value) -> Result<String> {
        let name = name.unwrap_or(DEFAULT_TEMPLATE);
        let template = self.env.get_template(name).map_err(|_| {
            Error::Tokenizer(format!(
                "no chat template '{name}' (this tokenizer has: {})",
                if self.templates.is_empty() { "none".to_string() } else { self.template_names().join(", ") }
            ))
        })?;
        let mut ctx = match context {
            serde_json::Value::Object(m) => m,
            _ => return Err(Error::Tokenizer("the template context must be a JSON object".into())),
        };
        let specials = [
            ("bos_token", &self.special.bos_token),
            ("eos_token", &self.special.eos_token),
            ("pad_token", &self.special.pad_token),
            ("unk_token", &self.special.unk_token),
        ];
        for (k, v) in specials {
            if let Some(v) = v {
                ctx.entry(k.to_string()).or_insert_with(|| serde_json::Value::String(v.clone()));
            }
        }
        ctx.entry("add_generation_prompt".to_string()).or_insert(serde_json::Value::Bool(false));
        template.render(ctx).map_err(|e| {
            let mut msg = format!("rendering chat template '{name}': {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            Error::Tokenizer(msg)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tojson_matches_python() {
        let v = minijinja::Value::from_serialize(serde_json::json!({"a": [1, "é<b>"], "b": null}));
        assert_eq!(tojson(v, None).unwrap().to_string(), r#"{"a": [1, "é<b>"], "b": null}"#);
    }
}
