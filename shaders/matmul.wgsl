// matmul.wgsl: matrix product for prefill, tiled through workgroup memory.
//   y[m, row_offset + n] = sum_k x[m, k] * W[n, k]     for m < params.m, n < params.n
// W is stored as checkpoints store linear layers, [out, in], so both operands are read along k.
//
// Bindings:
//   0  x: array<f32>  [m, k] row-major
//   1  w: array<u32>  [n, k] row-major, this dispatch's row chunk of the weight;
//        F16 (W_F16): element i is half i%2 of word i/2 (a row may start mid-word);
//        F32: word i is element i (bitcast)
//   2  y: array<f32>  [m, y_stride] read_write, the whole output; this dispatch writes columns
//        row_offset .. row_offset + n
//   3  params: Params
// Workgroup: THREADS_N x THREADS_M threads (overrides) own a TILE_M x TILE_N tile of y, with
// TILE_M = 4 * THREADS_M and TILE_N = 4 * THREADS_N (64 x 64 by default). Per step of TILE_K
// (override) along k, all threads stage the x tile and the W tile (converted to f32, zeros
// past the edges) in workgroup memory, k-major; then thread (tx, ty) accumulates the 4 x 4
// outputs at rows ty + THREADS_M * i and columns tx + THREADS_N * j (strided, so that neighbours
// read neighbouring words and write neighbouring outputs). Grid: (ceil(n / TILE_N),
// ceil(m / TILE_M)), never folded.
// Any m, n, k (edges are bounds-checked). Requires nothing optional. Fuses nothing.
// Reference: reference::matmul::matmul.

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
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

override W_F16: bool = false;

// Element `i` (flat index into this chunk) of W.
fn weight(i: u32) -> f32 {
    if (W_F16) {
        return f16_from_word(w[i / 2u], i);
    }
    return bitcast<f32>(w[i]);
}

// The tiling, the x tile and the product, shared by the matmul family (naga wants this
// kernel's overrides declared before the shared entry point that uses them).
// include: matmul_tiled

// Stages the W tile of rows n0 .. n0 + tile_n and columns k0 .. k0 + TILE_K into w_tile
// (k-major, as parts/matmul_tiled.wgsl reads it), zeros past the edges.
fn stage_w_tile(k0: u32, n0: u32, tile_n: u32, lid: u32, threads: u32) {
    for (var e = lid; e < TILE_K * tile_n; e += threads) {
        let kk = e % TILE_K;
        let nn = e / TILE_K;
        let gn = n0 + nn;
        let gk = k0 + kk;
        var v = 0.0;
        if (gn < params.n && gk < params.k) {
            v = weight(gn * params.k + gk);
        }
        w_tile[kk * (tile_n + 1u) + nn] = v;
    }
}
