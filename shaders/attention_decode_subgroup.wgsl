// attention_decode_subgroup.wgsl: one query per head against the KV cache, split along the keys
// (flash-decoding), pass 1 of 2. Fast variant: sums across lanes by subgroupShuffleXor.
// Query row b (one per sequence of a batch; b = 0 alone for one sequence) has position pos[b]
// and its own cache slot b. Its kv_len = min(pos[b] + 1, capacity) keys are shared by the
// n_splits workgroups of a (row, head):
// split s takes keys s*split_len .. min(s*split_len + split_len, kv_len), split_len =
// ceil(ceil(kv_len / n_splits) / split_align) * split_align (computed on the GPU at every step,
// so every split has work when the context is long and the trailing ones none when it is short).
// With x_j = scale*log2(e) * q[h].k[j, g] (KV head g = h / group):
//   partials[b, s, h] = (M, L, A) with M = max_j x_j, L = sum_j exp2(x_j - M),
//                    A = sum_j exp2(x_j - M) * v[j, g, :]
// attention_decode_reduce.wgsl combines the splits into out[b, h] = sum_s e_s A_s / sum_s e_s L_s
// with e_s = exp2(M_s - max_s M_s).
//
// Bindings:
//   0  q: array<vec4<f32>>        (rows, n_heads * HEAD_DIM), heads contiguous; read
//   1  k_cache: array<vec4<u32>>  (rows, capacity, n_kv_heads * HEAD_DIM): slot b, row p holds
//                                 position p of query row b (one slot: (capacity, ...)); f32
//                                 bit patterns, or f16 pairs when KV_F16 (one vec4<u32> = 8 halves)
//   2  v_cache: array<vec4<u32>>  same layout as k_cache
//   3  partials: array<vec4<f32>> (rows, n_splits, n_heads, HEAD_DIM/4 + 1): per split and head, vec4 0
//                                 is (M, L, 0, 0), then A; written only by splits holding keys
//   4  pos: array<u32>            (rows) position of each query row, read on the GPU so the op replays
//   5  params: Params
// Workgroup: WG = SLOTS * TPK threads; one workgroup per (split, query head, row): grid (n_splits,
// n_heads, rows). The heads of a group read the same K/V rows at about the same time, so the repeats
// come from L2 (on an H200 this beat sharing the loads among a group's heads in one workgroup:
// the extra registers cost more than the re-reads). The workgroup holds SLOTS key slots of TPK
// lanes. A round covers SLOTS * R keys: slot i takes keys i, i + SLOTS, ..., i + (R-1)*SLOTS of
// it, and its lane l loads 8-element units l, l + TPK, ... of those K and V rows (coalesced: the
// TPK lanes read one contiguous row; the round's loads are all issued before any is used) and
// holds the same units of the query. Each lane dots its units with the query, the TPK lanes sum
// their parts (here by subgroupShuffleXor: a slot's TPK lanes are consecutive and TPK divides the
// subgroup size), and each slot folds its R keys into its own running (max, sum, weighted V).
// At the end the slots are merged through workgroup memory into the split's partial.
// Requires: HEAD_DIM % 8 == 0, U = ceil(HEAD_DIM/8 / TPK) <= MAX_U, R <= MAX_R, the SUBGROUP
// feature with subgroups of at least TPK lanes (the host checks). Portable variant:
// attention_decode.wgsl (lane sums through workgroup memory; both splice in the body,
// shaders/parts/attention_decode_split.wgsl).
// Fuses the scale. Reference: reference::attention_decode::attention_decode.

// The kernel (shared with the other variant); naga needs the overrides declared before
// the workgroup arrays sized by them, so the part comes first.
// include: attention_decode_split

// The lane sums of this variant, by subgroupShuffleXor (the rest of the kernel is shared).

// Sums each key's part over the TPK lanes of this thread's slot; every lane gets the sums.
fn sum_over_key_lanes(parts: array<f32, MAX_R>, lid: u32, slot: u32) -> array<f32, MAX_R> {
    var sums = parts;
    for (var offset = TPK / 2u; offset > 0u; offset >>= 1u) {
        for (var r = 0u; r < R; r++) {
            sums[r] += subgroupShuffleXor(sums[r], offset);
        }
    }
    return sums;
}
