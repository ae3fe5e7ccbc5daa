//! Native GPU benchmarks: each kernel beside its baseline, in one run, printed as JSON.
//!
//!   cargo run --release --features bench --bin kjarni-bench -- [FILTER] [--quick]
//!
//! On the GPU machine, see README ("Benchmarks") for the device-tool command.
//! `KJARNI_BENCH_SHADER_CHECKS=all|none` compiles the pipelines with naga's forced loop bounding
//! (wgpu's default) / without any runtime check, beside the crate's default (`ShaderChecks`:
//! bounds checks without loop bounding), to measure what they cost.

mod attention;
mod dawn;
mod dispatch;
mod driver;
mod embedding;
mod ffn;
mod gelu;
mod gemv;
mod harness;
mod matmul;
mod models;
mod norm;
mod quant;
mod repeat_kv;
mod rope;
mod sample;
mod softmax;
mod step;
mod structured;

use kjarni_web::{Gpu, GpuOptions, ShaderChecks};

fn main() {
    if let Err(e) = pollster::block_on(run()) {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}

async fn run() -> kjarni_web::Result<()> {
    let args = harness::Args::parse();
    let shader_checks = match std::env::var("KJARNI_BENCH_SHADER_CHECKS").as_deref() {
        Ok("all") => ShaderChecks::All,
        Ok("none") => ShaderChecks::None,
        _ => ShaderChecks::NoLoopBounding,
    };
    let gpu = Gpu::with_options(GpuOptions {
        shader_checks,
        ..Default::default()
    })
    .await?;
    eprintln!("{}\nshader checks: {shader_checks:?}", gpu.caps());
    let mut report = harness::Report::default();
    dispatch::run(&gpu, &args, &mut report).await?;
    softmax::run(&gpu, &args, &mut report).await?;
    norm::run(&gpu, &args, &mut report).await?;
    rope::run(&gpu, &args, &mut report).await?;
    embedding::run(&gpu, &args, &mut report).await?;
    gelu::run(&gpu, &args, &mut report).await?;
    softmax::masked(&gpu, &args, &mut report).await?;
    repeat_kv::run(&gpu, &args, &mut report).await?;
    gemv::run(&gpu, &args, &mut report).await?;
    matmul::run(&gpu, &args, &mut report).await?;
    ffn::run(&gpu, &args, &mut report).await?;
    attention::run(&gpu, &args, &mut report).await?;
    quant::run(&gpu, &args, &mut report).await?;
    quant::pair(&gpu, &args, &mut report).await?;
    models::run(&gpu, &args, &mut report).await?;
    dawn::run(&gpu, &args, &mut report).await?;
    step::run(&gpu, &args, &mut report).await?;
    step::norm_ab(&gpu, &args, &mut report).await?;
    driver::run(&gpu, &args, &mut report).await?;
    structured::run(&gpu, &args, &mut report).await?;
    sample::run(&gpu, &args, &mut report).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&report.finish(&gpu)).unwrap_or_default()
    );
    Ok(())
}
