//! The web core's constraint backend (wasm32 without feature `structured`): the structured
//! module (`module.rs`, built as a second wasm by scripts/build_pkg.sh and loaded by the JS layer
//! on the first constrained request) called through JS. Its classes are looked up on the
//! module's namespace object: `new StructuredVocab(bytes, ends, vocabSize, eos, bos, words)`,
//! `vocab.constraint(specJson, what)`, `c.mask(tokens)`, `c.feed(tokens)`, `c.isAccepting()`,
//! `free()`. Its errors are JS `Error`s with `code` (`INVALID_ARGUMENT` with `field` and
//! `detail`: mapped back to [`Error::InvalidArgument`]; anything else is INTERNAL).

use super::{GrammarSpec, TokenBytes, TokenConstraint};
use crate::error::{Error, Result};
use wasm_bindgen::{JsCast, JsValue};

/// The module's error as a crate error.
fn from_js(e: JsValue) -> Error {
    let prop = |k: &str| {
        js_sys::Reflect::get(&e, &JsValue::from_str(k))
            .ok()
            .and_then(|v| v.as_string())
    };
    match (prop("code").as_deref(), prop("field"), prop("detail")) {
        (Some("INVALID_ARGUMENT"), Some(field), Some(detail)) => Error::InvalidArgument { field, detail },
        _ => {
            let message = prop("message")
                .or_else(|| e.as_string())
                .unwrap_or_else(|| format!("{e:?}"));
            Error::Internal(format!("constrained decoding module: {message}"))
        }
    }
}

/// `obj[name](...args)`.
fn call(obj: &JsValue, name: &str, args: &[JsValue]) -> Result<JsValue> {
    let f = js_sys::Reflect::get(obj, &JsValue::from_str(name))
        .map_err(from_js)?
        .dyn_into::<js_sys::Function>()
        .map_err(|_| Error::Internal(format!("constrained decoding module: no method {name}")))?;
    let args: js_sys::Array = args.iter().collect();
    f.apply(obj, &args).map_err(from_js)
}

/// A `StructuredVocab` of the module (freed when the last clone is dropped).
#[derive(Clone)]
pub(crate) struct JsVocab {
    obj: std::rc::Rc<Handle>,
    words: usize,
}

/// A JS object of the module, freed on drop (its memory lives in the module's wasm).
struct Handle(JsValue);

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = call(&self.0, "free", &[]);
    }
}

impl JsVocab {
    /// The vocabulary of `tokens` in `module` (the namespace of kjarni_structured.js, initialised).
    pub(crate) fn new(module: &JsValue, tokens: &TokenBytes) -> Result<Self> {
        let ctor = js_sys::Reflect::get(module, &JsValue::from_str("StructuredVocab"))
            .map_err(from_js)?
            .dyn_into::<js_sys::Function>()
            .map_err(|_| Error::Internal("constrained decoding module: no StructuredVocab class".into()))?;
        let (flat, ends) = tokens.flat();
        let args: js_sys::Array = [
            js_sys::Uint8Array::from(&flat[..]).into(),
            js_sys::Uint32Array::from(&ends[..]).into(),
            JsValue::from(tokens.vocab_size),
            JsValue::from(tokens.eos),
            tokens.bos.map_or(JsValue::UNDEFINED, JsValue::from),
            JsValue::from(tokens.words as u32),
        ]
        .iter()
        .collect();
        let obj = js_sys::Reflect::construct(&ctor, &args).map_err(from_js)?;
        Ok(JsVocab {
            obj: std::rc::Rc::new(Handle(obj)),
            words: tokens.words,
        })
    }

    /// The constraint of `spec` (compiled in the module; errors name `what`).
    pub(crate) fn constraint(&self, spec: &GrammarSpec, what: &str) -> Result<JsConstraint> {
        let json = serde_json::to_string(spec).map_err(|e| Error::Internal(format!("grammar spec: {e}")))?;
        let obj = call(
            &self.obj.0,
            "constraint",
            &[JsValue::from_str(&json), JsValue::from_str(what)],
        )?;
        Ok(JsConstraint {
            obj: Handle(obj),
            words: self.words,
            mask_ms: 0.0,
            steps: 0,
        })
    }
}

/// A `StructuredConstraint` of the module.
pub(crate) struct JsConstraint {
    obj: Handle,
    words: usize,
    mask_ms: f64,
    steps: usize,
}

impl TokenConstraint for JsConstraint {
    fn mask(&mut self, tokens: &[u32]) -> Result<Vec<u32>> {
        let t0 = crate::web::now_ms();
        let m = call(&self.obj.0, "mask", &[js_sys::Uint32Array::from(tokens).into()])?;
        let mut words = m
            .dyn_into::<js_sys::Uint32Array>()
            .map_err(|_| Error::Internal("constrained decoding module: mask is not a Uint32Array".into()))?
            .to_vec();
        words.resize(self.words, 0);
        self.mask_ms += crate::web::now_ms() - t0;
        self.steps += 1;
        Ok(words)
    }

    fn feed(&mut self, tokens: &[u32]) -> Result<()> {
        call(&self.obj.0, "feed", &[js_sys::Uint32Array::from(tokens).into()]).map(|_| ())
    }

    fn is_accepting(&mut self) -> bool {
        call(&self.obj.0, "isAccepting", &[])
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    fn mask_time(&self) -> (f64, usize) {
        (self.mask_ms, self.steps)
    }
}
