//! The smallest program that streams text from a model: `cargo run --release --example embed -- MODEL [PROMPT]`.
use shaderlm::{GenerateOptions, LoadOptions, Model};
use std::io::Write;

fn main() -> shaderlm::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "../shared/models/stories260K".into());
    let prompt = args.next().unwrap_or_else(|| "Once upon a time".into());

    let mut model = Model::load(&path, &LoadOptions::default())?;
    let options = GenerateOptions { max_tokens: 64, ..Default::default() };
    for piece in model.generate(&prompt, &options)? {
        print!("{}", piece?);
        std::io::stdout().flush().ok();
    }
    println!();
    Ok(())
}
