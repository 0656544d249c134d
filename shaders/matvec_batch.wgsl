// matvec_batch.wgsl: matrix product for a few rows of x (batched decode), read like a matvec.
//   y[b, row_offset + r] = sum_k W[r, k] * x[b, k]   for b < m, r < rows   (+= with ACCUMULATE)
// A tiled matmul needs many rows of x to keep a large GPU busy: at m = 4..64 its few tiles of
// output leave most multiprocessors idle and every weight byte is still read once per tile.
// Here every weight word is read once per BATCH rows of x and the work spreads over the rows of
// W, as in matvec_subgroup.wgsl: bandwidth-bound, ceil(m / BATCH) reads of W in all.
//
// Bindings:
//   0  w: array<vec4<u32>>  [rows, k] row-major, this dispatch's row chunk of the weight.
//        F16 (W_F16): 8 halves per word (element i is half i%2 of u32 i/2); F32: 4 floats per word.
//   1  x: array<vec4<f32>>  [m, k] row-major
//   2  y: array<f32>        [m, y_stride] read_write, the whole output; this dispatch writes
//        columns row_offset .. row_offset + rows
//   3  params: Params
// Workgroup: WORKGROUP_SIZE threads (override) own ROWS consecutive rows of W and BATCH rows of x
// (overrides, ROWS * BATCH <= MAX_ACC). Thread t reads weight words t, t + WORKGROUP_SIZE, ... of
// the ROWS rows, unpacks them once, and multiplies them with the same words of each of the BATCH
// x rows, keeping ROWS * BATCH partial sums. The reduction: every thread stores its partials in
// workgroup memory and a tree over the threads adds them, all ROWS * BATCH sums at each level
// (portable: no subgroup operations, so one file serves every adapter).
// Grid: (ceil(rows / ROWS), 1, ceil(m / BATCH)); the first dimension folded 2-D when large
// (flat_group_id), the third is the block of x rows.
// Requires: k % 8 == 0 (F16) or k % 4 == 0 (F32), 16-byte aligned bindings. Fuses nothing but the
// residual add (ACCUMULATE).
// Reference: reference::matmul::matmul.

struct Params {
    rows: u32,        // rows of W in this dispatch
    k: u32,           // elements per row of W and of x
    row_words: u32,   // vec4 words per row of W: k / 8 (F16) or k / 4 (F32)
    row_offset: u32,  // column of y of this dispatch's first row of W
    m: u32,           // rows of x and y
    y_stride: u32,    // elements per row of y
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 256u;
override ROWS: u32 = 2u;
override BATCH: u32 = 8u;
override W_F16: bool = true;
override ACCUMULATE: bool = false;

// Accumulators (and unpacked weight words) are function-scope arrays of constant size.
const MAX_ACC: u32 = 16u;
const MAX_ROWS: u32 = 8u;

// partial_sums[j * WORKGROUP_SIZE + t]: thread t's sum j (j = b * ROWS + r).
var<workgroup> partial_sums: array<f32, ROWS * BATCH * WORKGROUP_SIZE>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row0 = flat_group_id(wid, nwg) * ROWS;
    let b0 = wid.z * BATCH;
    // vec4s of x per row: k / 4.
    let x_words = params.k / 4u;
    // A workgroup past the last row (or x row) re-reads the last one rather than branch around
    // the loads, and does not store those sums.
    var acc: array<f32, MAX_ACC>;  // zero-initialized
    for (var c = lid; c < params.row_words; c += WORKGROUP_SIZE) {
        // This word of each of the ROWS rows, unpacked once for all BATCH rows of x.
        var w_lo: array<vec4<f32>, MAX_ROWS>;
        var w_hi: array<vec4<f32>, MAX_ROWS>;
        for (var r = 0u; r < ROWS; r++) {
            let word = w[min(row0 + r, params.rows - 1u) * params.row_words + c];
            if (W_F16) {
                w_lo[r] = vec4<f32>(unpack2x16float(word.x), unpack2x16float(word.y));
                w_hi[r] = vec4<f32>(unpack2x16float(word.z), unpack2x16float(word.w));
            } else {
                w_lo[r] = bitcast<vec4<f32>>(word);
            }
        }
        for (var b = 0u; b < BATCH; b++) {
            let xrow = min(b0 + b, params.m - 1u) * x_words;
            if (W_F16) {
                let x_lo = x[xrow + 2u * c];
                let x_hi = x[xrow + 2u * c + 1u];
                for (var r = 0u; r < ROWS; r++) {
                    acc[b * ROWS + r] += dot(w_lo[r], x_lo) + dot(w_hi[r], x_hi);
                }
            } else {
                let xv = x[xrow + c];
                for (var r = 0u; r < ROWS; r++) {
                    acc[b * ROWS + r] += dot(w_lo[r], xv);
                }
            }
        }
    }
    let sums = ROWS * BATCH;
    for (var j = 0u; j < sums; j++) {
        partial_sums[j * WORKGROUP_SIZE + lid] = acc[j];
    }
    workgroupBarrier();
    for (var half = WORKGROUP_SIZE / 2u; half > 0u; half /= 2u) {
        if (lid < half) {
            for (var j = 0u; j < sums; j++) {
                partial_sums[j * WORKGROUP_SIZE + lid] += partial_sums[j * WORKGROUP_SIZE + lid + half];
            }
        }
        workgroupBarrier();
    }
    for (var j = lid; j < sums; j += WORKGROUP_SIZE) {
        let b = b0 + j / ROWS;
        let r = row0 + j % ROWS;
        if (b < params.m && r < params.rows) {
            let i = b * params.y_stride + params.row_offset + r;
            if (ACCUMULATE) {
                y[i] += partial_sums[j * WORKGROUP_SIZE];
            } else {
                y[i] = partial_sums[j * WORKGROUP_SIZE];
            }
        }
    }
}
