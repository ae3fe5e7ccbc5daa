//! Fuzz model.safetensors.index.json and the shard-name checks (`check_relative`), then
//! `read_headers` over shards built from the index.
//! The body is `kjarni_web::fuzzing::shard_index` (the corpus replay test runs the same function).
//!
//!   cargo +nightly fuzz run shard_index -- -max_len=8192
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kjarni_web::fuzzing::shard_index(data);
});
