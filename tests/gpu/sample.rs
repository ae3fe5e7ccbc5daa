//! GPU sampling (`ops::sample`) against its CPU reference (`cpu::sample`, same arithmetic and
//! RNG): greedy must agree exactly (argmax has no rounding); sampled draws agree except where
//! the last ulp of the GPU's exp / log or the order of a top-p sum decides between two tokens —
//! a near-tie of two Gumbel scores within ~1e-6, measured 0 of the draws here — so ≥ 99 % must
//! agree. A chi-square test over 10k GPU draws checks the distribution itself.

use crate::common::gpu;
use kjarni_web::cpu::sample as reference;
use kjarni_web::generate::SamplingParams;
use kjarni_web::ops::sample::{FilteredPath, GpuSampler, CHUNK, K_MAX, NONE};
use kjarni_web::{DType, Gpu, GpuTensor};

/// `n` GPU draws from the same logits (the context grows with every draw, as in decoding).
async fn gpu_draws(
    gpu: &Gpu,
    logits: &[f32],
    params: &SamplingParams,
    context: &[u32],
    mask: Option<&[u32]>,
    n: usize,
) -> Vec<u32> {
    gpu_draws_path(gpu, logits, params, context, mask, n, FilteredPath::Auto).await
}

/// `gpu_draws` with the filtered draws' kernel chosen.
async fn gpu_draws_path(
    gpu: &Gpu,
    logits: &[f32],
    params: &SamplingParams,
    context: &[u32],
    mask: Option<&[u32]>,
    n: usize,
    path: FilteredPath,
) -> Vec<u32> {
    let mut s = GpuSampler::new(gpu, logits.len()).unwrap();
    s.start(gpu, params, context).unwrap();
    s.set_filtered_path(path);
    s.set_mask(gpu, mask).unwrap();
    let l = GpuTensor::from_f32(gpu, "logits", &[1, logits.len()], DType::F32, logits).unwrap();
    let mut out = Vec::new();
    let per = 250;
    let ids = GpuTensor::zeros(gpu, "ids", &[per], DType::U32).unwrap();
    while out.len() < n {
        let k = per.min(n - out.len());
        let mut b = gpu.batch();
        for i in 0..k {
            s.record(gpu, &mut b, &l, ids.buffer(), i).unwrap();
        }
        gpu.submit(b).unwrap();
        out.extend_from_slice(&ids.to_u32_vec(gpu).await.unwrap()[..k]);
    }
    out
}

fn cpu_draws(logits: &[f32], params: &SamplingParams, context: &[u32], mask: Option<&[u32]>, n: usize) -> Vec<u32> {
    let mut seen = vec![false; logits.len()];
    for &t in context {
        if let Some(s) = seen.get_mut(t as usize) {
            *s = true;
        }
    }
    (0..n)
        .map(|step| reference::sample(logits, &mut seen, mask, params, step as u32))
        .collect()
}

/// Random logits with awkward values: a tie for the maximum, NaN, ±huge, -inf.
fn logits(vocab: usize, seed: u64, spread: f32) -> Vec<f32> {
    let mut l = kjarni_web::cpu::random(vocab, seed, -spread, spread);
    if vocab >= 7 {
        l[vocab / 3] = 2.0 * spread;
        l[vocab / 2] = 2.0 * spread; // tie: the lower index wins greedy
        l[1] = f32::NAN;
        l[vocab - 1] = -1e30;
        l[vocab - 2] = f32::NEG_INFINITY;
    }
    if vocab > 100 {
        l[8] = f32::NAN;
    }
    l
}

const BROWSER: bool = cfg!(target_arch = "wasm32");

/// The largest vocabulary the browser runs (SmolLM2's). The kernels' WGSL is the same at every
/// size (the vocabulary is a uniform; the chunk loops stride by the workgroup, 24 to 128 chunks
/// all below it), so Chromium's compiler sees every kernel at ≤ 49,152 tokens; Qwen's 151,936
/// and Gemma's 262,144 run natively (on SwiftShader they were ~40 s of the browser run, the CPU
/// reference in wasm included).
const BROWSER_MAX_VOCAB: usize = 49152;

/// Vocabularies of the greedy and seeded tests: 1, 7, SmolLM2's and (natively) Qwen's.
const VOCABS: &[usize] = if BROWSER {
    &[1, 7, 49152]
} else {
    &[1, 7, 49152, 151936]
};

gpu_test!(sample_greedy_matches_cpu_exactly, async {
    let gpu = gpu().await;
    for (c, &v) in VOCABS.iter().enumerate() {
        let mut l = logits(v, c as u64 + 1, 4.0);
        if v > 100 {
            l[7] = 1e30; // a huge maximum, then gone under a mask
        }
        let greedy = SamplingParams::default();
        let want = cpu_draws(&l, &greedy, &[], None, 2);
        let got = gpu_draws(&gpu, &l, &greedy, &[], None, 2).await;
        assert_eq!(got, want, "vocab {v}");
        if v > 100 {
            assert_eq!(got[0], 7, "the huge logit");
            // Mask the maximum out (and every 5th token): the tie at vocab/3 vs vocab/2 decides.
            let mut mask = vec![u32::MAX; v.div_ceil(32)];
            for i in (0..v).filter(|i| i % 5 == 0 || *i == 7) {
                mask[i / 32] &= !(1 << (i % 32));
            }
            let want = cpu_draws(&l, &greedy, &[], Some(&mask), 1);
            let got = gpu_draws(&gpu, &l, &greedy, &[], Some(&mask), 1).await;
            assert_eq!(got, want, "vocab {v} masked");
            assert_eq!(got[0] as usize, if (v / 3) % 5 == 0 { v / 2 } else { v / 3 });
            // The repetition penalty pushes seen tokens down, one draw after another.
            let pen = SamplingParams {
                repetition_penalty: 1e32,
                ..greedy.clone()
            };
            let want = cpu_draws(&l, &pen, &[7], None, 3);
            let got = gpu_draws(&gpu, &l, &pen, &[7], None, 3).await;
            assert_eq!(got, want, "vocab {v} with a penalty");
            assert_eq!(got[..2], [(v / 3) as u32, (v / 2) as u32]);
        }
    }
    // Nothing valid: NONE.
    let got = gpu_draws(&gpu, &[f32::NAN; 9], &SamplingParams::default(), &[], None, 1).await;
    assert_eq!(got, [NONE]);
    let got = gpu_draws(
        &gpu,
        &[f32::NAN; 9],
        &SamplingParams {
            temperature: 1.0,
            top_p: 0.5,
            ..Default::default()
        },
        &[],
        None,
        1,
    )
    .await;
    assert_eq!(got, [NONE]);
});

fn cases() -> Vec<SamplingParams> {
    vec![
        SamplingParams {
            temperature: 0.8,
            seed: 1,
            ..Default::default()
        },
        SamplingParams {
            temperature: 0.7,
            top_k: 40,
            seed: 2,
            ..Default::default()
        },
        SamplingParams {
            temperature: 1.0,
            top_p: 0.9,
            seed: 3,
            ..Default::default()
        },
        SamplingParams {
            temperature: 1.2,
            min_p: 0.05,
            seed: 4,
            ..Default::default()
        },
        SamplingParams {
            temperature: 0.9,
            top_k: 50,
            top_p: 0.8,
            min_p: 0.02,
            repetition_penalty: 1.3,
            seed: u64::MAX - 5,
        },
    ]
}

gpu_test!(sample_seeded_draws_match_cpu_reference, async {
    let gpu = gpu().await;
    let draws = if cfg!(target_arch = "wasm32") { 24 } else { 120 };
    let (mut same, mut total) = (0usize, 0usize);
    for (c, &v) in VOCABS.iter().enumerate() {
        let l = logits(v, 10 + c as u64, 3.0);
        let context: Vec<u32> = (0..v as u32).step_by(97).collect();
        for p in cases() {
            let want = cpu_draws(&l, &p, &context, None, draws);
            let got = gpu_draws(&gpu, &l, &p, &context, None, draws).await;
            let agree = got.iter().zip(&want).filter(|(a, b)| a == b).count();
            if agree < draws {
                say!(
                    "vocab {v} {p:?}: {agree} of {draws} agree; first differences {:?}",
                    got.iter()
                        .zip(&want)
                        .filter(|(a, b)| a != b)
                        .take(4)
                        .collect::<Vec<_>>()
                );
            }
            assert!(got.iter().all(|&t| (t as usize) < v), "vocab {v} {p:?}: {got:?}");
            same += agree;
            total += draws;
            if v > 1 && p.temperature > 0.0 {
                let distinct: std::collections::HashSet<_> = got.iter().collect();
                assert!(distinct.len() > 1 || v < 10, "vocab {v} {p:?}: always {:?}", got[0]);
            }
        }
    }
    say!("seeded GPU draws equal to the CPU reference: {same} of {total}");
    assert!(same * 100 >= total * 99, "{same} of {total}");
    // Same seed, same ids; another seed, other ids.
    let l = logits(49152, 3, 3.0);
    let p = &cases()[2];
    let a = gpu_draws(&gpu, &l, p, &[], None, 16).await;
    assert_eq!(a, gpu_draws(&gpu, &l, p, &[], None, 16).await);
    assert_ne!(
        a,
        gpu_draws(&gpu, &l, &SamplingParams { seed: 99, ..p.clone() }, &[], None, 16).await
    );
});

gpu_test!(sample_distribution_chi_square_10k_draws, async {
    // 10k GPU draws per case over 12 tokens; chi-square against the exact f64 distribution of
    // the CPU Sampler's semantics at p = 0.001 (critical value < 33 for df ≤ 12), and never a
    // token of probability 0 (outside top-k / top-p / min-p or masked).
    let gpu = gpu().await;
    let l = [2.0f32, 1.5, 1.5, 0.3, -0.7, f32::NAN, 1.0, -3.0, 0.9, 2.0, -1.0, 0.0];
    let mask = [0b1111_1011_1111u32]; // token 6 masked out
    for (c, p) in cases().into_iter().take(4).enumerate() {
        let m = (c == 1).then_some(&mask[..]);
        let want = reference::distribution(&l, &[false; 12], m, &p);
        // Natively 10k draws per case. The browser draws 2,500 (its 40k draws were 100 s of
        // SwiftShader dispatches): the same critical value, so a pass is as strong a statement,
        // with less power (a likely token's probability off by 25 % still fails, and so does one
        // draw of a token of probability 0); the exact check of Chromium's build of these kernels is
        // `sample_seeded_draws_match_cpu_reference`, id for id against the CPU reference.
        let n = if BROWSER { 2_500 } else { 10_000 };
        let got = gpu_draws(&gpu, &l, &p, &[], m, n).await;
        let mut counts = [0u32; 12];
        for t in got {
            counts[t as usize] += 1;
        }
        let (mut x, mut df) = (0.0, 0);
        for (k, (&cnt, &q)) in counts.iter().zip(&want).enumerate() {
            if q == 0.0 {
                assert_eq!(cnt, 0, "case {c}: token {k} has probability 0: {counts:?}");
            } else if q * n as f64 >= 5.0 {
                let e = q * n as f64;
                x += (f64::from(cnt) - e).powi(2) / e;
                df += 1;
            }
        }
        say!("case {c}: chi2 {x:.1} ({} df), counts {counts:?}", df - 1);
        assert!(df >= 2 && x < 33.0, "case {c}: chi2 {x:.1}: {counts:?} vs {want:?}");
    }
});

/// Parameter sets of the two-stage path: top_k 1, 40, K_MAX with top-p, min-p and the penalty.
fn two_stage_cases() -> Vec<SamplingParams> {
    vec![
        SamplingParams {
            temperature: 0.7,
            top_k: 1,
            seed: 5,
            ..Default::default()
        },
        SamplingParams {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.95,
            seed: 6,
            ..Default::default()
        },
        SamplingParams {
            temperature: 1.5,
            top_k: K_MAX as usize,
            top_p: 0.9,
            min_p: 0.01,
            repetition_penalty: 1.3,
            seed: 7,
        },
        SamplingParams {
            temperature: 2.0,
            top_k: K_MAX as usize - 1,
            min_p: 0.001,
            seed: u64::MAX - 1,
            ..Default::default()
        },
    ]
}

/// One vocabulary of the equality tests of the two-stage paths (top-k and top-p): random logits
/// with the awkward values of [`logits`] (seed `seed`; with `grid`, on a grid of 0.25, so that
/// top-k and top-p boundaries fall inside tie classes), a context (every 61st id) and a sparse
/// mask (ids ≡ 3 mod 97 and `v / 3`: fewer valid tokens per chunk than top_k, and for the small
/// vocabularies fewer than top_k overall).
struct PathCase {
    logits: Vec<f32>,
    context: Vec<u32>,
    sparse: Vec<u32>,
}

fn path_case(v: usize, seed: u64, grid: bool) -> PathCase {
    let mut l = logits(v, seed, 3.0);
    if grid {
        for x in l.iter_mut().filter(|x| x.is_finite() && x.abs() < 1e3) {
            *x = (*x * 4.0).round() / 4.0;
        }
    }
    let mut sparse = vec![0u32; v.div_ceil(32)];
    for i in (0..v).filter(|i| i % 97 == 3 || *i == v / 3) {
        sparse[i / 32] |= 1 << (i % 32);
    }
    PathCase {
        logits: l,
        context: (0..v as u32).step_by(61).collect(),
        sparse,
    }
}

/// `draws` draws on the two-stage path and on the single-workgroup kernel: the ids must be equal
/// (`what` names the path, `label` the case); returns how many equal the CPU reference's.
#[allow(clippy::too_many_arguments)]
async fn two_stage_draws_agree(
    gpu: &Gpu,
    l: &[f32],
    p: &SamplingParams,
    context: &[u32],
    mask: Option<&[u32]>,
    draws: usize,
    what: &str,
    label: &str,
) -> usize {
    let old = gpu_draws_path(gpu, l, p, context, mask, draws, FilteredPath::SingleWorkgroup).await;
    let new = gpu_draws_path(gpu, l, p, context, mask, draws, FilteredPath::TwoStage).await;
    assert_eq!(new, old, "{label}: {what} vs single workgroup");
    let want = cpu_draws(l, p, context, mask, draws);
    let agree = new.iter().zip(&want).filter(|(a, b)| a == b).count();
    if agree < draws {
        say!("{label}: {agree} of {draws} equal to the CPU: {new:?} vs {want:?}");
    }
    agree
}

/// Nothing valid (all NaN): [`NONE`] on both filtered paths.
async fn none_on_both_paths(gpu: &Gpu, p: &SamplingParams) {
    for path in [FilteredPath::SingleWorkgroup, FilteredPath::TwoStage] {
        let got = gpu_draws_path(gpu, &[f32::NAN; 3000], p, &[], None, 1, path).await;
        assert_eq!(got, [NONE], "{path:?}");
    }
}

gpu_test!(sample_two_stage_equals_single_workgroup_and_cpu, async {
    // The two-stage top-k path must give exactly the single-workgroup kernel's ids (same tokens,
    // same sums in the same order, same draws); against the CPU reference the usual ≥ 99 %.
    let gpu = gpu().await;
    let draws = if cfg!(target_arch = "wasm32") { 3 } else { 6 };
    let vocabs = [
        1usize,
        7,
        1000,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        2 * CHUNK + 3,
        49152,
        151936,
        262144,
    ];
    let (mut same, mut total) = (0usize, 0usize);
    // The browser: the vocabularies up to BROWSER_MAX_VOCAB (same WGSL; the large ones natively).
    for (c, &v) in vocabs
        .iter()
        .enumerate()
        .filter(|(_, &v)| !BROWSER || v <= BROWSER_MAX_VOCAB)
    {
        // Heavy ties (the 0.25 grid) at every other vocabulary.
        let PathCase {
            logits: l,
            context,
            sparse,
        } = path_case(v, 30 + c as u64, c % 2 == 1);
        let masks: [Option<&[u32]>; 2] = [None, Some(&sparse)];
        for (pi, p) in two_stage_cases().iter().enumerate() {
            for (mi, &mask) in masks.iter().enumerate() {
                if mi == 1 && pi % 2 == 0 && v > 1000 {
                    continue; // keep the native run short: the masked cases at two sets
                }
                let label = format!("vocab {v} case {pi} mask {mi}");
                same += two_stage_draws_agree(&gpu, &l, p, &context, mask, draws, "two-stage", &label).await;
                total += draws;
            }
        }
    }
    say!("two-stage draws equal to the CPU reference: {same} of {total}");
    assert!(same * 100 >= total * 99, "{same} of {total}");
    // Nothing valid: NONE on both paths.
    none_on_both_paths(&gpu, &two_stage_cases()[1]).await;
});

gpu_test!(sample_two_stage_is_chosen_for_filtered_draws, async {
    let gpu = gpu().await;
    let mut s = GpuSampler::new(&gpu, 151936).unwrap();
    let with_k = |top_k| SamplingParams {
        temperature: 0.7,
        top_k,
        top_p: 0.95,
        ..Default::default()
    };
    for (top_k, top_k_path) in [
        (0usize, false),
        (1, true),
        (40, true),
        (K_MAX as usize, true),
        (K_MAX as usize + 1, false),
    ] {
        s.start(&gpu, &with_k(top_k), &[]).unwrap();
        assert!(s.two_stage(), "top_k {top_k}");
        assert_eq!(s.top_k_path(), top_k_path, "top_k {top_k}");
        assert_eq!(s.dispatches(), 2, "top_k {top_k}");
    }
    s.start(&gpu, &SamplingParams::default(), &[]).unwrap();
    assert!(!s.two_stage(), "greedy");
    s.set_filtered_path(FilteredPath::SingleWorkgroup);
    s.start(&gpu, &with_k(40), &[]).unwrap();
    assert!(!s.two_stage(), "forced single workgroup");
    assert_eq!(s.dispatches(), 1);
});

/// Logits shaped like a language model's: a bulk in [-8, 0] and `n_high` tokens spread over the
/// vocabulary well above it (the nucleus of top-p 0.95 is among them), with the usual awkward
/// values; `n_high` = 0 gives a flat bulk (a nucleus of thousands of tokens).
fn peaked(vocab: usize, seed: u64, n_high: usize) -> Vec<f32> {
    let mut l = kjarni_web::cpu::random(vocab, seed, -8.0, 0.0);
    let r = kjarni_web::cpu::random(n_high, seed + 1, 4.0, 9.0);
    for (h, &x) in r.iter().enumerate() {
        l[(h * 7919 + 13) % vocab] = x;
    }
    if vocab >= 7 {
        l[1] = f32::NAN;
        l[vocab - 2] = f32::NEG_INFINITY;
    }
    l
}

/// Parameter sets of the top-p path: top-p only, min-p only, both, top_k > K_MAX with top-p.
fn top_p_cases() -> Vec<SamplingParams> {
    vec![
        SamplingParams {
            temperature: 0.7,
            top_p: 0.95,
            seed: 11,
            ..Default::default()
        },
        SamplingParams {
            temperature: 1.2,
            min_p: 0.05,
            seed: 12,
            ..Default::default()
        },
        SamplingParams {
            temperature: 1.0,
            top_p: 0.8,
            min_p: 0.02,
            repetition_penalty: 1.3,
            seed: 13,
            ..Default::default()
        },
        SamplingParams {
            temperature: 0.9,
            top_k: 1000,
            top_p: 0.9,
            seed: u64::MAX - 2,
            ..Default::default()
        },
        SamplingParams {
            temperature: 1.5,
            top_k: K_MAX as usize + 1,
            top_p: 0.97,
            min_p: 0.001,
            seed: 14,
            ..Default::default()
        },
    ]
}

gpu_test!(sample_top_p_path_equals_single_workgroup_and_cpu, async {
    // The two-stage top-p path (`topp_final`: candidates where they decide, whole-vocabulary scans
    // where they do not) must give exactly the single-workgroup kernel's ids; against the CPU
    // reference the usual ≥ 99 %.
    let gpu = gpu().await;
    let draws = if cfg!(target_arch = "wasm32") { 3 } else { 6 };
    let vocabs = [
        1usize,
        7,
        1000,
        CHUNK - 1,
        CHUNK + 1,
        5 * CHUNK + 3,
        49152,
        151936,
        262144,
    ];
    let (mut same, mut total) = (0usize, 0usize);
    // The browser: the vocabularies up to BROWSER_MAX_VOCAB (same WGSL; the large ones natively).
    for (c, &v) in vocabs
        .iter()
        .enumerate()
        .filter(|(_, &v)| !BROWSER || v <= BROWSER_MAX_VOCAB)
    {
        // Flat (the random logits with ties, NaN, ±huge, -inf; every other vocabulary on a 0.25
        // grid), and peaked with 40 high tokens.
        let PathCase {
            logits: flat,
            context,
            sparse,
        } = path_case(v, 50 + c as u64, c % 2 == 1);
        let dists = [flat, peaked(v, 70 + c as u64, 40)];
        for (di, l) in dists.iter().enumerate() {
            for (pi, p) in top_p_cases().iter().enumerate() {
                for (mi, mask) in [None, Some(&sparse[..])].into_iter().enumerate() {
                    if mi == 1 && (pi + di) % 2 == 0 {
                        continue; // keep the runs short: the sparse mask at half the sets
                    }
                    let label = format!("vocab {v} dist {di} case {pi} mask {mi}");
                    same += two_stage_draws_agree(&gpu, l, p, &context, mask, draws, "top-p path", &label).await;
                    total += draws;
                }
            }
        }
    }
    say!("top-p path draws equal to the CPU reference: {same} of {total}");
    assert!(same * 100 >= total * 99, "{same} of {total}");
    none_on_both_paths(&gpu, &top_p_cases()[0]).await;
});

gpu_test!(sample_top_p_path_takes_candidates_when_peaked, async {
    // The diagnostic count of whole-vocabulary scans per draw: peaked logits are decided from the
    // candidates (most draws no scan), flat ones need the scans (the nucleus runs below T); the
    // ids equal the single workgroup's either way.
    let gpu = gpu().await;
    let v = 151936;
    let draws = if cfg!(target_arch = "wasm32") { 8 } else { 24 };
    let p = &top_p_cases()[0];
    let l_gpu = |l: &[f32]| GpuTensor::from_f32(&gpu, "logits", &[1, v], DType::F32, l).unwrap();
    let ids = GpuTensor::zeros(&gpu, "ids", &[1], DType::U32).unwrap();
    for (name, l) in [("peaked", peaked(v, 5, 40)), ("flat", logits(v, 6, 3.0))] {
        let lt = l_gpu(&l);
        let mut fast = GpuSampler::new(&gpu, v).unwrap();
        fast.start(&gpu, p, &[]).unwrap();
        let mut scans = Vec::new();
        let mut got = Vec::new();
        for _ in 0..draws {
            let mut b = gpu.batch();
            fast.record(&gpu, &mut b, &lt, ids.buffer(), 0).unwrap();
            gpu.submit(b).unwrap();
            got.push(ids.to_u32_vec(&gpu).await.unwrap()[0]);
            scans.push(fast.last_full_scans(&gpu).await.unwrap());
        }
        let want = gpu_draws_path(&gpu, &l, p, &[], None, draws, FilteredPath::SingleWorkgroup).await;
        assert_eq!(got, want, "{name}");
        let without = scans.iter().filter(|&&s| s == 0).count();
        say!("{name}: whole-vocabulary scans per draw {scans:?}");
        if name == "peaked" {
            assert!(without * 4 >= draws * 3, "{name}: {scans:?}");
        } else {
            assert!(without < draws, "{name}: {scans:?}");
        }
    }
});

gpu_test!(sample_top_p_path_many_draws_at_the_margins, async {
    // Many draws where the candidates' decisions are close calls: a moderately peaked vocabulary
    // (the dropped tokens hold a few % of the mass, so round-0 draws and Z brackets are often near
    // their bounds) and a nearly flat one; ids equal to the single workgroup's.
    let gpu = gpu().await;
    let draws = if cfg!(target_arch = "wasm32") { 40 } else { 200 };
    let v = 3 * CHUNK + 5;
    let mut mid = kjarni_web::cpu::random(v, 90, -4.0, 0.0);
    for (h, &x) in kjarni_web::cpu::random(300, 91, 0.0, 3.0).iter().enumerate() {
        mid[(h * 31 + 7) % v] = x;
    }
    let near_flat = kjarni_web::cpu::random(v, 92, -0.5, 0.5);
    let mut scans = 0u32;
    for (di, l) in [mid, near_flat].iter().enumerate() {
        for (pi, p) in top_p_cases().iter().enumerate() {
            let old = gpu_draws_path(&gpu, l, p, &[], None, draws, FilteredPath::SingleWorkgroup).await;
            let new = gpu_draws_path(&gpu, l, p, &[], None, draws, FilteredPath::TwoStage).await;
            assert_eq!(new, old, "dist {di} case {pi}");
            let mut s = GpuSampler::new(&gpu, v).unwrap();
            s.start(&gpu, p, &[]).unwrap();
            let lt = GpuTensor::from_f32(&gpu, "logits", &[1, v], DType::F32, l).unwrap();
            let ids = GpuTensor::zeros(&gpu, "ids", &[1], DType::U32).unwrap();
            let mut b = gpu.batch();
            s.record(&gpu, &mut b, &lt, ids.buffer(), 0).unwrap();
            gpu.submit(b).unwrap();
            scans += s.last_full_scans(&gpu).await.unwrap();
        }
    }
    say!("whole-vocabulary scans of the first draws: {scans}");
});
