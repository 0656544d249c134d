// parts/matmul_tiled.wgsl: the tiled matmul that matmul.wgsl, matmul_q8.wgsl, matmul_q4.wgsl and
// matmul_s24.wgsl share (matmul.wgsl's header says what each thread computes). Each declares the
// bindings x, y, params (Params as in matmul.wgsl) and its weight's, and
//   fn stage_w_tile(k0: u32, n0: u32, tile_n: u32, lid: u32, threads: u32)
// which fills w_tile[kk * (tile_n + 1) + nn] with W[n0 + nn, k0 + kk] (zero past the edges), then
// splices this in with `// include: matmul_tiled` (before anything sized by these overrides).

override THREADS_M: u32 = 16u;
override THREADS_N: u32 = 16u;
override TILE_K: u32 = 16u;

// Outputs per thread along m and n (a vec4 of accumulators per row).
const PER_THREAD: u32 = 4u;

// Staged tiles, k-major: x_tile[kk][mm], w_tile[kk][nn]. One float of padding per k-row keeps
// the transposing stores off a single memory bank.
var<workgroup> x_tile: array<f32, TILE_K * (PER_THREAD * THREADS_M + 1u)>;
var<workgroup> w_tile: array<f32, TILE_K * (PER_THREAD * THREADS_N + 1u)>;

@compute @workgroup_size(THREADS_N, THREADS_M)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_id) tid: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let tile_m = PER_THREAD * THREADS_M;
    let tile_n = PER_THREAD * THREADS_N;
    let m0 = wid.y * tile_m;
    let n0 = wid.x * tile_n;
    let threads = THREADS_M * THREADS_N;

    var acc: array<vec4<f32>, PER_THREAD>;
    for (var i = 0u; i < PER_THREAD; i++) {
        acc[i] = vec4<f32>(0.0);
    }

    for (var k0 = 0u; k0 < params.k; k0 += TILE_K) {
        // Stage the x tile. Consecutive threads take consecutive k of one row: coalesced reads.
        for (var e = lid; e < TILE_K * tile_m; e += threads) {
            let kk = e % TILE_K;
            let mm = e / TILE_K;
            let gm = m0 + mm;
            let gk = k0 + kk;
            var v = 0.0;
            if (gm < params.m && gk < params.k) {
                v = x[gm * params.k + gk];
            }
            x_tile[kk * (tile_m + 1u) + mm] = v;
        }
        stage_w_tile(k0, n0, tile_n, lid, threads);
        workgroupBarrier();

        for (var kk = 0u; kk < TILE_K; kk++) {
            let xrow = kk * (tile_m + 1u) + tid.y;
            let wrow = kk * (tile_n + 1u) + tid.x;
            let b = vec4<f32>(w_tile[wrow],
                              w_tile[wrow + THREADS_N],
                              w_tile[wrow + 2u * THREADS_N],
                              w_tile[wrow + 3u * THREADS_N]);
            for (var i = 0u; i < PER_THREAD; i++) {
                acc[i] += x_tile[xrow + i * THREADS_M] * b;
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < PER_THREAD; i++) {
        let gm = m0 + tid.y + i * THREADS_M;
        if (gm >= params.m) {
            break;
        }
        for (var j = 0u; j < PER_THREAD; j++) {
            let gn = n0 + tid.x + j * THREADS_N;
            if (gn < params.n) {
                y[gm * params.y_stride + params.row_offset + gn] = acc[i][j];
            }
        }
    }
}
