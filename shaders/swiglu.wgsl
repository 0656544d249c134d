// swiglu.wgsl: the SwiGLU gate on the output of a stacked gate/up projection.
//   out[t, i] = silu(gu[t, i]) * gu[t, n + i],  silu(g) = g * sigmoid(g),  for i < n
// silu_mul.wgsl computes the same from two separate tensors; this one reads the [gate | up] row
// that one matvec over the stacked weights [gate_proj; up_proj] writes, so the decoder runs one
// projection instead of two.
//
// Bindings:
//   0  gu: array<f32>   (M, 2n) row-major, read: each row is [gate (n) | up (n)]
//   1  out: array<f32>  (M, n) row-major, written; a buffer other than gu's
//   2  params: Params
// Workgroup: 256 threads, one output element each; the grid is ceil(M*n / 256) groups, folded 2-D
// when large (flat_group_id). Fuses the activation into the product.
// Reference: reference::swiglu::swiglu (reference::silu_mul::silu_mul on the two halves).

struct Params {
    n_rows: u32,
    n: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> gu: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_group_id(wid, nwg) * 256u + lid;
    if (i >= params.n_rows * params.n) {
        return;
    }
    let gate_at = (i / params.n) * 2u * params.n + i % params.n;
    let g = gu[gate_at];
    // exp(-g) overflows to +inf for g < -88; 1 / (1 + inf) = 0 is the right limit.
    out[i] = g / (1.0 + exp(-g)) * gu[gate_at + params.n];
}
