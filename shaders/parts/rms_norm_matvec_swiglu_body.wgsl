// parts/rms_norm_matvec_swiglu_body.wgsl: the kernel of rms_norm_matvec_swiglu.wgsl (sums through
// workgroup memory) and rms_norm_matvec_swiglu_subgroup.wgsl (sums by subgroupAdd), which each
// splice it in and add their entry point and their sums part (parts/workgroup_sums_tree.wgsl,
// parts/workgroup_sums_subgroup.wgsl). The kernel: the feed-forward block's input in one pass:
// RMSNorm of one vector, the stacked gate/up projection of it and the SwiGLU gate, reduced over the
// workgroup.
//   out[i] = silu(a_i) * b_i     for i < n,  silu(a) = a * sigmoid(a)
//   a_i = inv_rms * sum_k W[i, k] (x[k] g[k]),  b_i = inv_rms * sum_k W[n + i, k] (x[k] g[k]),
//   inv_rms = 1 / sqrt(mean_k(x[k]^2) + eps),  W = [gate_proj; up_proj] (2n rows)
// The same as rms_norm.wgsl, matvec_subgroup.wgsl over all 2n rows and swiglu.wgsl, without the
// two intermediate vectors or their dispatches; rms_norm_matvec_subgroup.wgsl is the same norm
// without the gate.
//
// Bindings:
//   0  w: array<vec4<u32>>  [2n, k] row-major: gate rows, then up rows.
//        F16 (W_F16): 8 halves per word (element i is half i%2 of u32 i/2);
//        F32: 4 floats per word, read by bitcast.
//   1  x: array<vec4<f32>>  (k) the vector to normalise (the residual stream)
//   2  g: array<vec4<f32>>  (k) the norm's weight, f32
//   3  out: array<f32>      (n) written
//   4  params: Params
// Workgroup: WORKGROUP_SIZE threads (override) own ROWS consecutive outputs (override, <= MAX_ROWS
// / 2), so 2 * ROWS weight rows: gate rows i0 .. i0 + ROWS and the up rows n + i0 .. Thread t reads
// words t, t + WORKGROUP_SIZE, ... of all of them, loading x and g once per word (and adding x^2 to
// its own sum) and keeping one partial sum per row, as matvec_subgroup.wgsl does; the variant's
// sums part folds the threads' partials (rows and x^2), then thread r reads the sums of gate row r,
// up row r and x^2 and writes out[i0 + r].
// Grid: ceil(n / ROWS) workgroups, folded 2-D when large (flat_group_id).
// Requires: k % 8 == 0 (F16) or k % 4 == 0 (F32), 16-byte aligned bindings.
// Fuses rms_norm, matvec (over the stacked weight) and swiglu (the tests compare with those).
// Reference: reference::rms_norm_matvec_swiglu::rms_norm_matvec_swiglu.
struct Params {
    n: u32,          // outputs: half the rows of W
    k: u32,          // elements per row (= length of x)
    row_words: u32,  // vec4 words per row: k / 8 (F16) or k / 4 (F32)
    eps: f32,
}

@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 256u;
override ROWS: u32 = 4u;
override W_F16: bool = true;

// Per-thread accumulators (gate rows, then up rows) are a function-scope array, whose size must
// be a constant: 2 * ROWS may not exceed it (the host checks).
const MAX_ROWS: u32 = 8u;

// The sums each thread contributes, folded over the workgroup by the variant\'s sums part.
override SUMS: u32 = 2u * ROWS + 1u;

fn rms_norm_matvec_swiglu(wid: vec3<u32>, nwg: vec3<u32>, ids: SumIds) {
    let lid = ids.lid;
    let i0 = flat_group_id(wid, nwg) * ROWS;
    // acc[r]: gate row i0 + r; acc[ROWS + r]: up row n + i0 + r. A workgroup past the last
    // output re-reads the last rows (rather than branch around the loads) and does not store.
    // sum_sq: this thread's share of sum_k x[k]^2.
    var acc: array<f32, MAX_ROWS>;  // zero-initialized
    var sum_sq = 0.0;
    for (var c = lid; c < params.row_words; c += WORKGROUP_SIZE) {
        if (W_F16) {
            let x_lo = x[2u * c];
            let x_hi = x[2u * c + 1u];
            sum_sq += dot(x_lo, x_lo) + dot(x_hi, x_hi);
            let xg_lo = x_lo * g[2u * c];
            let xg_hi = x_hi * g[2u * c + 1u];
            for (var r = 0u; r < 2u * ROWS; r++) {
                let row = min(i0 + r % ROWS, params.n - 1u) + (r / ROWS) * params.n;
                let word = w[row * params.row_words + c];
                let w_lo = vec4<f32>(unpack2x16float(word.x), unpack2x16float(word.y));
                let w_hi = vec4<f32>(unpack2x16float(word.z), unpack2x16float(word.w));
                acc[r] += dot(w_lo, xg_lo) + dot(w_hi, xg_hi);
            }
        } else {
            let xv = x[c];
            sum_sq += dot(xv, xv);
            let xg = xv * g[c];
            for (var r = 0u; r < 2u * ROWS; r++) {
                let row = min(i0 + r % ROWS, params.n - 1u) + (r / ROWS) * params.n;
                let word = w[row * params.row_words + c];
                acc[r] += dot(bitcast<vec4<f32>>(word), xg);
            }
        }
    }
    for (var r = 0u; r < 2u * ROWS; r++) {
        keep_sum(r, acc[r], ids);
    }
    keep_sum(2u * ROWS, sum_sq, ids);
    fold_sums(ids);
    for (var r = lid; r < ROWS && i0 + r < params.n; r += WORKGROUP_SIZE) {
        var a = workgroup_sum(r, ids);
        var b = workgroup_sum(ROWS + r, ids);
        var total_sq = workgroup_sum(2u * ROWS, ids);
        let inv_rms = inverseSqrt(total_sq / f32(params.k) + params.eps);
        a *= inv_rms;
        // exp(-a) overflows to +inf for a < -88; 1 / (1 + inf) = 0 is the right limit.
        out[i0 + r] = a / (1.0 + exp(-a)) * (b * inv_rms);
    }
}
