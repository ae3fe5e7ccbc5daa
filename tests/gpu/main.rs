//! GPU tests: the same bodies run natively (`cargo test`, lavapipe or any adapter) and in
//! headless Chromium (`wasm-pack test --headless --chrome`).

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

#[macro_use]
mod common;
mod attention;
mod bert;
mod cache_api;
mod elementwise;
mod embedding;
mod ffn;
mod fused;
#[cfg(not(target_arch = "wasm32"))]
mod fuzz_replay;
mod gelu;
#[cfg(not(target_arch = "wasm32"))]
mod gemma_gguf;
mod gemv;
mod generate;
mod gguf;
mod harden;
mod kv_cache;
mod linear_util;
mod llama;
mod load;
mod matmul;
mod models;
mod norm;
mod pooling;
mod quant;
mod repeat_kv;
mod rope;
mod runtime;
mod sample;
mod sentence;
mod softmax;
mod structured;
mod tiny;
mod tokenizer;
