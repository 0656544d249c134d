//! A CPU reference forward pass of the Llama family (Hugging Face conventions: rotate_half RoPE,
//! repeat_kv for grouped-query attention, optional q/k/v biases, Llama-3 rope scaling), in f64,
//! over the weights of a checkpoint. Slow and plain on purpose: the GPU model is checked against it.

use shaderlm::checkpoint::{Checkpoint, Config};

/// What one decoder layer reads and writes, one row per token (the calibration pass's taps).
#[derive(Clone, Debug, Default)]
pub struct LayerTaps {
    /// The residual stream before the layer.
    pub x_in: Vec<Vec<f64>>,
    /// input_layernorm's output: q/k/v_proj's input.
    pub attn_in: Vec<Vec<f64>>,
    /// The attention output: o_proj's input.
    pub o_in: Vec<Vec<f64>>,
    /// post_attention_layernorm's output: gate/up_proj's input.
    pub ffn_in: Vec<Vec<f64>>,
    /// silu(gate) * up: down_proj's input.
    pub down_in: Vec<Vec<f64>>,
    /// The residual stream after the layer.
    pub x_out: Vec<Vec<f64>>,
}

pub struct CpuLlama {
    cfg: Config,
    w: std::collections::HashMap<String, Vec<f64>>,
    inv_freq: Vec<f64>,
}

fn rms_norm(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, g)| v * r * g).collect()
}

/// y = W x for W (out, in) row-major.
fn linear(w: &[f64], x: &[f64]) -> Vec<f64> {
    let k = x.len();
    w.chunks(k).map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
}

impl CpuLlama {
    pub fn load(ckpt: &Checkpoint) -> CpuLlama {
        let cfg = ckpt.config().clone();
        let mut w = std::collections::HashMap::new();
        for name in ckpt.tensor_names() {
            let view = ckpt.tensor(name).unwrap();
            w.insert(name.to_string(), view.to_f32().unwrap().into_iter().map(f64::from).collect());
        }
        let inv_freq = shaderlm::llama::rope_frequencies(&cfg).into_iter().map(f64::from).collect();
        CpuLlama { cfg, w, inv_freq }
    }

    /// Replaces each tensor for which `f(name, values)` returns new values (a test of quantized
    /// weights gives the values the GPU model holds).
    pub fn map_weights(&mut self, f: impl Fn(&str, &[f64]) -> Option<Vec<f64>>) {
        for (name, values) in self.w.iter_mut() {
            if let Some(v) = f(name, values) {
                *values = v;
            }
        }
    }

    /// Edits the config and the weights together (a test of a pruned model builds the smaller
    /// model: layers renumbered, FFN channels removed).
    pub fn edit(&mut self, f: impl FnOnce(&mut Config, &mut std::collections::HashMap<String, Vec<f64>>)) {
        f(&mut self.cfg, &mut self.w);
    }

    fn get(&self, name: &str) -> &[f64] {
        self.w.get(name).unwrap_or_else(|| panic!("tensor {name}"))
    }

    fn rope(&self, x: &mut [f64], n_heads: usize, pos: usize) {
        let hd = self.cfg.head_dim;
        let half = self.inv_freq.len();
        for h in 0..n_heads {
            let head = &mut x[h * hd..(h + 1) * hd];
            for i in 0..half {
                let (s, c) = (pos as f64 * self.inv_freq[i]).sin_cos();
                let (a, b) = (head[i], head[i + half]);
                head[i] = a * c - b * s;
                head[i + half] = b * c + a * s;
            }
        }
    }

    /// What every decoder layer reads and writes for `ids` at positions 0..len, row per token.
    pub fn layer_taps(&self, ids: &[u32]) -> Vec<LayerTaps> {
        let mut taps = Vec::new();
        self.hidden_states(ids, Some(&mut taps));
        taps
    }

    /// The residual stream after the last layer, row per token; with `taps`, one `LayerTaps`
    /// per layer is pushed.
    fn hidden_states(&self, ids: &[u32], mut taps: Option<&mut Vec<LayerTaps>>) -> Vec<Vec<f64>> {
        let c = &self.cfg;
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let eps = c.rms_norm_eps as f64;
        let emb = self.get("model.embed_tokens.weight");
        let h = c.hidden_size;
        let mut xs: Vec<Vec<f64>> = ids.iter().map(|&t| emb[t as usize * h..(t as usize + 1) * h].to_vec()).collect();
        for l in 0..c.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let mut tap = LayerTaps { x_in: if taps.is_some() { xs.clone() } else { Vec::new() }, ..Default::default() };
            let mut keys = Vec::new();
            let mut values = Vec::new();
            let mut queries = Vec::new();
            for (pos, x) in xs.iter().enumerate() {
                let xn = rms_norm(x, self.get(&format!("{p}.input_layernorm.weight")), eps);
                tap.attn_in.push(xn.clone());
                let mut q = linear(self.get(&format!("{p}.self_attn.q_proj.weight")), &xn);
                let mut k = linear(self.get(&format!("{p}.self_attn.k_proj.weight")), &xn);
                let mut v = linear(self.get(&format!("{p}.self_attn.v_proj.weight")), &xn);
                if c.attention_bias {
                    for (t, b) in [(&mut q, "q"), (&mut k, "k"), (&mut v, "v")] {
                        for (a, bb) in t.iter_mut().zip(self.get(&format!("{p}.self_attn.{b}_proj.bias"))) {
                            *a += bb;
                        }
                    }
                }
                self.rope(&mut q, nh, pos);
                self.rope(&mut k, nkv, pos);
                queries.push(q);
                keys.push(k);
                values.push(v);
            }
            for (pos, x) in xs.iter_mut().enumerate() {
                let mut att = vec![0.0; nh * hd];
                for head in 0..nh {
                    let kvh = head / (nh / nkv);
                    let q = &queries[pos][head * hd..(head + 1) * hd];
                    let scores: Vec<f64> = (0..=pos)
                        .map(|j| q.iter().zip(&keys[j][kvh * hd..(kvh + 1) * hd]).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt())
                        .collect();
                    let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for (j, ej) in e.iter().enumerate() {
                        for d in 0..hd {
                            att[head * hd + d] += ej / z * values[j][kvh * hd + d];
                        }
                    }
                }
                let o = linear(self.get(&format!("{p}.self_attn.o_proj.weight")), &att);
                tap.o_in.push(att);
                for (a, b) in x.iter_mut().zip(&o) {
                    *a += b;
                }
                let xn = rms_norm(x, self.get(&format!("{p}.post_attention_layernorm.weight")), eps);
                tap.ffn_in.push(xn.clone());
                let g = linear(self.get(&format!("{p}.mlp.gate_proj.weight")), &xn);
                let u = linear(self.get(&format!("{p}.mlp.up_proj.weight")), &xn);
                let hmid: Vec<f64> = g.iter().zip(&u).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
                let d = linear(self.get(&format!("{p}.mlp.down_proj.weight")), &hmid);
                tap.down_in.push(hmid);
                for (a, b) in x.iter_mut().zip(&d) {
                    *a += b;
                }
            }
            if let Some(taps) = taps.as_deref_mut() {
                tap.x_out = xs.clone();
                taps.push(tap);
            }
        }
        xs
    }

    /// Logits (len, vocab) for `ids` at positions 0..len.
    pub fn logits(&self, ids: &[u32]) -> Vec<Vec<f64>> {
        let xs = self.hidden_states(ids, None);
        let eps = self.cfg.rms_norm_eps as f64;
        let head = if self.w.contains_key("lm_head.weight") { "lm_head.weight" } else { "model.embed_tokens.weight" };
        xs.iter().map(|x| linear(self.get(head), &rms_norm(x, self.get("model.norm.weight"), eps))).collect()
    }
}
