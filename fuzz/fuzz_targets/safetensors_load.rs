//! Fuzz a whole safetensors load from a MemorySource (header, plan, allocation, streamed upload,
//! read-back) on one device shared by the whole run (lavapipe natively).
//! The body is `kjarni_web::fuzzing::safetensors_load` (the corpus replay test runs the same function).
//!
//!   cargo +nightly fuzz run safetensors_load -- -max_len=65536 -rss_limit_mb=4096
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let gpu = kjarni_web::fuzzing::shared_gpu().expect("a GPU device (lavapipe natively)");
    let _ = kjarni_web::fuzzing::safetensors_load(gpu, data);
});
