// parts/workgroup_sums_subgroup.wgsl: sums of per-thread values over a workgroup, SUMS of them
// at once, by subgroupAdd (the fast path; parts/workgroup_sums_tree.wgsl is the portable one,
// with the same functions). A kernel splices it in with the line
// `// include: workgroup_sums_subgroup` after declaring `override SUMS: u32` (values per thread)
// and `WORKGROUP_SIZE` (naga 30 fails on a workgroup array sized by an override declared after
// it). Every thread calls keep_sum for each slot j, then all call fold_sums, then any thread reads
// workgroup_sum(j). Here each subgroup folds its lanes' value j and lane 0 keeps the sum (so at
// most WORKGROUP_SIZE subgroups, one per thread at worst); workgroup_sum adds the subgroups' sums.

// The invocation's ids the sums need (the portable part ignores all but lid).
struct SumIds {
    lid: u32,
    lane: u32,
    subgroup: u32,
    n_subgroups: u32,
}

var<workgroup> subgroup_sums: array<f32, SUMS * WORKGROUP_SIZE>;

// This thread's `value` for slot j (call in uniform control flow).
fn keep_sum(j: u32, value: f32, ids: SumIds) {
    let sum = subgroupAdd(value);
    if (ids.lane == 0u) {
        subgroup_sums[j * WORKGROUP_SIZE + ids.subgroup] = sum;
    }
}

// After every keep_sum, before any workgroup_sum (the whole workgroup calls it).
fn fold_sums(ids: SumIds) {
    workgroupBarrier();
}

// Slot j's total over the workgroup.
fn workgroup_sum(j: u32, ids: SumIds) -> f32 {
    var total = 0.0;
    for (var s = 0u; s < ids.n_subgroups; s++) {
        total += subgroup_sums[j * WORKGROUP_SIZE + s];
    }
    return total;
}
