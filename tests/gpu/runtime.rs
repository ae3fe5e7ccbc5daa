use crate::common::*;
use kjarni_web::cpu::compare::Tolerance;
use kjarni_web::gpu::{Const, Kernel};
use kjarni_web::ops::elementwise::{self, Op};
use kjarni_web::{DType, Error, GpuTensor};

gpu_test!(device_reports_limits_features_and_variants, async {
    let gpu = gpu().await;
    let caps = gpu.caps();
    say!("{caps}");
    say!("{}", caps.to_json());
    // The device must have been created with the adapter's limits, not the WebGPU defaults.
    assert!(caps.max_workgroup_storage >= 16384);
    assert!(caps.max_invocations >= 256);
    assert!(caps.variants.reduce_workgroup.is_power_of_two());
    assert!(caps.variants.reduce_workgroup <= caps.max_invocations);
    assert!(caps.variants.swiglu.bytes() <= caps.max_workgroup_storage);
});

gpu_test!(uniform_arena_keeps_buffer_count_flat_over_10000_dispatches, async {
    let gpu = gpu().await;
    let x = GpuTensor::zeros(&gpu, "counter", &[7], DType::F32).unwrap();
    let run = |n: usize| {
        let mut batch = gpu.batch();
        for _ in 0..n {
            elementwise::record_inplace(&gpu, &mut batch, Op::Axpb { alpha: 1.0, beta: 1.0 }, &x).unwrap();
        }
        assert_eq!(batch.dispatches(), n);
        gpu.submit(batch).unwrap();
    };
    run(10_000);
    gpu.sync().await.unwrap();
    let after_first = gpu.memory();
    run(10_000);
    gpu.sync().await.unwrap();
    let after_second = gpu.memory();
    say!("buffers after 10k dispatches: {after_first:?}; after 20k: {after_second:?}");
    assert_eq!(after_first.live_buffers, after_second.live_buffers, "live buffers grew");
    assert_eq!(
        after_first.created_buffers, after_second.created_buffers,
        "buffers were created per encode"
    );
    assert_eq!(gpu.pipelines().len(), 1);
    // Each dispatch read its own parameters in order: 20,000 increments, exact in f32.
    assert_tensor(&gpu, "counter", &x, &[20_000.0; 7], Tolerance::EXACT).await;
});

gpu_test!(bind_group_cache_forgets_the_groups_of_dropped_buffers, async {
    // A prefill of a new length replaces the model's scratch buffers: the cached bind groups of
    // the old ones must go (they kept 3.7 MiB of wasm memory alive in the page soak until the
    // cache was full). 20 rounds of fresh buffers: the cache holds the last round's groups only.
    let gpu = gpu().await;
    let keep = GpuTensor::zeros(&gpu, "kept", &[16], DType::F32).unwrap();
    let mut sizes = vec![];
    for round in 0..20usize {
        let a = GpuTensor::zeros(&gpu, "a", &[16 + round], DType::F32).unwrap();
        let b = GpuTensor::zeros(&gpu, "b", &[16 + round], DType::F32).unwrap();
        let out = GpuTensor::zeros(&gpu, "out", &[16 + round], DType::F32).unwrap();
        let mut batch = gpu.batch();
        for _ in 0..3 {
            elementwise::record(&gpu, &mut batch, Op::Add, &a, Some(&b), &out).unwrap();
            elementwise::record_inplace(&gpu, &mut batch, Op::Axpb { alpha: 1.0, beta: 1.0 }, &keep).unwrap();
        }
        gpu.submit(batch).unwrap();
        gpu.sync().await.unwrap();
        sizes.push(gpu.cached_bind_groups());
    }
    say!("cached bind groups per round: {sizes:?}");
    // Per round: 3 uniform slots for each of the 2 ops (distinct keys), 6 in all.
    assert!(
        sizes.iter().all(|&n| n <= 12),
        "the cache grows with dropped buffers: {sizes:?}"
    );
    assert!(sizes[19] >= 6, "the live groups are cached: {sizes:?}");
});

gpu_test!(memory_accounting_tracks_tensor_lifetimes, async {
    let gpu = gpu().await;
    let before = gpu.memory();
    let t = GpuTensor::zeros(&gpu, "t", &[3, 5], DType::F16).unwrap();
    assert_eq!(t.buffer().size(), 32); // 15 halves = 30 bytes, padded to words
    let mid = gpu.memory();
    assert_eq!(mid.live_buffers, before.live_buffers + 1);
    assert_eq!(mid.live_bytes, before.live_bytes + 32);
    drop(t);
    assert_eq!(gpu.memory().live_bytes, before.live_bytes);
});

gpu_test!(tensors_round_trip_every_dtype, async {
    let gpu = gpu().await;
    let v = [1.0f32, -2.5, 0.125, 61440.0, 3.0];
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let t = GpuTensor::from_f32(&gpu, "rt", &[5], dtype, &v).unwrap();
        assert_tensor(&gpu, dtype.name(), &t, &v, Tolerance::EXACT).await;
    }
    let raw: Vec<u8> = [-128i8, -1, 0, 1, 127].iter().map(|&b| b as u8).collect();
    let t = GpuTensor::from_bytes(&gpu, "i8", &[5], DType::I8, &raw).unwrap();
    assert_tensor(&gpu, "i8", &t, &[-128.0, -1.0, 0.0, 1.0, 127.0], Tolerance::EXACT).await;
});

gpu_test!(bad_input_gives_typed_errors, async {
    let gpu = gpu().await;
    let e = GpuTensor::from_f32(&gpu, "w", &[2, 3], DType::F32, &[1.0; 5]).unwrap_err();
    assert!(matches!(e, Error::Data { ref tensor, .. } if tensor == "w"), "{e}");
    let big = gpu.caps().max_storage_binding + 4;
    let e = GpuTensor::zeros(&gpu, "huge", &[big as usize / 4 + 1], DType::F32).unwrap_err();
    assert!(matches!(e, Error::Limit { .. }), "{e}");
    assert!(e.to_string().contains("huge"), "{e}");
    let a = upload(&gpu, "a", &[4], &[0.0; 4]);
    let b = upload(&gpu, "b", &[5], &[0.0; 5]);
    let mut batch = gpu.batch();
    let e = elementwise::record(&gpu, &mut batch, Op::Add, &a, Some(&b), &a).unwrap_err();
    assert!(e.to_string().contains("'a' is [4] but 'b' is [5]"), "{e}");
    let h = GpuTensor::zeros(&gpu, "half", &[4], DType::F16).unwrap();
    let e = elementwise::record(&gpu, &mut batch, Op::Silu, &h, None, &a).unwrap_err();
    assert!(matches!(e, Error::DType { .. }), "{e}");
    assert_eq!(batch.dispatches(), 0);
});

/// A kernel the WGSL compiler refuses (an f32 literal bound to a u32).
const BROKEN: Kernel = Kernel {
    name: "broken",
    source: "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }",
    uses_reduction: false,
};

gpu_test!(rejected_shader_names_its_kernel_and_variant, async {
    let gpu = gpu().await;
    let consts = [("N", Const::U32(3))];
    let created = gpu.pipelines().get(gpu.device(), &BROKEN, "main", None, &consts);
    let e = match created {
        // Natively the device's verdict is known at creation.
        Err(e) => e,
        Ok(_) if !cfg!(target_arch = "wasm32") => panic!("a rejected pipeline must fail at creation natively"),
        // In the browser it arrives asynchronously: the next check returns it.
        Ok(_) => {
            let mut found = None;
            for _ in 0..20 {
                if let Err(e) = gpu.sync().await {
                    found = Some(e);
                    break;
                }
            }
            found.expect("the rejection was never reported")
        }
    };
    say!("{e}");
    assert!(
        matches!(&e, Error::Pipeline { kernel: "broken", variant, .. } if variant == "main[N=U32(3)]"),
        "{e}"
    );
    assert_eq!(e.code(), "GPU_ERROR");
    // Asking for the variant again fails at once; the device still runs other kernels.
    let again = gpu.pipelines().get(gpu.device(), &BROKEN, "main", None, &consts);
    assert!(matches!(again, Err(Error::Pipeline { .. })), "{again:?}");
    let x = upload(&gpu, "x", &[4], &[1.0; 4]);
    let mut batch = gpu.batch();
    elementwise::record_inplace(&gpu, &mut batch, Op::Axpb { alpha: 2.0, beta: 0.0 }, &x).unwrap();
    gpu.submit(batch).unwrap();
    gpu.sync().await.unwrap();
    assert_tensor(&gpu, "after a rejection", &x, &[2.0; 4], Tolerance::EXACT).await;
});

gpu_test!(profile_labels_and_times_every_dispatch_and_keeps_results, async {
    let gpu = gpu().await;
    let x = GpuTensor::zeros(&gpu, "counter", &[1000], DType::F32).unwrap();
    let y = GpuTensor::zeros(&gpu, "copy", &[1000], DType::F32).unwrap();
    let z = GpuTensor::zeros(&gpu, "sum", &[1000], DType::F32).unwrap();
    assert!(
        gpu.end_profile().await.is_err(),
        "end_profile without begin_profile is an error, not a panic"
    );
    gpu.begin_profile().unwrap();
    assert!(gpu.is_profiling());
    // Two submissions, one of them over the 2048 dispatches a query set of 4096 timestamps holds,
    // with a copy between dispatches (not profiled).
    let mut a = gpu.batch();
    for _ in 0..2100 {
        elementwise::record_inplace(&gpu, &mut a, Op::Axpb { alpha: 1.0, beta: 1.0 }, &x).unwrap();
    }
    a.copy(x.buffer(), 0, y.buffer(), 0, 4000);
    elementwise::record_inplace(&gpu, &mut a, Op::Axpb { alpha: 2.0, beta: 0.0 }, &y).unwrap();
    gpu.submit(a).unwrap();
    let mut b = gpu.batch();
    elementwise::record(&gpu, &mut b, Op::Add, &x, Some(&y), &z).unwrap();
    gpu.submit(b).unwrap();
    let p = gpu.end_profile().await.unwrap();
    assert!(!gpu.is_profiling());
    say!(
        "profile: {} dispatches, {:?} µs, timestamps {}, quantized {}",
        p.dispatches,
        p.total_gpu_us,
        p.timestamps,
        p.quantized
    );
    for k in &p.kernels {
        say!("  {:>6} × {:?} µs  {}", k.count, k.gpu_us, k.label);
    }
    assert_eq!(p.dispatches, 2102);
    assert_eq!(p.trace.len(), 2102);
    assert_eq!(p.kernels.iter().map(|k| k.count).sum::<usize>(), 2102);
    // Two labels: the in-place unary pipeline (2101 dispatches) and the binary one.
    assert_eq!(
        p.kernels.len(),
        2,
        "{:?}",
        p.kernels.iter().map(|k| &k.label).collect::<Vec<_>>()
    );
    assert!(
        p.kernels.iter().all(|k| k.label.starts_with("elementwise::")),
        "labels name the kernel"
    );
    assert!(
        p.trace.last().is_some_and(|d| d.label != p.trace[0].label),
        "trace in submission order"
    );
    assert_eq!(p.timestamps, gpu.caps().timestamps);
    if p.timestamps {
        assert!(
            p.trace
                .iter()
                .all(|d| d.gpu_us.is_some_and(|t| (0.0..1e6).contains(&t))),
            "a time for every dispatch"
        );
        if !p.quantized {
            assert!(p.total_gpu_us.is_some_and(|t| t > 0.0));
        }
    } else {
        assert!(p.trace.iter().all(|d| d.gpu_us.is_none()) && p.total_gpu_us.is_none());
    }
    // One pass per dispatch computes what one pass does: x = 2100, y = 2·2100, z = x + y.
    assert_tensor(&gpu, "counter", &x, &[2100.0; 1000], Tolerance::EXACT).await;
    assert_tensor(&gpu, "copy", &y, &[4200.0; 1000], Tolerance::EXACT).await;
    assert_tensor(&gpu, "sum", &z, &[6300.0; 1000], Tolerance::EXACT).await;
    // The profile's buffers are freed with it; a normal submission works after it.
    let mut c = gpu.batch();
    elementwise::record_inplace(&gpu, &mut c, Op::Axpb { alpha: 1.0, beta: 1.0 }, &x).unwrap();
    gpu.submit(c).unwrap();
    assert_tensor(&gpu, "counter", &x, &[2101.0; 1000], Tolerance::EXACT).await;
});
