// matmul_coop_direct.wgsl: matrix product for prefill on cooperative matrices (tensor cores),
// every fragment loaded straight from memory: no workgroup-memory staging, no barriers in the
// main loop (the L1 and L2 caches serve the reuse between neighbouring subgroups).
//   y[m, row_offset + n] = sum_k xh[m, k] * W[n, k]     for m < params.m, n < params.n
// The same contract as matmul.wgsl for F16 weights, with x given already rounded to f16 (xh,
// written once per matmul by matmul_coop_x16.wgsl); products are summed in f32 by the
// 16x16x16 f16 x f16 -> f32 multiply-add.
//
// Bindings:
//   0  xh: array<vec4<f16>>  [rows, k] row-major, F16 (the engine's layout read as halves:
//        element i is half i%4 of vec4 i/4); rows = params.m rounded up to whole blocks of y,
//        the padding rows zero, so A fragments never need a bounds check
//   1  w: array<vec4<f16>>   [n, k] row-major, F16, this dispatch's row chunk of the weight;
//        n >= 16
//   2  y: array<f32>         [m, y_stride] read_write, the whole output; this dispatch writes
//        columns row_offset .. row_offset + n
//   3  params: Params
// Workgroup: SUBGROUPS_M x SUBGROUPS_N subgroups of SUBGROUP_SIZE threads (overrides; the
// subgroup size must be the adapter's only one) own a block of y of (16 FRAGS_M SUBGROUPS_M) x
// (16 FRAGS_N SUBGROUPS_N); subgroup (sg / SUBGROUPS_N, sg % SUBGROUPS_N) owns FRAGS_M x FRAGS_N
// 16x16 accumulators in it (register blocking: each A fragment loaded feeds FRAGS_N
// multiply-adds, each B fragment FRAGS_M). Per iteration of 16 STEPS along k, a subgroup first
// loads all STEPS x (FRAGS_M + FRAGS_N) fragments, then runs the multiply-adds (so many loads are
// in flight at once); k left over after whole iterations runs one step of 16 at a time.
// B fragments of a block that passes the end of W start at row n - 16 instead (the last 16 rows,
// some read twice), so every load stays inside W; the epilogue writes only the columns that are
// the fragment's own. Grid: (ceil(m / block_m), ceil(n / block_n)), m fastest, so that
// consecutive workgroups share a block of W while it is in the cache; never folded.
// Epilogue: a block wholly inside y (its rows 16-byte aligned) is coopStored straight to y; any
// other goes through a 16x16 scratch per subgroup in workgroup memory and is written element by
// element, bounds checked.
// Requires: the adapter's cooperative matrices with a 16x16x16 f16 x f16 -> f32 configuration,
// shader-f16 and subgroups (subgroup_id); k % 16 == 0; n >= 16. The host checks the shapes and
// that FRAGS_M x FRAGS_N <= MAX_ACC, STEPS x FRAGS_M <= MAX_A, STEPS x FRAGS_N <= MAX_B
// (engine/src/kernels/matmul.rs, CoopConfig), and falls back to matmul_coop.wgsl otherwise.
// naga 30 panics writing SPIR-V for a cooperative load or store whose pointer index or stride is
// an inline expression: each is bound to a `let` first.
// Reference: reference::matmul::matmul (with x rounded to f16).

enable f16;
enable wgpu_cooperative_matrix;

struct Params {
    m: u32,           // rows of x and y
    n: u32,           // rows of W in this dispatch
    k: u32,           // the reduced dimension, a multiple of 16
    y_stride: u32,    // elements per row of y (all of W's rows)
    row_offset: u32,  // column of y of this dispatch's first row of W
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> xh: array<vec4<f16>>;
@group(0) @binding(1) var<storage, read> w: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

override FRAGS_M: u32 = 2u;
override FRAGS_N: u32 = 4u;
override STEPS: u32 = 1u;
override SUBGROUPS_M: u32 = 2u;
override SUBGROUPS_N: u32 = 2u;
override SUBGROUP_SIZE: u32 = 32u;

// Side of one cooperative matrix.
const FRAG: u32 = 16u;
// Function-scope arrays need constant sizes: accumulators, and A and B fragments held per
// iteration, stay below these (the host checks).
const MAX_ACC: u32 = 16u;
const MAX_A: u32 = 8u;
const MAX_B: u32 = 8u;

override WORKGROUP_SIZE: u32 = SUBGROUPS_M * SUBGROUPS_N * SUBGROUP_SIZE;
override BLOCK_M: u32 = FRAG * FRAGS_M * SUBGROUPS_M;
override BLOCK_N: u32 = FRAG * FRAGS_N * SUBGROUPS_N;

// One 16x16 f32 scratch per subgroup, for edge blocks.
var<workgroup> scratch: array<f32, SUBGROUPS_M * SUBGROUPS_N * FRAG * FRAG>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(subgroup_id) sg: u32,
        @builtin(subgroup_invocation_id) lane: u32) {
    let block_m0 = wid.x * BLOCK_M;
    let block_n0 = wid.y * BLOCK_N;
    // This subgroup's first row of y and first column (of this dispatch's W rows).
    let m0 = block_m0 + (sg / SUBGROUPS_N) * FRAGS_M * FRAG;
    let n0 = block_n0 + (sg % SUBGROUPS_N) * FRAGS_N * FRAG;
    // Row strides in vec4s (xh and W rows are both k long).
    let k4 = params.k / 4u;

    // vec4 index of the start of each A fragment's rows and each B fragment's rows at k = 0.
    // A B fragment past the end of W starts at its last 16 rows.
    var a_at: array<u32, MAX_A>;
    for (var i = 0u; i < FRAGS_M; i++) {
        a_at[i] = (m0 + i * FRAG) * k4;
    }
    var b_row: array<u32, MAX_B>;
    var b_at: array<u32, MAX_B>;
    for (var j = 0u; j < FRAGS_N; j++) {
        b_row[j] = min(n0 + j * FRAG, params.n - FRAG);
        b_at[j] = b_row[j] * k4;
    }

    var acc: array<coop_mat16x16<f32, C>, MAX_ACC>;
    for (var f = 0u; f < FRAGS_M * FRAGS_N; f++) {
        acc[f] = coop_mat16x16<f32, C>();
    }
    var a: array<coop_mat16x16<f16, A>, MAX_A>;
    var b: array<coop_mat16x16<f16, B>, MAX_B>;

    // Whole iterations of STEPS x 16 along k: all loads first, then all multiply-adds.
    let k_whole = params.k - params.k % (STEPS * FRAG);
    var k0 = 0u;
    for (; k0 < k_whole; k0 += STEPS * FRAG) {
        for (var s = 0u; s < STEPS; s++) {
            let k4_0 = (k0 + s * FRAG) / 4u;
            for (var i = 0u; i < FRAGS_M; i++) {
                // A = x: element (m, k) at row m, column k, a row-major load.
                let at = a_at[i] + k4_0;
                let stride = k4;
                a[s * FRAGS_M + i] = coopLoadT<coop_mat16x16<f16, A>>(&xh[at], stride);
            }
            for (var j = 0u; j < FRAGS_N; j++) {
                // B = W^T: element (k, n) is W[n][k], a column-major load.
                let at = b_at[j] + k4_0;
                let stride = k4;
                b[s * FRAGS_N + j] = coopLoad<coop_mat16x16<f16, B>>(&w[at], stride);
            }
        }
        for (var s = 0u; s < STEPS; s++) {
            for (var i = 0u; i < FRAGS_M; i++) {
                for (var j = 0u; j < FRAGS_N; j++) {
                    let f = i * FRAGS_N + j;
                    acc[f] = coopMultiplyAdd(a[s * FRAGS_M + i], b[s * FRAGS_N + j], acc[f]);
                }
            }
        }
    }
    // The rest of k (when STEPS x 16 does not divide it), one step of 16 at a time.
    for (; k0 < params.k; k0 += FRAG) {
        let k4_0 = k0 / 4u;
        for (var j = 0u; j < FRAGS_N; j++) {
            let at = b_at[j] + k4_0;
            let stride = k4;
            b[j] = coopLoad<coop_mat16x16<f16, B>>(&w[at], stride);
        }
        for (var i = 0u; i < FRAGS_M; i++) {
            let at = a_at[i] + k4_0;
            let stride = k4;
            let a_frag = coopLoadT<coop_mat16x16<f16, A>>(&xh[at], stride);
            for (var j = 0u; j < FRAGS_N; j++) {
                let f = i * FRAGS_N + j;
                acc[f] = coopMultiplyAdd(a_frag, b[j], acc[f]);
            }
        }
    }

    // Whether the block is wholly inside y (then no B fragment was moved back), with every row
    // of y starting on 16 bytes (a store straight to memory keeps fragment rows 16-byte
    // aligned). Uniform over the workgroup, as the barriers below require.
    let aligned = params.y_stride % 4u == 0u && params.row_offset % 4u == 0u;
    let inside = aligned && block_m0 + BLOCK_M <= params.m && block_n0 + BLOCK_N <= params.n;
    for (var i = 0u; i < FRAGS_M; i++) {
        for (var j = 0u; j < FRAGS_N; j++) {
            let f = i * FRAGS_N + j;
            let gm = m0 + i * FRAG;
            if (inside) {
                let at = gm * params.y_stride + params.row_offset + n0 + j * FRAG;
                let stride = params.y_stride;
                let c = acc[f];
                coopStoreT(c, &y[at], stride);
            } else {
                let at = sg * FRAG * FRAG;
                let stride = FRAG;
                let c = acc[f];
                coopStoreT(c, &scratch[at], stride);
                workgroupBarrier();
                // Column c of the fragment is W row b_row[j] + c; the fragment's own columns
                // start at n0 + j * 16 (the ones before belong to the fragment before it).
                let own = n0 + j * FRAG;
                for (var e = lane; e < FRAG * FRAG; e += SUBGROUP_SIZE) {
                    let r = gm + e / FRAG;
                    let col = b_row[j] + e % FRAG;
                    if (r < params.m && col < params.n && col >= own) {
                        y[r * params.y_stride + params.row_offset + col] = scratch[at + e];
                    }
                }
                workgroupBarrier();
            }
        }
    }
}
