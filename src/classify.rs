//! classify: pure functions from tokens to services, incident categories and sentiment.
//! Nothing here reads the clock, the network or the database.
//!
//! Matching works on a sentence's *compact* form — the normalized texts of its non-symbol tokens
//! concatenated — and a match counts only when it starts and ends on token boundaries. That one
//! rule gives word-boundary awareness in Latin and Japanese alike: "pay" in 「payで払う」 is not
//! PayPay, 「LINEで送った」 is not LINE Pay, and 障害 does not fire inside 障害者.
use crate::dictionaries::Dictionaries;
use crate::domain::{Analysis, CategoryHit, Sentiment, SentimentLabel, TargetSentiment};
use crate::text::{Analyzer, TextError, Token};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Bump when lexicons, aliases or rules change meaning, so stored items can be rescored.
pub const ANALYSIS_VERSION: i64 = 1;

struct ServiceMatcher {
    slug: String,
    aliases: Vec<String>,
    exclusions: Vec<String>,
}

struct CategoryMatcher {
    slug: String,
    /// (normalized compact form, term as written in the lexicon)
    terms: Vec<(String, String)>,
}

pub struct Classifier {
    services: Vec<ServiceMatcher>,
    categories: Vec<CategoryMatcher>,
    /// single-token lexicon terms by normalized form
    polarity: HashMap<String, f64>,
    /// lexicon terms that span several tokens, matched on the compact form
    polarity_phrases: Vec<(String, f64)>,
}

/// One sentence of analyzed text, in compact form with its token boundaries.
struct Sentence<'a> {
    tokens: Vec<&'a Token>,
    compact: String,
    /// byte offset in `compact` where each token starts; the last entry is `compact.len()`
    bounds: Vec<usize>,
}

impl Sentence<'_> {
    /// Token-aligned occurrences of `needle`: (first token index, one past the last).
    fn find_aligned(&self, needle: &str) -> Vec<(usize, usize)> {
        if needle.is_empty() {
            return Vec::new();
        }
        self.compact
            .match_indices(needle)
            .filter_map(|(at, m)| {
                let first = self.bounds.binary_search(&at).ok()?;
                let last = self.bounds.binary_search(&(at + m.len())).ok()?;
                Some((first, last))
            })
            .collect()
    }

    /// Byte ranges of `needle` in the compact form, aligned or not.
    fn find_any(&self, needle: &str) -> Vec<(usize, usize)> {
        if needle.is_empty() {
            return Vec::new();
        }
        self.compact
            .match_indices(needle)
            .map(|(at, m)| (at, at + m.len()))
            .collect()
    }
}

fn is_sentence_end(t: &Token) -> bool {
    matches!(t.text.as_str(), "。" | "." | "!" | "?" | "…" | "‼" | "⁉")
}

/// Splits the parts (title, body …) into sentences at sentence-final punctuation and line breaks.
fn sentences<'a>(parts: &[(&str, &'a [Token])]) -> Vec<Sentence<'a>> {
    let mut out = Vec::new();
    for (text, tokens) in parts {
        let mut current: Vec<&Token> = Vec::new();
        let mut prev_end: Option<usize> = None;
        for t in tokens.iter() {
            let gap_has_newline = prev_end
                .and_then(|p| text.get(p..t.start))
                .is_some_and(|gap| gap.contains('\n'));
            if gap_has_newline && !current.is_empty() {
                out.push(build_sentence(std::mem::take(&mut current)));
            }
            prev_end = Some(t.end);
            if is_sentence_end(t) {
                if !current.is_empty() {
                    out.push(build_sentence(std::mem::take(&mut current)));
                }
                continue;
            }
            if !t.is_symbol() {
                current.push(t);
            }
        }
        if !current.is_empty() {
            out.push(build_sentence(current));
        }
    }
    out
}

fn build_sentence(tokens: Vec<&Token>) -> Sentence<'_> {
    let mut compact = String::new();
    let mut bounds = Vec::with_capacity(tokens.len() + 1);
    for t in &tokens {
        bounds.push(compact.len());
        compact.push_str(&t.text);
    }
    bounds.push(compact.len());
    Sentence {
        tokens,
        compact,
        bounds,
    }
}

/// A polar word found in a sentence.
struct PolarHit {
    token: usize,
    score: f64,
    evidence: String,
}

impl Classifier {
    pub fn new(dicts: &Dictionaries, analyzer: &Analyzer) -> Result<Self, TextError> {
        let norm = |s: &str| analyzer.normalize_term(s);
        let mut services = Vec::new();
        for s in &dicts.services {
            services.push(ServiceMatcher {
                slug: s.slug.clone(),
                aliases: s
                    .aliases
                    .iter()
                    .map(|a| norm(a))
                    .collect::<Result<_, _>>()?,
                exclusions: s
                    .exclusions
                    .iter()
                    .map(|a| norm(a))
                    .collect::<Result<_, _>>()?,
            });
        }
        let mut categories = Vec::new();
        for c in &dicts.categories {
            let mut terms = Vec::new();
            for t in &c.terms {
                terms.push((norm(t)?, t.clone()));
            }
            categories.push(CategoryMatcher {
                slug: c.slug.clone(),
                terms,
            });
        }
        let mut polarity = HashMap::new();
        let mut polarity_phrases = Vec::new();
        for (term, score) in &dicts.sentiment {
            let tokens: Vec<Token> = analyzer
                .tokenize(term)?
                .into_iter()
                .filter(|t| !t.is_symbol())
                .collect();
            match tokens.as_slice() {
                [] => {}
                [one] => {
                    polarity.insert(one.text.clone(), *score);
                    polarity.entry(one.base.clone()).or_insert(*score);
                }
                many => {
                    polarity_phrases.push((many.iter().map(|t| t.text.as_str()).collect(), *score))
                }
            }
        }
        Ok(Self {
            services,
            categories,
            polarity,
            polarity_phrases,
        })
    }

    /// Services mentioned in a sentence, in dictionary order.
    fn services_in(&self, s: &Sentence<'_>) -> Vec<&str> {
        let mut found = Vec::new();
        for m in &self.services {
            let excluded: Vec<(usize, usize)> =
                m.exclusions.iter().flat_map(|e| s.find_any(e)).collect();
            let hit = m.aliases.iter().any(|alias| {
                s.find_aligned(alias).into_iter().any(|(first, last)| {
                    let (a, b) = (s.bounds[first], s.bounds[last]);
                    !excluded.iter().any(|&(x, y)| a < y && x < b)
                })
            });
            if hit {
                found.push(m.slug.as_str());
            }
        }
        found
    }

    fn polar_hits(&self, s: &Sentence<'_>) -> Vec<PolarHit> {
        let mut hits = Vec::new();
        let mut covered = HashSet::new();
        for (phrase, score) in &self.polarity_phrases {
            for (first, last) in s.find_aligned(phrase) {
                covered.extend(first..last);
                hits.push(self.negate(s, last - 1, *score, phrase.clone()));
            }
        }
        for (i, t) in s.tokens.iter().enumerate() {
            if covered.contains(&i) {
                continue;
            }
            let score = self
                .polarity
                .get(&t.text)
                .or_else(|| self.polarity.get(&t.base));
            if let Some(&score) = score {
                hits.push(self.negate(s, i, score, t.text.clone()));
            }
        }
        hits.sort_by_key(|h| h.token);
        hits
    }

    /// Flips a polar word followed closely by a negation (〜ない, 〜ず, 〜ません, 〜じゃない).
    fn negate(&self, s: &Sentence<'_>, last: usize, score: f64, word: String) -> PolarHit {
        let negated = s.tokens[last + 1..]
            .iter()
            .take(3)
            .take_while(|t| !self.polarity.contains_key(&t.base))
            .any(|t| {
                matches!(t.base.as_str(), "ない" | "ず" | "ぬ" | "ん")
                    && (t.pos.starts_with("助動詞") || t.pos.starts_with("形容詞"))
            });
        if negated {
            PolarHit {
                token: last,
                score: -score * 0.8,
                evidence: format!("{word}+否定"),
            }
        } else {
            PolarHit {
                token: last,
                score,
                evidence: word,
            }
        }
    }

    /// Classifies one item whose parts (title, body …) were tokenized once each.
    pub fn classify(&self, parts: &[(&str, &[Token])]) -> Analysis {
        let sentences = sentences(parts);
        let mut services: BTreeSet<(usize, &str)> = BTreeSet::new();
        let mut per_service: HashMap<&str, Vec<f64>> = HashMap::new();
        let mut all_scores = Vec::new();
        let mut evidence = Vec::new();
        let mut category_evidence: Vec<BTreeSet<String>> =
            vec![BTreeSet::new(); self.categories.len()];
        for s in &sentences {
            let mentioned = self.services_in(s);
            let hits = self.polar_hits(s);
            for h in &hits {
                all_scores.push(h.score);
                evidence.push(format!("{} ({:+.1})", h.evidence, h.score));
            }
            for slug in mentioned {
                let order = self
                    .services
                    .iter()
                    .position(|m| m.slug == slug)
                    .unwrap_or(0);
                services.insert((order, slug));
                per_service
                    .entry(slug)
                    .or_default()
                    .extend(hits.iter().map(|h| h.score));
            }
            for (ci, c) in self.categories.iter().enumerate() {
                for (norm, display) in &c.terms {
                    if !s.find_aligned(norm).is_empty() {
                        category_evidence[ci].insert(display.clone());
                    }
                }
            }
        }
        let score = combine(&all_scores);
        let services: Vec<&str> = services.into_iter().map(|(_, s)| s).collect();
        let targets = services
            .iter()
            .map(|slug| {
                let score = combine(per_service.get(slug).map(Vec::as_slice).unwrap_or(&[]));
                TargetSentiment {
                    service: slug.to_string(),
                    label: SentimentLabel::from_score(score),
                    score,
                }
            })
            .collect();
        let categories = self
            .categories
            .iter()
            .zip(category_evidence)
            .filter(|(_, ev)| !ev.is_empty())
            .map(|(c, ev)| CategoryHit {
                name: c.slug.clone(),
                evidence: ev.into_iter().collect(),
            })
            .collect();
        Analysis {
            services: services.iter().map(|s| s.to_string()).collect(),
            categories,
            sentiment: Sentiment {
                label: SentimentLabel::from_score(score),
                score,
                evidence,
            },
            targets,
        }
    }
}

/// Combines word polarities into one score in [-1, 1]: the sum scaled by √n, so several
/// agreeing words strengthen the verdict and mixed words cancel out.
fn combine(scores: &[f64]) -> f64 {
    if scores.is_empty() {
        return 0.0;
    }
    let sum: f64 = scores.iter().sum();
    let s = (sum / (scores.len() as f64).sqrt()).clamp(-1.0, 1.0);
    (s * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn setup() -> &'static (Analyzer, Classifier) {
        static S: OnceLock<(Analyzer, Classifier)> = OnceLock::new();
        S.get_or_init(|| {
            let d = Dictionaries::builtin();
            let a = Analyzer::new(d.userdic()).unwrap();
            let c = Classifier::new(&d, &a).unwrap();
            (a, c)
        })
    }

    fn analyze(text: &str) -> Analysis {
        let (a, c) = setup();
        let tokens = a.tokenize(text).unwrap();
        c.classify(&[(text, &tokens)])
    }

    #[test]
    fn alias_matching_table() {
        // (text, services that must be found)
        let rows: &[(&str, &[&str])] = &[
            ("ＰａｙＰａｙで払った", &["paypay"]),
            ("LINE Payで払った", &["linepay"]),
            ("ＬＩＮＥ Ｐａｙが使えない", &["linepay"]),
            ("７ｐａｙで不正利用", &["7pay"]),
            ("セブンペイの被害", &["7pay"]),
            ("ｾﾌﾞﾝ･ﾍﾟｲ怖い", &["7pay"]),
            ("メルペイとd払いとau PAY", &["merpay", "dbarai", "aupay"]),
            ("LINEで送った", &[]),
            ("payで払う", &[]),
            ("PayPayドームで観戦", &[]),
            ("PayPay銀行に振り込んだ", &[]),
            ("au PAY マーケットで買い物", &[]),
            ("PayPayドームに行ってPayPayで払った", &["paypay"]),
            ("オンラインペイメント", &[]),
            ("onlinepayment", &[]),
        ];
        for (text, want) in rows {
            assert_eq!(analyze(text).services, *want, "{text}");
        }
    }

    #[test]
    fn categories_come_with_evidence_and_respect_token_boundaries() {
        let a = analyze("7payで不正利用の被害。二段階認証がない。");
        let names: Vec<_> = a.categories.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["fraud", "security"]);
        assert!(a.categories[0].evidence.contains(&"不正利用".to_string()));
        assert!(
            analyze("不正確な情報").categories.is_empty(),
            "{:?}",
            analyze("不正確な情報")
        );
    }

    #[test]
    fn sentiment_is_computed_from_words_with_negation() {
        assert_eq!(
            analyze("7payは怖い").sentiment.label,
            SentimentLabel::Negative
        );
        assert_eq!(
            analyze("PayPayは便利で安心").sentiment.label,
            SentimentLabel::Positive
        );
        assert_eq!(
            analyze("今日は晴れ").sentiment.label,
            SentimentLabel::Neutral
        );
        let neg = analyze("このアプリは安全ではない");
        assert_eq!(neg.sentiment.label, SentimentLabel::Negative, "{neg:?}");
        assert!(neg.sentiment.evidence.iter().any(|e| e.contains("否定")));
    }

    #[test]
    fn targets_are_scored_from_their_own_sentences() {
        let a = analyze("PayPayは便利で安心。7payは不正で怖い。");
        let t: HashMap<_, _> = a
            .targets
            .iter()
            .map(|t| (t.service.as_str(), t.label))
            .collect();
        assert_eq!(t["paypay"], SentimentLabel::Positive);
        assert_eq!(t["7pay"], SentimentLabel::Negative);
    }
}
