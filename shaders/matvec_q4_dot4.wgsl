// matvec_q4_dot4.wgsl: matrix-vector product for decode with a Q4 weight (groups of 32 or 128),
// in integer dot products: x is rounded to int8 per block of 32 inside the kernel and multiplied
// with the 4-bit quants four at a time (dot4I8Packed), reduced with subgroupAdd.
//   y[row_offset + r] = sum_b scale[r, g] * d[b] * (sum_{k in block b} q[r, k] * qx[k])
//                     + min[r, g] * (sum_{k in block b} x[k])     g = 32 b / GROUP
//                                                   for r < rows   (+= with ACCUMULATE)
//   where block b is elements 32b .. 32b + 32 (one quant word), d[b] = max_{k in b} |x[k]| / 127
//   and qx[k] = round(x[k] / d[b]), an int8 in -127..127 (x[k] ~ d[b] * qx[k], within d[b] / 2).
//   The min term uses the exact f32 sum of x.
// Why: the float path (matvec_q4_subgroup) converts every nibble to f32 and loads 8 bytes of x
// per quant byte; here eight nibbles cost five integer instructions (two masks, a shift, two
// dot4I8Packed) and x is read once per ROWS rows, so the kernel can stay bandwidth-bound.
// The price is x's rounding: each product errs by at most |q scale| d[b] / 2.
//
// Bindings (engine/src/dtype.rs: the Q4 layout):
//   0  quants: array<vec4<u32>>  [rows, k / 32] this dispatch's row chunk; word c of row r holds
//        elements 32c .. 32c + 32, element e in nibble e % 8 (bits 4 * (e % 8)) of component
//        (e / 8) % 4, an unsigned 0..15
//   1  scales: array<u32>  [rows * k / GROUP] word j: group j's f16 scale (low half) and f16
//        min (high half); flat group j = (r * k + e) / GROUP
//   2  x: array<vec4<f32>>  (k) the input vector
//   3  y: array<f32>        (N) read_write, the whole output; this dispatch writes
//        y[row_offset .. row_offset + rows]
//   4  params: Params
// Workgroup: WORKGROUP_SIZE threads (override) own ROWS consecutive rows (override,
// <= MAX_ROWS). Thread t takes blocks (quant words) t, t + WORKGROUP_SIZE, ...: it rounds the
// block's 32 x values to int8 once (bytes ordered to match the nibbles: the even and the odd
// elements of each quant component) and sums them, then for each of the ROWS rows loads the
// quant word (16 bytes) and its scale/min word. The reduction: subgroupAdd folds each
// subgroup's partials, then thread r adds the subgroups' sums of row r.
// GROUP_WORDS (override): quant words per group, 1 (Q4, group 32) or 4 (Q4G128).
// Grid: ceil(rows / ROWS) workgroups, folded 2-D when large (flat_group_id).
// Requires: k % GROUP == 0 (the dtype guarantees it); 16-byte aligned x; the subgroup feature.
// (dot4I8Packed is native where the device has integer dot products, else naga expands it;
// nibbles 0..15 are the same as signed or unsigned bytes.)
// Fuses the dequantization and x's rounding.
// Reference: reference::matvec::round_x_int8 (x's rounding), dtype::unpack_q4, then
// reference::matvec::matvec.
// The kernel is shaders/parts/matvec_dot4_body.wgsl; this format's part is parts/dot4_q4.wgsl.

// include: dot4_q4
// include: matvec_dot4_body
