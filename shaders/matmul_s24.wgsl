// matmul_s24.wgsl: matrix product for prefill with a 2:4 sparse weight (S24F16 or S24Q4),
// unpacked (and for S24Q4 dequantized) while the tile is staged; otherwise as matmul.wgsl.
//   y[m, row_offset + n] = sum_k x[m, k] * W[n, k]
// where W[n, k] is a kept value at its position in its group of four and zero elsewhere
// (S24F16: the f16 value; S24Q4: q * scale + min of its block of 64).
// W is stored as checkpoints store linear layers, [out, in], so both operands are read along k.
//
// Bindings (engine/src/dtype.rs: the 2:4 sparse layouts; flat group j = (n * k_len + k) / 4):
//   0  x: array<f32>  [m, k] row-major
//   1  values: array<u32>  this dispatch's row chunk. S24F16: word j holds group j's two kept
//        f16 values (the lower position in the low half). S24Q4: byte j (bits 8 * (j % 4) of
//        word j / 4) holds group j's two 4-bit q, the lower position in the low nibble.
//   2  meta_words: array<u32>  S24F16: group j's positions are bits 4 * (j % 8) of word j / 8
//        (2 bits per kept value, the lower first). S24Q4: block b = j / 16 has three words:
//        3b and 3b + 1 hold its 16 groups' positions (local group g at bits 4 * (g % 8) of word
//        3b + g / 8), 3b + 2 its f16 scale (low half) and min (high half).
//   3  y: array<f32>  [m, y_stride] read_write, the whole output; this dispatch writes columns
//        row_offset .. row_offset + n
//   4  params: Params
// Workgroup: THREADS_N x THREADS_M threads (overrides) own a TILE_M x TILE_N tile of y, with
// TILE_M = 4 * THREADS_M and TILE_N = 4 * THREADS_N (64 x 64 by default). Per step of TILE_K
// (override) along k, all threads stage the x tile and the W tile (unpacked to f32, zeros past
// the edges) in workgroup memory, k-major, a group of four elements per thread and step; then
// thread (tx, ty) accumulates the 4 x 4 outputs at rows ty + THREADS_M * i and columns
// tx + THREADS_N * j. Grid: (ceil(n / TILE_N), ceil(m / TILE_M)), never folded.
// S24Q4 (override): the format, false for S24F16.
// Any m and n (edges are bounds-checked); k % 4 == 0 (the dtype guarantees more); TILE_K a
// multiple of 4. Requires nothing optional. Fuses the unpacking and dequantization.
// Reference: dtype::dequantize, then reference::matmul::matmul.

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
@group(0) @binding(1) var<storage, read> values: array<u32>;
@group(0) @binding(2) var<storage, read> meta_words: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

override S24Q4: bool = false;

// Weight elements per group of the 2:4 pattern (one per thread and staging step).
const GROUP: u32 = 4u;

// The four elements of flat group j: its two kept values at their positions, zeros elsewhere.
fn group_values(j: u32) -> vec4<f32> {
    var kept: vec2<f32>;
    var positions: u32;
    if (S24Q4) {
        let block = j / 16u;
        let g = j % 16u;
        positions = meta_words[3u * block + g / 8u] >> (4u * (g % 8u));
        let q = values[j / 4u] >> (8u * (j % 4u));
        let scale_min = unpack2x16float(meta_words[3u * block + 2u]);
        kept = vec2<f32>(f32(q & 15u), f32((q >> 4u) & 15u)) * scale_min.x + scale_min.y;
    } else {
        positions = meta_words[j / 8u] >> (4u * (j % 8u));
        kept = unpack2x16float(values[j]);
    }
    // Placed by vector compares and selects (registers only, no dynamic indexing).
    let lanes = vec4<u32>(0u, 1u, 2u, 3u);
    let first = select(vec4<f32>(0.0), vec4<f32>(kept.x), lanes == vec4<u32>(positions & 3u));
    return select(first, vec4<f32>(kept.y), lanes == vec4<u32>((positions >> 2u) & 3u));
}

// The tiling, the x tile and the product, shared by the matmul family (naga wants this
// kernel's overrides declared before the shared entry point that uses them).
// include: matmul_tiled

// Stages the W tile of rows n0 .. n0 + tile_n and columns k0 .. k0 + TILE_K into w_tile
// (k-major, as parts/matmul_tiled.wgsl reads it), zeros past the edges.
fn stage_w_tile(k0: u32, n0: u32, tile_n: u32, lid: u32, threads: u32) {
    // Stage the W tile a group of four at a time, unpacked; neighbouring threads take
    // neighbouring groups of one row.
    for (var e = lid; e < (TILE_K / GROUP) * tile_n; e += threads) {
        let kg = e % (TILE_K / GROUP);
        let nn = e / (TILE_K / GROUP);
        let gn = n0 + nn;
        let kk = kg * GROUP;
        var w = vec4<f32>(0.0);
        if (gn < params.n && k0 + kk < params.k) {
            w = group_values((gn * params.k + k0 + kk) / GROUP);
        }
        for (var i = 0u; i < GROUP; i++) {
            w_tile[(kk + i) * (tile_n + 1u) + nn] = w[i];
        }
    }
}
