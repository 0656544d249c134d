// copy.wgsl: dst[i] = src[i] for i < n_vec4 (16-byte words). A streaming copy through the
// shader cores, the way kernels read memory; the bandwidth benchmark uses it (a driver's buffer
// copy may take a slower path than compute loads on some GPUs).
//
// Bindings:
//   0  src: array<vec4<u32>>  (n_vec4) read
//   1  dst: array<vec4<u32>>  (n_vec4) read_write
//   2  params: Params
// Workgroup: 256 threads; the grid is ceil(n_vec4 / (256 * PER_THREAD)) groups (folded 2-D when
// large); each thread copies PER_THREAD words strided by the group's width so that every load
// instruction of a workgroup reads one contiguous 4 KiB span. Requires byte sizes that are
// multiples of 16. Reference: a plain slice copy.

override PER_THREAD: u32 = 4u;

struct Params {
    n_vec4: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let base = flat_group_id(wid, nwg) * 256u * PER_THREAD + lid;
    for (var j = 0u; j < PER_THREAD; j++) {
        let i = base + j * 256u;
        if (i < params.n_vec4) {
            dst[i] = src[i];
        }
    }
}
