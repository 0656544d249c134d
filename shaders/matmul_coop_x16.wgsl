// matmul_coop_x16.wgsl: x rounded to f16 once per matmul, for the tensor-core kernel that loads
// its A fragments straight from memory (matmul_coop_direct.wgsl).
//   xh[r, c] = f16(x[r, c])   for r < params.m
//   xh[r, c] = 0              for params.m <= r < params.rows (padding up to whole blocks of y)
// Rounding as pack2x16float does it (values past +-65504 are undefined there: in practice
// infinities), the same as the staged kernel's vec4<f16>(x).
//
// Bindings:
//   0  x: array<vec4<f32>>   [m, k] row-major, f32; k % 4 == 0, so a row is whole vec4s
//   1  xh: array<vec2<u32>>  [rows, k] row-major, F16 (two halves per u32 word, low half first):
//        vec2 i holds elements 4i .. 4i + 3, the same elements as vec4 i of x
//   2  params: Params
// Workgroup: 256 threads, one vec4 of x (one vec2 of xh) each; the grid is
// ceil(rows * k / 4 / 256) groups, folded 2-D when large (flat_group_id).
// Needs neither shader-f16 nor subgroups (it is tested on every adapter).
// Reference: the f32 -> f16 rounding of half::f16::from_f32 (to nearest), up to the rounding mode.

struct Params {
    m: u32,         // rows of x
    rows: u32,      // rows of xh (m and the zero padding)
    k4: u32,        // vec4s per row (k / 4)
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> xh: array<vec2<u32>>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_group_id(wid, nwg) * 256u + lid;
    if (i >= params.rows * params.k4) {
        return;
    }
    // xh and x share their row length, so vec4 i of x is vec2 i of xh.
    var v = vec4<f32>(0.0);
    if (i / params.k4 < params.m) {
        v = x[i];
    }
    xh[i] = vec2<u32>(pack2x16float(v.xy), pack2x16float(v.zw));
}
