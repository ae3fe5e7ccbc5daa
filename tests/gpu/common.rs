//! One test body, two runners: `#[wasm_bindgen_test]` in headless Chromium, `#[test]` natively.

/// `gpu_test!(name, async { ... });` defines the test for both targets.
#[macro_export]
macro_rules! gpu_test {
    ($name:ident, $body:expr) => {
        #[cfg(target_arch = "wasm32")]
        #[wasm_bindgen_test::wasm_bindgen_test]
        async fn $name() {
            $body.await
        }

        #[cfg(not(target_arch = "wasm32"))]
        #[test]
        fn $name() {
            pollster::block_on($body)
        }
    };
}

/// Prints to the browser console (shown by wasm-pack test) or to stdout natively.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => {{
        #[cfg(target_arch = "wasm32")]
        wasm_bindgen_test::console_log!($($t)*);
        #[cfg(not(target_arch = "wasm32"))]
        println!($($t)*);
    }};
}

use kjarni_web::cpu::compare::{check_close, Tolerance};
use kjarni_web::{DType, Gpu, GpuTensor};

/// A device for one test; panics (test failure) with the reason when there is none.
pub async fn gpu() -> Gpu {
    match Gpu::new().await {
        Ok(g) => g,
        Err(e) => panic!("no GPU device for the test: {e}"),
    }
}

/// A device with the given launch shapes forced (`LaunchShapes::Gpu` on a CPU adapter keeps the
/// GPU shapes tested where CI runs; `Cpu` on a GPU the CPU ones).
pub async fn gpu_with(shapes: kjarni_web::LaunchShapes) -> Gpu {
    let opts = kjarni_web::GpuOptions {
        launch_shapes: shapes,
        ..Default::default()
    };
    match Gpu::with_options(opts).await {
        Ok(g) => g,
        Err(e) => panic!("no GPU device for the test: {e}"),
    }
}

/// A device with the GPU launch shapes and the previous kernels' separate RMSNorm pass
/// (`GpuOptions::norm_pass`: the decode benchmarks' baseline stays tested).
pub async fn norm_pass_gpu() -> Gpu {
    let opts = kjarni_web::GpuOptions {
        launch_shapes: kjarni_web::LaunchShapes::Gpu,
        norm_pass: true,
        ..Default::default()
    };
    match Gpu::with_options(opts).await {
        Ok(g) => g,
        Err(e) => panic!("no GPU device for the test: {e}"),
    }
}

/// Both launch shapes, GPU first: kernels whose shape the device picks run under each.
pub const BOTH_SHAPES: [kjarni_web::LaunchShapes; 2] = [kjarni_web::LaunchShapes::Gpu, kjarni_web::LaunchShapes::Cpu];

/// Which of [`BOTH_SHAPES`] case `case` runs under: both natively, one in turn in the browser
/// (SwiftShader is slow).
pub fn shapes_for(case: usize) -> &'static [usize] {
    match (cfg!(target_arch = "wasm32"), case % 2) {
        (false, _) => &[0, 1],
        (true, 0) => &[0],
        _ => &[1],
    }
}

/// Upload f32 values.
pub fn upload(gpu: &Gpu, name: &str, shape: &[usize], data: &[f32]) -> GpuTensor {
    GpuTensor::from_f32(gpu, name, shape, DType::F32, data).unwrap()
}

/// Read back and compare with the reference; the message names the case.
pub async fn assert_tensor(gpu: &Gpu, what: &str, t: &GpuTensor, want: &[f32], tol: Tolerance) {
    let got = t.to_f32_vec(gpu).await.unwrap();
    if let Err(e) = check_close(what, &got, want, tol) {
        panic!("{e}");
    }
}
