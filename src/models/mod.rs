//! Models: one readable file per architecture, built from the ops.

pub mod bert;
pub mod cross_encoder;
pub mod decoder_layer;
pub mod gguf;
pub mod llama;
pub mod weights;
