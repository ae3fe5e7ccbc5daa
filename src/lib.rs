//! kjarni-web: transformer inference on WebGPU. The same crate and WGSL kernels run in the
//! browser (wasm32, WebGPU) and natively (wgpu over Vulkan/Metal/DX12).
//!
//! Layout: [`gpu`] is the runtime (device, capabilities, pipelines, uniform arena, tensors,
//! memory accounting); [`ops`] records kernels; `cpu` (feature `reference`) holds the f64
//! reference implementations that tests and benchmarks compare against.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![warn(missing_docs)]

pub mod api;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod gpu;
pub mod load;
pub mod models;
pub mod ops;
pub mod structured;
pub mod tokenizer;

#[cfg(any(test, feature = "reference"))]
pub mod cpu;

// The structured module (feature `structured-module`) is this crate exporting only the
// constraint classes: no engine.
#[cfg(all(target_arch = "wasm32", not(feature = "structured-module")))]
pub mod web;

#[cfg(all(feature = "fuzzing", not(target_arch = "wasm32")))]
#[doc(hidden)]
pub mod fuzzing;

pub use error::{Error, Result};
pub use gpu::{Capabilities, DType, Gpu, GpuOptions, GpuTensor, LaunchShapes, ShaderChecks};
