// quantize_q4.wgsl: an F16 or F32 weight into Q4 (4-bit, f16 scale and f16 min per group of
// GROUP = 32 or 128), round to nearest, bit for bit as the CPU quantizer (engine/src/dtype.rs
// `quantize_q4`):
//   min[j]   = f16_down(lo_j),  lo_j = clamp(min of group j, ±65504), -0 taken as +0
//   scale[j] = f16_up(min((hi_j - min[j]) * INV_15, 65504)),  hi_j = clamp(max of group j)
//   q[e]     = round(max(w[e] - min[j], 0) / scale[j]), ties away from zero, q <= 15
// Rounding min down and scale up makes [min, min + 15 scale] cover the group. Every step is
// exact or one correctly-rounded f32 add or multiply; f16 conversions and the rounding are
// integer / exact comparisons (common.wgsl: f16_bits_down/up, steps_to_nearest).
//
// Bindings:
//   0  w: array<u32>  [groups * GROUP] this dispatch's rows, flat; F16 (W_F16): element e is
//        half e % 2 of word e / 2; F32: word e is element e (bitcast)
//   1  quants: array<u32>  read_write, [groups * GROUP / 8]: element e in nibble e % 8 of word
//        e / 8 (the Q4 layout, engine/src/dtype.rs)
//   2  scales: array<u32>  read_write, [groups]: group j's f16 scale (low half) and min (high)
//   3  params: Params
// Workgroup: WORKGROUP_SIZE threads (override); thread t quantizes group t, reading it twice
// (min/max, then quantize) rather than holding GROUP values in registers. Grid:
// ceil(groups / WORKGROUP_SIZE), folded 2-D when large. Requires nothing optional.
// Reference: dtype::quantize_q4.

struct Params {
    groups: u32,   // groups in this dispatch
    threads: u32,  // = groups
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read_write> quants: array<u32>;
@group(0) @binding(2) var<storage, read_write> scales: array<u32>;
@group(0) @binding(3) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 64u;
override GROUP: u32 = 32u;
override W_F16: bool = true;

// Element e of the input, exactly (f16 subnormals included).
fn value(e: u32) -> f32 {
    if (W_F16) {
        return f32_from_f16_bits((w[e / 2u] >> (16u * (e & 1u))) & 0xffffu);
    }
    return bitcast<f32>(w[e]);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let j = flat_group_id(wid, nwg) * WORKGROUP_SIZE + lid;
    if (j >= params.threads) {
        return;
    }
    let base = j * GROUP;
    var lo = bitcast<f32>(0x7f7fffffu);   // f32::MAX
    var hi = -bitcast<f32>(0x7f7fffffu);
    for (var i = 0u; i < GROUP; i++) {
        let v = value(base + i);
        lo = min(lo, v);
        hi = max(hi, v);
    }
    lo = clamp(lo, -65504.0, 65504.0);
    hi = clamp(hi, -65504.0, 65504.0);
    lo = select(lo, 0.0, lo == 0.0);
    let min_bits = f16_bits_down(lo);
    let m = f32_from_f16_bits(min_bits);
    let scale_bits = f16_bits_up(min((hi - m) * bitcast<f32>(0x3d888889u), 65504.0));  // * 1/15
    let scale = f32_from_f16_bits(scale_bits);
    for (var word = 0u; word < GROUP / 8u; word++) {
        var packed = 0u;
        for (var b = 0u; b < 8u; b++) {
            let v = value(base + 8u * word + b);
            packed |= steps_to_nearest(max(v - m, 0.0), scale, 15u) << (4u * b);
        }
        quants[j * (GROUP / 8u) + word] = packed;
    }
    scales[j] = scale_bits | (min_bits << 16u);
}
