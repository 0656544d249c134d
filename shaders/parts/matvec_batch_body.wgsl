// parts/matvec_batch_body.wgsl: the kernel of matvec_batch.wgsl (float weights) and
// matvec_batch_quant.wgsl (Q8, Q4 weights), which differ only in how a word of a weight row is
// read: each declares its weight's bindings, x (array<vec4<f32>>), y (array<f32>) and
// params (Params below), the override TWO_VEC4 (a word holds 8 elements, else 4) and
//   fn weight_word(row: u32, c: u32) -> array<vec4<f32>, 2>
// (word c of row `row` of this dispatch's chunk as f32: elements 4 or 8 of them, the second
// vec4 unused for 4), then splices this in with `// include: matvec_batch_body`. See
// matvec_batch.wgsl's header for the formula, the workgroup shape and the reduction.

struct Params {
    rows: u32,        // rows of W in this dispatch
    k: u32,           // elements per row of W and of x
    row_words: u32,   // words per row of W (4 or 8 elements each)
    row_offset: u32,  // column of y of this dispatch's first row of W
    m: u32,           // rows of x and y
    y_stride: u32,    // elements per row of y
    _pad0: u32,
    _pad1: u32,
}

override WORKGROUP_SIZE: u32 = 256u;
override ROWS: u32 = 2u;
override BATCH: u32 = 8u;
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
        // This word of each of the ROWS rows, decoded once for all BATCH rows of x.
        var w_words: array<array<vec4<f32>, 2>, MAX_ROWS>;
        for (var r = 0u; r < ROWS; r++) {
            w_words[r] = weight_word(min(row0 + r, params.rows - 1u), c);
        }
        for (var b = 0u; b < BATCH; b++) {
            let xrow = min(b0 + b, params.m - 1u) * x_words;
            if (TWO_VEC4) {
                let x_lo = x[xrow + 2u * c];
                let x_hi = x[xrow + 2u * c + 1u];
                for (var r = 0u; r < ROWS; r++) {
                    acc[b * ROWS + r] += dot(w_words[r][0], x_lo) + dot(w_words[r][1], x_hi);
                }
            } else {
                let xv = x[xrow + c];
                for (var r = 0u; r < ROWS; r++) {
                    acc[b * ROWS + r] += dot(w_words[r][0], xv);
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
