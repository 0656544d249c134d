// rms_norm_matvec_swiglu_q4_dot4.wgsl: the feed-forward block's input in one pass with a
// Q4 (groups of 32 or 128) weight, in integer dot products, reduced with subgroupAdd:
//   out[i] = silu(a_i) * b_i     for i < n,  silu(a) = a * sigmoid(a)
//   a_i = inv_rms * (W . (x * g))[i],  b_i = inv_rms * (W . (x * g))[n + i],
//   inv_rms = 1 / sqrt(mean_k(x[k]^2) + eps),  W = [gate_proj; up_proj] (2n rows)
// where W . v is computed as matvec_q4_dot4.wgsl computes it (v rounded to int8 per block of 32
// inside the kernel, then dot4I8Packed with the quants; read that file's header for the formula,
// the quant layout and why), with v = x * g as in rms_norm_matvec_q4_dot4.wgsl. The same as
// rms_norm.wgsl, matvec_q4_dot4.wgsl over all 2n rows and swiglu.wgsl, without the two
// intermediate vectors or their dispatches.
//
// Bindings: 0 quants, 1 scales: the whole weight [2n, k] in the Q4 layout (gate rows, then
//   up rows); 2 x: array<vec4<f32>> (k) the vector to normalise; 3 g: array<vec4<f32>> (k) the
//   norm's weight; 4 out: array<f32> (n) written; 5 params: Params.
// Workgroup: WORKGROUP_SIZE threads (override) own ROWS consecutive outputs (override,
// <= MAX_ROWS / 2), so 2 * ROWS weight rows: gate rows i0 .. i0 + ROWS and the up rows n + i0 ..;
// thread t takes blocks t, t + WORKGROUP_SIZE, ... of all of them (rounding x * g once per block
// and adding x^2 to its own sum); subgroupAdd folds each subgroup's partials (rows and x^2), then
// thread r adds the subgroups' sums of gate row r, up row r and x^2 and writes out[i0 + r].
// GROUP_WORDS (override): quant words per group, 1 (Q4) or 4 (Q4G128).
// Grid: ceil(n / ROWS) workgroups, folded 2-D when large (flat_group_id).
// Requires: k % 32 == 0 (the dtype guarantees it), 16-byte aligned bindings, the weight within
// one storage binding, the subgroup feature. Fuses rms_norm, the dequantizing matvec and swiglu.
// Reference: rms_norm, then the Dot4 matvec's reference (reference::matvec::round_x_int8 ...),
// then reference::swiglu (the tests compare with those).

struct Params {
    n: u32,           // outputs: half the rows of W (all in one binding)
    k: u32,           // elements per row (= length of x)
    row_words: u32,   // vec4 quant words per row: k / 32
    eps: f32,         // added to mean(x^2) under the square root
}

@group(0) @binding(0) var<storage, read> quants: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> scales: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 128u;
override ROWS: u32 = 4u;
override GROUP_WORDS: u32 = 1u;

// Per-thread accumulators, gate rows then up rows: a function-scope array of constant size;
// 2 * ROWS may not exceed it (kernels::matvec::MAX_DOT4_ROWS).
const MAX_ROWS: u32 = 16u;

// Each subgroup's sum for each of the 2 ROWS rows, then for x^2: [2 ROWS + 1][WORKGROUP_SIZE].
override SUMS: u32 = 2u * ROWS + 1u;
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
    // Outputs row0 .. row0 + ROWS: gate rows row0 + r and up rows n + row0 + r. A workgroup past
    // the last output re-reads the last one and does not store those sums.
    var acc: array<f32, MAX_ROWS>;  // zero-initialized
    var sum_sq = 0.0;
    for (var b = lid; b < params.row_words; b += WORKGROUP_SIZE) {
        let xb = x_block(b);
        sum_sq += xb.sum_sq;
        for (var r = 0u; r < 2u * ROWS; r++) {
            let row = min(row0 + r % ROWS, params.n - 1u) + select(0u, params.n, r >= ROWS);
            let word = row * params.row_words + b;
            let q = quants[word];
            let scale_min = unpack2x16float(scales[word / GROUP_WORDS]);
            let dot_q = dot4I8Packed(q.x & NIBBLES, xb.even.x) + dot4I8Packed((q.x >> 4u) & NIBBLES, xb.odd.x)
                      + dot4I8Packed(q.y & NIBBLES, xb.even.y) + dot4I8Packed((q.y >> 4u) & NIBBLES, xb.odd.y)
                      + dot4I8Packed(q.z & NIBBLES, xb.even.z) + dot4I8Packed((q.z >> 4u) & NIBBLES, xb.odd.z)
                      + dot4I8Packed(q.w & NIBBLES, xb.even.w) + dot4I8Packed((q.w >> 4u) & NIBBLES, xb.odd.w);
            acc[r] += (scale_min.x * xb.d) * f32(dot_q) + scale_min.y * xb.sum;
        }
    }
    for (var r = 0u; r < 2u * ROWS; r++) {
        keep_sum(r, acc[r], ids);
    }
    keep_sum(2u * ROWS, sum_sq, ids);
    fold_sums(ids);
    for (var r = lid; r < ROWS && row0 + r < params.n; r += WORKGROUP_SIZE) {
        var gate = workgroup_sum(r, ids);
        var up = workgroup_sum(ROWS + r, ids);
        var total_sq = workgroup_sum(2u * ROWS, ids);
        let inv_rms = inverseSqrt(total_sq / f32(params.k) + params.eps);
        let a = gate * inv_rms;
        out[row0 + r] = a / (1.0 + exp(-a)) * (up * inv_rms);
    }
}
