//! Models: one readable file per architecture, built from the ops.

pub mod bert;
pub mod decoder_layer;
pub mod llama;
pub mod gguf;
