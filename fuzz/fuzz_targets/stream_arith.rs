//! Fuzz the loaders' streaming arithmetic with sizes near multiples of 2^32 (wasm32's usize).
//! The body is `kjarni_web::fuzzing::stream_arith` (the corpus replay test runs the same function).
//!
//!   cargo +nightly fuzz run stream_arith -- -max_len=256
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kjarni_web::fuzzing::stream_arith(data));
