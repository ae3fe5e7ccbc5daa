// GELU, three formulas chosen by KIND:
//   KIND_ERF:      0.5 x (1 + erf(x / sqrt 2)), erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7;
//                  one exp, one division): HF hidden_act "gelu" (BERT). The baseline.
//   KIND_TANH:     0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), written as x / (1 + exp(-2u))
//                  so it never forms tanh (whose sinh/cosh overflow gives NaN on some backends):
//                  HF "gelu_new", "gelu_pytorch_tanh", "gelu_fast" (GPT-2, Gemma).
//   KIND_RATIONAL: 0.5 x (1 + erf(x / sqrt 2)) with Eigen's / XLA's rational erf (odd degree-13
//                  over even degree-8 polynomial, clamped to |x| ≤ 4): no exp, one division.
// gelu_vec4 / gelu_vec4_inplace: one vec4 per invocation (n % 4 == 0); gelu_scalar(_inplace):
// one element per invocation, any n.

const KIND_ERF: u32 = 0u;
const KIND_TANH: u32 = 1u;
const KIND_RATIONAL: u32 = 2u;

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x1: array<f32>;
@group(0) @binding(2) var<storage, read_write> y1: array<f32>;
@group(0) @binding(3) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> io1: array<f32>;
@group(0) @binding(6) var<storage, read_write> io4: array<vec4<f32>>;

fn erf_as(x: vec4<f32>) -> vec4<f32> {
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return sign(x) * (1.0 - poly * exp(-a * a));
}

fn erf_rational(v: vec4<f32>) -> vec4<f32> {
    let x = clamp(v, vec4<f32>(-4.0), vec4<f32>(4.0));
    let x2 = x * x;
    var num = x2 * -2.72614225801306e-10 + 2.77068142495902e-08;
    num = x2 * num + -2.10102402082508e-06;
    num = x2 * num + -5.69250639462346e-05;
    num = x2 * num + -7.34990630326855e-04;
    num = x2 * num + -2.95459980854025e-03;
    num = x2 * num + -1.60960333262415e-02;
    var den = x2 * -1.45660718464996e-05 + -2.13374055278905e-04;
    den = x2 * den + -1.68282697438203e-03;
    den = x2 * den + -7.37332916720468e-03;
    den = x2 * den + -1.42647390514189e-02;
    return x * num / den;
}

fn gelu(x: vec4<f32>) -> vec4<f32> {
    if (KIND == KIND_TANH) {
        let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
        // exp(-2u) capped at exp(80) ≈ 5.5e34: finite, and x / (1 + 5.5e34) is 0 to f32 precision.
        return x / (1.0 + exp(min(-2.0 * u, vec4<f32>(80.0))));
    }
    let z = x * 0.7071067811865476;
    if (KIND == KIND_RATIONAL) {
        return 0.5 * x * (1.0 + erf_rational(z));
    }
    return 0.5 * x * (1.0 + erf_as(z));
}

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn gelu_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        y4[i] = gelu(x4[i]);
    }
}

@compute @workgroup_size(WG)
fn gelu_scalar(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        y1[i] = gelu(vec4<f32>(x1[i])).x;
    }
}

@compute @workgroup_size(WG)
fn gelu_vec4_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        io4[i] = gelu(io4[i]);
    }
}

@compute @workgroup_size(WG)
fn gelu_scalar_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, nwg, lid);
    if (i < p.n) {
        io1[i] = gelu(vec4<f32>(io1[i])).x;
    }
}
