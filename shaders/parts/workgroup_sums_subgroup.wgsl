// parts/workgroup_sums_subgroup.wgsl: sums of per-thread values over a workgroup, SUMS of them
// at once, for the subgroup kernels of the matvec family. A kernel splices it in with the line
// `// include: workgroup_sums_subgroup` and declares `override SUMS: u32` (values per thread) and
// `WORKGROUP_SIZE` before that line (naga 30 fails on a workgroup array sized by an override
// declared after it). Each subgroup folds its lanes' value j with subgroupAdd and lane 0 keeps the
// sum (so at most WORKGROUP_SIZE subgroups, one per thread at worst); after a workgroupBarrier any
// thread reads slot j's total over the subgroups.

var<workgroup> subgroup_sums: array<f32, SUMS * WORKGROUP_SIZE>;

// This subgroup's sum of `value` into slot j (call in uniform control flow).
fn keep_subgroup_sum(j: u32, value: f32, lane: u32, subgroup: u32) {
    let sum = subgroupAdd(value);
    if (lane == 0u) {
        subgroup_sums[j * WORKGROUP_SIZE + subgroup] = sum;
    }
}

// Slot j's total over the workgroup's subgroups (after a workgroupBarrier).
fn workgroup_sum(j: u32, n_subgroups: u32) -> f32 {
    var total = 0.0;
    for (var s = 0u; s < n_subgroups; s++) {
        total += subgroup_sums[j * WORKGROUP_SIZE + s];
    }
    return total;
}
