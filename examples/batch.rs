//! Many prompts decoded together on one GPU: `cargo run --release --example batch -- MODEL [SLOTS]`.
use shaderlm::batch::BatchGenerator;
use shaderlm::{GenerateOptions, LoadOptions, Model};

fn main() -> shaderlm::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "../shared/models/stories260K".into());
    let slots = args.next().and_then(|s| s.parse().ok()).unwrap_or(4);
    let prompts: Vec<String> =
        ["Once upon a time", "Lily had a cat", "The sun was", "Tom and his dog", "One day"].map(String::from).to_vec();

    let mut model = Model::load(&path, &LoadOptions { ctx: Some(256), ..Default::default() })?;
    let mut batch = BatchGenerator::new(&mut model, slots)?;
    let options = GenerateOptions { max_tokens: 48, ..Default::default() };
    for out in batch.generate(&prompts, &options)? {
        println!("[{}] {}{}", out.index, prompts[out.index], out.text);
    }
    eprintln!("{:.1} tokens/s in total", batch.stats.tokens_per_second());
    Ok(())
}
