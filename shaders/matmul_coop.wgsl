// matmul_coop.wgsl: matrix product for prefill on cooperative matrices (tensor cores).
//   y[m, row_offset + n] = sum_k x[m, k] * W[n, k]     for m < params.m, n < params.n
// The same contract as matmul.wgsl for F16 weights; x is rounded to f16 as it is staged (values
// past +-65504 become infinities), products are summed in f32 by the 16x16x16 f16 x f16 -> f32
// multiply-add.
//
// Bindings:
//   0  x: array<vec4<f32>>  [m, k] row-major, f32; k % 4 == 0, so a row is whole vec4s
//   1  w: array<vec4<f16>>  [n, k] row-major, F16 (the engine's layout read as halves: element
//        i is half i%4 of vec4 i/4), this dispatch's row chunk of the weight; a row is whole vec4s
//   2  y: array<f32>        [m, y_stride] read_write, the whole output; this dispatch writes
//        columns row_offset .. row_offset + n
//   3  params: Params
// Workgroup: SUBGROUPS_M x SUBGROUPS_N subgroups of SUBGROUP_SIZE threads (overrides; the
// subgroup size must be the adapter's only one) own a TILE_M x TILE_N block of y; subgroup
// (sg_m, sg_n) owns a FRAGS_M x FRAGS_N grid of 16x16 accumulators in it, FRAGS_M =
// TILE_M / (16 SUBGROUPS_M), FRAGS_N = TILE_N / (16 SUBGROUPS_N) (at most MAX_FRAGS in all).
// Per step of TILE_K along k (a multiple of 16): every thread stores the x and W values it
// loaded the step before into workgroup memory as f16 (zeros past the edges), then loads the
// next step's (so the global loads run while the tensor cores work), then each subgroup
// coopLoads its fragments from workgroup memory and multiply-adds them, 16 of k at a time.
// Epilogue: a block wholly inside y (its rows 16-byte aligned) is coopStored straight to y;
// any other goes through a 16x16 scratch per subgroup in workgroup memory and is written
// element by element, bounds checked. Grid: (ceil(n / TILE_N), ceil(m / TILE_M)), never folded.
// Staged rows are vec4<f16> words (one 8-byte store per vec4 loaded); cooperative loads from
// them count pointer and stride in vec4s. (W is bound as f16 rather than u32 words because
// naga 30's bitcast cannot turn a u32 into two halves.) Rows are padded by 16 bytes
// (PAD4) so that the 16 rows of a fragment do not all start in the same memory bank.
// Requires: the adapter's cooperative matrices with a 16x16x16 f16 x f16 -> f32 configuration,
// shader-f16 and subgroups (subgroup_id); k % 4 == 0. The host checks that the tile shape
// divides as stated (engine/src/kernels/matmul.rs, CoopConfig).
// naga 30 panics writing SPIR-V for a cooperative load or store whose pointer index or stride is
// an inline expression: each is bound to a `let` first.
// Reference: reference::matmul::matmul.

enable f16;
enable wgpu_cooperative_matrix;

struct Params {
    m: u32,           // rows of x and y
    n: u32,           // rows of W in this dispatch
    k: u32,           // the reduced dimension, a multiple of 4
    y_stride: u32,    // elements per row of y (all of W's rows)
    row_offset: u32,  // column of y of this dispatch's first row of W
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> w: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

override TILE_M: u32 = 128u;
override TILE_N: u32 = 64u;
override TILE_K: u32 = 32u;
override SUBGROUPS_M: u32 = 2u;
override SUBGROUPS_N: u32 = 2u;
override SUBGROUP_SIZE: u32 = 32u;

// Side of one cooperative matrix.
const FRAG: u32 = 16u;
// Function-scope arrays need constant sizes: accumulators per subgroup, B fragments per step,
// and vec4 loads per thread per step stay below these (the host checks).
const MAX_FRAGS: u32 = 16u;
const MAX_LOADS: u32 = 16u;
// Padding of a staged row, in vec4<f16> (16 bytes).
const PAD4: u32 = 2u;

override WORKGROUP_SIZE: u32 = SUBGROUPS_M * SUBGROUPS_N * SUBGROUP_SIZE;
override FRAGS_M: u32 = TILE_M / (FRAG * SUBGROUPS_M);
override FRAGS_N: u32 = TILE_N / (FRAG * SUBGROUPS_N);
// vec4<f16> per staged row (TILE_K halves and the padding).
override ROW4: u32 = TILE_K / 4u + PAD4;
// vec4 loads per thread per step, of x and of W.
override X_LOADS: u32 = TILE_M * TILE_K / (4u * WORKGROUP_SIZE);
override W_LOADS: u32 = TILE_N * TILE_K / (4u * WORKGROUP_SIZE);

// Staged tiles, row-major: x_tile[mm][kk / 4], w_tile[nn][kk / 4] (row ROW4 vec4s).
var<workgroup> x_tile: array<vec4<f16>, TILE_M * ROW4>;
var<workgroup> w_tile: array<vec4<f16>, TILE_N * ROW4>;
// One 16x16 f32 scratch per subgroup, for edge blocks.
var<workgroup> scratch: array<f32, SUBGROUPS_M * SUBGROUPS_N * FRAG * FRAG>;

// The vec4 of x that thread slot `e` loads for the tile at (m0, k0); zeros past the edges.
fn load_x(m0: u32, k0: u32, e: u32) -> vec4<f32> {
    let per_row = TILE_K / 4u;
    let gm = m0 + e / per_row;
    let gk = k0 + 4u * (e % per_row);
    if (gm < params.m && gk < params.k) {
        return x[(gm * params.k + gk) / 4u];
    }
    return vec4<f32>(0.0);
}

// The vec4 of W that thread slot `e` loads for the tile at (n0, k0); zeros past the edges.
fn load_w(n0: u32, k0: u32, e: u32) -> vec4<f16> {
    let per_row = TILE_K / 4u;
    let gn = n0 + e / per_row;
    let gk = k0 + 4u * (e % per_row);
    if (gn < params.n && gk < params.k) {
        return w[(gn * params.k + gk) / 4u];
    }
    return vec4<f16>(0.0h);
}

fn stage_x(e: u32, v: vec4<f32>) {
    let per_row = TILE_K / 4u;
    x_tile[(e / per_row) * ROW4 + e % per_row] = vec4<f16>(v);
}

fn stage_w(e: u32, v: vec4<f16>) {
    let per_row = TILE_K / 4u;
    w_tile[(e / per_row) * ROW4 + e % per_row] = v;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_id) sg: u32,
        @builtin(subgroup_invocation_id) lane: u32) {
    let m0 = wid.y * TILE_M;
    let n0 = wid.x * TILE_N;
    // This subgroup's corner in the block.
    let sub_m = (sg / SUBGROUPS_N) * FRAGS_M * FRAG;
    let sub_n = (sg % SUBGROUPS_N) * FRAGS_N * FRAG;

    var acc: array<coop_mat16x16<f32, C>, MAX_FRAGS>;
    for (var f = 0u; f < FRAGS_M * FRAGS_N; f++) {
        acc[f] = coop_mat16x16<f32, C>();
    }
    var b: array<coop_mat16x16<f16, B>, MAX_FRAGS>;

    // The first step's values; each step then stages what the step before loaded.
    var xr: array<vec4<f32>, MAX_LOADS>;
    var wr: array<vec4<f16>, MAX_LOADS>;
    for (var i = 0u; i < X_LOADS; i++) {
        xr[i] = load_x(m0, 0u, lid + i * WORKGROUP_SIZE);
    }
    for (var i = 0u; i < W_LOADS; i++) {
        wr[i] = load_w(n0, 0u, lid + i * WORKGROUP_SIZE);
    }

    for (var k0 = 0u; k0 < params.k; k0 += TILE_K) {
        // The previous step's fragment loads are done before its tiles are overwritten.
        workgroupBarrier();
        for (var i = 0u; i < X_LOADS; i++) {
            stage_x(lid + i * WORKGROUP_SIZE, xr[i]);
        }
        for (var i = 0u; i < W_LOADS; i++) {
            stage_w(lid + i * WORKGROUP_SIZE, wr[i]);
        }
        workgroupBarrier();
        // Next step's values (zeros past the end), in flight during the multiply-adds.
        let next = k0 + TILE_K;
        for (var i = 0u; i < X_LOADS; i++) {
            xr[i] = load_x(m0, next, lid + i * WORKGROUP_SIZE);
        }
        for (var i = 0u; i < W_LOADS; i++) {
            wr[i] = load_w(n0, next, lid + i * WORKGROUP_SIZE);
        }

        for (var kk = 0u; kk < TILE_K; kk += FRAG) {
            let stride = ROW4;
            for (var j = 0u; j < FRAGS_N; j++) {
                // B = W^T: element (k, n) is w_tile[n][k], a column-major load.
                let at = (sub_n + j * FRAG) * ROW4 + kk / 4u;
                b[j] = coopLoad<coop_mat16x16<f16, B>>(&w_tile[at], stride);
            }
            for (var i = 0u; i < FRAGS_M; i++) {
                let at = (sub_m + i * FRAG) * ROW4 + kk / 4u;
                let a = coopLoadT<coop_mat16x16<f16, A>>(&x_tile[at], stride);
                for (var j = 0u; j < FRAGS_N; j++) {
                    let f = i * FRAGS_N + j;
                    acc[f] = coopMultiplyAdd(a, b[j], acc[f]);
                }
            }
        }
    }

    // Whether the block is wholly inside y, with every row of y starting on 16 bytes (a store
    // straight to memory keeps fragment rows 16-byte aligned). Uniform over the workgroup, as
    // cooperative stores require.
    let aligned = params.y_stride % 4u == 0u && params.row_offset % 4u == 0u;
    let inside = aligned && m0 + TILE_M <= params.m && n0 + TILE_N <= params.n;
    for (var i = 0u; i < FRAGS_M; i++) {
        for (var j = 0u; j < FRAGS_N; j++) {
            let f = i * FRAGS_N + j;
            let gm = m0 + sub_m + i * FRAG;
            let gn = n0 + sub_n + j * FRAG;
            if (inside) {
                let at = gm * params.y_stride + params.row_offset + gn;
                let stride = params.y_stride;
                let c = acc[f];
                coopStoreT(c, &y[at], stride);
            } else {
                let at = sg * FRAG * FRAG;
                let stride = FRAG;
                let c = acc[f];
                coopStoreT(c, &scratch[at], stride);
                workgroupBarrier();
                for (var e = lane; e < FRAG * FRAG; e += SUBGROUP_SIZE) {
                    let r = gm + e / FRAG;
                    let c = gn + e % FRAG;
                    if (r < params.m && c < params.n) {
                        y[r * params.y_stride + params.row_offset + c] = scratch[at + e];
                    }
                }
                workgroupBarrier();
            }
        }
    }
}
