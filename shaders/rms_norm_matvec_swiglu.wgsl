// rms_norm_matvec_swiglu.wgsl: the feed-forward block's input in one pass: RMSNorm of one
// The kernel is shaders/parts/rms_norm_matvec_swiglu_body.wgsl (its header gives the formula, the bindings, the
// workgroup shape and what it requires); this variant folds its sums through a tree in workgroup
// memory (parts/workgroup_sums_tree.wgsl; WORKGROUP_SIZE a power of two) and needs nothing
// optional. The fast variant is rms_norm_matvec_swiglu_subgroup.wgsl.

// include: rms_norm_matvec_swiglu_body
// include: workgroup_sums_tree

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    rms_norm_matvec_swiglu(wid, nwg, SumIds(lid, 0u, 0u, 1u));
}
