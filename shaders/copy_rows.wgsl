// copy_rows.wgsl: write a block of rows into a cache at a position read on the GPU.
//   dst[pos[0] + t, :] = src[t, :]   for t < n_rows and pos[0] + t < capacity
// converting f32 to dst's dtype (f32, or f16 when DST_F16). Rows at or past capacity are skipped,
// so a position that ran off the end of the cache never writes out of bounds.
//
// Bindings:
//   0  src: array<f32>  (n_rows, row_len) row-major, read
//   1  dst: array<u32>  (capacity, row_len) row-major, read_write: f32 bit patterns, or f16 pairs
//                       when DST_F16 (element i = half i%2 of word i/2; rows may straddle words
//                       when row_len is odd)
//   2  pos: array<u32>  (1) position of src row 0 in dst
//   3  params: Params
// Workgroup: 256 threads; each thread owns one word of dst, so no two threads touch the same
// word. f32: thread i writes element pos*row_len + i (grid: n_rows*row_len threads). f16: thread
// i owns word first + i, where first is the word holding element pos*row_len (grid:
// n_rows*row_len/2 + 1 threads, enough for a block that starts and ends mid-word); it fills the
// halves that fall inside the block and keeps the other half's bits as they were. The grid is folded 2-D
// when large (flat_group_id).
// Fuses nothing. Reference: reference::copy_rows::copy_rows.

override DST_F16: bool = false;

struct Params {
    n_rows: u32,
    row_len: u32,
    capacity: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<storage, read> pos: array<u32>;
@group(0) @binding(3) var<uniform> params: Params;

// Whether cache element e (flat index) lies in the block being written.
fn in_block(e: u32, first_row: u32) -> bool {
    let row = e / params.row_len;
    return row >= first_row && row - first_row < params.n_rows && row < params.capacity;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_group_id(wid, nwg) * 256u + lid;
    let first_row = pos[0];
    if (first_row >= params.capacity) {
        return;
    }
    let block_start = first_row * params.row_len;
    if (!DST_F16) {
        let t = i / params.row_len;
        if (t < params.n_rows && t < params.capacity - first_row) {
            dst[block_start + i] = bitcast<u32>(src[i]);
        }
        return;
    }
    let w = block_start / 2u + i;
    let lo_in = in_block(2u * w, first_row);
    let hi_in = in_block(2u * w + 1u, first_row);
    if (!lo_in && !hi_in) {
        return;
    }
    var halves = vec2<f32>(0.0);
    if (lo_in) {
        halves.x = src[2u * w - block_start];
    }
    if (hi_in) {
        halves.y = src[2u * w + 1u - block_start];
    }
    // A half outside the block keeps its old bits (this happens only at the block's two ends).
    var keep = 0u;
    if (!lo_in) {
        keep = 0x0000ffffu;
    }
    if (!hi_in) {
        keep = 0xffff0000u;
    }
    var word = pack2x16float(halves) & ~keep;
    if (keep != 0u) {
        word = word | (dst[w] & keep);
    }
    dst[w] = word;
}
