// parts/matvec_q8_body.wgsl: the kernel of matvec_q8.wgsl (sums through workgroup memory) and
// matvec_q8_subgroup.wgsl (sums by subgroupAdd), which each splice it in and add their entry point
// and their sums part (parts/workgroup_sums_tree.wgsl, parts/workgroup_sums_subgroup.wgsl). The
// kernel: matrix-vector product for decode with a Q8 weight, dequantized on the fly, reduced over
// the workgroup.
//   y[row_offset + r] = sum_k (q[r, k] * scale[r, k / 32]) * x[k]     for r < rows   (+= with ACCUMULATE)
//                     = sum_g scale[r, g] * (sum_{k in group g} q[r, k] * x[k])
// Bandwidth-bound: every quant byte is read once, in 16-byte words (16 int8) by neighbouring
// threads (coalesced); each scale (one per 32 quants) is read by the two threads that share it.
//
// Bindings (engine/src/dtype.rs: the Q8 layout):
//   0  quants: array<vec4<u32>>  [rows, k / 16] this dispatch's row chunk; word c of row r holds
//        elements 16c .. 16c + 16, element e in byte e % 4 of component (e / 4) % 4, signed
//   1  scales: array<u32>  [rows * k / 32] f16, two per word: flat group j = (r * k + e) / 32 is
//        half j % 2 of word j / 2
//   2  x: array<vec4<f32>>  (k) the input vector
//   3  y: array<f32>        (N) read_write, the whole output; this dispatch writes
//        y[row_offset .. row_offset + rows]
//   4  params: Params
// Workgroup: WORKGROUP_SIZE threads (override) own ROWS consecutive rows (override, <= MAX_ROWS).
// Thread t reads quant words t, t + WORKGROUP_SIZE, ... of all ROWS rows: for each word position it
// loads its 16 x values once and keeps one partial sum per row. The reduction: the variant's sums
// part folds the threads' partials, then thread r reads the sums of row r.
// Grid: ceil(rows / ROWS) workgroups, folded 2-D when large (flat_group_id).
// Requires: k % 32 == 0 (the dtype guarantees it); 16-byte aligned x.
// Fuses the dequantization. Reference: dtype::dequantize, then reference::matvec::matvec.
struct Params {
    rows: u32,        // rows of W in this dispatch
    k: u32,           // elements per row (= length of x)
    row_words: u32,   // vec4 quant words per row: k / 16
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

// Per-thread accumulators: a function-scope array of constant size; ROWS may not exceed it.
const MAX_ROWS: u32 = 8u;

// The sums each thread contributes, folded over the workgroup by the variant\'s sums part.
override SUMS: u32 = ROWS;

fn matvec_q8(wid: vec3<u32>, nwg: vec3<u32>, ids: SumIds) {
    let lid = ids.lid;
    let row0 = flat_group_id(wid, nwg) * ROWS;
    // A workgroup past the last row re-reads the last row and does not store those sums.
    var acc: array<f32, MAX_ROWS>;  // zero-initialized
    for (var c = lid; c < params.row_words; c += WORKGROUP_SIZE) {
        let x0 = x[4u * c];
        let x1 = x[4u * c + 1u];
        let x2 = x[4u * c + 2u];
        let x3 = x[4u * c + 3u];
        for (var r = 0u; r < ROWS; r++) {
            let word = min(row0 + r, params.rows - 1u) * params.row_words + c;
            let q = quants[word];
            let group = word / 2u;  // 16 quants per word, 32 per group
            let scale = f16_from_word(scales[group / 2u], group);
            let dot_q = dot(int8x4_from_word(q.x), x0) + dot(int8x4_from_word(q.y), x1)
                      + dot(int8x4_from_word(q.z), x2) + dot(int8x4_from_word(q.w), x3);
            acc[r] += scale * dot_q;
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
