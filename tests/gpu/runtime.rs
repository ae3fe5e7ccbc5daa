use crate::common::*;
use kjarni_web::cpu::compare::Tolerance;
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
    assert_eq!(after_first.created_buffers, after_second.created_buffers, "buffers were created per encode");
    assert_eq!(gpu.pipelines().len(), 1);
    // Each dispatch read its own parameters in order: 20,000 increments, exact in f32.
    assert_tensor(&gpu, "counter", &x, &[20_000.0; 7], Tolerance::EXACT).await;
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
