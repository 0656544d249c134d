// rms_norm_matvec_q4_dot4.wgsl: RMSNorm fused into a Q4 (groups of 32 or 128) matvec for decode, in integer dot
// products, reduced with subgroupAdd:
//   y[r] = inv_rms * (W . (x * g))[r]   for r < rows,   inv_rms = 1 / sqrt(mean_k(x[k]^2) + eps)
// where W . v is computed as matvec_q4_dot4.wgsl computes it (v rounded to int8 per block of 32
// inside the kernel, then dot4I8Packed with the quants; read that file's header for the formula,
// the quant layout and why). Here the rounded vector is v = x * g, formed as x and g are loaded,
// and each thread also sums x^2 over its blocks; the subgroups fold x^2 with the row sums and
// the 1 / rms scales each row at the end (it is common to every element, so it commutes with
// the rounding). The same as rms_norm.wgsl then matvec_q4_dot4.wgsl, without the normalised
// vector or its dispatch.
//
// Bindings: 0 quants, 1 scales: the whole weight [rows, k] in the Q4 layout (as in
//   matvec_q4_dot4.wgsl); 2 x: array<vec4<f32>> (k) the vector to normalise; 3 g:
//   array<vec4<f32>> (k) the norm's weight; 4 y: array<f32> (rows) written; 5 params: Params.
// Workgroup: WORKGROUP_SIZE threads (override) own ROWS consecutive rows (override, <= MAX_ROWS);
// thread t takes blocks t, t + WORKGROUP_SIZE, ... of all ROWS rows, as in matvec_q4_dot4.wgsl.
// GROUP_WORDS (override): quant words per group, 1 (Q4) or 4 (Q4G128).
// Grid: ceil(rows / ROWS) workgroups, folded 2-D when large (flat_group_id).
// Requires: k % 32 == 0 (the dtype guarantees it), 16-byte aligned bindings, the weight within
// one storage binding, the subgroup feature. Fuses rms_norm and the dequantizing matvec.
// Reference: reference::matvec::round_x_int8 of x * g, then as matvec_q4_dot4.wgsl, times
// inv_rms (the tests compare with rms_norm then the Dot4 matvec's reference).

struct Params {
    rows: u32,        // rows of W (all in one binding)
    k: u32,           // elements per row (= length of x)
    row_words: u32,   // vec4 quant words per row: k / 32
    eps: f32,         // added to mean(x^2) under the square root
}

@group(0) @binding(0) var<storage, read> quants: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> scales: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 128u;
override ROWS: u32 = 8u;
override GROUP_WORDS: u32 = 1u;

// Per-thread accumulators: a function-scope array of constant size; ROWS may not exceed it
// (kernels::matvec::MAX_DOT4_ROWS).
const MAX_ROWS: u32 = 16u;

// Each subgroup's sum for each row, then for x^2: [ROWS + 1][WORKGROUP_SIZE].
override SUMS: u32 = ROWS + 1u;
// include: workgroup_sums_subgroup

// x block b (one quant word's 32 elements) rounded to int8, in the nibbles' order: component i
// of a quant word holds elements 8i .. 8i + 8, its even nibbles (masked in place) elements 8i,
// 8i + 2, 8i + 4, 8i + 6 and its odd nibbles (shifted down 4) the others; plus the step d and
// the exact sum of the 32 x values.
struct XBlock {
    even: vec4<u32>,  // component i: the int8 of elements 8i, 8i + 2, 8i + 4, 8i + 6
    odd: vec4<u32>,   // component i: elements 8i + 1, 8i + 3, 8i + 5, 8i + 7
    d: f32,
    sum_sq: f32,  // sum of the 32 x^2 (before g)
    sum: f32,
}

fn x_block(b: u32) -> XBlock {
    // The block of x * g (the norm's 1 / rms is applied to the row sums at the end).
    let x0 = x[8u * b];
    let v0 = x0 * g[8u * b];
    let x1 = x[8u * b + 1u];
    let v1 = x1 * g[8u * b + 1u];
    let x2 = x[8u * b + 2u];
    let v2 = x2 * g[8u * b + 2u];
    let x3 = x[8u * b + 3u];
    let v3 = x3 * g[8u * b + 3u];
    let x4 = x[8u * b + 4u];
    let v4 = x4 * g[8u * b + 4u];
    let x5 = x[8u * b + 5u];
    let v5 = x5 * g[8u * b + 5u];
    let x6 = x[8u * b + 6u];
    let v6 = x6 * g[8u * b + 6u];
    let x7 = x[8u * b + 7u];
    let v7 = x7 * g[8u * b + 7u];
    let m = max(max(max(abs(v0), abs(v1)), max(abs(v2), abs(v3))),
                max(max(abs(v4), abs(v5)), max(abs(v6), abs(v7))));
    let amax = max(max(m.x, m.y), max(m.z, m.w));
    // pack4x8snorm(v) stores round(clamp(v, -1, 1) * 127): with v = x / amax that is x / d.
    let inv = select(0.0, 1.0 / amax, amax > 0.0);
    let s = (v0 + v1) + (v2 + v3) + (v4 + v5) + (v6 + v7);
    var xb: XBlock;
    xb.even = vec4<u32>(pack4x8snorm(vec4<f32>(v0.xz, v1.xz) * inv), pack4x8snorm(vec4<f32>(v2.xz, v3.xz) * inv),
                        pack4x8snorm(vec4<f32>(v4.xz, v5.xz) * inv), pack4x8snorm(vec4<f32>(v6.xz, v7.xz) * inv));
    xb.odd = vec4<u32>(pack4x8snorm(vec4<f32>(v0.yw, v1.yw) * inv), pack4x8snorm(vec4<f32>(v2.yw, v3.yw) * inv),
                       pack4x8snorm(vec4<f32>(v4.yw, v5.yw) * inv), pack4x8snorm(vec4<f32>(v6.yw, v7.yw) * inv));
    xb.d = amax * (1.0 / 127.0);
    xb.sum_sq = (dot(x0, x0) + dot(x1, x1)) + (dot(x2, x2) + dot(x3, x3))
              + (dot(x4, x4) + dot(x5, x5)) + (dot(x6, x6) + dot(x7, x7));
    xb.sum = (s.x + s.y) + (s.z + s.w);
    return xb;
}

// Low nibble of each byte of a quant component.
const NIBBLES: u32 = 0x0f0f0f0fu;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_id) subgroup: u32,
        @builtin(num_subgroups) n_subgroups: u32) {
    let ids = SumIds(lid, lane, subgroup, n_subgroups);
    let row0 = flat_group_id(wid, nwg) * ROWS;
    // A workgroup past the last row re-reads the last row and does not store those sums.
    var acc: array<f32, MAX_ROWS>;  // zero-initialized
    var sum_sq = 0.0;
    for (var b = lid; b < params.row_words; b += WORKGROUP_SIZE) {
        let xb = x_block(b);
        sum_sq += xb.sum_sq;
        for (var r = 0u; r < ROWS; r++) {
            let word = min(row0 + r, params.rows - 1u) * params.row_words + b;
            let q = quants[word];
            let scale_min = unpack2x16float(scales[word / GROUP_WORDS]);
            let dot_q = dot4I8Packed(q.x & NIBBLES, xb.even.x) + dot4I8Packed((q.x >> 4u) & NIBBLES, xb.odd.x)
                      + dot4I8Packed(q.y & NIBBLES, xb.even.y) + dot4I8Packed((q.y >> 4u) & NIBBLES, xb.odd.y)
                      + dot4I8Packed(q.z & NIBBLES, xb.even.z) + dot4I8Packed((q.z >> 4u) & NIBBLES, xb.odd.z)
                      + dot4I8Packed(q.w & NIBBLES, xb.even.w) + dot4I8Packed((q.w >> 4u) & NIBBLES, xb.odd.w);
            acc[r] += (scale_min.x * xb.d) * f32(dot_q) + scale_min.y * xb.sum;
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        keep_sum(r, acc[r], ids);
    }
    keep_sum(ROWS, sum_sq, ids);
    fold_sums(ids);
    for (var r = lid; r < ROWS && row0 + r < params.rows; r += WORKGROUP_SIZE) {
        var total = workgroup_sum(r, ids);
        var total_sq = workgroup_sum(ROWS, ids);
        y[row0 + r] = total * inverseSqrt(total_sq / f32(params.k) + params.eps);
    }
}
