// matvec_q8_dot4.wgsl: matrix-vector product for decode with a Q8 weight, in integer dot
// products: x is rounded to int8 per block of 32 inside the kernel and multiplied with the int8
// quants four at a time (dot4I8Packed), reduced with subgroupAdd.
//   y[row_offset + r] = sum_b scale[r, b] * d[b] * (sum_{k in block b} q[r, k] * qx[k])
//                                                   for r < rows   (+= with ACCUMULATE)
//   where block b is elements 32b .. 32b + 32 (one scale group), d[b] = max_{k in b} |x[k]| / 127
//   and qx[k] = round(x[k] / d[b]), an int8 in -127..127 (x[k] ~ d[b] * qx[k], within d[b] / 2).
// Why: the float path (matvec_q8_subgroup) converts every quant to f32 and loads 4 bytes of x
// per quant byte; here a quant costs a quarter of an integer instruction and x is read once per
// ROWS rows, so the kernel stays bandwidth-bound where the float one is bound by ALU and by x.
// The price is x's rounding: each product errs by at most |w| d[b] / 2.
//
// Bindings (engine/src/dtype.rs: the Q8 layout):
//   0  quants: array<vec4<u32>>  [rows, k / 16] this dispatch's row chunk; word c of row r holds
//        elements 16c .. 16c + 16, element e in byte e % 4 of component (e / 4) % 4, signed
//   1  scales: array<u32>  [rows * k / 32] f16, two per word: flat group j = (r * k + e) / 32 is
//        half j % 2 of word j / 2
//   2  x: array<vec4<f32>>  (k) the input vector
//   3  y: array<f32>        (N) read_write, the whole output; this dispatch writes
//        y[row_offset .. row_offset + rows]
//   4  params: Params
// Workgroup: WORKGROUP_SIZE threads (override) own ROWS consecutive rows (override,
// <= MAX_ROWS). Thread t takes blocks t, t + WORKGROUP_SIZE, ...: it rounds the block's 32 x values
// to int8 once, then for each of the ROWS rows loads the block's two quant words (32 bytes) and
// its scale and adds scale * d * (8 dot4I8Packed) to that row's partial sum. The reduction:
// subgroupAdd folds each subgroup's partials, then thread r adds the subgroups' sums of row r.
// Grid: ceil(rows / ROWS) workgroups, folded 2-D when large (flat_group_id).
// Requires: k % 32 == 0 (the dtype guarantees it); 16-byte aligned x; the subgroup feature.
// (dot4I8Packed is native where the device has integer dot products, else naga expands it.)
// Fuses the dequantization and x's rounding.
// Reference: reference::matvec::round_x_int8 (x's rounding), dtype::dequantize, then
// reference::matvec::matvec.
// The kernel is shaders/parts/matvec_dot4_body.wgsl; this format's part is parts/dot4_q8.wgsl.

// include: dot4_q8
// include: matvec_dot4_body
