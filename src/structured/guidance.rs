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

    /// The constraint of `spec` (`what` names it in errors): compiled, and its first mask
    /// computed (an empty one: "allows no output").
    pub(crate) fn constraint(&self, spec: &GrammarSpec, what: &str) -> Result<Guided> {
        let parser = self
            .factory
            .create_parser(grammar(spec))
            .map_err(|e| invalid(what, format!("cannot be compiled: {e}")))?;
        let mut matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(invalid(what, format!("cannot be compiled: {e}")));
        }
        // Nothing allowed at the start: the grammar is empty or unsatisfiable.
        let first = matcher
            .compute_mask()
            .map_err(|e| invalid(what, format!("cannot be compiled: {e}")))?;
        if first.is_zero() {
            return Err(invalid(what, "allows no output"));
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
