//! evaluate: scoring sentiment predictions against a labeled set (tests/eval/sentences.tsv).
//! Pure functions: rows and predictions in, metrics out.
use crate::domain::SentimentLabel;
use serde::Serialize;

/// One labeled row.
#[derive(Debug, Clone)]
pub struct LabeledRow {
    pub id: String,
    pub split: String,
    pub style: String,
    pub label: SentimentLabel,
    pub target: Option<String>,
    pub text: String,
    pub evidence: Vec<String>,
}

/// Parses the TSV (header line first; columns id, split, style, topic, label, target, text,
/// evidence). Errors name the line.
pub fn parse_tsv(text: &str) -> Result<Vec<LabeledRow>, String> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("empty file")?.split('\t').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or(format!("no column {name}"))
    };
    let (id, split, style, label, target, txt, evidence) = (
        col("id")?,
        col("split")?,
        col("style")?,
        col("label")?,
        col("target")?,
        col("text")?,
        col("evidence")?,
    );
    let mut rows = Vec::new();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let get = |i: usize| cols.get(i).copied().unwrap_or("");
        rows.push(LabeledRow {
            id: get(id).to_string(),
            split: get(split).to_string(),
            style: get(style).to_string(),
            label: SentimentLabel::parse(get(label)).map_err(|e| format!("line {}: {e}", n + 2))?,
            target: Some(get(target).to_string()).filter(|t| !t.is_empty()),
            text: get(txt).to_string(),
            evidence: get(evidence)
                .split('|')
                .filter(|e| !e.is_empty())
                .map(String::from)
                .collect(),
        });
    }
    Ok(rows)
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Scores {
    pub n: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    /// Over gold positive/negative rows only; a neutral prediction counts as an error.
    pub posneg_n: usize,
    pub posneg_macro_f1: f64,
}

fn f1(tp: usize, fp: usize, fn_: usize) -> f64 {
    if tp == 0 {
        return 0.0;
    }
    let p = tp as f64 / (tp + fp) as f64;
    let r = tp as f64 / (tp + fn_) as f64;
    2.0 * p * r / (p + r)
}

/// Accuracy and macro-F1 for 3 classes, and macro-F1 of positive vs negative.
pub fn score(pairs: &[(SentimentLabel, SentimentLabel)]) -> Scores {
    use SentimentLabel::*;
    let class_f1 = |pairs: &[(SentimentLabel, SentimentLabel)], c: SentimentLabel| {
        let tp = pairs.iter().filter(|(g, p)| *g == c && *p == c).count();
        let fp = pairs.iter().filter(|(g, p)| *g != c && *p == c).count();
        let fn_ = pairs.iter().filter(|(g, p)| *g == c && *p != c).count();
        f1(tp, fp, fn_)
    };
    let n = pairs.len();
    let correct = pairs.iter().filter(|(g, p)| g == p).count();
    let macro_f1 = [Negative, Neutral, Positive]
        .iter()
        .map(|c| class_f1(pairs, *c))
        .sum::<f64>()
        / 3.0;
    let polar: Vec<_> = pairs
        .iter()
        .copied()
        .filter(|(g, _)| *g != Neutral)
        .collect();
    let posneg = [Negative, Positive]
        .iter()
        .map(|c| class_f1(&polar, *c))
        .sum::<f64>()
        / 2.0;
    let r = |x: f64| (x * 10_000.0).round() / 10_000.0;
    Scores {
        n,
        accuracy: r(correct as f64 / n.max(1) as f64),
        macro_f1: r(macro_f1),
        posneg_n: polar.len(),
        posneg_macro_f1: r(posneg),
    }
}

/// Whether any predicted evidence word overlaps any gold span (compared after width/case
/// folding, as substrings either way).
pub fn evidence_overlaps(predicted: &[String], gold: &[String]) -> bool {
    use unicode_normalization::UnicodeNormalization;
    let fold = |s: &str| s.nfkc().collect::<String>().to_lowercase();
    predicted.iter().any(|p| {
        let word = fold(p.split(" (").next().unwrap_or(p).trim_end_matches("+否定"));
        !word.is_empty()
            && gold.iter().any(|g| {
                let g = fold(g);
                g.contains(&word) || word.contains(&g)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use SentimentLabel::*;

    #[test]
    fn metrics_match_hand_computation() {
        let pairs = [
            (Negative, Negative),
            (Negative, Neutral),
            (Positive, Positive),
            (Neutral, Neutral),
            (Neutral, Positive),
        ];
        let s = score(&pairs);
        assert_eq!(s.accuracy, 0.6);
        // F1: negative 2/3, neutral 1/2, positive 2/3 → macro 0.6111
        assert_eq!(s.macro_f1, 0.6111);
        // pos/neg over gold polar rows: negative tp1 fn1 → 0.6667; positive tp1 → 1.0
        assert_eq!(s.posneg_n, 3);
        assert_eq!(s.posneg_macro_f1, 0.8333);
    }

    #[test]
    fn evidence_overlap_is_by_substring() {
        assert!(evidence_overlaps(&["怖い (-0.7)".into()], &["怖い".into()]));
        assert!(evidence_overlaps(
            &["使え+否定 (-0.3)".into()],
            &["使えない".into()]
        ));
        assert!(!evidence_overlaps(
            &["便利 (+0.6)".into()],
            &["怖い".into()]
        ));
    }
}
