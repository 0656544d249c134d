// matvec_swiglu.wgsl: the stacked gate/up projection and the SwiGLU gate of one vector, in one
// pass, portable reduction (no subgroups needed).
//   out[i] = silu(g_i) * u_i,  g_i = sum_k W[i, k] x[k],  u_i = sum_k W[n + i, k] x[k],  i < n
//   with W = [gate_proj; up_proj] (2n rows) and silu(g) = g * sigmoid(g)
// The same as matvec.wgsl over all 2n rows followed by swiglu.wgsl, without the intermediate
// vector or the second dispatch. matvec_swiglu_subgroup.wgsl is the fast-path variant.
//
// Bindings:
//   0  w: array<vec4<u32>>  [2n, k] row-major: gate rows, then up rows.
//        F16 (W_F16): 8 halves per word (element i is half i%2 of u32 i/2);
//        F32: 4 floats per word, read by bitcast.
//   1  x: array<vec4<f32>>  (k) the input vector
//   2  out: array<f32>      (n) written
//   3  params: Params
// Workgroup: WORKGROUP_SIZE threads (override, a power of two) own ROWS consecutive outputs
// (override, <= MAX_ROWS / 2), so 2 * ROWS weight rows: gate rows i0 .. i0 + ROWS and the up rows
// n + i0 .. Thread t reads words t, t + WORKGROUP_SIZE, ... of all of them, loading x once per
// word and keeping one partial sum per row, as matvec.wgsl does; a tree in workgroup memory
// folds all rows' partials at once, then thread r gates gate row r with up row r and writes
// out[i0 + r].
// Grid: ceil(n / ROWS) workgroups, folded 2-D when large (flat_group_id).
// Requires: k % 8 == 0 (F16) or k % 4 == 0 (F32), and 16-byte aligned bindings.
// Fuses matvec (over the stacked weight) and swiglu (the tests compare with that pair).
// Reference: reference::matvec::matvec, then reference::swiglu::swiglu.

struct Params {
    n: u32,          // outputs: half the rows of W
    k: u32,          // elements per row (= length of x)
    row_words: u32,  // vec4 words per row: k / 8 (F16) or k / 4 (F32)
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 256u;
override ROWS: u32 = 4u;
override W_F16: bool = true;

// Per-thread accumulators (gate rows, then up rows) are a function-scope array, whose size must
// be a constant: 2 * ROWS may not exceed it (the host checks).
const MAX_ROWS: u32 = 8u;

// Every thread's partial sum for each of the 2 * ROWS rows: [2 * ROWS][WORKGROUP_SIZE].
var<workgroup> partials: array<f32, 2u * ROWS * WORKGROUP_SIZE>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i0 = flat_group_id(wid, nwg) * ROWS;
    // acc[r]: gate row i0 + r; acc[ROWS + r]: up row n + i0 + r. A workgroup past the last
    // output re-reads the last rows (rather than branch around the loads) and does not store.
    var acc: array<f32, MAX_ROWS>;  // zero-initialized
    for (var c = lid; c < params.row_words; c += WORKGROUP_SIZE) {
        if (W_F16) {
            let x_lo = x[2u * c];
            let x_hi = x[2u * c + 1u];
            for (var r = 0u; r < 2u * ROWS; r++) {
                let row = min(i0 + r % ROWS, params.n - 1u) + (r / ROWS) * params.n;
                let word = w[row * params.row_words + c];
                let w_lo = vec4<f32>(unpack2x16float(word.x), unpack2x16float(word.y));
                let w_hi = vec4<f32>(unpack2x16float(word.z), unpack2x16float(word.w));
                acc[r] += dot(w_lo, x_lo) + dot(w_hi, x_hi);
            }
        } else {
            let xv = x[c];
            for (var r = 0u; r < 2u * ROWS; r++) {
                let row = min(i0 + r % ROWS, params.n - 1u) + (r / ROWS) * params.n;
                let word = w[row * params.row_words + c];
                acc[r] += dot(bitcast<vec4<f32>>(word), xv);
            }
        }
    }
    for (var r = 0u; r < 2u * ROWS; r++) {
        partials[r * WORKGROUP_SIZE + lid] = acc[r];
    }
    workgroupBarrier();
    for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            for (var r = 0u; r < 2u * ROWS; r++) {
                let i = r * WORKGROUP_SIZE + lid;
                partials[i] += partials[i + stride];
            }
        }
        workgroupBarrier();
    }
    for (var r = lid; r < ROWS && i0 + r < params.n; r += WORKGROUP_SIZE) {
        let g = partials[r * WORKGROUP_SIZE];
        let u = partials[(ROWS + r) * WORKGROUP_SIZE];
        // exp(-g) overflows to +inf for g < -88; 1 / (1 + inf) = 0 is the right limit.
        out[i0 + r] = g / (1.0 + exp(-g)) * u;
    }
}
