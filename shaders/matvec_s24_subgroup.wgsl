// matvec_s24_subgroup.wgsl: matrix-vector product for decode with a 2:4 sparse weight (S24F16
// The kernel is shaders/parts/matvec_s24_body.wgsl (its header gives the formula, the bindings, the
// workgroup shape and what it requires); this variant folds its sums with subgroupAdd
// (parts/workgroup_sums_subgroup.wgsl) and needs the subgroup feature. The portable variant is
// matvec_s24.wgsl.

// include: matvec_s24_body
// include: workgroup_sums_subgroup

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_id) subgroup: u32,
        @builtin(num_subgroups) n_subgroups: u32) {
    matvec_s24(wid, nwg, SumIds(lid, lane, subgroup, n_subgroups));
}
