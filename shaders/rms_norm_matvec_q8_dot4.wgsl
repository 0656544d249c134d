// rms_norm_matvec_q8_dot4.wgsl: RMSNorm fused into a Q8 matvec for decode, in integer dot
// products, reduced with subgroupAdd:
//   y[r] = inv_rms * (W . (x * g))[r]   for r < rows,   inv_rms = 1 / sqrt(mean_k(x[k]^2) + eps)
// where W . v is computed as matvec_q8_dot4.wgsl computes it (v rounded to int8 per block of 32
// inside the kernel, then dot4I8Packed with the quants; read that file's header for the formula,
// the quant layout and why). Here the rounded vector is v = x * g, formed as x and g are loaded,
// and each thread also sums x^2 over its blocks; the subgroups fold x^2 with the row sums and
// the 1 / rms scales each row at the end (it is common to every element, so it commutes with
// the rounding). The same as rms_norm.wgsl then matvec_q8_dot4.wgsl, without the normalised
// vector or its dispatch.
//
// Bindings: 0 quants, 1 scales: the whole weight [rows, k] in the Q8 layout (as in
//   matvec_q8_dot4.wgsl); 2 x: array<vec4<f32>> (k) the vector to normalise; 3 g:
//   array<vec4<f32>> (k) the norm's weight; 4 y: array<f32> (rows) written; 5 params: Params.
// Workgroup: WORKGROUP_SIZE threads (override) own ROWS consecutive rows (override, <= MAX_ROWS);
// thread t takes blocks t, t + WORKGROUP_SIZE, ... of all ROWS rows, as in matvec_q8_dot4.wgsl.
// One scale per block of 32 (a Q8 group).
// Grid: ceil(rows / ROWS) workgroups, folded 2-D when large (flat_group_id).
// Requires: k % 32 == 0 (the dtype guarantees it), 16-byte aligned bindings, the weight within
// one storage binding, the subgroup feature. Fuses rms_norm and the dequantizing matvec.
// Reference: reference::matvec::round_x_int8 of x * g, then as matvec_q8_dot4.wgsl, times
// inv_rms (the tests compare with rms_norm then the Dot4 matvec's reference).

struct Params {
    rows: u32,        // rows of W (all in one binding)
    k: u32,           // elements per row (= length of x)
    row_words: u32,   // vec4 quant words per row: k / 16
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

// Per-thread accumulators: a function-scope array of constant size; ROWS may not exceed it
// (kernels::matvec::MAX_DOT4_ROWS).
const MAX_ROWS: u32 = 16u;

// Each subgroup's sum for each row, then for x^2: [ROWS + 1][WORKGROUP_SIZE].
override SUMS: u32 = ROWS + 1u;
// include: workgroup_sums_subgroup

// x block b rounded to int8: 32 signed bytes in the quants' order (element 4i + j in byte j of
// word i) and the step d.
struct XBlock {
    lo: vec4<u32>,  // elements 0 .. 16
    hi: vec4<u32>,  // elements 16 .. 32
    d: f32,
    sum_sq: f32,  // sum of the 32 x^2 (before g)
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
    var xb: XBlock;
    xb.lo = vec4<u32>(pack4x8snorm(v0 * inv), pack4x8snorm(v1 * inv), pack4x8snorm(v2 * inv), pack4x8snorm(v3 * inv));
    xb.hi = vec4<u32>(pack4x8snorm(v4 * inv), pack4x8snorm(v5 * inv), pack4x8snorm(v6 * inv), pack4x8snorm(v7 * inv));
    xb.d = amax * (1.0 / 127.0);
    xb.sum_sq = (dot(x0, x0) + dot(x1, x1)) + (dot(x2, x2) + dot(x3, x3))
              + (dot(x4, x4) + dot(x5, x5)) + (dot(x6, x6) + dot(x7, x7));
    return xb;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_id) subgroup: u32,
        @builtin(num_subgroups) n_subgroups: u32) {
    let ids = SumIds(lid, lane, subgroup, n_subgroups);
    let row0 = flat_group_id(wid, nwg) * ROWS;
    let blocks = params.k / 32u;
    // A workgroup past the last row re-reads the last row and does not store those sums.
    var acc: array<f32, MAX_ROWS>;  // zero-initialized
    var sum_sq = 0.0;
    for (var b = lid; b < blocks; b += WORKGROUP_SIZE) {
        let xb = x_block(b);
        sum_sq += xb.sum_sq;
        for (var r = 0u; r < ROWS; r++) {
            let row = min(row0 + r, params.rows - 1u);
            let word = row * params.row_words + 2u * b;
            let q_lo = quants[word];
            let q_hi = quants[word + 1u];
            let group = row * blocks + b;
            let scale = f16_from_word(scales[group / 2u], group);
            let dot_q = dot4I8Packed(q_lo.x, xb.lo.x) + dot4I8Packed(q_lo.y, xb.lo.y)
                      + dot4I8Packed(q_lo.z, xb.lo.z) + dot4I8Packed(q_lo.w, xb.lo.w)
                      + dot4I8Packed(q_hi.x, xb.hi.x) + dot4I8Packed(q_hi.y, xb.hi.y)
                      + dot4I8Packed(q_hi.z, xb.hi.z) + dot4I8Packed(q_hi.w, xb.hi.w);
            acc[r] += (scale * xb.d) * f32(dot_q);
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
