// parts/rms_norm_matvec_swiglu_dot4_body.wgsl: the kernel of rms_norm_matvec_swiglu_q8_dot4.wgsl
// and rms_norm_matvec_swiglu_q4_dot4.wgsl, which differ only in the weight format: each splices in
// its format part first (parts/dot4_q8.wgsl or parts/dot4_q4.wgsl: XBlock, x_block, block_dot),
// then this. What it computes, as the Q8 variant says it (the Q4 one reads its layout instead):
// rms_norm_matvec_swiglu_q8_dot4.wgsl: the feed-forward block's input in one pass with a
// Q8 weight, in integer dot products, reduced with subgroupAdd:
//   out[i] = silu(a_i) * b_i     for i < n,  silu(a) = a * sigmoid(a)
//   a_i = inv_rms * (W . (x * g))[i],  b_i = inv_rms * (W . (x * g))[n + i],
//   inv_rms = 1 / sqrt(mean_k(x[k]^2) + eps),  W = [gate_proj; up_proj] (2n rows)
// where W . v is computed as matvec_q8_dot4.wgsl computes it (v rounded to int8 per block of 32
// inside the kernel, then dot4I8Packed with the quants; read that file's header for the formula,
// the quant layout and why), with v = x * g as in rms_norm_matvec_q8_dot4.wgsl. The same as
// rms_norm.wgsl, matvec_q8_dot4.wgsl over all 2n rows and swiglu.wgsl, without the two
// intermediate vectors or their dispatches.
//
// Bindings: 0 quants, 1 scales: the whole weight [2n, k] in the Q8 layout (gate rows, then
//   up rows); 2 x: array<vec4<f32>> (k) the vector to normalise; 3 g: array<vec4<f32>> (k) the
//   norm's weight; 4 out: array<f32> (n) written; 5 params: Params.
// Workgroup: WORKGROUP_SIZE threads (override) own ROWS consecutive outputs (override,
// <= MAX_ROWS / 2), so 2 * ROWS weight rows: gate rows i0 .. i0 + ROWS and the up rows n + i0 ..;
// thread t takes blocks t, t + WORKGROUP_SIZE, ... of all of them (rounding x * g once per block
// and adding x^2 to its own sum); subgroupAdd folds each subgroup's partials (rows and x^2), then
// thread r adds the subgroups' sums of gate row r, up row r and x^2 and writes out[i0 + r].
// One scale per block of 32 (a Q8 group).
// Grid: ceil(n / ROWS) workgroups, folded 2-D when large (flat_group_id).
// Requires: k % 32 == 0 (the dtype guarantees it), 16-byte aligned bindings, the weight within
// one storage binding, the subgroup feature. Fuses rms_norm, the dequantizing matvec and swiglu.
// Reference: rms_norm, then the Dot4 matvec's reference (reference::matvec::round_x_int8 ...),
// then reference::swiglu (the tests compare with those).

// The x blocks: x * g, rounded by the format part.
// include: dot4_norm_x
struct Params {
    n: u32,           // outputs: half the rows of W (all in one binding)
    k: u32,           // elements per row (= length of x)
    row_words: u32,   // vec4 quant words per row: k / 16 (Q8) or k / 32 (Q4)
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

// Per-thread accumulators, gate rows then up rows: a function-scope array of constant size;
// 2 * ROWS may not exceed it (kernels::matvec::MAX_DOT4_ROWS).
const MAX_ROWS: u32 = 16u;

// Each subgroup's sum for each of the 2 ROWS rows, then for x^2: [2 ROWS + 1][WORKGROUP_SIZE].
override SUMS: u32 = 2u * ROWS + 1u;
// include: workgroup_sums_subgroup

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
    // Outputs row0 .. row0 + ROWS: gate rows row0 + r and up rows n + row0 + r. A workgroup past
    // the last output re-reads the last one and does not store those sums.
    var acc: array<f32, MAX_ROWS>;  // zero-initialized
    var sum_sq = 0.0;
    for (var b = lid; b < blocks; b += WORKGROUP_SIZE) {
        let xb = x_block(b);
        sum_sq += xb.sum_sq;
        for (var r = 0u; r < 2u * ROWS; r++) {
            let row = min(row0 + r % ROWS, params.n - 1u) + select(0u, params.n, r >= ROWS);
            acc[r] += block_dot(row, b, xb);
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
