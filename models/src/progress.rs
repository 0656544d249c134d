//! Progress bars for long work (loading, calibrating, perplexity), drawn on stderr.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar with a label, a count and an ETA; hidden when stderr is not a terminal.
pub fn bar(label: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {elapsed_precise} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    bar
}
