// silu_mul.wgsl: the SwiGLU gate.  out[i] = silu(gate[i]) * up[i],  silu(g) = g * sigmoid(g)
//
// Bindings:
//   0  gate: array<f32>  (M, n) row-major, read (the gate_proj output)
//   1  up: array<f32>    (M, n) row-major, read (the up_proj output)
//   2  out: array<f32>   (M, n) row-major, written; a different buffer from gate and up
//   3  params: Params
// Workgroup: 256 threads, one element each; the grid is ceil(M*n / 256) groups, folded 2-D when
// large (flat_group_id). Fuses the activation into the product. Reference:
// reference::silu_mul::silu_mul.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_group_id(wid, nwg) * 256u + lid;
    if (i < params.n) {
        let g = gate[i];
        // exp(-g) overflows to +inf for g < -88; 1 / (1 + inf) = 0 is the right limit.
        out[i] = g / (1.0 + exp(-g)) * up[i];
    }
}
