// sample.wgsl: draws one token id from a row of logits, on the GPU; only the id leaves it.
//
// Definition (reference::sample, in f64):
//   l_i   = logits[i], penalised once if id i is in the history window:
//           l_i > 0 ? l_i / repeat_penalty : l_i * repeat_penalty      (HF / llama.cpp convention)
//   z_i   = l_i / temperature                      (greedy: z_i = l_i, the answer is argmax z)
//   m     = max z,  p_i proportional to exp(z_i - m)
//   kept  = {z >= t_k} ∩ {z >= t_p} ∩ {z >= t_min}. Each is a threshold set, so tokens tied at a
//           threshold are all kept or all dropped, never split by index:
//     t_k   = the k-th largest z (top_k; 0 or >= n is off). Ties at t_k are all kept, so more
//             than k tokens may survive.
//     t_p   = the largest value t >= t_k with  sum_{z_j >= t} p_j >= top_p * M_k, where
//             M_k = sum_{z_j >= t_k} p_j: the smallest head of the top-k set holding top_p of
//             its mass (top_p >= 1 is off; top_p = 0 keeps only the maximum).
//     t_min = m + ln(min_p): tokens with p_i >= min_p * p_max (min_p = 0 is off).
//   (Hugging Face's order: temperature, top_k, top_p, then min_p, which leaves top_p's mass alone.)
//   out   = a draw from p restricted to `kept`, renormalised. top_k == 1 or temperature <= 0 is
//           greedy: the argmax, smallest index on ties. NaN logits count as -inf.
//
// How: one workgroup of WG threads does it all. Thread t owns the 4-element quads t, t + WG, ...
// of the scratch row `scaled`, which holds z; a "pass" is one read of it (vec4 loads).
//   1. z = logit / temperature into `scaled`, with max, argmax and min on the way. With a
//      repetition penalty: the first thread to set an id's bit in the `seen` bit set rewrites
//      z of that id (so an id repeated in the window is penalised once), then a pass redoes the
//      max. Greedy stops here.
//   2. top_k: t_k by a 16-way search on the order-preserving u32 key of z (order_key): a pass
//      counts the keys of 16 equal buckets of the bracket [lo, hi] that holds t_k, and the bucket
//      where the count from the top reaches k becomes the bracket. Once the bracket holds <= WG
//      keys, one pass gathers them into workgroup memory, where they are ranked exactly. At most
//      8 passes (4 bits of the key each) and the gather.
//   3. the draw, by Gumbel-max (an exponential race): x = argmax over candidates of z_i - ln E_i,
//      E_i ~ Exp(1) from a counter-based hash of (seed, step, round, i) (noise_bits); x is then a
//      draw from softmax(z) over the candidates. Round 0 draws from {z >= max(t_k, t_min)}; its
//      pass also sums M_k.
//      top_p by rejection: x is kept iff the mass strictly above z_x is < top_p * M_k, or nothing
//      is above it. If not, t_p > z_x, so the next round draws, with fresh noise, from {z > z_x}.
//      A draw accepted so is exactly a draw from the kept set. Each round's pass also sums the
//      mass above the previous x, so a round is one pass; about 1 + ln(1 / top_p) are expected.
//      After MAX_ROUNDS (never seen in practice) the argmax, which is always kept, is taken.
//   4. thread 0 writes out[0] and appends it to the history ring.
//
// Bindings:
//   0  logits:      array<f32>  [n]         read
//   1  step:        array<u32>  [1]         read; changes every step (the model's position), mixed
//                                            into the noise so each step draws afresh
//   2  history:     array<u32>  [capacity]  read_write: a ring of previous ids, id number j (from 0)
//                                            at history[j % capacity]; the penalty window is the last
//                                            min(history_len, capacity) ids. The chosen id is appended.
//   3  history_len: array<u32>  [1]         read_write: ids ever appended (incremented here)
//   4  out:         array<u32>  [1]         write: the chosen id
//   5  scaled:      array<vec4<f32>> [ceil(n / 4)]      scratch owned by the Sampler: z
//   6  seen:        array<atomic<u32>> [ceil(n / 32)]   scratch owned by the Sampler: a bit per id
//   7  params:      Params
// Workgroup: one group of WG threads (override; a power of two: the host picks 1024 on a GPU,
// 256 on a CPU adapter, where fewer threads run faster). Fuses penalty, temperature, top-k,
// top-p, min-p and the draw. Requires 1 <= n < 2^31. Reference: reference::sample::sample.

struct Params {
    n: u32,
    history_capacity: u32,
    top_k: u32,           // 0: off (the host also sends 0 when top_k >= n)
    greedy: u32,          // 1: write the argmax (temperature <= 0 or top_k == 1)
    inv_temperature: f32, // 1 when greedy
    top_p: f32,           // >= 1: off
    ln_min_p: f32,        // ln(min_p), used when min_p_on
    min_p_on: u32,
    repeat_penalty: f32,  // 1: off
    seed_lo: u32,
    seed_hi: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> step: array<u32>;
@group(0) @binding(2) var<storage, read_write> history: array<u32>;
@group(0) @binding(3) var<storage, read_write> history_len: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;
@group(0) @binding(5) var<storage, read_write> scaled: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> seen: array<atomic<u32>>;
@group(0) @binding(7) var<uniform> params: Params;

override WG: u32 = 256u;
const NONE: u32 = 0xFFFFFFFFu;
const MAX_ROUNDS: u32 = 64u;
// -ln(E) < NOISE_CEILING for every noise draw (E >= 2^-33, -ln(2^-33) = 22.9): a token with
// z + NOISE_CEILING below a thread's best score cannot win, so its noise is not computed.
const NOISE_CEILING: f32 = 24.0;

// What a thread (and then the workgroup) knows after a pass.
struct Partial {
    best: f32,       // largest score (z in step 1, z - ln E in a draw)
    best_index: u32, // its index, NONE if none; ties go to the smaller index
    count: u32,      // elements counted
    mass: f32,       // sum of exp(z - m) over them
    low: f32,        // smallest z (step 1)
    mass_k: f32,     // in a draw: the mass of the top-k set
}

var<workgroup> partials: array<Partial, WG>;
var<workgroup> buckets: array<atomic<u32>, 16>;
// The top-k search state, written by thread 0: (lo, hi, count of keys above hi, keys in [lo, hi]).
var<workgroup> search: vec4<u32>;
var<workgroup> gathered: array<u32, WG>;
var<workgroup> gathered_len: atomic<u32>;
var<workgroup> found: u32;

fn empty_partial() -> Partial {
    return Partial(NEG_BIG, NONE, 0u, 0.0, -NEG_BIG, 0.0);
}

// Keeps the larger score; on a tie, the smaller index.
fn offer(p: ptr<function, Partial>, score: f32, i: u32) {
    let wins = score > (*p).best || (score == (*p).best && i < (*p).best_index);
    if ((*p).best_index == NONE || wins) {
        (*p).best = score;
        (*p).best_index = i;
    }
}

fn combine(a: Partial, b: Partial) -> Partial {
    var r = a;
    if (b.best_index != NONE) {
        offer(&r, b.best, b.best_index);
    }
    r.count = a.count + b.count;
    r.mass = a.mass + b.mass;
    r.low = min(a.low, b.low);
    r.mass_k = a.mass_k + b.mass_k;
    return r;
}

// Combines every thread's partial (in tree order, so float sums are reproducible); every
// thread gets the result as a uniform value.
fn reduce(lid: u32, p: Partial) -> Partial {
    partials[lid] = p;
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        workgroupBarrier();
        if (lid < stride) {
            partials[lid] = combine(partials[lid], partials[lid + stride]);
        }
    }
    return workgroupUniformLoad(&partials[0]);
}

// u32 whose order is the order of the floats (-0 counts as +0).
fn order_key(z: f32) -> u32 {
    let bits = select(bitcast<u32>(z), 0u, bitcast<u32>(z) == 0x80000000u);
    return select(bits | 0x80000000u, ~bits, (bits & 0x80000000u) != 0u);
}

// The logit as a number: NaN counts as -inf.
fn logit(i: u32) -> f32 {
    let l = logits[i];
    return select(l, bitcast<f32>(0xFF800000u), l != l);
}

fn quads() -> u32 {
    return (params.n + 3u) / 4u;
}

// z of element i.
fn z_at(i: u32) -> f32 {
    return scaled[i >> 2u][i & 3u];
}

// The PCG output hash (Jarzynski & Olano, "Hash Functions for GPU Rendering", 2020); a bijection.
fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// One stream of noise per (seed, step, round); within it, distinct tokens get distinct bits.
fn noise_stream(round: u32) -> u32 {
    return pcg_hash(params.seed_lo ^ pcg_hash(params.seed_hi ^ pcg_hash(step[0] ^ pcg_hash(round))));
}

fn noise_bits(stream: u32, i: u32) -> u32 {
    return pcg_hash(pcg_hash(i) ^ stream);
}

// E = -ln(1 - v) ~ Exp(1) for v = (bits + 0.5) / 2^32, uniform in (0, 1). Small E decides the
// race, and log() is imprecise near 1, so small v uses the series v + v^2/2 + ... + v^5/5.
fn exponential(bits: u32) -> f32 {
    let v = (f32(bits) + 0.5) * 2.3283064e-10;
    if (v < 0.0625) {
        return v * (1.0 + v * (0.5 + v * (0.33333334 + v * (0.25 + v * 0.2))));
    }
    return -log(max(1.0 - v, 2.9802322e-8));
}

// Step 1: z for the whole row into `scaled` (past n: -inf); max, argmax and min of it.
fn scale_row(lid: u32) -> Partial {
    var p = empty_partial();
    for (var q = lid; q < quads(); q += WG) {
        var v = vec4<f32>(bitcast<f32>(0xFF800000u));
        for (var c = 0u; c < 4u && 4u * q + c < params.n; c++) {
            v[c] = logit(4u * q + c) * params.inv_temperature;
            offer(&p, v[c], 4u * q + c);
            p.low = min(p.low, v[c]);
        }
        scaled[q] = v;
    }
    if (params.repeat_penalty != 1.0) {
        for (var w = lid; w < (params.n + 31u) / 32u; w += WG) {
            atomicStore(&seen[w], 0u);
        }
    }
    storageBarrier();
    return reduce(lid, p);
}

// Rewrites z of every id in the history window with its penalised logit; then max, argmax and
// min again.
fn penalise_history(lid: u32) -> Partial {
    let window = min(history_len[0], params.history_capacity);
    for (var j = lid; j < window; j += WG) {
        let id = history[j];
        if (id < params.n) {
            let bit = 1u << (id & 31u);
            if ((atomicOr(&seen[id >> 5u], bit) & bit) == 0u) {
                let l = logit(id);
                let penalised = select(l * params.repeat_penalty, l / params.repeat_penalty, l > 0.0);
                scaled[id >> 2u][id & 3u] = penalised * params.inv_temperature;
            }
        }
    }
    storageBarrier();
    var p = empty_partial();
    for (var q = lid; q < quads(); q += WG) {
        let v = scaled[q];
        for (var c = 0u; c < 4u && 4u * q + c < params.n; c++) {
            offer(&p, v[c], 4u * q + c);
            p.low = min(p.low, v[c]);
        }
    }
    return reduce(lid, p);
}

// A pass: the Gumbel-max winner among {key >= floor} with this round's noise, the count and
// mass of that set, and the mass of {key >= top_k_floor}.
fn draw(lid: u32, floor: u32, top_k_floor: u32, round: u32, m: f32) -> Partial {
    let stream = noise_stream(round);
    var p = empty_partial();
    for (var q = lid; q < quads(); q += WG) {
        let v = scaled[q];
        for (var c = 0u; c < 4u && 4u * q + c < params.n; c++) {
            let z = v[c];
            let key = order_key(z);
            let e = exp(z - m);
            if (key >= top_k_floor) {
                p.mass_k += e;
            }
            if (key < floor) {
                continue;
            }
            p.count += 1u;
            p.mass += e;
            if (p.best_index == NONE || z + NOISE_CEILING >= p.best) {
                offer(&p, z - log(exponential(noise_bits(stream, 4u * q + c))), 4u * q + c);
            }
        }
    }
    return reduce(lid, p);
}

// The key of the k-th largest z (ties counted), given lo = key of min z and hi = key of max z.
fn kth_largest_key(lid: u32, k: u32, lo_key: u32, hi_key: u32) -> u32 {
    // Invariant: count(key >= lo) >= k > above = count(key > hi); `inside` = count in [lo, hi].
    var s = vec4<u32>(lo_key, hi_key, 0u, params.n);
    loop {
        if (s.x == s.y || s.w <= WG) {
            break;
        }
        let lo = s.x;
        let span = s.y - lo;
        let shift = select(0u, firstLeadingBit(span) - 3u, firstLeadingBit(span) >= 4u);
        if (lid < 16u) {
            atomicStore(&buckets[lid], 0u);
        }
        workgroupBarrier();
        var counts: array<u32, 16>;
        for (var q = lid; q < quads(); q += WG) {
            let v = scaled[q];
            for (var c = 0u; c < 4u && 4u * q + c < params.n; c++) {
                let key = order_key(v[c]);
                if (key >= lo && key <= s.y) {
                    counts[(key - lo) >> shift] += 1u;
                }
            }
        }
        for (var b = 0u; b < 16u; b++) {
            if (counts[b] != 0u) {
                atomicAdd(&buckets[b], counts[b]);
            }
        }
        workgroupBarrier();
        if (lid == 0u) {
            // The highest bucket whose count from the top reaches k holds t_k.
            var above = s.z;
            var b = 15u;
            loop {
                let here = atomicLoad(&buckets[b]);
                if (above + here >= k || b == 0u) {
                    let start = lo + (b << shift);
                    let width = min(s.y - start, (1u << shift) - 1u);
                    search = vec4<u32>(start, start + width, above, here);
                    break;
                }
                above += here;
                b -= 1u;
            }
        }
        s = workgroupUniformLoad(&search);
    }
    if (s.x == s.y) {
        return s.x;
    }
    // At most WG keys left in [lo, hi]: gather them and find the one of rank k - above.
    if (lid == 0u) {
        atomicStore(&gathered_len, 0u);
    }
    workgroupBarrier();
    for (var q = lid; q < quads(); q += WG) {
        let v = scaled[q];
        for (var c = 0u; c < 4u && 4u * q + c < params.n; c++) {
            let key = order_key(v[c]);
            if (key >= s.x && key <= s.y) {
                gathered[atomicAdd(&gathered_len, 1u)] = key;
            }
        }
    }
    workgroupBarrier();
    let len = atomicLoad(&gathered_len);
    let rank = k - s.z; // 1-based, among the gathered keys, largest first
    if (lid < len) {
        let mine = gathered[lid];
        var greater = 0u;
        var at_least = 0u;
        for (var j = 0u; j < len; j++) {
            greater += u32(gathered[j] > mine);
            at_least += u32(gathered[j] >= mine);
        }
        if (greater < rank && rank <= at_least) {
            found = mine; // every thread that gets here writes the same key
        }
    }
    return workgroupUniformLoad(&found);
}

fn finish(lid: u32, id: u32) {
    if (lid == 0u) {
        out[0] = id;
        let len = history_len[0];
        history[len % params.history_capacity] = id;
        history_len[0] = len + 1u;
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    // 1. z, penalised; max, argmax, min.
    var row = scale_row(lid);
    if (params.repeat_penalty != 1.0) {
        row = penalise_history(lid);
    }
    let m = row.best;
    let argmax = row.best_index;
    if (params.greedy == 1u) {
        finish(lid, argmax);
        return;
    }

    // 2. top_k, then min_p's threshold.
    var top_k_floor = 0u;
    if (params.top_k > 0u) {
        top_k_floor = kth_largest_key(lid, params.top_k, order_key(row.low), order_key(m));
    }
    var floor = top_k_floor;
    if (params.min_p_on == 1u) {
        floor = max(floor, order_key(m + params.ln_min_p));
    }

    // 3. draw; top_p by rejection.
    let first = draw(lid, floor, top_k_floor, 0u, m);
    var pick = first.best_index;
    if (params.top_p < 1.0) {
        let limit = params.top_p * first.mass_k;
        for (var round = 1u; ; round++) {
            if (pick == NONE || round == MAX_ROUNDS) {
                pick = argmax;
                break;
            }
            let next = draw(lid, order_key(z_at(pick)) + 1u, NONE, round, m);
            if (next.count == 0u || next.mass < limit) {
                break; // `pick` is inside the top_p head
            }
            pick = next.best_index;
        }
    }
    if (pick == NONE) {
        pick = argmax;
    }
    finish(lid, pick);
}
