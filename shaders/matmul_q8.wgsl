// matmul_q8.wgsl: matrix product for prefill with a Q8 weight, dequantized while the tile is
// staged; otherwise as matmul.wgsl.
//   y[m, row_offset + n] = sum_k x[m, k] * W[n, k],   W[n, k] = q[n, k] * scale[n, k / 32]
// W is stored as checkpoints store linear layers, [out, in], so both operands are read along k.
//
// Bindings (engine/src/dtype.rs: the Q8 layout):
//   0  x: array<f32>  [m, k] row-major
//   1  quants: array<u32>  [n, k / 4] this dispatch's row chunk: element (n, k) is signed byte
//        k % 4 of word (n * k_len + k) / 4
//   2  scales: array<u32>  f16, two per word: flat group j = (n * k_len + k) / 32 is half j % 2
//        of word j / 2
//   3  y: array<f32>  [m, y_stride] read_write, the whole output; this dispatch writes columns
//        row_offset .. row_offset + n
//   4  params: Params
// Workgroup: THREADS_N x THREADS_M threads (overrides) own a TILE_M x TILE_N tile of y, with
// TILE_M = 4 * THREADS_M and TILE_N = 4 * THREADS_N (64 x 64 by default). Per step of TILE_K
// (override) along k, all threads stage the x tile and the W tile (dequantized to f32, zeros
// past the edges) in workgroup memory, k-major; then thread (tx, ty) accumulates the 4 x 4
// outputs at rows ty + THREADS_M * i and columns tx + THREADS_N * j (strided, so that neighbours
// read neighbouring words and write neighbouring outputs). Grid: (ceil(n / TILE_N),
// ceil(m / TILE_M)), never folded.
// Any m and n (edges are bounds-checked); k % 32 == 0 (the dtype guarantees it); TILE_K a
// multiple of ELEMENTS_PER_WORD dividing 32. Requires nothing optional. Fuses the
// dequantization. Reference: dtype::dequantize, then reference::matmul::matmul.

struct Params {
    m: u32,           // rows of x and y
    n: u32,           // rows of W in this dispatch
    k: u32,           // the reduced dimension
    y_stride: u32,    // elements per row of y (all of W's rows)
    row_offset: u32,  // column of y of this dispatch's first row of W
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> quants: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

override THREADS_M: u32 = 16u;
override THREADS_N: u32 = 16u;
override TILE_K: u32 = 16u;

// Outputs per thread along m and n (a vec4 of accumulators per row).
const PER_THREAD: u32 = 4u;
// Weight elements per quant word.
const ELEMENTS_PER_WORD: u32 = 4u;

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
        // Stage the W tile a quant word (4 elements) at a time, dequantized; neighbouring
        // threads take neighbouring words of one row. A tile's TILE_K columns lie in one group.
        for (var e = lid; e < (TILE_K / ELEMENTS_PER_WORD) * tile_n; e += threads) {
            let kw = e % (TILE_K / ELEMENTS_PER_WORD);
            let nn = e / (TILE_K / ELEMENTS_PER_WORD);
            let gn = n0 + nn;
            var v = vec4<f32>(0.0);
            if (gn < params.n) {
                let first = gn * params.k + k0 + kw * ELEMENTS_PER_WORD;
                let group = first / 32u;
                v = int8x4_from_word(quants[first / 4u]) * f16_from_word(scales[group / 2u], group);
            }
            let kk = kw * ELEMENTS_PER_WORD;
            for (var i = 0u; i < 4u; i++) {
                w_tile[(kk + i) * (tile_n + 1u) + nn] = v[i];
            }
        }
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
