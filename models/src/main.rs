//! The `shaderlm` command line: parse, call the library, print. Generated text goes to stdout;
//! progress, summaries and timings go to stderr.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use shaderlm::engine::gpu::{adapters, select_adapters};
use shaderlm::engine::{Gpu, GpuOptions};
use shaderlm::generate::{GenerateOptions, Generation, Sampling};
use shaderlm::llama::WeightDType;
use shaderlm::compress::plan::{self, CompressOptions};
use shaderlm::model::{LoadOptions, Model};
use shaderlm::replicas::Replicas;
use shaderlm::tokenizer::ChatMessage;

#[derive(Parser)]
#[command(name = "shaderlm", version, about = "Llama-family LLMs on any GPU through WGSL compute shaders")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Continue a prompt, streaming only the continuation to stdout; or, with --prompts-file,
    /// many prompts decoded together in batches (or spread over the GPUs of --gpus), one JSON
    /// line per prompt.
    Generate {
        #[command(flatten)]
        model: ModelArgs,
        /// The text to continue.
        #[arg(long, required_unless_present = "prompts_file", conflicts_with = "prompts_file")]
        prompt: Option<String>,
        /// One prompt per line (blank lines skipped; a line starting with a double quote is a JSON
        /// string, for prompts with newlines). Writes one JSON line per prompt to stdout, in
        /// input order: {"id" (its line, from 0), "prompt", "text", "tokens"
        /// (generated), "ttft_ms", "tokens_per_s"}; a summary goes to stderr.
        #[arg(long)]
        prompts_file: Option<PathBuf>,
        /// Sequences decoded together on each GPU (with --prompts-file).
        #[arg(long, default_value_t = 8, requires = "prompts_file")]
        batch: usize,
        #[command(flatten)]
        sampling: SamplingArgs,
    },
    /// Chat with the model using its chat template; with --prompt, answer one message and exit.
    Chat {
        #[command(flatten)]
        model: ModelArgs,
        /// Answer this one user message and exit.
        #[arg(long)]
        prompt: Option<String>,
        /// A system message to start the conversation with.
        #[arg(long)]
        system: Option<String>,
        #[command(flatten)]
        sampling: SamplingArgs,
    },
    /// Measure time to first token, time per output token, throughput and bandwidth use; with
    /// --batch B, the total decode throughput of B sequences decoded together.
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        /// Prompt length (random token ids).
        #[arg(long, default_value_t = 512)]
        prompt_len: usize,
        /// Tokens to generate.
        #[arg(long, default_value_t = 128)]
        gen: usize,
        /// Untimed runs first.
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// Decode this many sequences together and report their total tokens/s.
        #[arg(long)]
        batch: Option<usize>,
        /// Print one JSON object as the last line of stdout.
        #[arg(long)]
        json: bool,
    },
    /// Write a Hugging Face folder with random weights of a named shape (for benchmarks).
    Synth {
        /// smollm2-135m, tinyllama-1.1b, llama2-7b or llama3-8b.
        #[arg(long)]
        shape: String,
        /// Folder to write (created).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "f16")]
        dtype: SynthDTypeArg,
        /// Keep only the first N decoder layers.
        #[arg(long)]
        layers: Option<usize>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// For given token ids: the logits at the last position and the greedy continuation, as
    /// one JSON line (to compare with a reference implementation).
    Logits {
        #[command(flatten)]
        model: ModelArgs,
        /// Comma-separated token ids.
        #[arg(long, value_delimiter = ',')]
        ids: Vec<u32>,
        /// Greedy tokens to generate after the ids.
        #[arg(long, default_value_t = 32)]
        gen: usize,
    },
    /// Perplexity of a text file, under the papers' or llama.cpp's protocol.
    Perplexity {
        #[command(flatten)]
        model: ModelArgs,
        /// Text to score (e.g. ../shared/data/wikitext-2-raw/wiki.test.raw).
        #[arg(long)]
        file: PathBuf,
        /// Window length (default: 512 for llama.cpp, 2048 for papers, at most the model's).
        #[arg(long = "window")]
        window: Option<usize>,
        #[arg(long, value_enum, default_value = "llama.cpp")]
        protocol: ProtocolArg,
        /// Score at most this many windows.
        #[arg(long)]
        max_chunks: Option<usize>,
        /// Only the first N bytes of the file (cut at a character boundary).
        #[arg(long)]
        max_bytes: Option<usize>,
        /// Print one JSON object as the last line of stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show the GPU shaderlm would use, and every adapter wgpu can see; with --model, load it
    /// (with any --quant, --prune, ... flags) and show what loading did.
    Info {
        /// A model to load (a folder or a .gguf file).
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, value_enum)]
        quant: Option<QuantArg>,
        #[command(flatten)]
        compress: CompressArgs,
    },
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// A Hugging Face model folder (config.json, *.safetensors, tokenizer.json) or a .gguf file.
    #[arg(long)]
    model: PathBuf,
    /// Context length: the KV cache holds this many positions (default: the model's, at most 4096).
    #[arg(long)]
    ctx: Option<usize>,
    /// Weight precision on the GPU (embeddings, lm_head and the KV cache too).
    #[arg(long, value_enum, default_value = "f16")]
    dtype: DTypeArg,
    /// Quantize every linear layer at load: q8 (int8, group 32), q4 (4-bit, group 32),
    /// q4g128 (4-bit, group 128); embeddings, lm_head and norms stay f16.
    #[arg(long, value_enum)]
    quant: Option<QuantArg>,
    /// Adapter to use: a substring of its name (also SHADERLM_ADAPTER).
    #[arg(long)]
    adapter: Option<String>,
    /// Run decode steps one at a time instead of submitting each before reading the last
    /// (to measure what pipelining gains).
    #[arg(long)]
    no_pipeline: bool,
    #[command(flatten)]
    compress: CompressArgs,
    /// GPUs to use: "all" or adapter indices as `shaderlm info` lists them ("0,1"; "0,0" opens
    /// one adapter twice). With several: one replica per GPU for --prompts-file and bench, or
    /// one model split across them with --split-layers; other commands use the first.
    #[arg(long)]
    gpus: Option<String>,
    /// Split the decoder layers across the GPUs of --gpus (for a model one GPU cannot hold).
    #[arg(long, requires = "gpus")]
    split_layers: bool,
}

impl ModelArgs {
    /// The adapter indices of --gpus (none when it is not given).
    fn gpu_indices(&self) -> shaderlm::Result<Vec<usize>> {
        let Some(spec) = &self.gpus else { return Ok(Vec::new()) };
        Ok(select_adapters(spec, &adapters())?)
    }

    /// Several GPUs without --split-layers: one replica on each.
    fn replicated(&self) -> shaderlm::Result<Option<Vec<usize>>> {
        let gpus = self.gpu_indices()?;
        Ok((gpus.len() > 1 && !self.split_layers).then_some(gpus))
    }
}

/// The load plan beyond --quant: what stays float, per-tensor rules, pruning, calibration.
#[derive(Args, Clone)]
struct CompressArgs {
    /// Keep the first and last N decoder layers' linear layers float (f16).
    #[arg(long, default_value_t = 0)]
    keep_layers: usize,
    /// Per-tensor dtypes, 'PATTERN=DTYPE,...' with a glob on the Hugging Face name, e.g.
    /// '*.down_proj.weight=q8,model.layers.0.*=f16' (after --plan; a later rule wins).
    #[arg(long = "override")]
    overrides: Vec<String>,
    /// A file of PATTERN=DTYPE rules, one a line (# comments).
    #[arg(long)]
    plan: Option<PathBuf>,
    /// Pruning, comma-separated: magnitude:0.5, wanda:0.5, magnitude:2:4, wanda:2:4, wanda:4:8,
    /// layers:N (drop N layers), ffn:0.2 (remove 20% of FFN channels). Unstructured and 4:8
    /// sparsity are stored dense: they lower quality without making anything faster.
    #[arg(long)]
    prune: Option<String>,
    /// Calibration text for wanda, layers, ffn and (with a 4-bit --quant) AWQ, e.g.
    /// ../shared/data/wikitext-2/valid.txt (never the test split).
    #[arg(long)]
    calib: Option<PathBuf>,
    /// Tokens of calibration text used.
    #[arg(long, default_value_t = 4096)]
    calib_tokens: usize,
}

impl CompressArgs {
    fn options(&self) -> shaderlm::Result<CompressOptions> {
        let mut rules = Vec::new();
        if let Some(path) = &self.plan {
            let text = std::fs::read_to_string(path).map_err(|source| shaderlm::Error::Io { path: path.clone(), source })?;
            rules.extend(plan::parse_plan_file(&text, &path.display().to_string())?);
        }
        for o in &self.overrides {
            rules.extend(plan::parse_rules(o)?);
        }
        let prune = match &self.prune {
            Some(spec) => plan::parse_prune(spec)?,
            None => Vec::new(),
        };
        Ok(CompressOptions {
            keep_layers: self.keep_layers,
            rules,
            prune,
            calib: self.calib.clone(),
            calib_tokens: self.calib_tokens,
            stats: None,
        })
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DTypeArg {
    F16,
    F32,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum QuantArg {
    F16,
    Q8,
    Q4,
    Q4g128,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ProtocolArg {
    Papers,
    #[value(name = "llama.cpp")]
    LlamaCpp,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SynthDTypeArg {
    F16,
    Bf16,
    F32,
}

#[derive(Args)]
struct SamplingArgs {
    /// Most new tokens.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Keep the k most likely tokens (0: off).
    #[arg(long, default_value_t = 0)]
    top_k: u32,
    /// Nucleus sampling: keep the smallest set with this much probability (1: off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Keep tokens at least this fraction as likely as the best one (0: off).
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    /// Penalise tokens already in the context (1: off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Random seed: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop when this string appears (may be repeated).
    #[arg(long)]
    stop: Vec<String>,
}

impl SamplingArgs {
    fn options(&self) -> GenerateOptions {
        GenerateOptions {
            max_tokens: self.max_tokens,
            sampling: Sampling {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repeat_penalty: self.repeat_penalty,
                seed: self.seed,
            },
            stop: self.stop.clone(),
        }
    }
}

fn load(args: &ModelArgs) -> shaderlm::Result<Model> {
    let options = load_options(args)?;
    if args.replicated()?.is_some() {
        eprintln!("note: one model on the first of --gpus (several GPUs serve --prompts-file or bench, or --split-layers)");
    }
    let model = Model::load(&args.model, &options)?;
    let gpus = model.gpus().iter().map(|g| g.info().name.clone()).collect::<Vec<_>>();
    eprintln!("loaded {} on {}\n{}", args.model.display(), gpus.join(" + "), model.summary);
    if gpus.len() > 1 {
        eprintln!("layers per GPU: {:?}", model.layer_ranges());
    }
    Ok(model)
}

/// One replica per GPU of --gpus.
fn load_replicas(args: &ModelArgs, gpus: &[usize]) -> shaderlm::Result<Replicas> {
    let replicas = Replicas::load(&args.model, &load_options(args)?, gpus)?;
    for (i, model) in replicas.models.iter().enumerate() {
        eprintln!("replica {i}: {} on {}: {}", args.model.display(), model.gpu.info().name, model.summary);
    }
    Ok(replicas)
}

fn load_options(args: &ModelArgs) -> shaderlm::Result<LoadOptions> {
    let mut gpu = GpuOptions::default();
    if args.adapter.is_some() {
        gpu.adapter = args.adapter.clone();
    }
    let gpus = args.gpu_indices()?;
    let split_layers = if args.split_layers { gpus.clone() } else { Vec::new() };
    gpu.adapter_index = gpus.first().copied();
    let dtype = match (args.quant, args.dtype) {
        (Some(QuantArg::Q8), _) => WeightDType::Q8,
        (Some(QuantArg::Q4), _) => WeightDType::Q4,
        (Some(QuantArg::Q4g128), _) => WeightDType::Q4G128,
        (Some(QuantArg::F16), _) | (None, DTypeArg::F16) => WeightDType::F16,
        (None, DTypeArg::F32) => WeightDType::F32,
    };
    let pipeline = !args.no_pipeline;
    let compress = args.compress.options()?;
    Ok(LoadOptions { dtype, ctx: args.ctx, gpu, progress: true, pipeline, split_layers, compress, ..Default::default() })
}

/// `generate --prompts-file`: every prompt through the replicas (one per GPU of --gpus, or one
/// model), each decoding up to `batch` prompts together (a model split over GPUs: one at a time);
/// one JSON line per prompt on stdout, in input order, throughput on stderr.
fn generate_file(args: &ModelArgs, file: &std::path::Path, options: &GenerateOptions, batch: usize) -> shaderlm::Result<()> {
    let lines = shaderlm::replicas::read_prompt_lines(file)?;
    let prompts: Vec<String> = lines.iter().map(|(_, prompt)| prompt.clone()).collect();
    if prompts.is_empty() {
        return Err(shaderlm::Error::Input(format!("{} holds no prompts (one per line)", file.display())));
    }
    let mut replicas = match args.replicated()? {
        Some(gpus) => load_replicas(args, &gpus)?,
        None => Replicas { models: vec![load(args)?] },
    };
    let batch = if args.split_layers { 1 } else { batch.max(1) };
    let mut run = replicas.generate(&prompts, options, batch)?;
    let mut out = std::io::stdout().lock();
    for result in &mut run.results {
        // The id people see is the prompt's line in the file.
        result.id = lines[result.id].0;
        let _ = writeln!(out, "{}", result.json_line());
    }
    eprintln!("{run}");
    Ok(())
}

/// Prints pieces as they arrive; returns the whole text.
fn stream(generation: Generation<'_>) -> shaderlm::Result<String> {
    let mut generation = generation;
    let mut out = std::io::stdout().lock();
    let mut text = String::new();
    for piece in &mut generation {
        let piece = piece?;
        let _ = out.write_all(piece.as_bytes());
        let _ = out.flush();
        text.push_str(&piece);
    }
    let s = &generation.stats;
    eprintln!(
        "\n[{} prompt tokens ({} run), {} generated; time to first token {:.1} ms; decode {:.1} tokens/s; stop: {:?}]",
        s.prompt_tokens,
        s.prefilled_tokens,
        s.generated_tokens,
        s.time_to_first_token.as_secs_f64() * 1e3,
        s.decode_tokens_per_second(),
        s.finish.unwrap_or(shaderlm::generate::FinishReason::MaxTokens)
    );
    Ok(text)
}

fn to_json(value: &impl serde::Serialize) -> shaderlm::Result<String> {
    serde_json::to_string(value).map_err(|e| shaderlm::Error::Input(e.to_string()))
}

fn run(cli: Cli) -> shaderlm::Result<()> {
    match cli.command {
        Command::Generate { model, prompt, prompts_file, batch, sampling } => {
            if let Some(file) = prompts_file {
                return generate_file(&model, &file, &sampling.options(), batch);
            }
            let mut model = load(&model)?;
            let generation = model.generate(prompt.as_deref().unwrap_or_default(), &sampling.options())?;
            stream(generation)?;
            println!();
        }
        Command::Chat { model, prompt, system, sampling } => {
            let mut model = load(&model)?;
            let options = sampling.options();
            let mut messages = Vec::new();
            if let Some(system) = system {
                messages.push(ChatMessage::new("system", system));
            }
            if let Some(prompt) = prompt {
                messages.push(ChatMessage::new("user", prompt));
                stream(model.chat(&messages, &options)?)?;
                println!();
                return Ok(());
            }
            eprintln!("chat: type a message and press Enter; an empty line or Ctrl-D ends.");
            let stdin = std::io::stdin();
            loop {
                eprint!("> ");
                let mut line = String::new();
                if stdin.lock().read_line(&mut line).map_err(|e| shaderlm::Error::Input(e.to_string()))? == 0 {
                    break;
                }
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    break;
                }
                messages.push(ChatMessage::new("user", line));
                let reply = stream(model.chat(&messages, &options)?)?;
                println!();
                messages.push(ChatMessage::new("assistant", reply));
            }
        }
        Command::Bench { model, prompt_len, gen, warmup, batch, json } => {
            let ctx = model.ctx.or(Some(prompt_len + gen + 1));
            let args = ModelArgs { ctx, ..model };
            let options = shaderlm::bench::BenchOptions { prompt_len, gen, warmup };
            if let Some(gpus) = args.replicated()? {
                return bench_replicas(&args, &gpus, &options, batch, json);
            }
            let mut model = load(&args)?;
            if let Some(batch) = batch {
                let report = shaderlm::bench::run_batch(&mut model, &options, batch)?;
                print!("{report}");
                if json {
                    println!("{}", to_json(&report)?);
                }
            } else {
                let report = shaderlm::bench::run(&mut model, &options)?;
                print!("{report}");
                if json {
                    println!("{}", to_json(&report)?);
                }
            }
        }
        Command::Synth { shape, out, dtype, layers, seed } => {
            let shape = shaderlm::synth::shape(&shape)?;
            let layers = layers.unwrap_or(shape.layers).clamp(1, shape.layers);
            let dtype = match dtype {
                SynthDTypeArg::F16 => shaderlm::synth::SynthDType::F16,
                SynthDTypeArg::Bf16 => shaderlm::synth::SynthDType::BF16,
                SynthDTypeArg::F32 => shaderlm::synth::SynthDType::F32,
            };
            let t = std::time::Instant::now();
            let bytes = shaderlm::synth::write(&out, &shape, layers, dtype, seed)?;
            eprintln!(
                "wrote {} ({} layers, {:.2} GiB) to {} in {:.1} s",
                shape.name,
                layers,
                bytes as f64 / (1u64 << 30) as f64,
                out.display(),
                t.elapsed().as_secs_f64()
            );
        }
        Command::Logits { model, ids, gen } => {
            let mut model = load(&model)?;
            let logits = model.logits(&ids)?;
            let last = &logits[logits.len() - model.config.vocab_size..];
            let options = GenerateOptions { max_tokens: gen, ..Default::default() };
            let mut generation = model.generate_ids(ids, &options)?;
            for piece in &mut generation {
                piece?;
            }
            let greedy = generation.ids().to_vec();
            println!("{}", serde_json::json!({ "last_logits": last, "greedy": greedy }));
        }
        Command::Perplexity { model, file, window, protocol, max_chunks, max_bytes, json } => {
            let protocol = match protocol {
                ProtocolArg::Papers => shaderlm::eval::Protocol::Papers,
                ProtocolArg::LlamaCpp => shaderlm::eval::Protocol::LlamaCpp,
            };
            let window = window.unwrap_or(if protocol == shaderlm::eval::Protocol::Papers { 2048 } else { 512 });
            let ctx = model.ctx.or(Some(window));
            let mut model = load(&ModelArgs { ctx, ..model })?;
            let window = window.min(model.context());
            let mut text = std::fs::read_to_string(&file).map_err(|source| shaderlm::Error::Io { path: file.clone(), source })?;
            if let Some(n) = max_bytes {
                let mut end = n.min(text.len());
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
            }
            let bar = shaderlm::progress::bar("perplexity", 0);
            let started = std::time::Instant::now();
            let result = shaderlm::eval::perplexity(&mut model, &text, protocol, window, max_chunks, |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })?;
            bar.finish_and_clear();
            println!(
                "protocol {} | window {} | {} chunks | {} tokens scored | NLL {:.4} | PPL {:.4} | {:.1} s",
                result.protocol,
                result.ctx,
                result.chunks,
                result.tokens,
                result.nll,
                result.ppl,
                started.elapsed().as_secs_f64()
            );
            if json {
                println!("{}", to_json(&result)?);
            }
        }
        Command::Info { model, quant, compress } => {
            let gpu = Gpu::new()?;
            println!("using: {}", gpu.info());
            for a in adapters() {
                println!("adapter {a}");
            }
            if let Some(model) = model {
                drop(gpu);
                let args = ModelArgs {
                    model,
                    ctx: None,
                    dtype: DTypeArg::F16,
                    quant,
                    adapter: None,
                    no_pipeline: false,
                    compress,
                    gpus: None,
                    split_layers: false,
                };
                load(&args)?; // prints the load summary
            }
        }
    }
    Ok(())
}

/// `bench --gpus` with several GPUs: the benchmark on one replica per GPU at once; decode
/// tokens/s per GPU and their sum.
/// With --batch B, each replica decodes B sequences together.
fn bench_replicas(
    args: &ModelArgs,
    gpus: &[usize],
    options: &shaderlm::bench::BenchOptions,
    batch: Option<usize>,
    json: bool,
) -> shaderlm::Result<()> {
    let mut replicas = load_replicas(args, gpus)?;
    if let Some(batch) = batch {
        let report = replicas.bench_batch(options, batch)?;
        print!("{report}");
        if json {
            println!("{}", to_json(&report)?);
        }
        return Ok(());
    }
    let report = replicas.bench(options)?;
    print!("{report}");
    if json {
        println!("{}", to_json(&report)?);
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
