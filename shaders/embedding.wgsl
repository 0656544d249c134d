// embedding.wgsl: gather table rows by id.  out[t, j] = table[ids[t], j]  (0 where ids[t] >= vocab)
//
// Bindings:
//   0  table: array<u32>  one row chunk of the table: rows first_row .. first_row + chunk_rows
//                         of (vocab, dim) row-major; f32 words, or f16 pairs when TABLE_F16
//                         (element e = half e%2 of word e/2; with an odd dim a row may start in
//                         the high half of a word)
//   1  ids: array<u32>    (n_ids) token ids
//   2  out: array<f32>    (n_ids, dim) row-major, written
//   3  params: Params
// A table larger than one storage binding is bound in row chunks, one dispatch per chunk; each
// dispatch writes only the rows whose id falls in its chunk, and the last chunk also writes the
// zeros of out-of-range ids, so every element of out is written exactly once and the table is
// never read out of bounds.
// Workgroup: 256 threads, one output element each; the grid is ceil(n_ids * dim / 256) groups,
// folded 2-D when large (flat_group_id). Fuses nothing. Reference: reference::embedding::embedding.

override TABLE_F16: bool = false;

struct Params {
    dim: u32,
    n_ids: u32,
    first_row: u32,
    chunk_rows: u32,
    vocab: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> table: array<u32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

fn table_at(e: u32) -> f32 {
    if (TABLE_F16) {
        return f16_from_word(table[e >> 1u], e);
    }
    return bitcast<f32>(table[e]);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = flat_group_id(wid, nwg) * 256u + lid;
    if (g >= params.n_ids * params.dim) {
        return;
    }
    let t = g / params.dim;
    let j = g % params.dim;
    let id = ids[t];
    let chunk_end = params.first_row + params.chunk_rows;
    if (id >= params.first_row && id < chunk_end) {
        out[g] = table_at((id - params.first_row) * params.dim + j);
    } else if (id >= params.vocab && chunk_end == params.vocab) {
        out[g] = 0.0;
    }
}
