// parts/matvec_body.wgsl: the kernel of matvec.wgsl (sums through workgroup memory) and
// matvec_subgroup.wgsl (sums by subgroupAdd), which each splice it in and add their entry point and
// their sums part (parts/workgroup_sums_tree.wgsl, parts/workgroup_sums_subgroup.wgsl). The kernel:
// matrix-vector product for decode, reduced over the workgroup.
//   y[row_offset + r] = sum_k W[r, k] * x[k]     for r < rows   (+= with ACCUMULATE)
// Bandwidth-bound: every weight byte is read once, in 16-byte words, by neighbouring threads
// (coalesced). 
//
// Bindings:
//   0  w: array<vec4<u32>>  [rows, k] row-major, this dispatch's row chunk of the weight.
//        F16 (W_F16): 8 halves per word (element i is half i%2 of u32 i/2);
//        F32: 4 floats per word, read by bitcast.
//   1  x: array<vec4<f32>>  (k) the input vector
//   2  y: array<f32>        (N) read_write, the whole output; this dispatch writes
//        y[row_offset .. row_offset + rows]
//   3  params: Params
// Workgroup: WORKGROUP_SIZE threads (override) own ROWS consecutive rows (override, <= MAX_ROWS).
// Thread t reads words t, t + WORKGROUP_SIZE, ... of all ROWS rows: for each word position it loads
// x once and issues ROWS independent weight loads, keeping one partial sum per row (so a warp
// streams ROWS rows at once, 16 bytes per thread per row). The reduction: the variant's sums part
// folds the threads' partials, then thread r (r % WORKGROUP_SIZE when ROWS is the larger) reads the
// sums of row r.
// Grid: ceil(rows / ROWS) workgroups, folded 2-D when large (flat_group_id).
// Requires: k % 8 == 0 (F16) or k % 4 == 0 (F32), so every row starts on a 16-byte word, and
// 16-byte aligned bindings. Fuses nothing.
// Reference: reference::matvec::matvec.
struct Params {
    rows: u32,        // rows of W in this dispatch
    k: u32,           // elements per row (= length of x)
    row_words: u32,   // vec4 words per row: k / 8 (F16) or k / 4 (F32)
    row_offset: u32,  // index in y of this dispatch's first row
}

@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 256u;
override ROWS: u32 = 4u;
override W_F16: bool = true;
// The epilogue: y = W x, or with ACCUMULATE y += W x (a residual connection added in place; only
// the store differs, so it is a flag rather than a file).
override ACCUMULATE: bool = false;

// Per-thread accumulators are a function-scope array, whose size must be a constant: ROWS may
// not exceed it (the host checks). With ROWS fixed at pipeline creation the row loops unroll
// and the array lives in registers.
const MAX_ROWS: u32 = 8u;

// The sums each thread contributes, folded over the workgroup by the variant\'s sums part.
override SUMS: u32 = ROWS;

fn matvec(wid: vec3<u32>, nwg: vec3<u32>, ids: SumIds) {
    let lid = ids.lid;
    let row0 = flat_group_id(wid, nwg) * ROWS;
    // acc[r]: this thread's share of row row0 + r. A workgroup past the last row re-reads the
    // last row (rather than branch around the loads) and does not store those sums.
    var acc: array<f32, MAX_ROWS>;  // zero-initialized
    for (var c = lid; c < params.row_words; c += WORKGROUP_SIZE) {
        if (W_F16) {
            let x_lo = x[2u * c];
            let x_hi = x[2u * c + 1u];
            for (var r = 0u; r < ROWS; r++) {
                let word = w[min(row0 + r, params.rows - 1u) * params.row_words + c];
                let w_lo = vec4<f32>(unpack2x16float(word.x), unpack2x16float(word.y));
                let w_hi = vec4<f32>(unpack2x16float(word.z), unpack2x16float(word.w));
                acc[r] += dot(w_lo, x_lo) + dot(w_hi, x_hi);
            }
        } else {
            let xv = x[c];
            for (var r = 0u; r < ROWS; r++) {
                let word = w[min(row0 + r, params.rows - 1u) * params.row_words + c];
                acc[r] += dot(bitcast<vec4<f32>>(word), xv);
            }
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
