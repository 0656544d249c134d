//! Batched generation (models/src/batch.rs) on stories260K: the same greedy output as one prompt
//! at a time, slots reused by waiting prompts, seeded sampling, the CLI's JSON lines, and the
//! errors a user can cause.

use std::process::Command;

use shaderlm::batch::{BatchGenerator, BatchOutput};
use shaderlm::generate::FinishReason;
use shaderlm::llama::WeightDType;
use shaderlm::{Error, GenerateOptions, LoadOptions, Model, Sampling};

use super::{stories, GPU_LOCK};

/// Prompts of different lengths; the last repeats the first (it may find its slot's prefix cached).
const PROMPTS: [&str; 5] = [
    "Once upon a time",
    "Lily had a cat",
    "The",
    "Once upon a time there was a big dog named Max who liked to run in the park",
    "Once upon a time",
];

fn load(ctx: usize) -> Model {
    let options = LoadOptions { dtype: WeightDType::F32, ctx: Some(ctx), prefill_chunk: 16, ..Default::default() };
    Model::load(stories(), &options).unwrap()
}

fn prompts() -> Vec<String> {
    PROMPTS.iter().map(|p| p.to_string()).collect()
}

/// Each prompt alone through `Model::generate`: (ids, text, finish).
fn single(model: &mut Model, options: &GenerateOptions) -> Vec<(Vec<u32>, String, Option<FinishReason>)> {
    PROMPTS
        .iter()
        .map(|p| {
            let mut generation = model.generate(p, options).unwrap();
            let text: String = (&mut generation).map(|piece| piece.unwrap()).collect();
            (generation.ids().to_vec(), text, generation.stats.finish)
        })
        .collect()
}

fn assert_same(case: &str, batched: &[BatchOutput], want: &[(Vec<u32>, String, Option<FinishReason>)]) {
    assert_eq!(batched.len(), want.len(), "{case}: one output per prompt");
    for (i, (got, (ids, text, finish))) in batched.iter().zip(want).enumerate() {
        assert_eq!(got.index, i, "{case}: outputs in input order");
        assert_eq!(&got.ids, ids, "{case}: prompt {i} ({:?}) ids", PROMPTS[i]);
        assert_eq!(&got.text, text, "{case}: prompt {i} text");
        assert_eq!(Some(got.finish), *finish, "{case}: prompt {i} finish");
    }
}

#[test]
fn batched_greedy_output_equals_single_prompt_output() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = load(96);
    // The token limit, a stop string, and a context that fills up (the long prompt has 28 tokens).
    // Two slots for five prompts: slots are reused; three: they free up at different steps.
    for (max_tokens, stop, slots) in [(20, vec![], 2), (24, vec![" Lily".to_string(), " park".to_string()], 3)] {
        let options = GenerateOptions { max_tokens, sampling: Sampling::GREEDY, stop };
        let want = single(&mut model, &options);
        let ctx_note = if options.stop.is_empty() { "to the token limit" } else { "to a stop string" };
        if !options.stop.is_empty() {
            assert!(want.iter().any(|w| w.2 == Some(FinishReason::StopString)), "a sequence meets a stop string");
        }
        {
            let mut batch = BatchGenerator::new(&mut model, slots).unwrap();
            let got = batch.generate(&prompts(), &options).unwrap();
            assert_same(&format!("{slots} slots, {ctx_note}"), &got, &want);
            assert_eq!(batch.stats.generated_tokens, want.iter().map(|w| w.0.len()).sum::<usize>());
            assert!(batch.stats.decode_steps > 0 && got.iter().all(|o| o.time_to_first_token.as_nanos() > 0));
        }
    }
    // A context too short for the longest continuation: it stops where the single path does.
    let mut model = load(34);
    let options = GenerateOptions { max_tokens: 12, ..Default::default() };
    let want = single(&mut model, &options);
    assert!(want.iter().any(|w| w.2 == Some(FinishReason::ContextFull)), "a sequence fills the context");
    let got = BatchGenerator::new(&mut model, 4).unwrap().generate(&prompts(), &options).unwrap();
    assert_same("short context", &got, &want);
    // The single path still works after a batch (its own cache is untouched).
    let again = single(&mut model, &options);
    assert_eq!(again, want);
}

#[test]
fn batched_sampling_is_seeded_per_sequence() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = load(96);
    let options = |seed| GenerateOptions {
        max_tokens: 16,
        sampling: Sampling { temperature: 1.0, top_k: 40, top_p: 0.9, min_p: 0.0, repeat_penalty: 1.1, seed },
        stop: vec![],
    };
    let texts = |model: &mut Model, seed, slots| -> Vec<String> {
        let mut batch = BatchGenerator::new(model, slots).unwrap();
        batch.generate(&prompts(), &options(seed)).unwrap().into_iter().map(|o| o.text).collect()
    };
    let a = texts(&mut model, 7, 3);
    assert_eq!(texts(&mut model, 7, 3), a, "same seed, same texts");
    assert_ne!(texts(&mut model, 8, 3), a, "another seed, other texts");
    // Each row's sampler is stepped and seeded as the single path's sampler is, so one slot (whose
    // cache is reused from prompt to prompt as the model's own cache is) draws the same texts.
    // (The first id's draw mixes in where prefill started, which depends on the prefix reused from
    // the cache, so with more slots the first draws may differ.)
    let want: Vec<String> = single(&mut model, &options(7)).into_iter().map(|w| w.1).collect();
    assert_eq!(texts(&mut model, 7, 1), want, "batched sampling draws what one prompt at a time draws");
}

#[test]
fn batch_errors_name_the_prompt() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut model = load(8);
    let mut batch = BatchGenerator::new(&mut model, 2).unwrap();
    let options = GenerateOptions::default();
    let long = vec!["Once".to_string(), "Once upon a time there was a girl named Lily".to_string()];
    let err = batch.generate(&long, &options).err().unwrap();
    assert!(matches!(err, Error::Input(_)) && err.to_string().contains("prompt 1") && err.to_string().contains("context"), "{err}");
    let err = batch.generate(&[], &options).err().unwrap();
    assert!(matches!(err, Error::Input(_)), "{err}");
    let err = batch.generate_ids(vec![vec![1, 2], vec![]], &options).err().unwrap();
    assert!(err.to_string().contains("prompt 1 is empty"), "{err}");
    let err = batch.generate_ids(vec![vec![1, 600]], &options).err().unwrap();
    assert!(err.to_string().contains("600"), "{err}");
    assert!(BatchGenerator::new(&mut model, 0).is_err(), "zero slots");
}

/// Runs the CLI; returns (success, stdout, stderr).
fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shaderlm")).args(args).env("XDG_RUNTIME_DIR", "/tmp").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn generate_prompts_file_writes_one_json_line_per_prompt_in_order() {
    let _g = GPU_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("shaderlm-test-batch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("prompts.txt");
    // An empty line is skipped; ids are line numbers.
    std::fs::write(&file, "Once upon a time\nLily had a cat\n\nThe\n").unwrap();
    let model = stories();
    let (model, file_arg) = (model.to_str().unwrap(), file.to_str().unwrap());
    let common = ["generate", "--model", model, "--dtype", "f32", "--ctx", "64", "--max-tokens", "12"];
    let (ok, stdout, stderr) = cli(&[&common[..], &["--prompts-file", file_arg, "--batch", "2"][..]].concat());
    assert!(ok, "{stderr}");
    assert!(stderr.contains("tokens/s"), "a summary on stderr: {stderr}");
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let mut m = load(64);
    for (line, (id, prompt)) in lines.iter().zip([(0, "Once upon a time"), (1, "Lily had a cat"), (3, "The")]) {
        let keys: Vec<&str> = line.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let mut want_keys = vec!["id", "prompt", "text", "tokens", "ttft_ms", "tokens_per_s"];
        want_keys.sort();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort();
        assert_eq!(keys_sorted, want_keys, "{line}");
        assert_eq!(line["id"], id);
        assert_eq!(line["prompt"], prompt);
        let options = GenerateOptions { max_tokens: 12, ..Default::default() };
        let mut generation = m.generate(prompt, &options).unwrap();
        let text: String = (&mut generation).map(|p| p.unwrap()).collect();
        assert_eq!(line["text"], text.as_str(), "{line}");
        assert_eq!(line["tokens"], generation.ids().len());
        assert!(line["ttft_ms"].as_f64().unwrap() > 0.0 && line["tokens_per_s"].as_f64().unwrap() >= 0.0, "{line}");
    }

    // An empty file, and a prompt longer than the context: errors, nothing on stdout.
    std::fs::write(&file, "\n\n").unwrap();
    let (ok, stdout, stderr) = cli(&[&common[..], &["--prompts-file", file_arg][..]].concat());
    assert!(!ok && stdout.is_empty() && stderr.contains("no prompts"), "{stderr}");
    std::fs::write(&file, "Once\nOnce upon a time there was a girl named Lily\n").unwrap();
    let (ok, stdout, stderr) = cli(&["generate", "--model", model, "--ctx", "8", "--prompts-file", file_arg]);
    assert!(!ok && stdout.is_empty() && stderr.contains("prompt 1") && stderr.contains("context"), "{stderr}");
}
