// parts/workgroup_sums_tree.wgsl: sums of per-thread values over a workgroup, SUMS of them at
// once, through a tree in workgroup memory (portable: no subgroup operations). The same functions
// as parts/workgroup_sums_subgroup.wgsl, spliced in with `// include: workgroup_sums_tree` after
// `override SUMS: u32` and `WORKGROUP_SIZE` (a power of two) are declared. Every thread keeps its
// value j, fold_sums halves the live threads log2(WORKGROUP_SIZE) times, each step adding all SUMS
// slots, and slot j's total ends in thread 0's place.

// The invocation's ids the sums need (only lid here).
struct SumIds {
    lid: u32,
    lane: u32,
    subgroup: u32,
    n_subgroups: u32,
}

var<workgroup> thread_sums: array<f32, SUMS * WORKGROUP_SIZE>;

// This thread's `value` for slot j.
fn keep_sum(j: u32, value: f32, ids: SumIds) {
    thread_sums[j * WORKGROUP_SIZE + ids.lid] = value;
}

// After every keep_sum, before any workgroup_sum (the whole workgroup calls it).
fn fold_sums(ids: SumIds) {
    workgroupBarrier();
    for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
        if (ids.lid < stride) {
            for (var j = 0u; j < SUMS; j++) {
                let i = j * WORKGROUP_SIZE + ids.lid;
                thread_sums[i] += thread_sums[i + stride];
            }
        }
        workgroupBarrier();
    }
}

// Slot j's total over the workgroup.
fn workgroup_sum(j: u32, ids: SumIds) -> f32 {
    return thread_sums[j * WORKGROUP_SIZE];
}
