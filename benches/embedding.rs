//! Embedding lookup: vec8 vs scalar per table dtype (f32 / f16 / bf16), beside a vec4 copy of the
//! output.

use crate::harness::{inner, time_op, Args, Report};
use kjarni_web::ops::elementwise;
use kjarni_web::ops::embedding::{self, Lookup, Tables, TokenIds};
use kjarni_web::{cpu, DType, Gpu, GpuTensor, Result};
use serde_json::json;

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    let (tokens, vocab, hidden) = (2048usize, 4096usize, 4096usize);
    for (dt, name) in [(DType::F32, "f32"), (DType::F16, "f16"), (DType::BF16, "bf16")] {
        let case = format!("embedding_{name}_{tokens}x{hidden}");
        if !args.wants(&case) {
            continue;
        }
        let table = GpuTensor::from_f32(
            gpu,
            "word",
            &[vocab, hidden],
            dt,
            &cpu::random(vocab * hidden, 7, -1.0, 1.0),
        )?;
        let ids: Vec<u32> = (0..tokens).map(|i| ((i * 7919) % vocab) as u32).collect();
        let ids = TokenIds::new(gpu, "ids", &ids)?;
        let out = GpuTensor::zeros(gpu, "out", &[tokens, hidden], DType::F32)?;
        let out2 = GpuTensor::zeros(gpu, "out2", &[tokens, hidden], DType::F32)?;
        let tables = Tables {
            word: &table,
            position: None,
            token_type: None,
        };
        let n = inner(args);
        let t = vec![
            time_op(gpu, args, "vec8", n, |b| {
                embedding::record_variant(gpu, b, &tables, &Lookup::new(&ids), &out, embedding::Variant::Vec8)
            })
            .await?,
            time_op(gpu, args, "scalar", n, |b| {
                embedding::record_variant(gpu, b, &tables, &Lookup::new(&ids), &out, embedding::Variant::Scalar)
            })
            .await?,
            time_op(gpu, args, "copy_vec4_output", n, |b| {
                elementwise::record_copy(gpu, b, &out, &out2)
            })
            .await?,
        ];
        let bytes = tokens * hidden * (dt.size() + 4);
        report.add(
            &case,
            json!({"tokens": tokens, "vocab": vocab, "hidden": hidden, "dtype": name}),
            bytes as f64,
            0.0,
            "scalar",
            &t,
        );
    }
    Ok(())
}
