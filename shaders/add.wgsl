// add.wgsl: residual add, in place.  x[i] += y[i]  for i < n.
//
// Bindings:
//   0  x: array<f32>  (n)  read_write, the running residual stream
//   1  y: array<f32>  (n)  read, the branch output added into it
//   2  params: Params
// Workgroup: 256 threads, one element each; the grid is ceil(n / 256) groups, folded 2-D when
// large (flat_group_id). Fuses nothing. Reference: reference::add::add.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_group_id(wid, nwg) * 256u + lid;
    if (i < params.n) {
        x[i] = x[i] + y[i];
    }
}
