// cross_entropy.wgsl: per-row negative log-likelihood of a target id under softmax(logits).
//   nll[m] = log(sum_j exp(x[m, j])) - x[m, target[m]]
// computed as max + log(sum_j exp(x[m, j] - max)) so no exp overflows. Perplexity scores
// thousands of rows of a 50k-150k vocabulary; doing it here means only one float per row comes
// back to the CPU instead of the whole row.
//
// Bindings:
//   0  x: array<f32>       (rows, n) row-major logits, read
//   1  targets: array<u32>  (rows) ids in 0..n (an id >= n gives NaN: the host checks ids)
//   2  nll: array<f32>     (rows) read_write
//   3  params: Params
// Workgroup: WG threads (override, a power of two), one workgroup per row (folded 2-D past 65535
// rows: flat_group_id). Thread j keeps a running (max, sum of exp(x - max)) over columns j,
// j + WG, ...; the workgroup reduces the maxima, then the rescaled sums, in workgroup memory.
// Fuses nothing. Reference: reference::cross_entropy::cross_entropy.

override WG: u32 = 256;

struct Params {
    n_rows: u32,
    n: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<u32>;
@group(0) @binding(2) var<storage, read_write> nll: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = flat_group_id(wid, nwg);
    if (row >= params.n_rows) {
        return; // uniform per workgroup: the barriers below stay in uniform control flow
    }
    let base = row * params.n;
    var run_max = NEG_BIG;
    var run_sum = 0.0;
    for (var j = lid; j < params.n; j += WG) {
        let v = x[base + j];
        if (v > run_max) {
            run_sum = run_sum * exp(run_max - v) + 1.0;
            run_max = v;
        } else {
            run_sum += exp(v - run_max);
        }
    }
    // the row's max
    partial[lid] = run_max;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] = max(partial[lid], partial[lid + stride]);
        }
        workgroupBarrier();
    }
    let row_max = partial[0];
    workgroupBarrier();
    // the row's sum of exp(x - row_max)
    partial[lid] = run_sum * exp(run_max - row_max);
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let t = targets[row];
        let logit = select(bitcast<f32>(0x7FC00000u), x[base + min(t, params.n - 1u)], t < params.n);
        nll[row] = row_max + log(partial[0]) - logit;
    }
}
