// parts/rope_kv_cache_rows.wgsl: the rows an rms_norm_matvec_rope_kv_cache workgroup takes and
// the epilogue that rotates and stores them, shared by its four variants (portable, subgroup, Q8
// and Q4 Dot4), which differ only in how they reduce the 8 rows. Each declares the bindings
// inv_freq, pos, q, k_cache, v_cache, params (with k, eps, n_heads, n_kv_heads, head_dim,
// capacity), the override CACHE_F16 and the constants ROWS = 8, PAIRS = 4, then splices this in
// with `// include: rope_kv_cache_rows` (see rms_norm_matvec_rope_kv_cache.wgsl's header for what
// the workgroups do).

// Where the workgroup's 8 rows come from and go to.
struct Task {
    first_row: u32,  // row of W of local row 0 (q or k: element d0 of the head; v: the first row)
    half: u32,       // q or k: local rows 4.. are rows first_row + half ..; v: 0 (consecutive)
    head: u32,       // q or k: the head (n_kv_heads .. for k); v: unused
    d0: u32,         // q or k: the first element within the head; v: the first element of v
    is_v: bool,
}

fn task(wg: u32) -> Task {
    let hd = params.head_dim;
    let half = hd / 2u;
    let per_head = half / PAIRS;
    let n_rotated = (params.n_heads + params.n_kv_heads) * per_head;
    if (wg < n_rotated) {
        let head = wg / per_head;
        let d0 = (wg % per_head) * PAIRS;
        return Task(head * hd + d0, half, head, d0, false);
    }
    let v0 = (wg - n_rotated) * ROWS;
    return Task((params.n_heads + params.n_kv_heads) * hd + v0, 0u, 0u, v0, true);
}

// Row of W behind local row r.
fn row_of(t: Task, r: u32) -> u32 {
    if (t.is_v || r < PAIRS) {
        return t.first_row + r;
    }
    return t.first_row + t.half + r - PAIRS;
}

fn store_cache(is_v: bool, word: u32, value: u32) {
    if (is_v) {
        v_cache[word] = value;
    } else {
        k_cache[word] = value;
    }
}

// Thread 0's epilogue: rows y (already scaled by 1 / rms) of task t, rotated at position pos[0]
// where t is q or k, stored into q or the caches.
fn rotate_and_store(t: Task, rows: array<f32, ROWS>) {
    var y = rows;
    let p = pos[0];
    if (!t.is_v) {
        for (var i = 0u; i < PAIRS; i++) {
            let angle = rotation_angle(p, inv_freq[t.d0 + i]);
            let c = cos(angle);
            let s = sin(angle);
            let a = y[i];
            let b = y[PAIRS + i];
            y[i] = a * c - b * s;
            y[PAIRS + i] = b * c + a * s;
        }
    }
    let hd = params.head_dim;
    if (!t.is_v && t.head < params.n_heads) {
        for (var r = 0u; r < ROWS; r++) {
            q[row_of(t, r)] = y[r];
        }
        return;
    }
    if (p >= params.capacity) {
        return;
    }
    // Element of the cache row of local row r: (k head - n_heads) * hd + element, or the v element.
    let kv_width = params.n_kv_heads * hd;
    var e0 = t.d0;
    if (!t.is_v) {
        e0 = (t.head - params.n_heads) * hd + t.d0;
    }
    let row_base = p * kv_width;
    for (var j = 0u; j < ROWS / 2u; j++) {
        // Local rows 2j, 2j + 1 are neighbouring elements (the pairs' halves are PAIRS apart).
        var e = e0 + 2u * j;
        if (!t.is_v && 2u * j >= PAIRS) {
            e = e0 + t.half + 2u * j - PAIRS;
        }
        if (CACHE_F16) {
            store_cache(t.is_v, (row_base + e) / 2u, pack2x16float(vec2<f32>(y[2u * j], y[2u * j + 1u])));
        } else {
            store_cache(t.is_v, row_base + e, bitcast<u32>(y[2u * j]));
            store_cache(t.is_v, row_base + e + 1u, bitcast<u32>(y[2u * j + 1u]));
        }
    }
}
