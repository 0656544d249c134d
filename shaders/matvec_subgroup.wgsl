// matvec_subgroup.wgsl: matrix-vector product for decode, reduced with subgroupAdd.
//   y[row_offset + r] = sum_k W[r, k] * x[k]     for r < rows
// Bandwidth-bound: every weight byte is read once, in 16-byte words, by neighbouring threads
// (coalesced). This is the fast path; matvec.wgsl is the same kernel with a portable reduction.
//
// Bindings:
//   0  w: array<vec4<u32>>  [rows, k] row-major, this dispatch's row chunk of the weight.
//        F16 (W_F16): 8 halves per word (element i is half i%2 of u32 i/2);
//        F32: 4 floats per word, read by bitcast.
//   1  x: array<vec4<f32>>  (k) the input vector
//   2  y: array<f32>        (N) read_write, the whole output; this dispatch writes
//        y[row_offset .. row_offset + rows]
//   3  params: Params
// Workgroup: WORKGROUP_SIZE threads (override) own ROWS consecutive rows (override). For each of
// its rows, thread t reads words t, t + WORKGROUP_SIZE, ... of the row and keeps one partial
// sum; subgroupAdd folds each subgroup's partials, and thread r (r % WORKGROUP_SIZE when ROWS is
// the larger) then adds the subgroups' sums of row r. Grid: ceil(rows / ROWS) workgroups, folded 2-D when large (flat_group_id).
// Requires: k % 8 == 0 (F16) or k % 4 == 0 (F32), so every row starts on a 16-byte word, and
// 16-byte aligned bindings; the subgroup feature. Fuses nothing.
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

// Each subgroup's sum for each row: [ROWS][WORKGROUP_SIZE] (at most one subgroup per thread).
var<workgroup> subgroup_sums: array<f32, ROWS * WORKGROUP_SIZE>;

// Word `c` of a row (holding `word`) times the matching elements of x.
fn word_dot(c: u32, word: vec4<u32>) -> f32 {
    if (W_F16) {
        let lo = vec4<f32>(unpack2x16float(word.x), unpack2x16float(word.y));
        let hi = vec4<f32>(unpack2x16float(word.z), unpack2x16float(word.w));
        return dot(lo, x[2u * c]) + dot(hi, x[2u * c + 1u]);
    }
    return dot(bitcast<vec4<f32>>(word), x[c]);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_id) subgroup: u32,
        @builtin(num_subgroups) n_subgroups: u32) {
    let row0 = flat_group_id(wid, nwg) * ROWS;
    for (var r = 0u; r < ROWS; r++) {
        let row = row0 + r;
        if (row >= params.rows) {
            break;
        }
        let base = row * params.row_words;
        var acc = 0.0;
        for (var c = lid; c < params.row_words; c += WORKGROUP_SIZE) {
            acc += word_dot(c, w[base + c]);
        }
        let sum = subgroupAdd(acc);
        if (lane == 0u) {
            subgroup_sums[r * WORKGROUP_SIZE + subgroup] = sum;
        }
    }
    workgroupBarrier();
    for (var r = lid; r < ROWS && row0 + r < params.rows; r += WORKGROUP_SIZE) {
        var total = 0.0;
        for (var s = 0u; s < n_subgroups; s++) {
            total += subgroup_sums[r * WORKGROUP_SIZE + s];
        }
        y[params.row_offset + row0 + r] = total;
    }
}
