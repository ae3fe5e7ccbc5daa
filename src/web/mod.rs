//! The JavaScript API (wasm-bindgen). The only module that knows about JS.

use crate::gpu::Gpu;
use wasm_bindgen::prelude::*;

/// Installs the panic hook so that a bug shows a Rust message in the console, not "unreachable".
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn js_error(e: crate::Error) -> JsError {
    JsError::new(&e.to_string())
}

/// Create a device and return its capabilities (limits, features, chosen kernel variants) as JSON.
#[wasm_bindgen(js_name = capabilities)]
pub async fn capabilities() -> Result<String, JsError> {
    let gpu = Gpu::new().await.map_err(js_error)?;
    Ok(gpu.caps().to_json())
}

/// The same as a human-readable report.
#[wasm_bindgen(js_name = capabilitiesReport)]
pub async fn capabilities_report() -> Result<String, JsError> {
    let gpu = Gpu::new().await.map_err(js_error)?;
    Ok(gpu.caps().to_string())
}
