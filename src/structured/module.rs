//! The web package's structured module (wasm32, feature `structured-module`): this crate built a
//! second time exporting only these two classes (scripts/build_pkg.sh: `kjarni_structured.js` +
//! `kjarni_structured_bg.wasm`), so that the core wasm ships without llguidance and the JS layer
//! loads this on the first constrained request. `js.rs` is its caller in the core. Errors are JS
//! `Error`s with `code`; `INVALID_ARGUMENT` ones carry `field` and `detail` too.

use super::guidance::{Factory, Guided};
use super::{GrammarSpec, TokenBytes, TokenConstraint};
use crate::error::Error;
use wasm_bindgen::prelude::*;

fn js_error(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    err.set_name("KjarniError");
    let set = |k: &str, v: &str| {
        let _ = js_sys::Reflect::set(&err, &JsValue::from_str(k), &JsValue::from_str(v));
    };
    set("code", e.code());
    if let Error::InvalidArgument { field, detail } = &e {
        set("field", field);
        set("detail", detail);
    }
    err.into()
}

/// llguidance's parser factory over one model's token bytes.
#[wasm_bindgen]
pub struct StructuredVocab {
    factory: Factory,
}

#[wasm_bindgen]
impl StructuredVocab {
    /// The vocabulary of the bytes `flat` (token `i`: `flat[ends[i - 1]..ends[i]]`; special tokens
    /// start with 0xff) with `vocabSize` ids, end token `eos`, start token `bos` and masks of
    /// `words` words.
    #[wasm_bindgen(constructor)]
    pub fn new(
        flat: &[u8],
        ends: &[u32],
        vocab_size: u32,
        eos: u32,
        bos: Option<u32>,
        words: u32,
    ) -> Result<StructuredVocab, JsValue> {
        let tokens = TokenBytes::from_flat(flat, ends, vocab_size, eos, bos, words as usize).map_err(js_error)?;
        let factory = Factory::greedy(&tokens).map_err(js_error)?;
        Ok(StructuredVocab { factory })
    }

    /// The constraint of a grammar (`spec`: the JSON of a `GrammarSpec`; errors name `what`).
    pub fn constraint(&self, spec: &str, what: &str) -> Result<StructuredConstraint, JsValue> {
        let spec: GrammarSpec =
            serde_json::from_str(spec).map_err(|e| js_error(Error::Internal(format!("grammar spec: {e}"))))?;
        let g = self.factory.constraint(&spec, what).map_err(js_error)?;
        Ok(StructuredConstraint { g })
    }
}

/// One generation's grammar state.
#[wasm_bindgen]
pub struct StructuredConstraint {
    g: Guided,
}

#[wasm_bindgen]
impl StructuredConstraint {
    /// The mask of the next token after `tokens` (the generation so far).
    pub fn mask(&mut self, tokens: &[u32]) -> Result<Vec<u32>, JsValue> {
        self.g.mask(tokens).map_err(js_error)
    }

    /// Feed the tokens of `tokens` (the generation so far) not fed yet.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<(), JsValue> {
        self.g.feed(tokens).map_err(js_error)
    }

    /// Whether the output so far is complete.
    #[wasm_bindgen(js_name = isAccepting)]
    pub fn is_accepting(&mut self) -> bool {
        self.g.is_accepting()
    }
}
