// matvec_s24.wgsl: matrix-vector product for decode with a 2:4 sparse weight (S24F16 or S24Q4),
// The kernel is shaders/parts/matvec_s24_body.wgsl (its header gives the formula, the bindings, the
// workgroup shape and what it requires); this variant folds its sums through a tree in workgroup
// memory (parts/workgroup_sums_tree.wgsl; WORKGROUP_SIZE a power of two) and needs nothing
// optional. The fast variant is matvec_s24_subgroup.wgsl.

// include: matvec_s24_body
// include: workgroup_sums_tree

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    matvec_s24(wid, nwg, SumIds(lid, 0u, 0u, 1u));
}
