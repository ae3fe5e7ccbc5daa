//! Fuzz the GGUF header parser: any bytes, any claimed file size, any prefix length must give a
//! header, a "need more bytes" answer within the file, or a `BadModelFile` error.
//! The body is `kjarni_web::fuzzing::gguf_header` (the corpus replay test runs the same function).
//!
//!   cargo +nightly fuzz run gguf_header -- -max_len=65536
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kjarni_web::fuzzing::gguf_header(data));
