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

override THREADS_M: u32 = 16u;
override THREADS_N: u32 = 16u;
override TILE_K: u32 = 16u;
override S24Q4: bool = false;

// Outputs per thread along m and n (a vec4 of accumulators per row).
const PER_THREAD: u32 = 4u;
// Weight elements per group of the 2:4 pattern (one per thread and staging step).
const GROUP: u32 = 4u;

// Staged tiles, k-major: x_tile[kk][mm], w_tile[kk][nn]. One float of padding per k-row keeps
// the transposing stores off a single memory bank.
var<workgroup> x_tile: array<f32, TILE_K * (PER_THREAD * THREADS_M + 1u)>;
var<workgroup> w_tile: array<f32, TILE_K * (PER_THREAD * THREADS_N + 1u)>;

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
