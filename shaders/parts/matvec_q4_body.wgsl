// parts/matvec_q4_body.wgsl: the kernel of matvec_q4.wgsl (sums through workgroup memory) and
// matvec_q4_subgroup.wgsl (sums by subgroupAdd), which each splice it in and add their entry point
// and their sums part (parts/workgroup_sums_tree.wgsl, parts/workgroup_sums_subgroup.wgsl). The
// kernel: matrix-vector product for decode with a Q4 weight (groups of 32 or 128), dequantized on
// the fly, reduced over the workgroup.
//   y[row_offset + r] = sum_k (q[r, k] * scale[r, g] + min[r, g]) * x[k],  g = k / GROUP   (+= with ACCUMULATE)
//                     = sum_g scale[r, g] * (sum_{k in g} q[r, k] x[k]) + min[r, g] * (sum_{k in g} x[k])
// Bandwidth-bound: every quant byte is read once, in 16-byte words (32 nibbles) by neighbouring
// threads (coalesced); one scale/min word per group, read by the GROUP / 32 threads sharing it.
// The sum of x over a word's 32 elements is formed once and used for all ROWS rows.
//
// Bindings (engine/src/dtype.rs: the Q4 layout):
//   0  quants: array<vec4<u32>>  [rows, k / 32] this dispatch's row chunk; word c of row r holds
//        elements 32c .. 32c + 32, element e in nibble e % 8 (bits 4 * (e % 8)) of component
//        (e / 8) % 4, an unsigned 0..15
//   1  scales: array<u32>  [rows * k / GROUP] word j: group j's f16 scale (low half) and f16
//        min (high half); flat group j = (r * k + e) / GROUP
//   2  x: array<vec4<f32>>  (k) the input vector
//   3  y: array<f32>        (N) read_write, the whole output; this dispatch writes
//        y[row_offset .. row_offset + rows]
//   4  params: Params
// Workgroup: WORKGROUP_SIZE threads (override, a power of two) own ROWS consecutive rows (override,
// <= MAX_ROWS). Thread t reads quant words t, t + WORKGROUP_SIZE, ... of all ROWS rows: for each
// word position it loads its 32 x values once and keeps one partial sum per row. The reduction: the
// variant's sums part folds the threads' partials, then thread r reads the sums of row r.
// GROUP_WORDS (override): quant words per group, 1 (Q4, group 32) or 4 (Q4G128).
// Grid: ceil(rows / ROWS) workgroups, folded 2-D when large (flat_group_id).
// Requires: k % GROUP == 0 (the dtype guarantees it); 16-byte aligned x.
// Fuses the dequantization.
// Reference: dtype::dequantize, then reference::matvec::matvec.
struct Params {
    rows: u32,        // rows of W in this dispatch
    k: u32,           // elements per row (= length of x)
    row_words: u32,   // vec4 quant words per row: k / 32
    row_offset: u32,  // index in y of this dispatch's first row
}

@group(0) @binding(0) var<storage, read> quants: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> scales: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 256u;
override ROWS: u32 = 4u;
// The epilogue: y = W x, or with ACCUMULATE y += W x (a residual connection added in place).
override ACCUMULATE: bool = false;
override GROUP_WORDS: u32 = 1u;

// Per-thread accumulators: a function-scope array of constant size; ROWS may not exceed it.
const MAX_ROWS: u32 = 8u;

// The sums each thread contributes, folded over the workgroup by the variant\'s sums part.
override SUMS: u32 = ROWS;

// sum_e q[e] * x[e] over the 32 nibbles of one quant word.
fn dot_nibbles(q: vec4<u32>, xs: array<vec4<f32>, 8>) -> f32 {
    return dot(nibbles_lo_from_word(q.x), xs[0]) + dot(nibbles_hi_from_word(q.x), xs[1])
         + dot(nibbles_lo_from_word(q.y), xs[2]) + dot(nibbles_hi_from_word(q.y), xs[3])
         + dot(nibbles_lo_from_word(q.z), xs[4]) + dot(nibbles_hi_from_word(q.z), xs[5])
         + dot(nibbles_lo_from_word(q.w), xs[6]) + dot(nibbles_hi_from_word(q.w), xs[7]);
}

fn matvec_q4(wid: vec3<u32>, nwg: vec3<u32>, ids: SumIds) {
    let lid = ids.lid;
    let row0 = flat_group_id(wid, nwg) * ROWS;
    // A workgroup past the last row re-reads the last row and does not store those sums.
    var acc: array<f32, MAX_ROWS>;  // zero-initialized
    for (var c = lid; c < params.row_words; c += WORKGROUP_SIZE) {
        var xs: array<vec4<f32>, 8>;
        var x_sum = vec4<f32>(0.0);
        for (var i = 0u; i < 8u; i++) {
            xs[i] = x[8u * c + i];
            x_sum += xs[i];
        }
        let x_total = dot(x_sum, vec4<f32>(1.0));
        for (var r = 0u; r < ROWS; r++) {
            let word = min(row0 + r, params.rows - 1u) * params.row_words + c;
            let scale_min = unpack2x16float(scales[word / GROUP_WORDS]);
            acc[r] += scale_min.x * dot_nibbles(quants[word], xs) + scale_min.y * x_total;
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        keep_sum(r, acc[r], ids);
    }
    fold_sums(ids);
    for (var r = lid; r < ROWS && row0 + r < params.rows; r += WORKGROUP_SIZE) {
        var total = workgroup_sum(r, ids);
        let i = params.row_offset + row0 + r;
        if (ACCUMULATE) {
            y[i] += total;
        } else {
            y[i] = total;
        }
    }
}
