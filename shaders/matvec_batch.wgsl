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
// residual add (ACCUMULATE). The kernel is shaders/parts/matvec_batch_body.wgsl; packed weights
// take matvec_batch_quant.wgsl.
// Reference: reference::matmul::matmul.

@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

override W_F16: bool = true;
// An F16 word holds 8 elements, an F32 word 4.
override TWO_VEC4: bool = W_F16;

// include: matvec_batch_body

fn weight_word(row: u32, c: u32) -> array<vec4<f32>, 2> {
    let word = w[row * params.row_words + c];
    if (W_F16) {
        return array<vec4<f32>, 2>(vec4<f32>(unpack2x16float(word.x), unpack2x16float(word.y)),
                                   vec4<f32>(unpack2x16float(word.z), unpack2x16float(word.w)));
    }
    return array<vec4<f32>, 2>(bitcast<vec4<f32>>(word), vec4<f32>(0.0));
}
