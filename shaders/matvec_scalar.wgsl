// matvec_scalar.wgsl: matrix-vector product for any k, one element per load (the slow path).
//   y[row_offset + r] = sum_k W[r, k] * x[k]     for r < rows   (+= with ACCUMULATE)
// Used when k is not a multiple of the vectorized kernels' word (k % 8 != 0 for F16,
// k % 4 != 0 for F32): a row may then start in the middle of a word (an F16 row of odd k starts
// on the high half of a u32), so each element is addressed on its own. Correct for all k; only
// odd shapes take it.
//
// Bindings:
//   0  w: array<u32>  [rows, k] row-major, this dispatch's row chunk of the weight;
//        F16 (W_F16): element i is half i%2 of word i/2; F32: word i is element i (bitcast)
//   1  x: array<f32>  (k) the input vector
//   2  y: array<f32>  (N) read_write, the whole output; this dispatch writes
//        y[row_offset .. row_offset + rows]
//   3  params: Params
// Workgroup: WORKGROUP_SIZE threads (override, a power of two) own ROWS consecutive rows
// (override); thread t reads elements t, t + WORKGROUP_SIZE, ... of each row, then a tree
// reduction in workgroup memory folds the partials and thread r (r % WORKGROUP_SIZE when
// ROWS is the larger) writes row r.
// Requires nothing optional. Fuses nothing. Reference: reference::matvec::matvec.

struct Params {
    rows: u32,        // rows of W in this dispatch
    k: u32,           // elements per row (= length of x)
    row_words: u32,   // unused here (the vectorized kernels' words per row)
    row_offset: u32,  // index in y of this dispatch's first row
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 64u;
override ROWS: u32 = 4u;
override W_F16: bool = true;
// The epilogue: y = W x, or with ACCUMULATE y += W x (a residual connection added in place; only
// the store differs, so it is a flag rather than a file).
override ACCUMULATE: bool = false;

// Every thread's partial sum for every row: [ROWS][WORKGROUP_SIZE].
var<workgroup> partials: array<f32, ROWS * WORKGROUP_SIZE>;

// Element `i` (flat index into this chunk) of W.
fn weight(i: u32) -> f32 {
    if (W_F16) {
        return f16_from_word(w[i / 2u], i);
    }
    return bitcast<f32>(w[i]);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row0 = flat_group_id(wid, nwg) * ROWS;
    for (var r = 0u; r < ROWS; r++) {
        let row = row0 + r;
        if (row >= params.rows) {
            break;
        }
        let base = row * params.k;
        var acc = 0.0;
        for (var k = lid; k < params.k; k += WORKGROUP_SIZE) {
            acc += weight(base + k) * x[k];
        }
        partials[r * WORKGROUP_SIZE + lid] = acc;
    }
    workgroupBarrier();
    // Rows past the end left their slots unwritten; their sums are never stored.
    for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            for (var r = 0u; r < ROWS; r++) {
                let i = r * WORKGROUP_SIZE + lid;
                partials[i] += partials[i + stride];
            }
        }
        workgroupBarrier();
    }
    for (var r = lid; r < ROWS && row0 + r < params.rows; r += WORKGROUP_SIZE) {
        let i = params.row_offset + row0 + r;
        if (ACCUMULATE) {
            y[i] += partials[r * WORKGROUP_SIZE];
        } else {
            y[i] = partials[r * WORKGROUP_SIZE];
        }
    }
}
