//! One file per operation: shape checks, variant choice, dispatch size, recording.
//! Each op's WGSL is in `shaders/<name>.wgsl`, its CPU reference in `src/cpu/`.

pub mod attention;
pub(crate) mod checks;
pub mod elementwise;
pub mod embedding;
pub mod ffn;
pub mod gelu;
pub mod gemv;
pub mod kv_cache;
pub mod linear;
pub mod matmul;
pub mod norm;
pub mod pooling;
pub mod project;
pub mod qkv;
pub mod quant;
pub mod repeat_kv;
pub mod rope;
pub mod sample;
pub mod softmax;
pub mod tune;
