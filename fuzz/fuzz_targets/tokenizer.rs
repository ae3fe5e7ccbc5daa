//! Fuzz tokenizer.json + tokenizer_config.json + chat_template.jinja as `Tokenizer::load` reads
//! them, then template rendering (fuel, output cap), encode and decode.
//! The body is `kjarni_web::fuzzing::tokenizer` (the corpus replay test runs the same function).
//!
//!   cargo +nightly fuzz run tokenizer -- -max_len=65536
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kjarni_web::fuzzing::tokenizer(data);
});
