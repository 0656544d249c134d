// parts/rms_norm_matvec_rope_kv_cache_body.wgsl: the kernel of rms_norm_matvec_rope_kv_cache.wgsl
// (sums through workgroup memory) and rms_norm_matvec_rope_kv_cache_subgroup.wgsl (sums by
// subgroupAdd), which each splice it in and add their entry point and their sums part
// (parts/workgroup_sums_tree.wgsl, parts/workgroup_sums_subgroup.wgsl). The kernel: a decode step's
// attention input in one pass: RMSNorm of x, the stacked q/k/v projection, RoPE on q and k, and k
// and v stored in the cache; reduced over the workgroup.
//   y = W . rms_norm(x, g)  (W = [q_proj; k_proj; v_proj]: n_heads, then 2 * n_kv_heads heads of
//   head_dim rows), then with p = pos[0] and rope(h, p) the Hugging Face "rotate_half" rotation
//   of a head (rope.wgsl; here over the whole head: rot_dim = head_dim):
//     q = rope(q heads of y, p),  k_cache[p, :] = rope(k heads of y, p),  v_cache[p, :] = v of y
//   (the cache rows are skipped when p >= capacity)
// The same as rms_norm_matvec_subgroup.wgsl into a qkv vector, then rope_kv_cache.wgsl, without
// the vector or the second dispatch..
//
// Bindings:
//   0  w: array<vec4<u32>>    [(n_heads + 2 n_kv_heads) * head_dim, k] row-major.
//        F16 (W_F16): 8 halves per word (element i is half i%2 of u32 i/2);
//        F32: 4 floats per word, read by bitcast.
//   1  x: array<vec4<f32>>    (k) the vector to normalise (the residual stream)
//   2  g: array<vec4<f32>>    (k) the norm's weight, f32
//   3  inv_freq: array<f32>   (head_dim / 2) radians per position of each pair (rope::inv_freq)
//   4  pos: array<u32>        (1) the position, read here so the op can be replayed every step
//   5  q: array<f32>          (n_heads * head_dim) written: the rotated queries
//   6  k_cache: array<u32>    (capacity, n_kv_heads * head_dim) read_write: f32 bit patterns, or
//   7  v_cache: array<u32>    f16 pairs when CACHE_F16 (element i = half i%2 of word i/2)
//   8  params: Params
// Workgroup: WORKGROUP_SIZE threads (override) reduce ROWS = 8 rows of W, as
// rms_norm_matvec_subgroup.wgsl does (x and g loaded once per word, x^2 summed on the way); the
// rows are chosen so that the epilogue has what RoPE pairs up. Workgroup i < (n_heads +
// n_kv_heads) * half / 4 takes head h = i / (half / 4) of q or k and its elements d0 .. d0 + 4
// and d0 + half .. d0 + half + 4 (d0 = 4 * (i % (half / 4)), half = head_dim / 2): four whole
// pairs. Each later workgroup takes 8 consecutive rows of v. After the reduction, thread 0 scales
// the 8 sums by 1 / rms, rotates the pairs (the angle reduced exactly, as in rope.wgsl) and writes
// them (a cache word holds two neighbouring elements, both in this workgroup).
// Grid: (n_heads + n_kv_heads) * head_dim / 8 + n_kv_heads * head_dim / 8 workgroups, folded 2-D
// when large (flat_group_id).
// Requires: head_dim % 8 == 0, k % 8 == 0 (F16) or k % 4 == 0 (F32), 16-byte aligned bindings,
// full rotary (inv_freq has head_dim / 2 entries).
// Fuses rms_norm, matvec and rope_kv_cache (the tests compare with rms_norm_matvec +
// rope_kv_cache). Reference: reference::rms_norm_matvec::rms_norm_matvec, then
// reference::rope_kv_cache::rope_kv_cache.
struct Params {
    k: u32,          // elements per row (= length of x)
    row_words: u32,  // vec4 words per row: k / 8 (F16) or k / 4 (F32)
    eps: f32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    capacity: u32,   // rows of each cache
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(4) var<storage, read> pos: array<u32>;
@group(0) @binding(5) var<storage, read_write> q: array<f32>;
@group(0) @binding(6) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(7) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(8) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 256u;
override W_F16: bool = true;
override CACHE_F16: bool = true;

const ROWS: u32 = 8u;
const PAIRS: u32 = 4u;  // ROWS / 2: the pairs a q or k workgroup rotates

// The sums each thread contributes, folded over the workgroup by the variant\'s sums part.
override SUMS: u32 = ROWS + 1u;

// The 8 rows a workgroup takes and the epilogue that rotates and stores them.
// include: rope_kv_cache_rows

fn rms_norm_matvec_rope_kv_cache(wid: vec3<u32>, nwg: vec3<u32>, ids: SumIds) {
    let lid = ids.lid;
    let t = task(flat_group_id(wid, nwg));
    var row_start: array<u32, ROWS>;
    for (var r = 0u; r < ROWS; r++) {
        row_start[r] = row_of(t, r) * params.row_words;
    }
    // acc[r]: this thread's share of local row r; sum_sq: its share of sum_k x[k]^2.
    var acc: array<f32, ROWS>;  // zero-initialized
    var sum_sq = 0.0;
    for (var c = lid; c < params.row_words; c += WORKGROUP_SIZE) {
        if (W_F16) {
            let x_lo = x[2u * c];
            let x_hi = x[2u * c + 1u];
            sum_sq += dot(x_lo, x_lo) + dot(x_hi, x_hi);
            let xg_lo = x_lo * g[2u * c];
            let xg_hi = x_hi * g[2u * c + 1u];
            for (var r = 0u; r < ROWS; r++) {
                let word = w[row_start[r] + c];
                let w_lo = vec4<f32>(unpack2x16float(word.x), unpack2x16float(word.y));
                let w_hi = vec4<f32>(unpack2x16float(word.z), unpack2x16float(word.w));
                acc[r] += dot(w_lo, xg_lo) + dot(w_hi, xg_hi);
            }
        } else {
            let xv = x[c];
            sum_sq += dot(xv, xv);
            let xg = xv * g[c];
            for (var r = 0u; r < ROWS; r++) {
                acc[r] += dot(bitcast<vec4<f32>>(w[row_start[r] + c]), xg);
            }
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        keep_sum(r, acc[r], ids);
    }
    keep_sum(ROWS, sum_sq, ids);
    fold_sums(ids);
    if (lid != 0u) {
        return;
    }

    // Thread 0: the 8 outputs, scaled by 1 / rms, rotated, stored.
    var y: array<f32, ROWS>;
    var total_sq = workgroup_sum(ROWS, ids);
    let inv_rms = inverseSqrt(total_sq / f32(params.k) + params.eps);
    for (var r = 0u; r < ROWS; r++) {
        var total = workgroup_sum(r, ids);
        y[r] = total * inv_rms;
    }
    rotate_and_store(t, y);
}
