// add_bias.wgsl: a bias broadcast over rows, in place.  x[m, i] += bias[i]
//
// Bindings:
//   0  x: array<f32>     (M, n) row-major, read_write
//   1  bias: array<u32>  (n) f32 words, or f16 pairs when BIAS_F16 (element i = half i%2 of
//                        word i/2)
//   2  params: Params
// Workgroup: 256 threads, one element each; the grid is ceil(M*n / 256) groups, folded 2-D when
// large (flat_group_id). Fuses nothing. Reference: reference::add::add_bias.

override BIAS_F16: bool = false;

struct Params {
    n_elements: u32,
    n: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> bias: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

fn bias_at(i: u32) -> f32 {
    if (BIAS_F16) {
        return f16_from_word(bias[i >> 1u], i);
    }
    return bitcast<f32>(bias[i]);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_group_id(wid, nwg) * 256u + lid;
    if (i < params.n_elements) {
        x[i] = x[i] + bias_at(i % params.n);
    }
}
