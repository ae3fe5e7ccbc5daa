//! Fuzz the safetensors header parser: a validated header (sorted, inside the data section,
//! non-overlapping, byte counts matching dtype x shape) or a `BadModelFile` error.
//! The body is `kjarni_web::fuzzing::safetensors_header` (the corpus replay test runs the same function).
//!
//!   cargo +nightly fuzz run safetensors_header -- -max_len=65536
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kjarni_web::fuzzing::safetensors_header(data));
