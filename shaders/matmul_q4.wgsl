// matmul_q4.wgsl: matrix product for prefill with a Q4 weight (groups of GROUP = 32 or 128),
// dequantized while the tile is staged; otherwise as matmul.wgsl.
//   y[m, row_offset + n] = sum_k x[m, k] * W[n, k],
//   W[n, k] = q[n, k] * scale[n, k / GROUP] + min[n, k / GROUP]
// W is stored as checkpoints store linear layers, [out, in], so both operands are read along k.
//
// Bindings (engine/src/dtype.rs: the Q4 layout):
//   0  x: array<f32>  [m, k] row-major
//   1  quants: array<u32>  [n, k / 8] this dispatch's row chunk: element (n, k) is nibble k % 8
//        of word (n * k_len + k) / 8
//   2  scales: array<u32>  word j: flat group j's f16 scale (low half) and min (high half),
//        j = (n * k_len + k) / GROUP
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

override GROUP: u32 = 32u;

// Weight elements per quant word.
const ELEMENTS_PER_WORD: u32 = 8u;

// The tiling, the x tile and the product, shared by the matmul family (naga wants this
// kernel's overrides declared before the shared entry point that uses them).
// include: matmul_tiled

// Stages the W tile of rows n0 .. n0 + tile_n and columns k0 .. k0 + TILE_K into w_tile
// (k-major, as parts/matmul_tiled.wgsl reads it), zeros past the edges.
fn stage_w_tile(k0: u32, n0: u32, tile_n: u32, lid: u32, threads: u32) {
    // Stage the W tile a quant word (8 elements) at a time, dequantized; neighbouring
    // threads take neighbouring words of one row. A tile's TILE_K columns lie in one group.
    for (var e = lid; e < (TILE_K / ELEMENTS_PER_WORD) * tile_n; e += threads) {
        let kw = e % (TILE_K / ELEMENTS_PER_WORD);
        let nn = e / (TILE_K / ELEMENTS_PER_WORD);
        let gn = n0 + nn;
        var lo = vec4<f32>(0.0);
        var hi = vec4<f32>(0.0);
        if (gn < params.n) {
            let first = gn * params.k + k0 + kw * ELEMENTS_PER_WORD;
            let word = quants[first / 8u];
            let scale_min = unpack2x16float(scales[first / GROUP]);
            lo = nibbles_lo_from_word(word) * scale_min.x + scale_min.y;
            hi = nibbles_hi_from_word(word) * scale_min.x + scale_min.y;
        }
        let kk = kw * ELEMENTS_PER_WORD;
        for (var i = 0u; i < 4u; i++) {
            w_tile[(kk + i) * (tile_n + 1u) + nn] = lo[i];
            w_tile[(kk + 4u + i) * (tile_n + 1u) + nn] = hi[i];
        }
    }
}
