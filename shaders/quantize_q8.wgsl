// quantize_q8.wgsl: an F16 or F32 weight into Q8 (int8, one f16 scale per group of 32), round to
// nearest, bit for bit as the CPU quantizer (engine/src/dtype.rs `quantize_q8`):
//   scale[j] = f16_nearest(min(amax_j, 65504) * INV_127),   amax_j = max |w| over group j
//   q[e]     = sign(w[e]) * round(|w[e]| / scale[j]), ties away from zero, |q| <= 127
// Every step is exact or one correctly-rounded f32 multiply; f16 conversions and the rounding
// are integer / exact comparisons (common.wgsl: f16_bits_nearest, steps_to_nearest).
//
// Bindings:
//   0  w: array<u32>  [groups * 32] this dispatch's rows, flat; F16 (W_F16): element e is half
//        e % 2 of word e / 2; F32: word e is element e (bitcast)
//   1  quants: array<u32>  read_write, [groups * 8]: group j's 32 int8 in words 8j .. 8j + 8,
//        element e in byte e % 4 of word e / 4 (the Q8 layout, engine/src/dtype.rs)
//   2  scales: array<u32>  read_write, [ceil(groups / 2)]: group j's f16 scale in half j % 2 of
//        word j / 2
//   3  params: Params
// Workgroup: WORKGROUP_SIZE threads (override); thread t quantizes groups 2t and 2t + 1 (the
// two whose scales share word t, so no two threads write one word). It reads each group twice
// (max, then quantize) rather than holding 32 values in registers. Grid: ceil(threads /
// WORKGROUP_SIZE), folded 2-D when large. Requires nothing optional. Reference:
// dtype::quantize_q8.

struct Params {
    groups: u32,   // groups in this dispatch
    threads: u32,  // ceil(groups / 2)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read_write> quants: array<u32>;
@group(0) @binding(2) var<storage, read_write> scales: array<u32>;
@group(0) @binding(3) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 64u;
override GROUP: u32 = 32u;  // fixed for Q8; declared so the host passes one set of constants
override W_F16: bool = true;

// Element e of the input, exactly (f16 subnormals included).
fn value(e: u32) -> f32 {
    if (W_F16) {
        return f32_from_f16_bits((w[e / 2u] >> (16u * (e & 1u))) & 0xffffu);
    }
    return bitcast<f32>(w[e]);
}

// Quantizes group j (writes its 8 quant words) and returns its f16 scale bits.
fn quantize_group(j: u32) -> u32 {
    let base = j * GROUP;
    var amax = 0.0;
    for (var i = 0u; i < GROUP; i++) {
        amax = max(amax, abs(value(base + i)));
    }
    let bits = f16_bits_nearest(min(amax, 65504.0) * bitcast<f32>(0x3c010204u));  // * 1/127
    let scale = f32_from_f16_bits(bits);
    for (var word = 0u; word < GROUP / 4u; word++) {
        var packed = 0u;
        for (var b = 0u; b < 4u; b++) {
            let v = value(base + 4u * word + b);
            var q = i32(steps_to_nearest(abs(v), scale, 127u));
            if (v < 0.0) {
                q = -q;
            }
            packed |= (bitcast<u32>(q) & 0xffu) << (8u * b);
        }
        quants[j * (GROUP / 4u) + word] = packed;
    }
    return bits;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = flat_group_id(wid, nwg) * WORKGROUP_SIZE + lid;
    if (t >= params.threads) {
        return;
    }
    let lo = quantize_group(2u * t);
    var hi = 0u;
    if (2u * t + 1u < params.groups) {
        hi = quantize_group(2u * t + 1u);
    }
    scales[t] = lo | (hi << 16u);
}
