//! Tokenizer and chat templates, wrapping well-kept crates (notes/loading.md, "Tokenizer"):
//! `tokenizers` (Hugging Face's own, pure-Rust regex build for wasm) for `tokenizer.json`, and
//! `minijinja` + `minijinja-contrib`'s Python compatibility for the Jinja chat templates.
//!
//! A model directory gives `tokenizer.json`, optionally `tokenizer_config.json` (special tokens;
//! the chat template in older directories, as a string or a list of named templates) and
//! `chat_template.jinja` (transformers 5).

mod bounded;

use crate::error::{Error, Result};
use crate::load::ByteSource;
use minijinja::{Environment, ErrorKind};
use serde::Serialize;
use std::collections::BTreeMap;

mod spm;
pub use spm::merges_from_scores;

/// Qwen2's pre-tokenizer split pattern (its tokenizer.json).
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The name of the template used when none is asked for.
pub const DEFAULT_TEMPLATE: &str = "default";

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text (empty for an assistant message that only calls tools).
    pub content: String,
    /// The tool calls of an assistant message (OpenAI's shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<crate::structured::ToolCall>>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A message.
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage {
            role: role.to_string(),
            content: content.to_string(),
            tool_calls: None,
            tool_call_id: None,
        }
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
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.add_filter("tojson", tojson);
    env.set_fuel(Some(TEMPLATE_FUEL));
    bounded::install(&mut env);
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
    /// split regex + byte level; otherwise GPT-2's byte level). SentencePiece BPE (`llama`
    /// model: Gemma, Llama 2) is built by `spm::from_gguf`. Other models (WordPiece `bert`,
    /// Unigram...) are [`Error::Tokenizer`].
    pub fn from_gguf(header: &crate::gguf::GgufHeader) -> Result<Self> {
        let meta = header.tokenizer()?;
        if meta.model == "llama" {
            return spm::from_gguf(header, &meta);
        }
        if meta.model != "gpt2" {
            return Err(Error::Tokenizer(format!(
                "{}: tokenizer model '{}' is not supported from GGUF (only 'gpt2' and 'llama')",
                header.file, meta.model
            )));
        }
        let merges = meta.merges.ok_or_else(|| {
            Error::Tokenizer(format!(
                "{}: a BPE tokenizer without 'tokenizer.ggml.merges'",
                header.file
            ))
        })?;
        let mut vocab = serde_json::Map::with_capacity(meta.tokens.len());
        for (i, t) in meta.tokens.iter().enumerate() {
            vocab.insert(t.clone(), serde_json::Value::from(i));
        }
        let mut pairs = Vec::with_capacity(merges.len());
        for m in merges {
            let (a, b) = m.split_once(' ').ok_or_else(|| {
                Error::Tokenizer(format!(
                    "{}: merge '{m}' is not two tokens separated by a space",
                    header.file
                ))
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
        check_tokenizer_json(tokenizer_json)?;
        let mut inner =
            tokenizers::Tokenizer::from_bytes(tokenizer_json).map_err(|e| tok_err("reading tokenizer.json", e))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| tok_err("switching truncation off", e))?;

        let mut special = SpecialTokens::default();
        let mut templates = BTreeMap::new();
        if let Some(bytes) = tokenizer_config {
            let cfg: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| Error::BadModelFile {
                file: "tokenizer_config.json".into(),
                detail: e.to_string(),
            })?;
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
            if body.len() > MAX_FILE_BYTES {
                return Err(tok_err(
                    &format!("chat template '{name}'"),
                    format!("{} bytes is over the {MAX_FILE_BYTES}-byte limit", body.len()),
                ));
            }
            env.add_template_owned(name.clone(), body.clone())
                .map_err(|e| tok_err(&format!("chat template '{name}' does not compile"), e))?;
        }
        Ok(Tokenizer {
            inner,
            special,
            templates,
            env,
        })
    }

    /// Token ids of `text`. `add_special_tokens` applies the tokenizer's post-processor
    /// (`[CLS] … [SEP]` for BERT; nothing for SmolLM2).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| tok_err("encode", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids and token type ids of a sentence pair with special tokens (`[CLS] a [SEP] b
    /// [SEP]`, types 0 … 0 1 … 1 for BERT): the input of a cross-encoder.
    pub fn encode_pair(&self, a: &str, b: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let enc = self.inner.encode((a, b), true).map_err(|e| tok_err("encode pair", e))?;
        Ok((enc.get_ids().to_vec(), enc.get_type_ids().to_vec()))
    }

    /// Text of `ids`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| tok_err("decode", e))
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
        self.env.get_template(name).map_err(|_| {
            Error::Tokenizer(format!(
                "no chat template '{name}' (this tokenizer has: {})",
                if self.templates.is_empty() {
                    "none".to_string()
                } else {
                    self.template_names().join(", ")
                }
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
                ctx.entry(k.to_string())
                    .or_insert_with(|| serde_json::Value::String(v.clone()));
            }
        }
        ctx.entry("add_generation_prompt".to_string())
            .or_insert(serde_json::Value::Bool(false));
        // Values, emitted bytes and the output bounded (bounded.rs): a template that doubles
        // strings or lists fails with a typed error instead of exhausting memory.
        let out = bounded::render(&self.env, name, minijinja::Value::from_serialize(&ctx)).map_err(|e| {
            let mut msg = format!("rendering chat template '{name}': {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            Error::Tokenizer(msg)
        })?;
        if out.len() > MAX_RENDER_BYTES {
            return Err(Error::Tokenizer(format!(
                "rendering chat template '{name}': the output is over the {MAX_RENDER_BYTES}-byte limit"
            )));
        }
        Ok(out)
    }
}

/// GPT-2's byte-level table: the printable character that stands for byte `b` (index) in the
/// token strings of byte-level BPE vocabularies (SmolLM2, Qwen, Llama 3). Printable Latin-1 bytes
/// stand for themselves, the others for U+0100, U+0101, … in byte order.
pub fn byte_level_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut k = 0x100u32;
    for (b, slot) in (0u8..=255).zip(table.iter_mut()) {
        let c = char::from(b);
        *slot = if matches!(c, '!'..='~' | '\u{A1}'..='\u{AC}' | '\u{AE}'..='\u{FF}') {
            c
        } else {
            k += 1;
            char::from_u32(k - 1).unwrap_or(c)
        };
    }
    table
}

/// Bytes a rendered chat template may have (a prompt is far smaller; a template that loops
/// forever or doubles strings stops here).
pub const MAX_RENDER_BYTES: usize = 4 << 20;

/// Template instructions one render may execute (minijinja fuel): nested `range` loops end here.
pub const TEMPLATE_FUEL: u64 = 20_000_000;

/// Bytes a tokenizer / template file may have.
pub const MAX_FILE_BYTES: usize = crate::load::source::MAX_SMALL_FILE_BYTES as usize;

/// Check the parts of a `tokenizer.json` that make `tokenizers` 0.23 panic instead of returning
/// an error (a hostile or broken file must not crash the page): BPE merges whose joined pieces
/// are longer than every vocabulary entry or shorter than the continuing-subword prefix,
/// `FixedLength` pre-tokenizers of length 0, `TemplateProcessing` post-processors that name
/// special tokens they do not define (or the second sequence in the single template).
pub fn check_tokenizer_json(bytes: &[u8]) -> Result<()> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(tok_err(
            "tokenizer.json",
            format!("{} bytes is over the {MAX_FILE_BYTES}-byte limit", bytes.len()),
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| tok_err("reading tokenizer.json", e))?;
    check_tokenizer_value(&v)
}

fn check_tokenizer_value(v: &serde_json::Value) -> Result<()> {
    let bad = |what: String| Err(Error::Tokenizer(format!("tokenizer.json: {what}")));
    if let Some(model) = v.get("model") {
        if model.get("type").and_then(|t| t.as_str()) == Some("BPE") || model.get("merges").is_some() {
            check_bpe(model)?;
        }
    }
    // Walk every object (pre-tokenizers and post-processors nest in `Sequence`s).
    let mut stack = vec![v];
    while let Some(node) = stack.pop() {
        match node {
            serde_json::Value::Array(a) => stack.extend(a.iter()),
            serde_json::Value::Object(o) => {
                match o.get("type").and_then(|t| t.as_str()) {
                    Some("FixedLength") if o.get("length").is_some_and(|l| l.as_u64() == Some(0)) => {
                        return bad("a FixedLength pre-tokenizer of length 0".into());
                    }
                    // `tokenizers` reads post-processors as an untagged enum: an object shaped like
                    // a TemplateProcessing is one whatever its `type` says.
                    Some("TemplateProcessing") => check_template_processing(o)?,
                    _ if ["single", "pair", "special_tokens"].iter().any(|k| o.contains_key(*k)) => {
                        check_template_processing(o)?
                    }
                    _ => {}
                }
                stack.extend(o.values());
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_bpe(model: &serde_json::Value) -> Result<()> {
    let bad = |what: String| Err(Error::Tokenizer(format!("tokenizer.json: BPE model: {what}")));
    let Some(vocab) = model.get("vocab").and_then(|v| v.as_object()) else {
        return Ok(());
    };
    let max_len = vocab.keys().map(String::len).max().unwrap_or(0);
    let prefix = model
        .get("continuing_subword_prefix")
        .and_then(|p| p.as_str())
        .unwrap_or("");
    let Some(merges) = model.get("merges").and_then(|m| m.as_array()) else {
        return Ok(());
    };
    for (i, m) in merges.iter().enumerate() {
        let (a, b) = match m {
            serde_json::Value::String(s) => match s.split_once(' ') {
                Some(p) => p,
                None => continue, // tokenizers reports this itself
            },
            serde_json::Value::Array(p) => {
                match (p.first().and_then(|x| x.as_str()), p.get(1).and_then(|x| x.as_str())) {
                    (Some(a), Some(b)) => (a, b),
                    _ => continue,
                }
            }
            _ => continue,
        };
        if !vocab.contains_key(a) || !vocab.contains_key(b) {
            continue; // MergeTokenOutOfVocabulary, an error
        }
        if !b.starts_with(prefix) {
            return bad(format!(
                "merge {i} ('{a}' '{b}'): the second part does not start with the continuing-subword prefix '{prefix}'"
            ));
        }
        if a.len() + b.len() - prefix.len() > max_len {
            return bad(format!("merge {i} ('{a}' '{b}') is longer than every vocabulary entry"));
        }
    }
    Ok(())
}

fn check_template_processing(o: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
    let bad = |what: String| Err(Error::Tokenizer(format!("tokenizer.json: TemplateProcessing: {what}")));
    let specials = o.get("special_tokens").and_then(|s| s.as_object());
    if let Some(specials) = specials {
        for (k, t) in specials {
            let ids = t.get("ids").and_then(|x| x.as_array()).map_or(0, Vec::len);
            let tokens = t.get("tokens").and_then(|x| x.as_array()).map_or(0, Vec::len);
            if ids != tokens {
                return bad(format!("special token '{k}' has {ids} ids but {tokens} tokens"));
            }
        }
    }
    for which in ["single", "pair"] {
        let Some(pieces) = o.get(which).and_then(|p| p.as_array()) else {
            continue;
        };
        for p in pieces {
            if let Some(id) = p.get("SpecialToken").and_then(|s| s.get("id")).and_then(|i| i.as_str()) {
                if !specials.is_some_and(|s| s.contains_key(id)) {
                    return bad(format!(
                        "the {which} template uses special token '{id}', which is not defined"
                    ));
                }
            }
            if which == "single" {
                if let Some(seq) = p.get("Sequence").and_then(|s| s.get("id")).and_then(|i| i.as_str()) {
                    if seq != "A" {
                        return bad(format!("the single template uses sequence {seq}"));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bpe(vocab: &str, merges: &str, prefix: &str, extra: &str) -> String {
        format!(
            r#"{{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
            "pre_tokenizer":null,"post_processor":null,"decoder":null{extra},
            "model":{{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":"{prefix}",
            "end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,
            "vocab":{vocab},"merges":{merges}}}}}"#
        )
    }

    fn refused(json: &str, want: &str) {
        match Tokenizer::from_bytes(json.as_bytes(), None, None) {
            Err(Error::Tokenizer(m)) => assert!(m.contains(want), "{m}"),
            other => panic!("expected a tokenizer error containing '{want}', got {other:?}"),
        }
    }

    #[test]
    fn panicking_tokenizer_files_are_refused() {
        // Valid: the merge joins to a vocabulary entry.
        let ok = bpe(r#"{"a":0,"b":1,"ab":2}"#, r#"[["a","b"]]"#, "", "");
        assert!(Tokenizer::from_bytes(ok.as_bytes(), None, None).is_ok());
        // A merge longer than every vocabulary entry (tokenizers 0.23 indexes past its buffer).
        refused(
            &bpe(r#"{"aa":0,"bb":1}"#, r#"[["aa","bb"]]"#, "", ""),
            "longer than every vocabulary entry",
        );
        refused(
            &bpe(r#"{"aa":0,"bb":1}"#, r#"["aa bb"]"#, "", ""),
            "longer than every vocabulary entry",
        );
        // A second part shorter than the continuing-subword prefix (subtraction underflow).
        refused(
            &bpe(r#"{"a":0,"b":1,"ab":2}"#, r#"[["a","b"]]"#, "##", ""),
            "continuing-subword prefix",
        );
        // FixedLength of 0 (chunks(0)).
        let pre = r#","pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"FixedLength","length":0}]}"#;
        let json = bpe(r#"{"a":0}"#, "[]", "", "").replace(r#""pre_tokenizer":null,"#, "");
        refused(
            &json.replacen("\"decoder\":null", &format!("\"decoder\":null{pre}"), 1),
            "FixedLength",
        );
        // TemplateProcessing naming an undefined special token, or $B in the single template.
        let tp = |single: &str| {
            format!(
                r#","post_processor":{{"type":"TemplateProcessing","single":{single},"pair":[{{"Sequence":{{"id":"A","type_id":0}}}},{{"Sequence":{{"id":"B","type_id":1}}}}],"special_tokens":{{}}}}"#
            )
        };
        let base = bpe(r#"{"a":0}"#, "[]", "", "").replace(r#""post_processor":null,"#, "");
        let with = |pp: String| base.replacen("\"decoder\":null", &format!("\"decoder\":null{pp}"), 1);
        refused(
            &with(tp(
                r#"[{"SpecialToken":{"id":"[CLS]","type_id":0}},{"Sequence":{"id":"A","type_id":0}}]"#,
            )),
            "[CLS]",
        );
        refused(&with(tp(r#"[{"Sequence":{"id":"B","type_id":0}}]"#)), "sequence B");
        // Found by the tokenizer fuzz target: `tokenizers` reads post-processors untagged, so a
        // misspelled type still makes a TemplateProcessing (which panicked at encode).
        let misspelled = tp(r#"[{"SpecialToken":{"id":"[CLS]","type_id":0}},{"Sequence":{"id":"A","type_id":0}}]"#)
            .replace("TemplateProcessing", "TemplateProc'ssing");
        refused(&with(misspelled), "[CLS]");
        let fine = with(tp(r#"[{"Sequence":{"id":"A","type_id":0}}]"#));
        let t = Tokenizer::from_bytes(fine.as_bytes(), None, None).unwrap();
        assert_eq!(t.encode("a", true).unwrap(), [0]);
    }

    fn with_template(template: &str) -> Tokenizer {
        let json = bpe(r#"{"a":0}"#, "[]", "", "");
        Tokenizer::from_bytes(json.as_bytes(), None, Some(template)).unwrap()
    }

    #[test]
    fn endless_templates_stop() {
        let t = with_template("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x");
        let e = t
            .apply_chat_template(&[ChatMessage::new("user", "hi")], true)
            .unwrap_err();
        assert!(e.to_string().contains("fuel"), "{e}");
        let t = with_template("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}");
        let e = t
            .apply_chat_template(&[ChatMessage::new("user", "hi")], true)
            .unwrap_err();
        assert!(e.to_string().contains("limit"), "{e}");
        let t = with_template("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}");
        assert_eq!(
            t.apply_chat_template(&[ChatMessage::new("user", "hi")], false).unwrap(),
            "<user>hi"
        );
    }

    /// Templates that double a value every step (2^40 bytes after a few hundred instructions,
    /// far below the fuel) stop with a typed error naming the limit, not by exhausting memory.
    #[test]
    fn doubling_templates_stop() {
        let cases = [
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
            "{% set ns = namespace(s='xx') %}{% for i in range(64) %}{% set ns.s = ns.s * 2 %}{% endfor %}",
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = [ns.s, ns.s]|join %}{% endfor %}",
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s|replace('x', 'xx') %}{% endfor %}",
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s.replace('x', 'xx') %}{% endfor %}",
            "{% set ns = namespace(l=['x']) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|join }}",
            "{% set ns = namespace(s='x' * 1000000) %}{% set ns.l = [ns.s] %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
            "{% macro d(s, n) %}{% if n > 0 %}{{ d(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}{% endmacro %}{{ d('x', 64) }}",
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set t %}{{ ns.s }}{{ ns.s }}{% endset %}{% set ns.s = t %}{% endfor %}",
            "{{ 'a\nb'|indent(100000000000) }}",
            "{{ '%100000000000s'|format('x') }}",
        ];
        for template in cases {
            let t = with_template(template);
            let e = t
                .apply_chat_template(&[ChatMessage::new("user", "hi")], true)
                .unwrap_err();
            assert!(matches!(e, Error::Tokenizer(_)), "{template}: {e}");
            assert!(e.to_string().contains("limit"), "{template}: {e}");
        }
        // Includes would run another template unchecked.
        let t = with_template("{% include 'default' %}");
        assert!(t.apply_chat_template(&[ChatMessage::new("user", "hi")], true).is_err());
        // Ordinary templates: macros, loops, namespaces, filters and methods still work.
        let t = with_template(concat!(
            "{% macro r(m) %}<{{ m.role|upper }}>{{ m.content.replace('h', 'H') }}{% endmacro %}",
            "{% set ns = namespace(n=0, parts=[]) %}",
            "{% for m in messages %}{% set ns.n = ns.n + 1 %}{% set ns.parts = ns.parts + [r(m)] %}{% endfor %}",
            "{{ ns.parts|join('|') }}/{{ ns.n }}{% if add_generation_prompt %}{{ '%s!'|format('go') }}{% endif %}",
        ));
        let msgs = [ChatMessage::new("user", "hi"), ChatMessage::new("assistant", "oh")];
        assert_eq!(
            t.apply_chat_template(&msgs, true).unwrap(),
            "<USER>Hi|<ASSISTANT>oH/2go!"
        );
    }

    #[test]
    fn tojson_matches_python() {
        let v = minijinja::Value::from_serialize(serde_json::json!({"a": [1, "é<b>"], "b": null}));
        assert_eq!(tojson(v, None).unwrap().to_string(), r#"{"a": [1, "é<b>"], "b": null}"#);
    }
}
