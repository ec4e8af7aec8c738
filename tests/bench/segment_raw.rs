//! Benchmark baseline (BENCHMARKS.md, issue 5): lindera's raw segmentation speed on the texts of
//! a JSON Lines file — IPADIC, normal mode, no character filters, no user dictionary, one
//! thread — to set beside kizashi's ingest speed on the same file.
//!
//!     segment_raw ITEMS.jsonl [LIMIT]      # title and body of each line, as `kizashi import` reads them
use lindera::dictionary::{load_embedded_dictionary, DictionaryKind};
use lindera::mode::Mode;
use lindera::segmenter::Segmenter;
use std::borrow::Cow;
use std::io::BufRead;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: segment_raw ITEMS.jsonl [LIMIT]");
        std::process::exit(2);
    };
    let limit: usize = args
        .next()
        .map(|l| l.parse())
        .transpose()?
        .unwrap_or(usize::MAX);
    let mut texts = Vec::new();
    for line in std::io::BufReader::new(std::fs::File::open(path)?)
        .lines()
        .take(limit)
    {
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        let field = |k: &str| v[k].as_str().unwrap_or("").to_string();
        texts.push(format!("{}\n{}", field("title"), field("body")));
    }
    let bytes: usize = texts.iter().map(|t| t.len()).sum();
    let segmenter = Segmenter::new(
        Mode::Normal,
        load_embedded_dictionary(DictionaryKind::IPADIC)?,
        None,
    );
    let start = Instant::now();
    let mut tokens = 0usize;
    for t in &texts {
        tokens += segmenter.segment(Cow::Borrowed(t.as_str()))?.len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} texts, {:.1} MB, {} tokens in {:.2} s: {:.2} MB/s, {:.0} texts/s (one thread)",
        texts.len(),
        bytes as f64 / 1e6,
        tokens,
        secs,
        bytes as f64 / 1e6 / secs,
        texts.len() as f64 / secs
    );
    Ok(())
}
