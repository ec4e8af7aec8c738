//! Benchmark (BENCHMARKS.md, issue 5): where ingest time goes, one stage at a time on one
//! thread over the first LIMIT lines of a JSON Lines import file — lindera alone, kizashi's
//! tokenizer (character filters, token details), the whole analysis (`Pipeline::prepare`).
//!
//!     ingest_stages ITEMS.jsonl [LIMIT]
use kizashi::dictionaries::Dictionaries;
use kizashi::pipeline::Pipeline;
use lindera::dictionary::{load_embedded_dictionary, DictionaryKind};
use lindera::mode::Mode;
use lindera::segmenter::Segmenter;
use std::borrow::Cow;
use std::io::BufRead;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: ingest_stages ITEMS.jsonl [LIMIT]");
        std::process::exit(2);
    };
    let limit: usize = args
        .next()
        .map(|l| l.parse())
        .transpose()?
        .unwrap_or(usize::MAX);
    let mut raws = Vec::new();
    for line in std::io::BufReader::new(std::fs::File::open(path)?)
        .lines()
        .take(limit)
    {
        raws.push(kizashi::cli::parse_import_line(&line?)?);
    }
    let bytes: usize = raws.iter().map(|r| r.title.len() + 1 + r.body.len()).sum();
    let mb = bytes as f64 / 1e6;
    let report = |stage: &str, secs: f64| {
        println!(
            "{stage:<28} {secs:>6.2} s  {:>6.2} MB/s  {:>7.0} items/s",
            mb / secs,
            raws.len() as f64 / secs
        )
    };
    println!("{} items, {mb:.1} MB (title + body)", raws.len());

    let segmenter = Segmenter::new(
        Mode::Normal,
        load_embedded_dictionary(DictionaryKind::IPADIC)?,
        None,
    );
    let start = Instant::now();
    for r in &raws {
        segmenter.segment(Cow::Owned(format!("{}\n{}", r.title, r.body)))?;
    }
    report("lindera segment", start.elapsed().as_secs_f64());

    let dictionaries = Dictionaries::builtin();
    let dictionary = load_embedded_dictionary(DictionaryKind::IPADIC)?;
    let user = lindera::dictionary::DictionaryBuilder::new((*dictionary.metadata).clone())
        .build_user_dict_from_reader(dictionaries.userdic().as_bytes())?;
    let with_user = Segmenter::new(Mode::Normal, dictionary, Some(user));
    let start = Instant::now();
    for r in &raws {
        with_user.segment(Cow::Owned(format!("{}\n{}", r.title, r.body)))?;
    }
    report("lindera + user dictionary", start.elapsed().as_secs_f64());
    let start = Instant::now();
    for r in &raws {
        for t in with_user.segment(Cow::Owned(format!("{}\n{}", r.title, r.body)))? {
            let mut t = t;
            std::hint::black_box(t.details());
        }
    }
    report("  + token details", start.elapsed().as_secs_f64());

    let pipeline = Pipeline::new(&dictionaries)?;
    let analyzer = pipeline.analyzer();
    let start = Instant::now();
    for r in &raws {
        analyzer.tokenize(&r.title)?;
        analyzer.tokenize(&r.body)?;
    }
    report("kizashi tokenize", start.elapsed().as_secs_f64());

    let start = Instant::now();
    let mut prepared = Vec::with_capacity(raws.len());
    for r in raws.iter().cloned() {
        prepared.push(pipeline.prepare(r)?);
    }
    report("prepare (tokens + analysis)", start.elapsed().as_secs_f64());
    Ok(())
}
