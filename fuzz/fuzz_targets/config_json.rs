//! Fuzz the config.json / generation_config.json parsers and the estimate built on them: any
//! bytes give a config or a `BadModelFile` error, never a panic; a parsed config's estimate
//! (with an empty checkpoint and small device limits) is a number or a typed error, never an
//! overflow panic.
//!
//!   cargo +nightly fuzz run config_json -- -max_len=4096
#![no_main]

use kjarni_web::load::estimate::{estimate, DeviceLimits, EstimateOptions};
use kjarni_web::load::{GenerationConfig, ModelConfig};
use kjarni_web::Error;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match GenerationConfig::parse("generation_config.json", data) {
        Ok(_) | Err(Error::BadModelFile { .. }) => {}
        Err(e) => panic!("unexpected error kind: {e}"),
    }
    match ModelConfig::parse("config.json", data) {
        Ok(cfg) => {
            let limits = DeviceLimits { max_buffer_size: 1 << 28, max_storage_binding: 1 << 27, budget: Some(1 << 30) };
            let opts = EstimateOptions { max_context: 4096, prefill_tokens: Some(512), ..Default::default() };
            match estimate(&cfg, &[], &opts, &limits) {
                Ok(_) | Err(Error::ModelTooLarge { .. }) | Err(Error::BadModelFile { .. }) => {}
                Err(e) => panic!("unexpected estimate error kind: {e}"),
            }
        }
        Err(Error::BadModelFile { .. }) => {}
        Err(e) => panic!("unexpected error kind: {e}"),
    }
});
