//! The llguidance backend (feature `structured`): a parser factory over the token trie of one
//! [`TokenBytes`], and [`Guided`], the [`TokenConstraint`] of one generation.
//!
//! Two token environments: [`TokEnvHf`] tokenizes with the model's own tokenizer (native builds,
//! tests, the browser tests); [`TokEnvGreedy`] tokenizes greedily over the trie (the web's
//! structured module, which never sees the tokenizer: keeping `tokenizers` out of it). llguidance
//! only tokenizes for forced tokens and prompt healing, which the decode loop does not use.

use super::{GrammarSpec, TokenBytes, TokenConstraint};
use crate::error::{Error, Result};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use std::sync::Arc;

fn invalid(field: &str, detail: impl Into<String>) -> Error {
    Error::InvalidArgument {
        field: field.to_string(),
        detail: detail.into(),
    }
}

/// The token trie with the model's tokenizer.
struct TokEnvHf {
    trie: TokTrie,
    tok: tokenizers::Tokenizer,
}

impl TokenizerEnv for TokEnvHf {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        let text = String::from_utf8_lossy(s);
        self.tok
            .encode_fast(text.as_ref(), false)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default()
    }
}

/// The token trie alone (greedy tokenization).
struct TokEnvGreedy {
    trie: TokTrie,
}

impl TokenizerEnv for TokEnvGreedy {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.greedy_tokenize(s)
    }
}

fn trie(tokens: &TokenBytes) -> TokTrie {
    let mut info = TokRxInfo::new(tokens.vocab_size, tokens.eos);
    info.tok_bos = tokens.bos;
    TokTrie::from(&info, &tokens.bytes)
}

/// The grammar of `spec` for llguidance.
fn grammar(spec: &GrammarSpec) -> TopLevelGrammar {
    match spec {
        GrammarSpec::JsonSchema(s) => TopLevelGrammar::from_json_schema(s.clone()),
        GrammarSpec::Regex(r) => TopLevelGrammar::from_regex(r),
        GrammarSpec::Lark(g) => TopLevelGrammar::from_lark(g.clone()),
    }
}

/// The offset of the first byte of `forced` (bytes a grammar forces; a special token as
/// `\xff<name>` or `\xff[id]`) that no token of `trie` can write, taking the longest token at
/// each offset as llguidance does when it forces bytes; `None` when every byte is written (a
/// tail that begins a longer token is left to the next masks).
fn unwritable_at(trie: &TokTrie, forced: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < forced.len() {
        if forced[i] == TokTrie::SPECIAL_TOKEN_MARKER {
            // A special token the grammar names (it compiled, so the token exists).
            let close = match forced.get(i + 1) {
                Some(b'<') => b'>',
                Some(b'[') => b']',
                _ => return Some(i),
            };
            match forced[i + 1..].iter().position(|&b| b == close) {
                Some(p) => i += p + 2,
                None => return None,
            }
            continue;
        }
        let mut node = trie.root();
        let (mut j, mut longest) = (i, 0);
        while let Some(n) = forced.get(j).and_then(|&b| trie.child_at_byte(node, b)) {
            node = n;
            j += 1;
            if n.token_id().is_some() {
                longest = j - i;
            }
        }
        if longest == 0 {
            return (j < forced.len()).then_some(i);
        }
        i += longest;
    }
    None
}

/// Why `forced` cannot be written from byte `at` on ([`unwritable_at`]), for an
/// [`Error::InvalidArgument`].
fn unwritable_detail(trie: &TokTrie, forced: &[u8], at: usize) -> String {
    // The forced text as the model would write it (special tokens by their text).
    let mut text = Vec::new();
    let mut i = 0;
    while i < forced.len() {
        if forced[i] == TokTrie::SPECIAL_TOKEN_MARKER {
            let id = forced.get(i + 1..).and_then(llguidance::toktrie::parse_numeric_token);
            match id {
                Some((n, id)) => {
                    let t = trie.token(id);
                    text.extend_from_slice(t.strip_prefix(&[TokTrie::SPECIAL_TOKEN_MARKER]).unwrap_or(t));
                    i += n + 1;
                }
                None => i += 1,
            }
            continue;
        }
        text.push(forced[i]);
        i += 1;
    }
    let full = String::from_utf8_lossy(&text);
    let mut shown: String = full
        .chars()
        .take(48)
        .map(|c| match c {
            '\n' => "\\n".to_string(),
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect();
    if full.chars().count() > 48 {
        shown.push('…');
    }
    let b = forced[at];
    let byte = if b.is_ascii_graphic() || b == b' ' {
        format!("'{}'", b as char)
    } else {
        format!("byte 0x{b:02x}")
    };
    let why = if trie.child_at_byte(trie.root(), b).is_none() {
        format!("the model's vocabulary has no token starting with {byte}")
    } else {
        format!("no token of the model's vocabulary writes the {byte} at offset {at} of it")
    };
    format!("cannot be written by this model: its output must start with `{shown}`, but {why}")
}

/// llguidance's parser factory over one vocabulary.
pub(crate) struct Factory {
    factory: ParserFactory,
    words: usize,
}

impl Factory {
    fn from_env(env: TokEnv, words: usize) -> Result<Self> {
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| Error::Internal(format!("llguidance: {e}")))?;
        factory.quiet();
        Ok(Factory { factory, words })
    }

    /// Over `tokens`, tokenizing with `tok`.
    pub(crate) fn with_tokenizer(tokens: &TokenBytes, tok: tokenizers::Tokenizer) -> Result<Self> {
        let env: TokEnv = Arc::new(TokEnvHf {
            trie: trie(tokens),
            tok,
        });
        Self::from_env(env, tokens.words)
    }

    /// Over `tokens` alone (greedy tokenization).
    #[cfg_attr(not(all(target_arch = "wasm32", feature = "structured-module")), allow(dead_code))]
    pub(crate) fn greedy(tokens: &TokenBytes) -> Result<Self> {
        let env: TokEnv = Arc::new(TokEnvGreedy { trie: trie(tokens) });
        Self::from_env(env, tokens.words)
    }

    /// The constraint of `spec` (`what` names it in errors): compiled, the text it forces at the
    /// start checked against the vocabulary ("cannot be written by this model", e.g. a JSON
    /// object for a vocabulary without a token starting with `{`), and its first mask computed
    /// (an empty one: "allows no output"). All are [`Error::InvalidArgument`].
    pub(crate) fn constraint(&self, spec: &GrammarSpec, what: &str) -> Result<Guided> {
        let parser = self
            .factory
            .create_parser(grammar(spec))
            .map_err(|e| invalid(what, format!("cannot be compiled: {e}")))?;
        let mut matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(invalid(what, format!("cannot be compiled: {e}")));
        }
        // What the grammar forces at the start must be writable with the vocabulary: llguidance
        // forces those bytes as tokens, skipping any byte no token writes (then the first mask
        // allows what follows it and the first token fails), so refuse here, before any token.
        let forced = matcher.compute_ff_bytes();
        let trie = self.factory.tok_env().tok_trie();
        if let Some(at) = unwritable_at(trie, &forced) {
            return Err(invalid(what, unwritable_detail(trie, &forced, at)));
        }
        // Nothing allowed at the start: the grammar is empty or unsatisfiable with this
        // vocabulary (llguidance's error then starts with its stop reason, NoExtensionBias,
        // followed by a dump of the parser state, which is no help to a caller).
        let first = match matcher.compute_mask() {
            Err(e) if e.to_string().starts_with("NoExtensionBias") => None,
            Err(e) => {
                let e = e.to_string();
                let e = e.split("\n<state>").next().unwrap_or_default();
                return Err(invalid(what, format!("cannot be compiled: {e}")));
            }
            Ok(m) => Some(m),
        };
        if first.is_none_or(|m| m.is_zero()) {
            return Err(invalid(
                what,
                "allows no output: no token of the model's vocabulary can start it",
            ));
        }
        Ok(Guided {
            matcher,
            fed: 0,
            words: self.words,
            mask_ms: 0.0,
            steps: 0,
        })
    }

    /// Whether llguidance's trie has `name` as one special token (tests: the same answer as
    /// [`TokenBytes::has_special`]).
    #[cfg(test)]
    pub(crate) fn factory_trie_has_special(&self, name: &str) -> bool {
        self.factory.tok_env().tok_trie().get_special_token(name).is_some()
    }

    /// Whether a fresh constraint of `spec` accepts `text` as a whole output (re-tokenised).
    pub(crate) fn accepts_text(&self, spec: &GrammarSpec, text: &str) -> Result<bool> {
        let mut g = self.constraint(spec, "format")?;
        let ids = self.factory.tok_env().tokenize_bytes(text.as_bytes());
        let n = g
            .matcher
            .validate_tokens(&ids)
            .map_err(|e| Error::Internal(format!("llguidance: {e}")))?;
        if n < ids.len() {
            return Ok(false);
        }
        g.matcher
            .consume_tokens(&ids)
            .map_err(|e| Error::Internal(format!("llguidance: {e}")))?;
        Ok(g.is_accepting())
    }
}

/// One generation's llguidance matcher.
pub(crate) struct Guided {
    matcher: Matcher,
    fed: usize,
    words: usize,
    mask_ms: f64,
    steps: usize,
}

impl TokenConstraint for Guided {
    fn mask(&mut self, tokens: &[u32]) -> Result<Vec<u32>> {
        let t0 = llguidance::Instant::now();
        self.feed(tokens)?;
        let m = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| Error::Internal(format!("constrained decoding: {e}")))?;
        let mut words = m.as_slice().to_vec();
        words.resize(self.words, 0);
        self.mask_ms += t0.elapsed().as_secs_f64() * 1e3;
        self.steps += 1;
        Ok(words)
    }

    fn feed(&mut self, tokens: &[u32]) -> Result<()> {
        for &t in tokens.get(self.fed..).unwrap_or_default() {
            self.matcher.consume_token(t).map_err(|e| {
                Error::Internal(format!(
                    "constrained decoding: token {t} was sampled outside the mask: {e}"
                ))
            })?;
        }
        self.fed = tokens.len().max(self.fed);
        Ok(())
    }

    fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false) || self.matcher.is_stopped() && !self.matcher.is_error()
    }

    fn mask_time(&self) -> (f64, usize) {
        (self.mask_ms, self.steps)
    }
}
