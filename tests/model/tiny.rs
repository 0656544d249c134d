//! Tiny random checkpoints written by the tests: a Qwen2-style one (q/k/v biases, GQA) and a
//! Llama-3-style one (llama3 rope scaling, GQA), with stories260K's tokenizer beside them.

use std::path::PathBuf;

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Qwen2,
    Llama3,
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shaderlm-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(super::stories().join("tokenizer.json"), d.join("tokenizer.json")).unwrap();
    d
}

/// Writes F32 safetensors from (name, shape, values).
fn write_safetensors(path: &std::path::Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let mut header = String::from("{");
    let mut offset = 0;
    for (i, (name, shape, data)) in tensors.iter().enumerate() {
        let comma = if i == 0 { "" } else { "," };
        header += &format!("{comma}\"{name}\":{{\"dtype\":\"F32\",\"shape\":{shape:?},\"data_offsets\":[{offset},{}]}}", offset + 4 * data.len());
        offset += 4 * data.len();
    }
    header.push('}');
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    for (_, _, data) in tensors {
        bytes.extend_from_slice(bytemuck::cast_slice(data));
    }
    std::fs::write(path, bytes).unwrap();
}

pub fn write(kind: Kind) -> PathBuf {
    let (h, f, layers, nh, nkv, vocab) = (64usize, 96usize, 2usize, 4usize, 2usize, 512usize);
    let hd = h / nh;
    let d = dir(&format!("{kind:?}"));
    let config = match kind {
        Kind::Qwen2 => format!(
            r#"{{"architectures":["Qwen2ForCausalLM"],"hidden_size":{h},"intermediate_size":{f},"num_hidden_layers":{layers},
            "num_attention_heads":{nh},"num_key_value_heads":{nkv},"vocab_size":{vocab},"max_position_embeddings":128,
            "rms_norm_eps":1e-6,"rope_theta":1000000.0,"tie_word_embeddings":false,"bos_token_id":1,"eos_token_id":2}}"#
        ),
        Kind::Llama3 => format!(
            r#"{{"architectures":["LlamaForCausalLM"],"hidden_size":{h},"intermediate_size":{f},"num_hidden_layers":{layers},
            "num_attention_heads":{nh},"num_key_value_heads":{nkv},"vocab_size":{vocab},"max_position_embeddings":128,
            "rms_norm_eps":1e-5,"rope_theta":500000.0,"tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":[2, 3],
            "rope_scaling":{{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":16}}}}"#
        ),
    };
    std::fs::write(d.join("config.json"), config).unwrap();
    let mut seed = 0x1234_5678_9abc_def0u64 ^ kind as u64;
    let mut rand = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                ((seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    };
    let mut t = vec![("model.embed_tokens.weight".to_string(), vec![vocab, h], rand(vocab * h, 1.0))];
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        let s = 1.0 / (h as f32).sqrt();
        t.push((format!("{p}.input_layernorm.weight"), vec![h], rand(h, 0.5).iter().map(|v| 1.0 + v).collect()));
        t.push((format!("{p}.self_attn.q_proj.weight"), vec![nh * hd, h], rand(nh * hd * h, s)));
        t.push((format!("{p}.self_attn.k_proj.weight"), vec![nkv * hd, h], rand(nkv * hd * h, s)));
        t.push((format!("{p}.self_attn.v_proj.weight"), vec![nkv * hd, h], rand(nkv * hd * h, s)));
        if let Kind::Qwen2 = kind {
            t.push((format!("{p}.self_attn.q_proj.bias"), vec![nh * hd], rand(nh * hd, 0.5)));
            t.push((format!("{p}.self_attn.k_proj.bias"), vec![nkv * hd], rand(nkv * hd, 0.5)));
            t.push((format!("{p}.self_attn.v_proj.bias"), vec![nkv * hd], rand(nkv * hd, 0.5)));
        }
        t.push((format!("{p}.self_attn.o_proj.weight"), vec![h, nh * hd], rand(h * nh * hd, s)));
        t.push((format!("{p}.post_attention_layernorm.weight"), vec![h], rand(h, 0.5).iter().map(|v| 1.0 + v).collect()));
        t.push((format!("{p}.mlp.gate_proj.weight"), vec![f, h], rand(f * h, s)));
        t.push((format!("{p}.mlp.up_proj.weight"), vec![f, h], rand(f * h, s)));
        t.push((format!("{p}.mlp.down_proj.weight"), vec![h, f], rand(h * f, 1.0 / (f as f32).sqrt())));
    }
    t.push(("model.norm.weight".to_string(), vec![h], rand(h, 0.5).iter().map(|v| 1.0 + v).collect()));
    if let Kind::Qwen2 = kind {
        t.push(("lm_head.weight".to_string(), vec![vocab, h], rand(vocab * h, 0.2)));
    }
    write_safetensors(&d.join("model.safetensors"), &t);
    d
}

/// A config far larger than any test GPU (a 70B-class shape) beside a tiny weights file: the
/// loader must refuse it from the plan, before reading or allocating any tensor.
pub fn write_huge_config() -> PathBuf {
    let d = dir("huge");
    std::fs::write(
        d.join("config.json"),
        r#"{"architectures":["LlamaForCausalLM"],"hidden_size":8192,"intermediate_size":28672,"num_hidden_layers":80,
        "num_attention_heads":64,"num_key_value_heads":8,"vocab_size":32000,"max_position_embeddings":4096}"#,
    )
    .unwrap();
    write_safetensors(&d.join("model.safetensors"), &[("model.norm.weight".to_string(), vec![8192], vec![1.0; 8192])]);
    d
}
