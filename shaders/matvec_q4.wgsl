// matvec_q4.wgsl: matrix-vector product for decode with a Q4 weight (groups of 32 or 128),
// The kernel is shaders/parts/matvec_q4_body.wgsl (its header gives the formula, the bindings, the
// workgroup shape and what it requires); this variant folds its sums through a tree in workgroup
// memory (parts/workgroup_sums_tree.wgsl; WORKGROUP_SIZE a power of two) and needs nothing
// optional. The fast variant is matvec_q4_subgroup.wgsl.

// include: matvec_q4_body
// include: workgroup_sums_tree

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    matvec_q4(wid, nwg, SumIds(lid, 0u, 0u, 1u));
}
