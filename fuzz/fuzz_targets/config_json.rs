//! Fuzz the config.json / generation_config.json parsers and the estimate built on them.
//! The body is `kjarni_web::fuzzing::config_json` (the corpus replay test runs the same function).
//!
//!   cargo +nightly fuzz run config_json -- -max_len=4096
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kjarni_web::fuzzing::config_json(data));
