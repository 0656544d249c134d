// parts/rms_norm_matvec_body.wgsl: the kernel of rms_norm_matvec.wgsl (sums through workgroup
// memory) and rms_norm_matvec_subgroup.wgsl (sums by subgroupAdd), which each splice it in and add
// their entry point and their sums part (parts/workgroup_sums_tree.wgsl,
// parts/workgroup_sums_subgroup.wgsl). The kernel: RMSNorm of one vector fused into the matvec that
// reads it, reduced over the workgroup.
//   y[r] = inv_rms * sum_k W[r, k] * (x[k] * g[k])     for r < rows,
//   inv_rms = 1 / sqrt(mean_k(x[k]^2) + eps)
// which is W . rms_norm(x, g) (rms_norm.wgsl, then matvec_subgroup.wgsl) without the normalised
// vector or its dispatch: every workgroup reads all of x anyway, so it sums x^2 on the way and
// scales its rows' sums at the end..
//
// Bindings:
//   0  w: array<vec4<u32>>  [rows, k] row-major.
//        F16 (W_F16): 8 halves per word (element i is half i%2 of u32 i/2);
//        F32: 4 floats per word, read by bitcast.
//   1  x: array<vec4<f32>>  (k) the vector to normalise (the residual stream)
//   2  g: array<vec4<f32>>  (k) the norm's weight, f32
//   3  y: array<f32>        (rows) written
//   4  params: Params
// Workgroup: WORKGROUP_SIZE threads (override) own ROWS consecutive rows (override, <= MAX_ROWS).
// Thread t reads words t, t + WORKGROUP_SIZE, ... of all ROWS rows, loading x and g once per word
// (and adding x^2 to its own sum) and keeping one partial sum per row, as matvec_subgroup.wgsl
// does; the variant's sums part folds the threads' partials (rows and x^2), then thread r reads the
// sums of row r and of x^2 and writes y[row0 + r].
// Grid: ceil(rows / ROWS) workgroups, folded 2-D when large (flat_group_id).
// Requires: k % 8 == 0 (F16) or k % 4 == 0 (F32), 16-byte aligned bindings.
// Fuses rms_norm and matvec (the tests compare with that pair).
// Reference: reference::rms_norm::rms_norm, then reference::matvec::matvec.
struct Params {
    rows: u32,       // rows of W
    k: u32,          // elements per row (= length of x)
    row_words: u32,  // vec4 words per row: k / 8 (F16) or k / 4 (F32)
    eps: f32,
}

@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 256u;
override ROWS: u32 = 8u;
override W_F16: bool = true;

// Per-thread accumulators are a function-scope array, whose size must be a constant: ROWS may
// not exceed it (the host checks).
const MAX_ROWS: u32 = 8u;

// The sums each thread contributes, folded over the workgroup by the variant\'s sums part.
override SUMS: u32 = ROWS + 1u;

fn rms_norm_matvec(wid: vec3<u32>, nwg: vec3<u32>, ids: SumIds) {
    let lid = ids.lid;
    let row0 = flat_group_id(wid, nwg) * ROWS;
    // acc[r]: this thread's share of row row0 + r; sum_sq: its share of sum_k x[k]^2. A workgroup
    // past the last row re-reads the last row (rather than branch around the loads).
    var acc: array<f32, MAX_ROWS>;  // zero-initialized
    var sum_sq = 0.0;
    for (var c = lid; c < params.row_words; c += WORKGROUP_SIZE) {
        if (W_F16) {
            let x_lo = x[2u * c];
            let x_hi = x[2u * c + 1u];
            sum_sq += dot(x_lo, x_lo) + dot(x_hi, x_hi);
            let xg_lo = x_lo * g[2u * c];
            let xg_hi = x_hi * g[2u * c + 1u];
            for (var r = 0u; r < ROWS; r++) {
                let word = w[min(row0 + r, params.rows - 1u) * params.row_words + c];
                let w_lo = vec4<f32>(unpack2x16float(word.x), unpack2x16float(word.y));
                let w_hi = vec4<f32>(unpack2x16float(word.z), unpack2x16float(word.w));
                acc[r] += dot(w_lo, xg_lo) + dot(w_hi, xg_hi);
            }
        } else {
            let xv = x[c];
            sum_sq += dot(xv, xv);
            let xg = xv * g[c];
            for (var r = 0u; r < ROWS; r++) {
                let word = w[min(row0 + r, params.rows - 1u) * params.row_words + c];
                acc[r] += dot(bitcast<vec4<f32>>(word), xg);
            }
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        keep_sum(r, acc[r], ids);
    }
    keep_sum(ROWS, sum_sq, ids);
    fold_sums(ids);
    for (var r = lid; r < ROWS && row0 + r < params.rows; r += WORKGROUP_SIZE) {
        var total = workgroup_sum(r, ids);
        var total_sq = workgroup_sum(ROWS, ids);
        y[row0 + r] = total * inverseSqrt(total_sq / f32(params.k) + params.eps);
    }
}
