//! GPU tests: the same bodies run natively (`cargo test`, lavapipe or any adapter) and in
//! headless Chromium (`wasm-pack test --headless --chrome`).

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

#[macro_use]
mod common;
mod attention;
mod bert;
mod cache;
mod elementwise;
mod ffn;
mod fused;
mod gemv;
mod linear_util;
mod llama;
mod matmul;
mod pooling;
mod quant;
mod embedding;
mod gelu;
mod gguf;
mod harden;
mod norm;
mod repeat_kv;
mod rope;
mod load;
mod models;
mod runtime;
mod sample;
mod generate;
mod sentence;
mod softmax;
mod tiny;
mod structured;
mod tokenizer;
