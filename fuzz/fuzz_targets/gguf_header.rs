//! Fuzz the GGUF header parser: any bytes, any claimed file size, any prefix length must give a
//! header, a "need more bytes" answer within the file, or a `BadModelFile` error — never a
//! panic, an abort on allocation or an out-of-bounds read.
//!
//!   cargo +nightly fuzz run gguf_header -- -max_len=65536
//!
//! Seed the corpus with `kjarni_web::gguf::writer::sample_file()` (see fuzz/README.md).
#![no_main]

use kjarni_web::gguf::{parse_header, Parsed};
use kjarni_web::Error;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First 10 bytes steer the harness: extra claimed file size and the prefix cut.
    if data.len() < 10 {
        return;
    }
    let (ctl, file) = data.split_at(10);
    let extra = u64::from(u32::from_le_bytes([ctl[0], ctl[1], ctl[2], ctl[3]]));
    let size = if ctl[4] & 1 == 1 { u64::MAX } else { file.len() as u64 + extra };
    let cut = usize::from(u16::from_le_bytes([ctl[5], ctl[6]])).min(file.len());
    let prefix = if ctl[7] & 1 == 1 { &file[..cut] } else { file };
    match parse_header("fuzz.gguf", prefix, size) {
        Ok(Parsed::Header(h)) => {
            for t in &h.tensors {
                assert!(t.offset + t.size <= size);
            }
            let _ = (h.hparams(), h.tokenizer(), h.rope_layout());
        }
        Ok(Parsed::NeedMore { bytes }) => assert!(bytes > prefix.len() as u64 && bytes <= size),
        Err(Error::BadModelFile { .. }) => {}
        Err(e) => panic!("unexpected error kind: {e}"),
    }
});
